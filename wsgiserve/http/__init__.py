"""Sans-IO HTTP/1.1 for both roles: bytes in, events out; events in, bytes out.

Imports only the standard library, and never ``socket``, ``ssl``, ``selectors`` or
``logging``. The server and the client drive it; nothing here does I/O.
"""
from __future__ import annotations

from wsgiserve.http.errors import (
    BodyTooLarge,
    ExpectationFailed,
    FieldTooLarge,
    HeadTooLarge,
    IncompleteMessage,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    RequestLineTooLong,
    TooManyFields,
    UnsupportedTransferCoding,
    UnsupportedVersion,
)
from wsgiserve.http.events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    Request,
    Response,
)
from wsgiserve.http.framing import BodyKind, Framing
from wsgiserve.http.headers import Headers
from wsgiserve.http.limits import HttpLimits
from wsgiserve.http.parser import RequestParser, ResponseParser
from wsgiserve.http.writer import BodyWriter, encode_request_head, encode_response_head

__all__ = [
    "NEED_DATA", "PAUSED", "BodyKind", "BodyTooLarge", "BodyWriter", "ConnectionClosed",
    "Data", "EndOfMessage", "ExpectationFailed", "FieldTooLarge", "Framing", "HeadTooLarge",
    "Headers", "HttpLimits", "IncompleteMessage", "InformationalResponse",
    "LocalProtocolError", "ProtocolError", "RemoteProtocolError", "Request",
    "RequestLineTooLong", "RequestParser", "Response", "ResponseParser", "TooManyFields",
    "UnsupportedTransferCoding", "UnsupportedVersion", "encode_request_head",
    "encode_response_head",
]
