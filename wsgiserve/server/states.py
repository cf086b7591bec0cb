"""A connection's states, the transitions allowed between them, and the loop's outcomes.

States (``ConnState``) and the transitions allowed (``TRANSITIONS``)::

    READING_HEAD -> READING_BODY (pre-buffering a small body) -> IN_APP
    READING_HEAD -> IN_APP -> WRITING (socket full) <-> IN_APP (app resumes)
    IN_APP/WRITING -> IDLE (keep-alive) -> READING_HEAD (next bytes) ...
    any -> CLOSING (a final write, then lingering close) -> CLOSED

``server.preamble`` starts TLS and PROXY-protocol connections in READING_PROXY_HEADER or
HANDSHAKING; both lead to READING_HEAD (or CLOSING). Imported by ``server.connection``,
``server.exchange`` and ``server.preamble``.
"""
from __future__ import annotations

from enum import Enum
from typing import Final

__all__ = ["TRANSITIONS", "ConnState", "Outcome"]


class ConnState(Enum):
    __hash__ = object.__hash__  # identity hashing: C-speed lookups in the state table

    READING_HEAD = "reading-head"
    READING_BODY = "reading-body"
    IN_APP = "in-app"
    WRITING = "writing"
    IDLE = "idle"
    CLOSING = "closing"
    CLOSED = "closed"
    READING_PROXY_HEADER = "reading-proxy-header"  # server.preamble only
    HANDSHAKING = "handshaking"  # server.preamble only


class Outcome(Enum):
    """What the worker's loop does with the connection next."""

    WAIT_READABLE = "wait-readable"
    WAIT_WRITABLE = "wait-writable"
    CLOSE = "close"


_C = ConnState
TRANSITIONS: Final[dict[ConnState, frozenset[ConnState]]] = {
    _C.READING_HEAD: frozenset({_C.READING_HEAD, _C.READING_BODY, _C.IN_APP, _C.CLOSING,
                                _C.CLOSED}),
    _C.READING_BODY: frozenset({_C.READING_BODY, _C.IN_APP, _C.CLOSING, _C.CLOSED}),
    _C.IN_APP: frozenset({_C.WRITING, _C.IDLE, _C.CLOSING, _C.CLOSED}),
    _C.WRITING: frozenset({_C.IN_APP, _C.CLOSING, _C.CLOSED}),
    # IDLE -> IN_APP / READING_BODY: a pipelined request was already buffered.
    _C.IDLE: frozenset({_C.READING_HEAD, _C.READING_BODY, _C.IN_APP, _C.CLOSING, _C.CLOSED}),
    _C.CLOSING: frozenset({_C.CLOSING, _C.CLOSED}),
    _C.CLOSED: frozenset({_C.CLOSED}),
    _C.READING_PROXY_HEADER: frozenset({_C.HANDSHAKING, _C.READING_HEAD, _C.CLOSING,
                                        _C.CLOSED}),
    _C.HANDSHAKING: frozenset({_C.READING_HEAD, _C.CLOSING, _C.CLOSED}),
}
