"""The streams of one connection are served at the same time: h2load's 8 streams on one
connection against an app that sleeps 0.5 s take about 0.5 s with 8 threads, a slow
stream never holds back another's response, and request bodies are flow controlled by
the app's reads (the window is credited only as the app reads, so a 50 MB upload to an
app that reads slowly keeps the worker's memory bounded).
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time

import pytest
from h2client import HEADERS, RST_STREAM, WINDOW_UPDATE, H2Connection
from serving import Server, peak_rss_kib

pytestmark = pytest.mark.timeout(120)

SERVER_ARGS = ("--threads", "8")


def test_h2load_8_sleeping_streams_on_one_connection_run_at_once(server: Server) -> None:
    h2load = shutil.which("h2load")
    if h2load is None:
        pytest.skip("h2load is not installed (apt-get install nghttp2-client)")
    started = time.monotonic()
    result = subprocess.run([h2load, "-n", "8", "-c", "1", "-m", "8",
                             f"{server.url}/sleep?s=0.5"], capture_output=True, timeout=60,
                            check=False)
    elapsed_s = time.monotonic() - started
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    assert re.search(r"requests: 8 total, 8 started, 8 done, 8 succeeded", output), output
    # One after another they would take 8 x 0.5 s; at once, about 0.5 s. The bound is
    # loose (a busy machine) but well under the serial time.
    assert elapsed_s < 3.0, output


def test_a_slow_stream_does_not_hold_back_a_fast_one(server: Server) -> None:
    with H2Connection(server.port, timeout_s=15) as conn:
        conn.handshake()
        slow = conn.request("/sleep?s=2")
        fast = conn.request("/hello")
        conn.response(fast)
        assert not conn.responses.get(slow) or not conn.responses[slow].headers
        assert conn.response(slow).body == b"slept"
    order = [f.stream_id for f in conn.frames if f.type == HEADERS]
    assert order == [fast, slow]


def test_streams_of_a_connection_run_in_parallel_threads(server: Server) -> None:
    with H2Connection(server.port, timeout_s=15) as conn:
        conn.handshake()
        conn.get("/gauge-reset")
        streams = [conn.request("/gauge?s=0.5") for _ in range(4)]
        most = max(json.loads(conn.response(stream_id).body)["most"] for stream_id in streams)
    assert most >= 2   # at least two of the four were in the app together


def test_the_window_is_credited_only_as_the_app_reads(server: Server) -> None:
    # The app sleeps and never reads: the client may send one stream window and no more,
    # and no WINDOW_UPDATE comes for it.
    with H2Connection(server.port, timeout_s=15) as conn:
        conn.handshake()
        window = conn.server_settings[0x4]
        start = len(conn.frames)   # after the server's preface and its WINDOW_UPDATE
        stream_id = conn.request("/sleep?s=1", "POST", body=b"u" * (4 * window))
        response = conn.response(stream_id)
        assert response.status == 200
        head = next(index for index, f in enumerate(conn.frames)
                    if f.type == HEADERS and f.stream_id == stream_id)
        before = conn.frames[start:head]
        assert not [f for f in before if f.type == WINDOW_UPDATE], before
        assert conn.send_window[stream_id] == 0   # one window sent, then nothing
        # RFC 9113 §8.1: the rest of the body is not wanted, RST_STREAM(NO_ERROR).
        assert [f.code() for f in conn.frames[head:]
                if f.type == RST_STREAM and f.stream_id == stream_id] == [0]


def test_50_mb_upload_to_a_slow_reader_keeps_memory_bounded(server: Server) -> None:
    size = 50 * 1024 * 1024
    body = bytes(range(256)) * (size // 256)
    peak_before = peak_rss_kib(server.worker_pid)
    with H2Connection(server.port, timeout_s=60) as conn:
        conn.handshake()
        response = conn.get("/slow-read?delay=0.001&piece=65536", "POST", body=body)
    assert response.status == 200
    result = json.loads(response.body)
    assert result == {"length": size, "sha256": hashlib.sha256(body).hexdigest()}
    # The worker held at most a few windows of it (256 KiB each), never the body.
    assert peak_rss_kib(server.worker_pid) - peak_before < 16 * 1024
