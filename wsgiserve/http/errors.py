"""The protocol error tree. Each error from the peer carries the status to answer with.

The server and the client catch ``RemoteProtocolError`` once and answer ``exc.status``
(server) or report it (client).
"""
from __future__ import annotations

from typing import ClassVar


class ProtocolError(Exception):
    """Base of every error about HTTP/1.1 bytes, whichever side produced them."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not valid HTTP/1.1, or that we refuse to accept.

    The parser that raised it stays in its ERROR state; the connection must close.
    ``method`` is the request's method when the error came after its request line (a
    server answers HEAD without a body).
    """

    status: ClassVar[int] = 400
    reason: ClassVar[str] = "Bad Request"
    method: bytes | None = None


class IncompleteMessage(RemoteProtocolError):
    """The peer closed the connection in the middle of a message."""


class RequestLineTooLong(RemoteProtocolError):
    status = 414
    reason = "URI Too Long"


class HeadTooLarge(RemoteProtocolError):
    status = 431
    reason = "Request Header Fields Too Large"


class TooManyFields(HeadTooLarge):
    pass


class FieldTooLarge(HeadTooLarge):
    pass


class BodyTooLarge(RemoteProtocolError):
    status = 413
    reason = "Content Too Large"


class ExpectationFailed(RemoteProtocolError):
    status = 417
    reason = "Expectation Failed"


class UnsupportedTransferCoding(RemoteProtocolError):
    # RFC 9112 §6.1: a server that receives a transfer coding it does not understand
    # ought to respond with 501 (Not Implemented).
    status = 501
    reason = "Not Implemented"


class UnsupportedVersion(RemoteProtocolError):
    status = 505
    reason = "HTTP Version Not Supported"


class LocalProtocolError(ProtocolError):
    """We were asked to send bytes that are not valid HTTP/1.1 (an application bug).

    Nothing was emitted for the call that raised.
    """
