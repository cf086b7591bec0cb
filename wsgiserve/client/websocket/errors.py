"""The WebSocket client's errors: an opening handshake refused or invalid, and the end of
an open connection (``WebSocketClosed`` and its kinds, with the close code and reason).

Each carries the exit status ``wsgiserve-ws`` answers with, from the HTTP client's
curl-based scheme where one fits; connecting, TLS and timeouts raise the HTTP client's
own errors (``ConnectError``, ``CertificateError``, ``RequestTimeout``...).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from wsgiserve.client.errors import ClientError, ProtocolError, TransportError
from wsgiserve.websocket import ProtocolViolation

# RFC 6455 §7.4.1: 1000 normal closure, 1001 going away; 1005 is a Close frame without a
# code (§7.1.5). websockets (the Python library) counts the same three as a clean end.
OK_CLOSE_CODES: Final = frozenset({1000, 1001, 1005})
# RFC 6455 §7.1.5: the connection closed without a Close frame.
ABNORMAL_CLOSURE: Final = 1006


class HandshakeRefused(ClientError):
    """The server answered the upgrade request with a status other than 101.

    Attributes:
        status: the response's status code.
        headers: its fields, as (name, value) strings.
        body: the first bytes of its body (at most 1 KiB).
    """

    exit_code = 22  # curl --fail: "HTTP page not retrieved"

    def __init__(self, message: str, status: int,
                 headers: Sequence[tuple[str, str]] = (), body: bytes = b""):
        super().__init__(message)
        self.status = status
        self.headers = list(headers)
        self.body = body


class InvalidHandshake(ProtocolError):
    """The server's answer is not a valid acceptance: a 101 whose fields do not match the
    request (RFC 6455 §4.1, the client's checks), or not HTTP at all."""

    exit_code = 8  # curl: "Weird server reply"


class WebSocketClosed(ClientError):
    """The connection is closed (or closing): ``recv``, ``send`` and ``ping`` raise this.

    Attributes:
        code: the connection's close code (RFC 6455 §7.1.5): the server's Close frame's
            code (1005 if it had none), the code we failed the connection with, or 1006
            when the connection ended without a Close frame.
        reason: the Close frame's reason ("" if none).

    This class itself means the server closed with a code outside ``OK_CLOSE_CODES``.
    """

    exit_code = 1

    def __init__(self, message: str, code: int, reason: str = ""):
        super().__init__(message)
        self.code = code
        self.reason = reason


class WebSocketClosedOK(WebSocketClosed):
    """A normal end: a close handshake with 1000, 1001 or no code. Iteration over a
    ``WebSocket`` stops quietly on it."""

    exit_code = 0


class WebSocketConnectionLost(WebSocketClosed, TransportError):
    """The connection ended without a close handshake (code 1006): the TCP connection
    closed or broke, or the server never answered our Close in time."""

    exit_code = 56  # curl: "Failure in receiving network data"


class WebSocketProtocolError(WebSocketClosed, ProtocolError):
    """The server broke RFC 6455 or a limit; we failed the connection with ``code``
    (1002 protocol error, 1007 invalid payload, 1009 message too big...)."""

    exit_code = 8  # curl: "Weird server reply"


def closed_error(url: str, code: int, reason: str, failure: ProtocolViolation | None,
                 lost: BaseException | None) -> WebSocketClosed:
    """The error for a connection's end: ``failure`` when we failed it, ``lost`` the
    socket error when it ended without a close handshake (``code`` 1006)."""
    if failure is not None:
        return WebSocketProtocolError(
            f"{url}: the server broke the WebSocket protocol: {failure} (closed "
            f"with {failure.close_code})", failure.close_code, str(failure))
    if code == ABNORMAL_CLOSURE:
        cause = f": {lost}" if lost is not None else ""
        return WebSocketConnectionLost(
            f"{url}: the connection ended without a close handshake{cause}", code)
    said = f" {reason!r}" if reason else ""
    if code in OK_CLOSE_CODES:
        return WebSocketClosedOK(f"{url}: connection closed ({code}{said})", code, reason)
    return WebSocketClosed(f"{url}: connection closed with {code}{said}", code, reason)
