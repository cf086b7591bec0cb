"""What a connection asks of the protocol it hosts (HTTP/1.1, the TLS/PROXY preamble, and
the protocols that take a connection over: WebSocket, HTTP/2).

A protocol owns the connection's state and deadline and is driven through the methods
below, one thread at a time; each returns the ``Outcome`` the loop acts on. To hand the
connection to another protocol (after TLS's handshake, an HTTP/2 preface or a 101), it
sets ``next_protocol`` and returns ``Outcome.SWITCH``; the connection then runs the new
protocol's ``on_readable`` at once, so bytes already buffered are not left waiting.
"""
from __future__ import annotations

from typing import Protocol as _TypingProtocol

from wsgiserve.server.worker.states import ConnState, Outcome

__all__ = ["Protocol"]


class Protocol(_TypingProtocol):
    # The ``protocol`` label of the worker's connection gauges: a value of
    # ``server.counters.CONNECTION_PROTOCOLS`` ("http/1.1", "h2", "websocket", "preamble").
    protocol_name: str
    state: ConnState
    deadline: float        # when on_timeout is due (monotonic seconds)
    idle_since: float      # when the connection last became idle
    next_protocol: Protocol | None

    @property
    def is_idle(self) -> bool:
        """Between requests: the worker may close it when it stops."""

    def on_readable(self) -> Outcome:
        """The socket has bytes (or the peer closed). Raises OSError if it failed."""

    def on_writable(self) -> Outcome:
        """The socket takes bytes again. Raises OSError if it failed."""

    def on_timeout(self) -> Outcome:
        """``deadline`` passed while the loop waited for this connection."""

    def start_graceful_close(self, quiet_since: float) -> Outcome | None:
        """The worker is stopping (called again each tick until the connection is gone):
        begin closing it when that loses nothing, None to be asked again later. HTTP/1.1
        closes a connection idle since ``quiet_since`` (a busier one answers its next
        request with Connection: close); HTTP/2 sends GOAWAY and lets its streams end; a
        WebSocket sends close 1001."""

    def shed(self) -> Outcome | None:
        """Every thread has been busy longer than the queue time allows: answer what is
        waiting on this connection with 503 (and close it) instead of serving it; None
        when the protocol cannot (it is then left to be served)."""

    def close(self) -> None:
        """Release everything at once (the socket included)."""
