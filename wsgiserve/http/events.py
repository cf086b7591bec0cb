"""The events the parsers return and the writers are built from.

A message is one head event (``Request``, ``Response`` or ``InformationalResponse``),
zero or more ``Data``, then ``EndOfMessage``. ``ConnectionClosed`` reports a clean close
between messages. ``NEED_DATA`` and ``PAUSED`` are sentinels, not events.
"""
from __future__ import annotations

from enum import Enum
from typing import Final

from wsgiserve.http.framing import Framing
from wsgiserve.http.headers import Headers


class _Sentinel(Enum):
    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"


# More bytes are needed before another event can be returned.
NEED_DATA: Final = _Sentinel.NEED_DATA
# The parser holds a complete message and waits for its driver (the client must name the
# next request's method; a server parser stops after a message that ends the connection).
PAUSED: Final = _Sentinel.PAUSED
Sentinel = _Sentinel

_EMPTY_HEADERS: Final = Headers([], [])


class Request:
    """A request head. ``target`` is the raw request-target; ``http_version`` is b"1.1"."""

    __slots__ = ("method", "target", "http_version", "headers", "framing", "keep_alive",
                 "expects_continue")

    def __init__(self, method: bytes, target: bytes, http_version: bytes, headers: Headers,
                 framing: Framing, keep_alive: bool, expects_continue: bool = False):
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.framing = framing
        self.keep_alive = keep_alive
        self.expects_continue = expects_continue

    def __repr__(self) -> str:
        return (f"Request({self.method!r}, {self.target!r}, {self.http_version!r}, "
                f"{self.headers!r}, {self.framing!r}, keep_alive={self.keep_alive})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)


class Response:
    """A final response head (status 200-599, or 101 which ends HTTP on the connection)."""

    __slots__ = ("status", "reason", "http_version", "headers", "framing", "keep_alive")

    def __init__(self, status: int, reason: bytes, http_version: bytes, headers: Headers,
                 framing: Framing, keep_alive: bool):
        self.status = status
        self.reason = reason
        self.http_version = http_version
        self.headers = headers
        self.framing = framing
        self.keep_alive = keep_alive

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.status}, {self.reason!r}, {self.http_version!r}, "
                f"{self.headers!r}, {self.framing!r}, keep_alive={self.keep_alive})")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)


class InformationalResponse(Response):
    """An interim 1xx response (100 Continue, 103 Early Hints...); the final one follows."""

    __slots__ = ()


class Data:
    """A piece of a message body, transfer coding removed."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def __repr__(self) -> str:
        return f"Data({self.data[:40]!r}{'...' if len(self.data) > 40 else ''}, len={len(self.data)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Data) and other.data == self.data


class EndOfMessage:
    """The end of a message body, with the trailer fields of a chunked body."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: Headers = _EMPTY_HEADERS):
        self.trailers = trailers

    def __repr__(self) -> str:
        return f"EndOfMessage({self.trailers!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndOfMessage) and other.trailers == self.trailers


class ConnectionClosed:
    """The peer closed the connection cleanly, between messages."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ConnectionClosed()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConnectionClosed)


Event = Request | Response | InformationalResponse | Data | EndOfMessage | ConnectionClosed
