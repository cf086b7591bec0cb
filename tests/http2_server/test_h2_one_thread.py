"""HTTP/2 on a worker with one serving thread: a stream in the app that waits for the
client (its request body, flow-control credit) or for the socket must still get what it
waits for, although no other thread is free to run the loop's reads and writes.
"""
from __future__ import annotations

import hashlib
import json

import pytest
from h2client import INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS, H2Connection, request_fields
from serving import Server

pytestmark = pytest.mark.timeout(60)

# The body timeout (--timeout) is long: a stream that waits for it has failed the test.
SERVER_ARGS = ("--threads", "1", "--timeout", "25")


def test_upload_larger_than_the_window_is_read_with_one_thread(server: Server) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: four stream windows
    with H2Connection(server.port, timeout_s=15) as conn:
        conn.handshake()
        response = conn.get("/echo", "POST", body=body)
    assert response.status == 200
    echoed = json.loads(response.body)
    assert echoed["body_length"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_download_larger_than_the_client_window_is_sent_with_one_thread(server: Server) -> None:
    with H2Connection(server.port, timeout_s=15) as conn:
        conn.handshake({INITIAL_WINDOW_SIZE: 65535}, window_update=0)
        response = conn.get("/big?size=1000000&block=1000000")
    assert response.status == 200 and len(response.body) == 1000000


def test_streams_waiting_for_their_bodies_are_released_when_the_client_goes(
        server: Server) -> None:
    with H2Connection(server.port) as conn:
        conn.handshake()
        fields = request_fields("/echo", "POST")
        for stream_id in range(1, 2 * conn.server_settings[MAX_CONCURRENT_STREAMS], 2):
            conn.send_headers(stream_id, fields, end_stream=False)
        conn.ping()
    # The streams in the app, and those waiting their turn, are ended with the connection.
    with H2Connection(server.port, timeout_s=10) as conn:
        assert conn.handshake().get().status == 200
