"""The events a ``WebSocketConnection`` returns from ``next_event``.

Data messages arrive whole (``TextMessage``, ``BytesMessage``); control frames as
``Ping``, ``Pong`` and ``CloseReceived``; ``ConnectionClosed`` once the transport has
closed. ``NEED_DATA`` is a sentinel, not an event.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final


class _Sentinel(Enum):
    NEED_DATA = "NEED_DATA"


# More bytes are needed before another event can be returned.
NEED_DATA: Final = _Sentinel.NEED_DATA
Sentinel = _Sentinel


@dataclass(frozen=True, slots=True)
class TextMessage:
    text: str


@dataclass(frozen=True, slots=True)
class BytesMessage:
    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """A Ping; the connection has already queued its Pong (unless it had sent Close)."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer's Close frame. ``code`` is 1005 when the frame had no code (RFC 6455
    §7.1.5). If we had not sent Close, the connection has queued its echo."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The transport closed (``receive_data(b"")``). ``code`` and ``reason`` are the
    connection's close code and reason (RFC 6455 §7.1.5-6): those of the peer's Close
    frame, or 1006 if none arrived."""

    code: int
    reason: str = ""


Event = TextMessage | BytesMessage | Ping | Pong | CloseReceived | ConnectionClosed
