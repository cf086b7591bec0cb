"""Clients that stop reading do not pin a thread: a stream waiting for flow-control credit
(a zero window) or for the socket (a client that reads nothing) gives up after the body
timeout (``--timeout``): the stream is reset, its thread goes back to the pool, and the
worker stays healthy (the arbiter does not replace it, others are served).
"""
from __future__ import annotations

import pytest
from h2client import CANCEL, HEADERS, INITIAL_WINDOW_SIZE, RST_STREAM, H2Connection
from processes import wait_for_log
from serving import Server

pytestmark = pytest.mark.timeout(90)

SERVER_ARGS = ("--threads", "2", "--timeout", "4")


def test_zero_window_stream_is_reset_after_the_timeout(server: Server) -> None:
    worker = server.worker_pid
    with H2Connection(server.port, timeout_s=20) as stalled:
        stalled.handshake({INITIAL_WINDOW_SIZE: 0})
        stream_id = stalled.request("/big?size=100000")
        stalled.expect(lambda f: f.type == HEADERS and f.stream_id == stream_id, "HEADERS")
        with H2Connection(server.port) as other:   # served meanwhile
            assert other.handshake().get().status == 200
        reset = stalled.expect(lambda f: f.type == RST_STREAM and f.stream_id == stream_id,
                               "RST_STREAM")
        assert reset.code() == CANCEL
        stalled.expect_alive()
    with H2Connection(server.port) as after:
        assert after.handshake().get().status == 200
    assert server.worker_pid == worker and "exited" not in server.log()


def test_time_waiting_for_the_client_is_not_app_time(server: Server) -> None:
    # 2 s in the app, then up to 4 s (the timeout) waiting for credit: the heartbeat is
    # not withheld, as it would be for an app running past the timeout.
    start = len(server.log())
    with H2Connection(server.port, timeout_s=20) as stalled:
        stalled.handshake({INITIAL_WINDOW_SIZE: 0})
        stream_id = stalled.request("/late-big?s=2&size=100000")
        reset = stalled.expect(lambda f: f.type == RST_STREAM and f.stream_id == stream_id,
                               "RST_STREAM")
        assert reset.code() == CANCEL
    assert "withholding the heartbeat" not in server.log()[start:]


def test_client_that_reads_nothing_releases_the_thread(server: Server) -> None:
    size = 50 * 1024 * 1024
    with H2Connection(server.port, receive_buffer_bytes=4096) as conn:
        conn.handshake()
        conn.request(f"/big?size={size}")
        # Read nothing more: the server fills the socket, then waits for it.
        with H2Connection(server.port) as other:
            assert other.handshake().get().status == 200
        wait_for_log(server.log, server.process, rf'"GET /big\?size={size} HTTP/2.0" 200', 30)
    with H2Connection(server.port) as after:
        assert after.handshake().get().status == 200
    assert "exited" not in server.log()
