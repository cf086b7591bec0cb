"""HTTP/2 error codes (RFC 9113 §7) and the exceptions that carry them.

A ``Http2ConnectionError`` becomes a GOAWAY with its ``code``; a ``Http2StreamError``
becomes a RST_STREAM on its stream; a ``Http2UsageError`` says that we were asked to send
something the protocol forbids (an application or driver bug) and nothing was emitted.
"""
from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """RFC 9113 §7 error codes, as carried by RST_STREAM and GOAWAY frames."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


def error_code(value: int) -> ErrorCode | int:
    """Return the ErrorCode for ``value``; unknown codes stay plain ints (RFC 9113 §7:
    an unknown code MUST NOT trigger special behaviour)."""
    try:
        return ErrorCode(value)
    except ValueError:
        return value


class Http2Error(Exception):
    """Base of every HTTP/2 error; ``code`` is the RFC 9113 error code it stands for."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR):
        super().__init__(message)
        self.code = code


class Http2ConnectionError(Http2Error):
    """The peer broke a rule of the connection (or a compression state is lost).

    Raised by ``Connection.receive_data`` once the GOAWAY carrying ``code`` is queued; the
    connection is then CLOSED: send ``data_to_send()`` and close the transport.
    """


class Http2StreamError(Http2Error):
    """The peer broke a rule of one stream: answered with RST_STREAM(``code``).

    The connection handles these itself (a ``StreamReset`` event with ``remote=False``
    tells the application); they do not escape ``receive_data``.
    """

    def __init__(self, message: str, stream_id: int,
                 code: ErrorCode = ErrorCode.PROTOCOL_ERROR):
        super().__init__(message, code)
        self.stream_id = stream_id


class Http2UsageError(Http2Error):
    """We were asked to send something HTTP/2 forbids; nothing was queued for the call.

    ``code`` is the error code a driver would reset the stream with if it gives up.
    """

    def __init__(self, message: str, code: ErrorCode = ErrorCode.INTERNAL_ERROR):
        super().__init__(message, code)


class StreamClosedError(Http2UsageError):
    """The stream can no longer be written: it ended, or one side reset it.

    Not an application bug when the peer reset the stream (``reset_code`` is then its
    code, or ours if we reset it); the driver drops the rest of the response.
    """

    def __init__(self, message: str, stream_id: int, reset_code: int | None = None):
        super().__init__(message, ErrorCode.STREAM_CLOSED)
        self.stream_id = stream_id
        self.reset_code = reset_code


class FlowControlBlocked(Http2UsageError):
    """``send_data`` was given more than the flow-control window allows right now.

    Wait for a ``WindowUpdated`` (or ``SettingsChanged``) event and send the rest.
    """

    def __init__(self, message: str, stream_id: int, window: int):
        super().__init__(message, ErrorCode.FLOW_CONTROL_ERROR)
        self.stream_id = stream_id
        self.window = window


class TooManyStreamsError(Http2UsageError):
    """A new stream would exceed the peer's SETTINGS_MAX_CONCURRENT_STREAMS."""

    def __init__(self, message: str):
        super().__init__(message, ErrorCode.REFUSED_STREAM)


class ConnectionClosedError(Http2UsageError):
    """The connection takes no new stream (a GOAWAY was sent or received), or nothing at
    all (it closed on an error). A client opens a new connection for the request."""
