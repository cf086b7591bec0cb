"""Sans-IO HTTP/2 (RFC 9113) with HPACK (RFC 7541), both roles: bytes in, events out.

Imports only the standard library (and ``wsgiserve.http`` for the field-character rules),
never ``socket``, ``ssl``, ``selectors``, ``threading`` or ``logging``, and reads no clock.
The server and the client drive ``Connection``; nothing here does I/O.
"""
from __future__ import annotations

from wsgiserve.http2.connection import Connection
from wsgiserve.http2.endpoint import ConnectionState
from wsgiserve.http2.errors import (
    ConnectionClosedError,
    ErrorCode,
    FlowControlBlocked,
    Http2ConnectionError,
    Http2Error,
    Http2StreamError,
    Http2UsageError,
    StreamClosedError,
    TooManyStreamsError,
)
from wsgiserve.http2.events import (
    DataReceived,
    Event,
    GoAwayReceived,
    InformationalResponseReceived,
    PingAcked,
    PingReceived,
    RequestReceived,
    ResponseReceived,
    SettingsAcknowledged,
    SettingsChanged,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from wsgiserve.http2.fields import CONNECTION_SPECIFIC_FIELDS
from wsgiserve.http2.frames import CLIENT_PREFACE, MAX_STREAM_ID
from wsgiserve.http2.limits import Http2Limits
from wsgiserve.http2.settings import Setting

__all__ = [
    "CLIENT_PREFACE", "CONNECTION_SPECIFIC_FIELDS", "MAX_STREAM_ID", "Connection",
    "ConnectionClosedError", "ConnectionState", "DataReceived", "ErrorCode", "Event",
    "FlowControlBlocked", "GoAwayReceived", "Http2ConnectionError", "Http2Error",
    "Http2Limits", "Http2StreamError", "Http2UsageError", "InformationalResponseReceived",
    "PingAcked", "PingReceived", "RequestReceived", "ResponseReceived", "Setting",
    "SettingsAcknowledged", "SettingsChanged", "StreamClosedError", "StreamEnded",
    "StreamReset", "TooManyStreamsError", "TrailersReceived", "WindowUpdated",
]
