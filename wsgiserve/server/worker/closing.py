"""How an HTTP/1.1 connection ends: its last bytes go out, then the lingering close of RFC
9112 §9.6 (half-close, read and drop what the client still sends for up to LINGER_S, in the
loop, then close), or a close at once when nothing more can come from the client. The
functions act on the protocol's state and deadline (``Closable``); the loop closes on CLOSE.
"""
from __future__ import annotations

import time
from typing import Final, Protocol

from wsgiserve.http import RequestParser
from wsgiserve.http.parser import ParserState
from wsgiserve.server.worker.context import LINGER_S
from wsgiserve.server.worker.states import (
    CLOSE,
    CLOSING,
    WAIT_READABLE,
    WAIT_WRITABLE,
    ConnState,
    Outcome,
)
from wsgiserve.server.worker.transport import Transport

__all__ = ["Closable", "close_or_linger", "linger", "send_final", "start_closing",
           "start_lingering"]

# Parser states in which a request was read to its end (and nothing of a next one yet).
_BETWEEN_REQUESTS: Final = frozenset({ParserState.HEAD, ParserState.DONE, ParserState.CLOSED})


class Closable(Protocol):
    """What closing needs of the protocol on the connection."""

    transport: Transport
    state: ConnState
    deadline: float  # when the loop calls on_timeout: the end of the linger

    def set_state(self, new: ConnState) -> None: ...


def send_final(protocol: Closable, data: bytes) -> Outcome:
    """Send the connection's last bytes (one of the server's own answers), then linger."""
    if protocol.state is not CLOSING:
        protocol.set_state(CLOSING)
    try:
        if not protocol.transport.send_or_park(data):
            return WAIT_WRITABLE
    except OSError:
        return CLOSE
    return start_lingering(protocol)


def close_or_linger(protocol: Closable, parser: RequestParser) -> Outcome:
    """After a response that ends the connection: close at once when nothing more can
    come from the client, else the lingering close.

    The client asked to close (or spoke HTTP/1.0) and its request was read to the end
    with nothing behind it: it sends nothing more, so closing now cannot reset the
    connection under the response (nginx decides the same way, and so saves the
    half-close and the wait for the client's FIN).
    """
    transport = protocol.transport
    if not parser.buffered_bytes and not transport.read_pending \
            and not transport.has_pending_output and parser.state in _BETWEEN_REQUESTS:
        protocol.set_state(CLOSING)
        if transport.is_tls:
            transport.shutdown_write()  # close_notify: the response was not truncated
        return CLOSE
    return start_closing(protocol)


def start_closing(protocol: Closable) -> Outcome:
    """CLOSING: linger once what is pending has been sent."""
    protocol.set_state(CLOSING)
    if protocol.transport.has_pending_output:
        return WAIT_WRITABLE  # on_writable starts the linger once it is sent
    return start_lingering(protocol)


def start_lingering(protocol: Closable) -> Outcome:
    """Half-close and wait (in the loop, not a thread) for the peer to finish.

    Closing a socket with unread input makes the kernel send RST, which can destroy
    the response before the client reads it (RFC 9112 §9.6): shut down our side,
    read and drop for up to LINGER_S, then close.
    """
    if not protocol.transport.shutdown_write():
        return CLOSE
    protocol.deadline = time.monotonic() + LINGER_S
    return linger(protocol.transport)


def linger(transport: Transport) -> Outcome:
    """Read and drop what came: CLOSE once the peer has closed, else wait for more."""
    return CLOSE if transport.discard_input() else WAIT_READABLE
