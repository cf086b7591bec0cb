"""Stopping a worker with HTTP/2 connections open: SIGTERM (and HUP's replacement of the
workers, and max_requests, which counts streams) sends GOAWAY twice (RFC 9113 §6.8: the
highest stream id, a PING, then the last stream the server took), lets the streams in
flight finish, refuses streams opened after the second GOAWAY, and sends every byte of
a response before its FIN. Each test starts its own server: stopping is what it tests.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from h2client import (
    GOAWAY,
    NO_ERROR,
    PING,
    REFUSED_STREAM,
    RST_STREAM,
    H2Connection,
)
from h2servers import start_server
from processes import children_of, wait_for_log, wait_until
from serving import Server

pytestmark = pytest.mark.timeout(90)

MAX_STREAM_ID = 2**31 - 1


@pytest.fixture
def stopping_server(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path, "--graceful-timeout", "20")
    yield server
    server.stop()


def expect_goaway(conn: H2Connection) -> int:
    goaway = conn.expect(lambda f: f.type == GOAWAY, "GOAWAY", timeout_s=10)
    assert goaway.code() == NO_ERROR, goaway
    return goaway.last_stream_id()


def test_sigterm_sends_two_goaways_and_lets_the_stream_in_flight_finish(
        stopping_server: Server) -> None:
    with H2Connection(stopping_server.port, timeout_s=15) as conn:
        conn.handshake()
        slow = conn.request("/sleep?s=1.5")
        conn.ping()
        os.kill(stopping_server.pid, signal.SIGTERM)
        assert expect_goaway(conn) == MAX_STREAM_ID
        assert any(f.type == PING for f in conn.frames)   # the round trip before the last
        assert expect_goaway(conn) == slow
        response = conn.response(slow)
        assert response.status == 200 and response.body == b"slept"
        conn.expect_closed()
    assert stopping_server.process is not None
    assert stopping_server.process.wait(timeout=20) == 0


def test_streams_between_the_goaways_are_served_and_later_ones_refused(
        stopping_server: Server) -> None:
    with H2Connection(stopping_server.port, timeout_s=15) as conn:
        conn.handshake()
        conn.answers_pings = False   # the second GOAWAY then waits for its timer (1 s)
        slow = conn.request("/sleep?s=2")
        conn.ping()
        os.kill(stopping_server.pid, signal.SIGTERM)
        assert expect_goaway(conn) == MAX_STREAM_ID
        between = conn.request("/hello")
        assert expect_goaway(conn) == between
        late = conn.request("/hello")
        refused = conn.expect(lambda f: f.type == RST_STREAM and f.stream_id == late,
                              "RST_STREAM")
        assert refused.code() == REFUSED_STREAM   # §8.7: not processed, safe to retry
        assert conn.response(between).status == 200
        assert conn.response(slow).status == 200
        conn.expect_closed()


def test_a_response_still_being_sent_is_not_cut_by_the_stop(stopping_server: Server) -> None:
    # One piece, so the app is done while most of it waits in the server's output.
    size = 4000000
    with H2Connection(stopping_server.port, timeout_s=15, receive_buffer_bytes=4096) as conn:
        conn.handshake()
        stream_id = conn.request(f"/one-piece?size={size}")
        wait_for_log(stopping_server.log, stopping_server.process,
                     rf'"GET /one-piece\?size={size} HTTP/2.0" 200', 10)
        os.kill(stopping_server.pid, signal.SIGTERM)
        wait_for_log(stopping_server.log, stopping_server.process, "stopping gracefully", 10)
        time.sleep(1.5)   # the slow client: past the second GOAWAY's timer (1 s)
        response = conn.response(stream_id)
        assert response.is_ended and len(response.body) == size
        conn.expect_closed()


def test_hup_replaces_the_worker_and_its_connections_finish(stopping_server: Server) -> None:
    old_worker = stopping_server.worker_pid
    with H2Connection(stopping_server.port, timeout_s=15) as conn:
        conn.handshake()
        slow = conn.request("/sleep?s=1.5")
        conn.ping()
        os.kill(stopping_server.pid, signal.SIGHUP)
        assert expect_goaway(conn) == MAX_STREAM_ID
        assert expect_goaway(conn) == slow
        assert conn.response(slow).status == 200
        conn.expect_closed()
    new_workers = wait_until(lambda: [pid for pid in children_of(stopping_server.pid)
                                      if pid != old_worker], 20, message="a new worker")
    with H2Connection(stopping_server.port) as after:
        assert after.handshake().get().status == 200
    assert new_workers


def test_max_requests_counts_streams(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--max-requests", "3")
    try:
        old_worker = server.worker_pid
        with H2Connection(server.port, timeout_s=15) as conn:
            conn.handshake()
            for _ in range(3):
                assert conn.get().status == 200
            assert expect_goaway(conn) == MAX_STREAM_ID
            assert expect_goaway(conn) == 5
            conn.expect_closed()
        assert "reached max_requests (3)" in server.log()
        wait_until(lambda: [pid for pid in children_of(server.pid) if pid != old_worker],
                   20, message="the replacement worker")
        with H2Connection(server.port) as after:
            assert after.handshake().get().status == 200
    finally:
        server.stop()
