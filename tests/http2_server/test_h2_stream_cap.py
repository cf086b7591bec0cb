"""``--http2-max-streams-in-app``: at most that many streams of one connection are in the
app at once; the others wait their turn (they are not refused), and the cap is per
connection, so another connection still gets its own share of the threads.
"""
from __future__ import annotations

import json

import pytest
from h2client import H2Connection
from serving import Server

pytestmark = pytest.mark.timeout(60)

SERVER_ARGS = ("--threads", "8", "--http2-max-streams-in-app", "2")


def most_in_app(conn: H2Connection, streams: list[int]) -> int:
    responses = [conn.response(stream_id) for stream_id in streams]
    assert [response.status for response in responses] == [200] * len(streams)
    return max(int(json.loads(response.body)["most"]) for response in responses)


def test_excess_streams_wait_their_turn(server: Server) -> None:
    with H2Connection(server.port, timeout_s=20) as conn:
        conn.handshake()
        conn.get("/gauge-reset")
        streams = [conn.request("/gauge?s=0.2") for _ in range(6)]
        assert most_in_app(conn, streams) == 2
        assert all(conn.responses[stream_id].reset_code is None for stream_id in streams)


def test_the_cap_is_per_connection(server: Server) -> None:
    with H2Connection(server.port, timeout_s=20) as first, \
            H2Connection(server.port, timeout_s=20) as second:
        first.handshake()
        second.handshake()
        first.get("/gauge-reset")
        first_streams = [first.request("/gauge?s=1.0") for _ in range(3)]
        second_streams = [second.request("/gauge?s=1.0") for _ in range(3)]
        most = max(most_in_app(first, first_streams), most_in_app(second, second_streams))
    assert 3 <= most <= 4
