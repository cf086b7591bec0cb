"""When an app's WebSocket acts on its own: its pings and the two deadlines it enforces.

A ping is due ``ping_interval_s`` after the WebSocket opened or after the last pong; its
pong is due ``ping_timeout_s`` after it went out; after our Close the peer's is due within
CLOSE_TIMEOUT_S. Plain clock arithmetic: the WebSocket keeps one ``WebSocketTimers`` under
its lock, asks ``due(now)`` at ``deadline`` and does the sending and the giving up.
"""
from __future__ import annotations

import enum
import math
from typing import Final

__all__ = ["CLOSE_TIMEOUT_S", "Due", "WebSocketTimers"]

# How long we wait for the peer's Close after sending ours (RFC 6455 §7.1.1 leaves it to
# us; websockets' close_timeout is 10 s, and a stopping worker has graceful_timeout).
CLOSE_TIMEOUT_S: Final = 5.0


class Due(enum.Enum):
    """What ``WebSocketTimers.due`` found, most urgent first."""

    CLOSE_LATE = "the peer's Close is late"
    PONG_LATE = "the pong is late"
    PING = "a ping is due"


class WebSocketTimers:
    """The next ping, the pending pong's deadline and the peer Close's deadline
    (``math.inf``: none)."""

    __slots__ = ("_ping_interval_s", "_ping_timeout_s", "_next_ping_at", "_pong_due",
                 "_close_due")

    def __init__(self, started: float, ping_interval_s: float, ping_timeout_s: float) -> None:
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._next_ping_at = started + ping_interval_s if ping_interval_s else math.inf
        self._pong_due = math.inf
        self._close_due = math.inf

    @property
    def deadline(self) -> float:
        """When ``due`` has something: the next ping, the pong's, or the peer's Close."""
        return min(self._next_ping_at, self._pong_due, self._close_due)

    def due(self, now: float) -> Due | None:
        """What is due at ``now``; a ping is reported once (the next is scheduled by
        ``pong_received``)."""
        if now >= self._close_due:
            return Due.CLOSE_LATE
        if now >= self._pong_due:
            return Due.PONG_LATE
        if now >= self._next_ping_at:
            self._next_ping_at = math.inf
            return Due.PING
        return None

    def ping_sent(self, now: float) -> None:
        self._pong_due = now + self._ping_timeout_s

    def pong_received(self, now: float) -> None:
        self._pong_due = math.inf
        if self._ping_interval_s:
            self._next_ping_at = now + self._ping_interval_s

    def close_sent(self, now: float) -> None:
        self._close_due = now + CLOSE_TIMEOUT_S
