"""The stream state machine of RFC 9113 §5.1, as a table, and the per-stream record.

A stream moves on what is sent or received on it (``StreamInput``); ``next_state``
looks the pair up in ``TRANSITIONS`` and raises for any pair not in it: a receive the
peer may not make is a connection error on an idle stream and a STREAM_CLOSED stream error
on a (half-)closed one; a send we may not make is a ``StreamClosedError``. END_STREAM is
its own input, applied after the HEADERS or DATA that carries it. PRIORITY frames change
no state. The reserved states are absent: server push is not supported::

            send/recv HEADERS
    IDLE ───────────────────────> OPEN ── send ES ──> HALF_CLOSED_LOCAL ──┐
                                   │  └── recv ES ──> HALF_CLOSED_REMOTE ─┤ recv ES / send ES
                                   └────── send/recv RST_STREAM ──────────┴─────────> CLOSED
"""
from __future__ import annotations

from enum import Enum
from typing import Final

from wsgiserve.http2.errors import (
    ErrorCode,
    Http2ConnectionError,
    Http2StreamError,
    StreamClosedError,
)

__all__ = ["TRANSITIONS", "Stream", "StreamInput", "StreamState", "next_state",
           "transitions_on"]  # and the members, as module names below


class StreamState(Enum):
    # Identity hashing: the table is consulted several times per request.
    __hash__ = object.__hash__

    IDLE = "idle"
    OPEN = "open"
    HALF_CLOSED_LOCAL = "half-closed (local)"
    HALF_CLOSED_REMOTE = "half-closed (remote)"
    CLOSED = "closed"


class StreamInput(Enum):
    __hash__ = object.__hash__

    SEND_HEADERS = "send HEADERS"
    SEND_DATA = "send DATA"
    SEND_END_STREAM = "send END_STREAM"
    SEND_RST_STREAM = "send RST_STREAM"
    SEND_WINDOW_UPDATE = "send WINDOW_UPDATE"
    RECV_HEADERS = "receive HEADERS"
    RECV_DATA = "receive DATA"
    RECV_END_STREAM = "receive END_STREAM"
    RECV_RST_STREAM = "receive RST_STREAM"
    RECV_WINDOW_UPDATE = "receive WINDOW_UPDATE"


# The members as module names, for the hot paths: on Python 3.11 reading an attribute of
# an Enum class goes through EnumType.__getattr__'s slow lookup hook (~150 ns each).
IDLE, OPEN, HALF_CLOSED_LOCAL, HALF_CLOSED_REMOTE, CLOSED = StreamState
(SEND_HEADERS, SEND_DATA, SEND_END_STREAM, SEND_RST_STREAM, SEND_WINDOW_UPDATE, RECV_HEADERS,
 RECV_DATA, RECV_END_STREAM, RECV_RST_STREAM, RECV_WINDOW_UPDATE) = StreamInput

_S = StreamState
_I = StreamInput
_RST = {_I.SEND_RST_STREAM: _S.CLOSED, _I.RECV_RST_STREAM: _S.CLOSED}
TRANSITIONS: Final[dict[tuple[StreamState, StreamInput], StreamState]] = {
    (_S.IDLE, _I.SEND_HEADERS): _S.OPEN,
    (_S.IDLE, _I.RECV_HEADERS): _S.OPEN,
    **{(_S.OPEN, i): _S.OPEN for i in (_I.SEND_HEADERS, _I.SEND_DATA, _I.SEND_WINDOW_UPDATE,
                                       _I.RECV_HEADERS, _I.RECV_DATA, _I.RECV_WINDOW_UPDATE)},
    (_S.OPEN, _I.SEND_END_STREAM): _S.HALF_CLOSED_LOCAL,
    (_S.OPEN, _I.RECV_END_STREAM): _S.HALF_CLOSED_REMOTE,
    **{(_S.OPEN, i): s for i, s in _RST.items()},
    # §5.1 half-closed (local): we send only WINDOW_UPDATE, PRIORITY and RST_STREAM; the
    # peer may send anything.
    **{(_S.HALF_CLOSED_LOCAL, i): _S.HALF_CLOSED_LOCAL
       for i in (_I.SEND_WINDOW_UPDATE, _I.RECV_HEADERS, _I.RECV_DATA, _I.RECV_WINDOW_UPDATE)},
    (_S.HALF_CLOSED_LOCAL, _I.RECV_END_STREAM): _S.CLOSED,
    **{(_S.HALF_CLOSED_LOCAL, i): s for i, s in _RST.items()},
    # §5.1 half-closed (remote): the peer sends only WINDOW_UPDATE, PRIORITY and RST_STREAM.
    **{(_S.HALF_CLOSED_REMOTE, i): _S.HALF_CLOSED_REMOTE
       for i in (_I.SEND_HEADERS, _I.SEND_DATA, _I.RECV_WINDOW_UPDATE)},
    (_S.HALF_CLOSED_REMOTE, _I.SEND_END_STREAM): _S.CLOSED,
    **{(_S.HALF_CLOSED_REMOTE, i): s for i, s in _RST.items()},
}
_RECEIVES: Final = frozenset(i for i in StreamInput if i.name.startswith("RECV_"))


