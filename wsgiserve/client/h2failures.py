"""The errors a request on an HTTP/2 stream gets when the stream ends early: reset by the
server (RFC 9113 §8.7), or cut by the end of its connection (a GOAWAY, a close, a
connection error), told apart by whether its response head had arrived.
"""
from __future__ import annotations

from wsgiserve import http2
from wsgiserve.client.errors import (
    ClientError,
    IncompleteResponse,
    ProtocolError,
    ReadError,
    ServerDisconnected,
    StreamError,
    TransportError,
    WriteTimeout,
)


def stream_reset_error(where: str, code: int | None, is_head_received: bool) -> StreamError:
    """The error for a stream the server reset with ``code`` (RFC 9113 §8.7: REFUSED_STREAM
    before any response means the request was not processed: it may go elsewhere)."""
    name = _code_name(code)
    is_unprocessed = code == http2.ErrorCode.REFUSED_STREAM and not is_head_received
    return StreamError(f"{where}: the server reset the stream ({name})",
                       code if code is not None else http2.ErrorCode.STREAM_CLOSED,
                       is_unprocessed=is_unprocessed)


def _code_name(code: int | None) -> str:
    if code is None:
        return "closed"
    try:
        return http2.ErrorCode(code).name
    except ValueError:
        return f"error code {code:#x}"


def stream_failure(is_head_received: bool, failure: ClientError | None, where: str,
                   goaway: str) -> ClientError:
    """The error a stream still open gets when its connection ends with ``failure`` (None:
    closed by us); ``goaway`` says why the server was closing, if it was."""
    if isinstance(failure, (ProtocolError, WriteTimeout)):
        error: ClientError = type(failure)(str(failure))
    elif not is_head_received:
        error = ServerDisconnected(f"{where}: the server closed the connection without a "
                                   f"response{goaway}")
    elif failure is None or isinstance(failure, ServerDisconnected):
        error = IncompleteResponse(f"{where}: the connection closed before the end of the "
                                   f"response body{goaway}")
    elif isinstance(failure, TransportError):
        error = ReadError(str(failure))
    else:
        error = failure
    error.__cause__ = failure
    return error
