"""The WebSocket error tree. Each error from the peer carries the close code to send.

A ``ProtocolViolation`` (or a subclass) raised while reading frames means the connection
has failed: its Close frame, with ``exc.close_code``, is already queued. A
``HandshakeError`` raised while checking an opening handshake carries the HTTP status (and
any header fields) a server answers with.
"""
from __future__ import annotations

from typing import ClassVar


class WebSocketError(Exception):
    """Base of every WebSocket error, whichever side produced it."""


class ProtocolViolation(WebSocketError):
    """The peer sent bytes that break RFC 6455 (or RFC 7692), or that we refuse.

    The connection that raised it is left FAILED and raises the same error on every later
    call to ``next_event``; the caller sends ``data_to_send()`` and closes the transport.
    """

    # RFC 6455 §7.4.1: 1002 indicates that an endpoint is terminating the connection due
    # to a protocol error.
    close_code: ClassVar[int] = 1002


class InvalidPayload(ProtocolViolation):
    """A text message or a close reason that is not valid UTF-8."""

    # RFC 6455 §7.4.1: 1007, data within a message not consistent with its type.
    close_code = 1007


class PolicyViolation(ProtocolViolation):
    """A message we refuse for a reason no more specific code covers."""

    close_code = 1008


class MessageTooBig(ProtocolViolation):
    """A frame or a message (after decompression) over its limit."""

    close_code = 1009


class HandshakeError(WebSocketError):
    """An opening handshake we refuse.

    On the server, answer ``status`` with ``headers`` added to the response head. On the
    client, the server's response was not a valid acceptance of our request (``status``
    is then only informative).
    """

    status: ClassVar[int] = 400
    reason: ClassVar[str] = "Bad Request"
    headers: ClassVar[tuple[tuple[bytes, bytes], ...]] = ()


class UnsupportedVersion(HandshakeError):
    # RFC 6455 §4.2.2: a version the server does not understand is answered with an error
    # such as 426 and a Sec-WebSocket-Version field naming the versions it does.
    status = 426
    reason = "Upgrade Required"
    headers = ((b"Sec-WebSocket-Version", b"13"),)


class InvalidHandshakeResponse(HandshakeError):
    """The client's view: the server's response does not accept our upgrade request."""


class LocalProtocolError(WebSocketError):
    """We were asked to do something RFC 6455 forbids (an application bug): for example
    to send after our Close frame, or a control frame over 125 bytes.

    Nothing was queued for the call that raised, and the connection's state is unchanged.
    """