def next_state(state: StreamState, stream_input: StreamInput, stream_id: int) -> StreamState:
    """The state after ``stream_input`` in ``state``.

    Raises:
        Http2ConnectionError: PROTOCOL_ERROR, a frame the peer may not send on an idle
            stream (RFC 9113 §5.1 idle).
        Http2StreamError: STREAM_CLOSED, a frame the peer may not send on a half-closed
            (remote) or closed stream.
        StreamClosedError: a frame we may not send in this state.
    """
    try:
        return TRANSITIONS[state, stream_input]
    except KeyError:
        pass
    if stream_input not in _RECEIVES:
        raise StreamClosedError(f"cannot {stream_input.value} on stream {stream_id} in state "
                                f"{state.value}", stream_id)
    if state is IDLE:
        raise Http2ConnectionError(f"{stream_input.value} on idle stream {stream_id}")
    raise Http2StreamError(f"{stream_input.value} on stream {stream_id} in state "
                           f"{state.value}", stream_id, ErrorCode.STREAM_CLOSED)


def transitions_on(*inputs: StreamInput) -> dict[StreamState, StreamState]:
    """The state after ``inputs`` in turn, from each state where the table takes them all
    (for a hot path that applies a fixed sequence in one lookup; a state missing from the
    result is one where ``next_state`` raises for one of the inputs)."""
    result = {}
    for state in StreamState:
        after: StreamState | None = state
        for stream_input in inputs:
            after = TRANSITIONS.get((after, stream_input)) if after is not None else None
        if after is not None:
            result[state] = after
    return result


class Stream:
    """One open stream: its state, both flow-control windows, and what its messages need.

    ``unacknowledged_bytes`` were received but not yet acknowledged by the application;
    ``credit_bytes`` were acknowledged but not yet returned in a WINDOW_UPDATE.
    ``expected_length`` bounds the body received (a Content-Length, or 0 for a response
    with no content); ``declared_length`` is the Content-Length we sent.
    """

    __slots__ = ("stream_id", "state", "is_local", "outbound_window", "inbound_window",
                 "unacknowledged_bytes", "credit_bytes", "expected_length", "received_bytes",
                 "declared_length", "sent_bytes", "is_head_received", "is_head_sent",
                 "is_announced", "is_head_request", "is_content_allowed")

    def __init__(self, stream_id: int, is_local: bool, outbound_window: int,
                 inbound_window: int):
        self.stream_id = stream_id
        self.state = IDLE
        self.is_local = is_local
        self.outbound_window = outbound_window
        self.inbound_window = inbound_window
        self.unacknowledged_bytes = 0
        self.credit_bytes = 0
        self.expected_length: int | None = None
        self.received_bytes = 0
        self.declared_length: int | None = None
        self.sent_bytes = 0
        self.is_head_received = False
        self.is_head_sent = False
        self.is_announced = is_local
        self.is_head_request = False
        self.is_content_allowed = True     # what we send: False for HEAD, 204 and 304

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id} {self.state.value}>"
