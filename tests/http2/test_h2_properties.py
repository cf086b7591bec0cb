"""Hypothesis properties of the HTTP/2 connection.

- any split of valid input gives the same events;
- any bytes after the preface either give events or raise Http2ConnectionError, never
  another exception, and the connection never holds more than one frame of them;
- requests and responses of any shape go through our client and our server unchanged.
"""
from __future__ import annotations

import pytest
from h2_peers import OurClient, OurServer, exchange
from h2_wire import GET, Wire, control, feed, server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsgiserve.http2 import Http2ConnectionError, Http2Limits
from wsgiserve.http2 import frames as fr

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])

field_values = st.binary(max_size=40).map(lambda b: bytes(c for c in b if 0x21 <= c <= 0x7e))
fields = st.lists(st.tuples(st.sampled_from([b"x-a", b"accept", b"cookie", b"x-long-name"]),
                            field_values), max_size=6)


@st.composite
def conversations(draw: st.DrawFn) -> bytes:
    """A valid client side: requests with bodies, padding, trailers, and control frames."""
    wire = Wire()
    stream_id = 1
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["get", "post", "ping", "window", "priority"]))
        if kind == "get":
            wire.headers(stream_id, GET + draw(fields), True, pad=draw(st.none() | st.integers(0, 9)))
            stream_id += 2
        elif kind == "post":
            body = draw(st.lists(st.binary(max_size=300), max_size=4))
            wire.headers_split(stream_id, GET + draw(fields), draw(st.integers(1, 3)))
            for chunk in body:
                wire.data(stream_id, chunk, pad=draw(st.none() | st.integers(0, 9)))
            if draw(st.booleans()):
                wire.headers(stream_id, draw(fields), True)
            else:
                wire.data(stream_id, b"", True)
            stream_id += 2
        elif kind == "ping":
            wire.ping(draw(st.binary(min_size=8, max_size=8)))
        elif kind == "window":
            wire.window_update(0, draw(st.integers(1, 1000)))
        else:
            wire.priority(stream_id + 100, 0, draw(st.integers(1, 256)))
    return wire.bytes()


@PROPERTY_SETTINGS
@given(conversations(), st.data())
def test_any_split_gives_the_same_events(raw: bytes, data: st.DataObject) -> None:
    whole = feed(server(), [raw])
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    split = feed(server(), pieces)
    assert whole.error is None
    assert split.events == whole.events and split.control == whole.control


random_frames = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 255),
                                   st.sampled_from([0, 1, 2, 3, 5, 2**31 - 1]),
                                   st.binary(max_size=20)), max_size=12)


@PROPERTY_SETTINGS
@given(st.one_of(st.binary(max_size=400), random_frames.map(
    lambda frames: b"".join(fr.frame_header(len(p), t, f, s) + p for t, f, s, p in frames))),
    st.integers(1, 50))
def test_any_bytes_give_events_or_a_connection_error(raw: bytes, chunk: int) -> None:
    conn = server()
    limit = fr.FRAME_HEADER_BYTES + conn.limits.max_frame_size
    try:
        for start in range(0, len(raw), chunk):
            conn.receive_data(raw[start:start + chunk])
            assert conn.buffered_bytes <= limit
    except Http2ConnectionError as exc:
        assert control(conn.data_to_send())[-1][::2] == ("GOAWAY", exc.code)
        assert conn.receive_data(raw) == []          # CLOSED: the rest is ignored


requests = st.lists(st.tuples(fields, st.integers(0, 70_000), st.booleans()),
                    min_size=1, max_size=5)


@PROPERTY_SETTINGS
@given(requests, st.sampled_from([None, 100, 65535]))
def test_requests_round_trip_through_our_client_and_server(
        cases: list[tuple[list[tuple[bytes, bytes]], int, bool]], window: int | None) -> None:
    limits = Http2Limits(initial_window_size=window) if window else None
    client, server_peer = OurClient(limits), OurServer(limits)
    exchange(client, server_peer)
    streams = []
    for extra, size, has_trailers in cases:
        body = bytes(i % 7 for i in range(size))
        streams.append((client.request(GET + extra, body,
                                       [(b"x-t", b"1")] if has_trailers else None), body))
    exchange(client, server_peer)
    for stream_id, body in streams:
        result = client.results[stream_id]
        assert result.is_ended and result.body == body[::-1]
        headers, received = server_peer.requests[stream_id]
        assert bytes(received) == body


@pytest.mark.parametrize("size", [0, 1, 16384, 16385, 100_000])
def test_send_data_splits_at_the_peer_frame_size(size: int) -> None:
    client, server_peer = OurClient(), OurServer()
    exchange(client, server_peer)
    stream_id = client.request(GET + [(b"x-size", str(size).encode())])
    exchange(client, server_peer)
    assert len(client.results[stream_id].body) == size
