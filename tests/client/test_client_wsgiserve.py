"""Our client against our server, each started for real: ``python -m wsgiserve``.

The server binds 127.0.0.1:0 and reports the address it got on stderr; the test reads it
from there (never a port found in advance).
"""
from __future__ import annotations

import hashlib
import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_peers import TEST_TIMEOUTS

from wsgiserve.client import Pool

ROOT = Path(__file__).resolve().parents[2]
_LISTENING_RE = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)")


def _wait_for_port(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    assert process.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    seen = b""
    while (remaining := deadline - time.monotonic()) > 0:
        if not selector.select(remaining):
            break
        data = os.read(process.stderr.fileno(), 65536)
        if not data:
            break
        seen += data
        if (match := _LISTENING_RE.search(seen)) is not None:
            return int(match.group(1))
    raise AssertionError(f"wsgiserve did not report its address: {seen[-2000:]!r}")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "wsgiserve", "--bind", "127.0.0.1:0", "--workers", "1",
         "--pythonpath", str(Path(__file__).parent), "client_apps:app"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port = _wait_for_port(process, 20)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool(timeouts=TEST_TIMEOUTS, trust_env=False) as shared:
        yield shared


def test_keep_alive_and_streamed_response(server_url: str, pool: Pool) -> None:
    for _ in range(3):
        response = pool.get(server_url + "/stream")
        assert response.read() == b"".join(bytes([i]) * 1000 for i in range(100))
    assert pool.idle_count == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upload(server_url: str, pool: Pool, chunked: bool) -> None:
    data = os.urandom(3 << 20)
    headers = {"Transfer-Encoding": "chunked"} if chunked else {}
    response = pool.post(server_url + "/echo", data, headers=headers, expect_continue=True)
    assert response.read() == f"POST {len(data)} {hashlib.sha256(data).hexdigest()}".encode()


def test_redirect_303(server_url: str, pool: Pool) -> None:
    response = pool.post(server_url + "/redirect", b"form", follow_redirects=True)
    assert response.read() == f"GET 0 {hashlib.sha256(b'').hexdigest()}".encode()
