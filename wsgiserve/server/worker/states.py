"""A connection's states, the transitions allowed between them, and the loop's outcomes.

States (``ConnState``) and the transitions allowed (``TRANSITIONS``); a transition not in
the table raises::

    NEW (no byte yet) -> READING_HEAD -> READING_BODY (pre-buffering a small body) -> IN_APP
    IN_APP -> WRITING (socket full) <-> IN_APP (the app resumes)
    IN_APP/WRITING -> IDLE (keep-alive) -> READING_HEAD (next bytes) ...
    any -> CLOSING (a final write, then lingering close) -> CLOSED
    any -> SWITCHED (the connection now speaks another protocol) -> CLOSED

The preamble (PROXY header, TLS handshake) has two states of its own:
READING_PROXY_HEADER -> HANDSHAKING -> SWITCHED (to HTTP), or CLOSING.
"""
from __future__ import annotations

from enum import Enum
from typing import Final

__all__ = ["TRANSITIONS", "ConnState", "Outcome", "StateMachine"]  # and the members, as module names below


class ConnState(Enum):
    __hash__ = object.__hash__  # identity hashing: C-speed lookups in the state table

    NEW = "new"
    READING_HEAD = "reading-head"
    READING_BODY = "reading-body"
    IN_APP = "in-app"
    WRITING = "writing"
    IDLE = "idle"
    CLOSING = "closing"
    CLOSED = "closed"
    SWITCHED = "switched"
    READING_PROXY_HEADER = "reading-proxy-header"
    HANDSHAKING = "handshaking"


class Outcome(Enum):
    """What the worker's loop does with the connection next."""

    WAIT_READABLE = "wait-readable"
    WAIT_WRITABLE = "wait-writable"
    CLOSE = "close"
    SWITCH = "switch"  # the protocol handed over to its ``next_protocol``


# The members as module names, for the hot paths: on Python 3.11 reading an attribute of
# an Enum class goes through EnumType.__getattr__'s slow lookup hook (~150 ns each, a
# request reads dozens; 3.12 made it a plain class attribute).
(NEW, READING_HEAD, READING_BODY, IN_APP, WRITING, IDLE, CLOSING, CLOSED, SWITCHED,
 READING_PROXY_HEADER, HANDSHAKING) = ConnState
WAIT_READABLE, WAIT_WRITABLE, CLOSE, SWITCH = Outcome

_C = ConnState
_ANY_END: Final = frozenset({_C.CLOSING, _C.CLOSED, _C.SWITCHED})
TRANSITIONS: Final[dict[ConnState, frozenset[ConnState]]] = {
    _C.NEW: frozenset({_C.READING_HEAD, _C.READING_BODY, _C.IN_APP}) | _ANY_END,
    _C.READING_HEAD: frozenset({_C.READING_HEAD, _C.READING_BODY, _C.IN_APP}) | _ANY_END,
    _C.READING_BODY: frozenset({_C.READING_BODY, _C.IN_APP}) | _ANY_END,
    _C.IN_APP: frozenset({_C.WRITING, _C.IDLE}) | _ANY_END,
    _C.WRITING: frozenset({_C.IN_APP}) | _ANY_END,
    # IDLE -> IN_APP / READING_BODY: a pipelined request was already buffered.
    _C.IDLE: frozenset({_C.READING_HEAD, _C.READING_BODY, _C.IN_APP}) | _ANY_END,
    _C.CLOSING: frozenset({_C.CLOSING, _C.CLOSED}),
    _C.CLOSED: frozenset({_C.CLOSED}),
    _C.SWITCHED: frozenset({_C.CLOSED}),
    _C.READING_PROXY_HEADER: frozenset({_C.HANDSHAKING}) | _ANY_END,
    _C.HANDSHAKING: _ANY_END,
}


class StateMachine:
    """What every protocol on a connection has: its ``state``, changed only along
    ``TRANSITIONS`` (a protocol class declares the ``state`` slot itself)."""

    __slots__ = ()
    state: ConnState

    def set_state(self, new: ConnState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise AssertionError(f"connection transition {self.state} -> {new} not in table")
        # The subclass's slot (no slot here: Http2 has another base with slots of its own).
        self.state = new  # type: ignore[misc]
