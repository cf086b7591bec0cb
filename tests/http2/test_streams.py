"""The stream state machine (RFC 9113 §5.1): every (state, input) pair either makes the
transition in the table or raises the error of the right kind."""
from __future__ import annotations

import itertools

import pytest

from wsgiserve.http2 import (
    ErrorCode,
    Http2ConnectionError,
    Http2StreamError,
    StreamClosedError,
)
from wsgiserve.http2.streams import TRANSITIONS, StreamInput, StreamState, next_state

S, In = StreamState, StreamInput
PAIRS = list(itertools.product(StreamState, StreamInput))


@pytest.mark.parametrize("state, stream_input", PAIRS,
                         ids=[f"{s.name}-{i.name}" for s, i in PAIRS])
def test_every_pair_transitions_or_raises(state: StreamState, stream_input: StreamInput) -> None:
    expected = TRANSITIONS.get((state, stream_input))
    if expected is not None:
        assert next_state(state, stream_input, 1) is expected
        return
    is_receive = stream_input.name.startswith("RECV_")
    if not is_receive:
        with pytest.raises(StreamClosedError):
            next_state(state, stream_input, 1)
    elif state is S.IDLE:
        with pytest.raises(Http2ConnectionError) as connection_error:
            next_state(state, stream_input, 1)
        assert connection_error.value.code == ErrorCode.PROTOCOL_ERROR
    else:
        with pytest.raises(Http2StreamError) as stream_error:
            next_state(state, stream_input, 1)
        assert stream_error.value.code == ErrorCode.STREAM_CLOSED


# RFC 9113 §5.1, read as a list of what each state allows.
@pytest.mark.parametrize("state, allowed", [
    (S.IDLE, {In.SEND_HEADERS, In.RECV_HEADERS}),
    (S.OPEN, set(StreamInput)),
    (S.HALF_CLOSED_LOCAL, {In.SEND_WINDOW_UPDATE, In.SEND_RST_STREAM, In.RECV_HEADERS,
                           In.RECV_DATA, In.RECV_END_STREAM, In.RECV_RST_STREAM,
                           In.RECV_WINDOW_UPDATE}),
    (S.HALF_CLOSED_REMOTE, {In.SEND_HEADERS, In.SEND_DATA, In.SEND_END_STREAM,
                            In.SEND_RST_STREAM, In.RECV_WINDOW_UPDATE, In.RECV_RST_STREAM}),
    (S.CLOSED, set()),
])
def test_the_table_is_rfc_9113_section_5_1(state: StreamState, allowed: set[StreamInput]) -> None:
    assert {i for (s, i) in TRANSITIONS if s is state} == allowed


@pytest.mark.parametrize("path, end", [
    ([In.RECV_HEADERS, In.RECV_END_STREAM, In.SEND_HEADERS, In.SEND_DATA, In.SEND_END_STREAM],
     S.CLOSED),
    ([In.SEND_HEADERS, In.SEND_END_STREAM, In.RECV_HEADERS, In.RECV_DATA, In.RECV_END_STREAM],
     S.CLOSED),
    ([In.RECV_HEADERS, In.SEND_RST_STREAM], S.CLOSED),
    ([In.SEND_HEADERS, In.RECV_RST_STREAM], S.CLOSED),
    ([In.RECV_HEADERS, In.RECV_DATA, In.SEND_WINDOW_UPDATE], S.OPEN),
], ids=["server-request", "client-request", "reset-by-us", "reset-by-peer", "window"])
def test_paths_through_the_table(path: list[StreamInput], end: StreamState) -> None:
    state = S.IDLE
    for stream_input in path:
        state = next_state(state, stream_input, 1)
    assert state is end
