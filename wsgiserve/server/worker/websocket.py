"""WebSocket on a connection after the 101: the protocol the worker's loop drives.

The app's ``WebSocket`` (websocket_api) does the framing; this protocol runs it from the
loop's events, so an idle WebSocket holds no thread: readable -> ``loop_read`` (messages
go to the callbacks on the serving threads), writable -> ``loop_flush``, deadline ->
``on_timer`` (pings, the pong's and the peer Close's timeouts). Once the conversation is
over and the output sent, the close is the same lingering close as HTTP's (our FIN, then
read and drop until the peer's, at most LINGER_S), so no reset destroys our Close frame::

    IN_APP (open, or closing with frames still read) -> CLOSING (lingering) -> CLOSED
    IN_APP -> CLOSED (the peer is gone, or does not read)
"""
from __future__ import annotations

import time

from wsgiserve.server.worker.context import LINGER_S, ServerContext
from wsgiserve.server.worker.states import (
    CLOSE,
    CLOSED,
    CLOSING,
    IN_APP,
    StateMachine,
    WAIT_READABLE,
    WAIT_WRITABLE,
    Outcome,
)
from wsgiserve.server.worker.protocol import Protocol
from wsgiserve.server.worker.transport import Transport
from wsgiserve.server.worker.websocket_api import WebSocket

__all__ = ["WebSocketProtocol"]


class WebSocketProtocol(StateMachine):
    """A connection whose WSGI call accepted a WebSocket (blocking style: after it
    returned, to finish the close; event mode: for the socket's whole life)."""

    __slots__ = ("websocket", "transport", "context", "state", "idle_since", "next_protocol",
                 "_linger_until", "_is_stop_sent")
    protocol_name = "websocket"  # the connection gauges' label (server.counters)

    def __init__(self, websocket: WebSocket, transport: Transport,
                 context: ServerContext) -> None:
        self.websocket = websocket
        self.transport = transport
        self.context = context
        self.state = IN_APP
        self.idle_since = 0.0
        self.next_protocol: Protocol | None = None
        self._linger_until = 0.0
        self._is_stop_sent = False
        websocket.start_loop()

    @property
    def deadline(self) -> float:
        return self._linger_until if self.state is CLOSING else self.websocket.deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._linger_until = value

    @property
    def is_idle(self) -> bool:
        """Never: a stopping worker closes WebSockets with 1001 (``close_websockets``),
        not as idle keep-alive connections."""
        return False

    def on_readable(self) -> Outcome:
        if self.state is CLOSING:
            return self._linger()
        if self.websocket.loop_read():
            return self._finish()
        return WAIT_READABLE

    def on_writable(self) -> Outcome:
        if self.state is CLOSING:
            return WAIT_READABLE
        self.websocket.loop_flush()
        if self.websocket.is_finished:
            return self._finish()
        return WAIT_READABLE

    def on_timeout(self) -> Outcome:
        if self.state is CLOSING:
            return CLOSE
        websocket = self.websocket
        websocket.on_timer(time.monotonic())
        if websocket.is_finished:
            return self._finish()
        return WAIT_READABLE

    def start_graceful_close(self, quiet_since: float) -> Outcome | None:
        """Close 1001 (once; called each tick until the connection is gone), then the
        closing handshake runs as for any close."""
        if not self._is_stop_sent:
            self._is_stop_sent = True
            self.websocket.close_for_stop()
        return None

    def shed(self) -> Outcome | None:
        return None  # an open WebSocket is never shed: its messages are not requests

    def close(self) -> None:
        if self.state is not CLOSED:
            self.state = CLOSED
            self.websocket.end()
            self.transport.close()

    def _finish(self) -> Outcome:
        """The conversation is over: send what is left, then the lingering close."""
        websocket = self.websocket
        flushed = websocket.loop_flush()
        if websocket.is_aborted:
            return CLOSE
        if not flushed:
            return WAIT_WRITABLE  # on_writable comes back here once the socket takes it
        self.set_state(CLOSING)
        if not self.transport.shutdown_write():
            return CLOSE
        self._linger_until = time.monotonic() + LINGER_S
        return self._linger()

    def _linger(self) -> Outcome:
        if self.transport.discard_input():
            return CLOSE
        self.transport.read_pending = False
        return WAIT_READABLE
