"""The worker's timers, caps, memory bounds and stop sequence, on real processes.

Most run against one worker with a single thread, so that anything which held the thread
(a slow reader, a dribbled head, an idle keep-alive connection) would starve the others.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import children_of, wait_until
from serving import RawConnection, Server, peak_rss_kib, request_bytes, rss_kib

pytestmark = pytest.mark.timeout(90)

MIB = 1 << 20


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("one-thread")
    with Server(directory, "tests.apps:raw", "--threads", "1", "--keep-alive", "1",
                "--header-timeout", "1") as server:
        yield server


def timed_get(server: Server, path: str, timeout_s: float = 5.0) -> tuple[int, bytes, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), time.monotonic() - started
    finally:
        conn.close()


# --- one thread, many connections ----------------------------------------------------------


def test_slow_reader_does_not_block_other_connections(one_thread: Server) -> None:
    size = 48 * MIB
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(10)
    slow.connect(("127.0.0.1", one_thread.port))
    try:
        slow.sendall(request_bytes("GET", f"/big?size={size}"))
        first = slow.recv(4096)  # the response has started; now this client stops reading
        assert first.startswith(b"HTTP/1.1 200")
        for _ in range(3):
            status, body, elapsed_s = timed_get(one_thread, "/hello")
            assert (status, body) == (200, b"Hello, World!")
            assert elapsed_s < 2.0, f"a slow reader held the only thread for {elapsed_s:.2f} s"
        received = len(first)
        while chunk := slow.recv(1 << 20):
            received += len(chunk)
            if received >= size:
                break
        assert received >= size  # and the slow client still gets everything
    finally:
        slow.close()


def test_sendfile_to_a_slow_reader(one_thread: Server, tmp_path: Path) -> None:
    data = os.urandom(2 * MIB)
    path = tmp_path / "asset.bin"
    path.write_bytes(data)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(10)
    slow.connect(("127.0.0.1", one_thread.port))
    try:
        slow.sendall(request_bytes("GET", f"/file?path={path}"))
        received = b""
        while b"\r\n\r\n" not in received:
            received += slow.recv(4096)
        # Another client meanwhile: the file has filled the slow client's socket.
        assert timed_get(one_thread, "/hello")[:2] == (200, b"Hello, World!")
        while len(received) < len(data) and (piece := slow.recv(1 << 16)):
            received += piece
        assert received.endswith(data) and received.index(b"\r\n\r\n") + 4 + len(data) \
            == len(received)
    finally:
        slow.close()


def test_slowloris_heads_get_408_while_a_normal_client_is_served(one_thread: Server) -> None:
    head = request_bytes("GET", "/hello")
    dribblers = [RawConnection(one_thread.port) for _ in range(20)]
    is_closed = [False] * len(dribblers)
    halt = threading.Event()

    def dribble() -> None:
        for offset in range(len(head) - 3):  # never the final CRLF: the head never ends
            for index, conn in enumerate(dribblers):
                if not is_closed[index]:
                    try:
                        conn.send(head[offset:offset + 1])
                    except OSError:
                        is_closed[index] = True
            if halt.wait(0.1):  # the attack's pace: one byte per connection per 0.1 s
                return

    thread = threading.Thread(target=dribble, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        status, body, elapsed_s = timed_get(one_thread, "/hello")
        assert (status, body) == (200, b"Hello, World!") and elapsed_s < 1.0
        for conn in dribblers:  # header_timeout is 1 s after the first byte
            conn.sock.settimeout(4.0)
            answer = conn.read_to_close()
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert time.monotonic() - started < 4.0
    finally:
        halt.set()
        thread.join(timeout=5)
        for conn in dribblers:
            conn.close()


def test_unread_body_that_stalls_does_not_hold_the_thread(one_thread: Server) -> None:
    with one_thread.connect(timeout_s=10) as stalled:
        stalled.send(request_bytes("POST", "/ignore-body",
                                   headers=[("Content-Length", "100000")]) + b"x" * 10)
        assert stalled.read_response().body == b"ignored"  # answered without reading
        # The body's other 99990 bytes never come: the worker must not wait for them.
        status, body, elapsed_s = timed_get(one_thread, "/hello")
        assert (status, body) == (200, b"Hello, World!") and elapsed_s < 2.0
        assert stalled.is_closed(timeout_s=5.0)


def test_idle_keep_alive_connection_is_closed_after_keep_alive(one_thread: Server) -> None:
    with one_thread.connect() as conn:
        conn.send(request_bytes("GET", "/hello"))
        assert conn.read_response().status == 200
        started = time.monotonic()
        assert conn.is_closed(timeout_s=5.0)
        assert 0.7 <= time.monotonic() - started < 3.0  # --keep-alive 1 (+ a 0.25 s tick)


def test_silent_connection_is_closed_without_a_response(one_thread: Server) -> None:
    with one_thread.connect() as conn:
        started = time.monotonic()
        assert conn.read_to_close() == b""
        assert time.monotonic() - started < 3.0


def test_large_bodies_stream_with_bounded_memory(one_thread: Server) -> None:
    size = 100 * MIB
    block = bytes(range(256)) * 256  # 64 KiB
    pid = one_thread.worker_pid
    assert timed_get(one_thread, "/hello")[0] == 200  # warm up
    before_kib = rss_kib(pid)

    def blocks() -> Iterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    conn = http.client.HTTPConnection("127.0.0.1", one_thread.port, timeout=30)
    try:
        conn.request("POST", "/echo", body=blocks(), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        data = json.loads(conn.getresponse().read())
        assert data["body_length"] == size
        expected = hashlib.sha256()
        for piece in blocks():
            expected.update(piece)
        assert data["body_sha256"] == expected.hexdigest()
        conn.request("GET", f"/big?size={size}")
        response = conn.getresponse()
        received = 0
        while piece := response.read(1 << 20):
            received += len(piece)
        assert received == size
    finally:
        conn.close()
    growth_mib = (peak_rss_kib(pid) - before_kib) / 1024
    print(f"worker RSS {before_kib} KiB, peak after {peak_rss_kib(pid)} KiB")
    assert growth_mib < 16, f"worker RSS grew {growth_mib:.1f} MiB for 100 MiB each way"


def test_file_wrapper_uses_the_file(one_thread: Server, tmp_path: Path) -> None:
    data = bytes(range(256)) * 12_000  # 3 MB
    path = tmp_path / "asset.bin"
    path.write_bytes(data)
    status, body, _ = timed_get(one_thread, f"/file?path={path}")
    assert (status, body) == (200, data)
    with one_thread.connect() as conn:  # HTTP/1.0: close-delimited, read in blocks
        conn.send(request_bytes("GET", f"/file?path={path}", version="HTTP/1.0"))
        response = conn.read_response()
        assert response.body == data
    with one_thread.connect() as conn:  # a file shorter than declared: close, never desync
        conn.send(request_bytes("GET", f"/file?path={path}&size={len(data) + 10}")
                  + request_bytes("GET", "/hello"))
        head = conn.read_head()
        assert head.header("content-length") == str(len(data) + 10)
        conn.sock.settimeout(10)
        assert conn.read_to_close() == data


# --- configuration ----------------------------------------------------------------------------


def test_script_name_from_configuration(tmp_path: Path) -> None:
    with Server(tmp_path, "tests.apps:app", "--script-name", "/mnt") as server:
        def echo(path: str) -> dict[str, str]:
            with server.connect() as conn:
                conn.send(request_bytes("GET", path))
                response = conn.read_response()
                assert response.status == 200, response
                return dict(json.loads(response.body))
        data = echo("/mnt/echo/a%20b/%C3%A9?x=%20")
        assert data["script_name"] == "/mnt"
        # PEP 3333: decoded, bytes as latin-1 (é in UTF-8 is two latin-1 characters)
        assert data["path_info"] == "/echo/a b/\u00c3\u00a9"
        assert data["query"] == "x=%20"  # the query string stays as sent
        assert echo("/mnt/echo")["path_info"] == "/echo"


def test_worker_connections_cap_leaves_clients_in_the_backlog(tmp_path: Path) -> None:
    with Server(tmp_path, "tests.apps:raw", "--threads", "1", "--worker-connections", "2",
                "--keep-alive", "30") as server:
        first, second = server.connect(), server.connect()
        try:
            for conn in (first, second):
                conn.send(request_bytes("GET", "/hello"))
                assert conn.read_response().status == 200
            with server.connect() as third:  # connect() succeeds: the kernel's backlog
                third.send(request_bytes("GET", "/hello"))
                third.sock.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    third.sock.recv(1)
                first.close()  # below the cap again: the worker accepts the third
                third.sock.settimeout(5.0)
                assert third.read_response().body == b"Hello, World!"
            second.send(request_bytes("GET", "/hello"))
            assert second.read_response().status == 200
        finally:
            first.close()
            second.close()


# --- stopping ---------------------------------------------------------------------------------


def test_sigterm_lets_in_flight_requests_finish_and_closes_idle_ones(tmp_path: Path) -> None:
    server = Server(tmp_path, "tests.apps:raw", "--threads", "2", "--keep-alive", "30",
                    "--graceful-timeout", "10").start()
    assert server.process is not None
    try:
        idle = server.connect()
        idle.send(request_bytes("GET", "/hello"))
        assert idle.read_response().status == 200
        active = server.connect()
        busy = server.connect(timeout_s=10)
        busy.send(request_bytes("GET", "/slow-tail?s=3"))
        assert busy.read_head().status == 200
        assert busy.read_until(b"started;").endswith(b"started;")  # in the app now
        stop_sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        # A request on a keep-alive connection in use as the stop begins is answered (with
        # "Connection: close" once the worker knows), never lost to a close race.
        active.send(request_bytes("GET", "/hello"))
        assert active.read_response().status == 200
        # The quiet keep-alive connection is closed (after about 1 s of quiet), long
        # before the in-flight request ends.
        assert idle.is_closed(timeout_s=2.5), "an idle keep-alive connection was kept"
        assert time.monotonic() - stop_sent < 2.5
        idle.close()
        assert active.is_closed(timeout_s=3.0)
        active.close()
        rest = busy.read_to_close()  # the in-flight response completes, then the close
        assert rest.endswith(b"8\r\nfinished\r\n0\r\n\r\n"), rest
        assert time.monotonic() - stop_sent >= 2.5
        busy.close()  # our FIN ends the server's lingering close at once
        assert server.process.wait(timeout=10) == 0
        assert time.monotonic() - stop_sent < 8.0  # well before the 10 s graceful timeout
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        server.stop()


def test_keep_alive_zero_announces_close(tmp_path: Path) -> None:
    with Server(tmp_path, "tests.apps:raw", "--keep-alive", "0") as server:
        with server.connect() as conn:
            conn.send(request_bytes("GET", "/hello") + request_bytes("GET", "/hello"))
            response = conn.read_response()
            assert response.status == 200 and response.announces_close
            assert conn.is_closed()  # and the second request was never read as a new one


def test_accepting_resumes_after_emfile_with_no_connections(tmp_path: Path) -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    with Server(tmp_path, "tests.apps:raw", "--threads", "1") as server:
        pid = server.worker_pid
        open_fds = len(os.listdir(f"/proc/{pid}/fd"))
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={open_fds}:4096"], check=True,
                       timeout=10)
        with server.connect() as conn:
            conn.send(request_bytes("GET", "/hello"))
            conn.sock.settimeout(0.5)
            with pytest.raises(TimeoutError):  # accept() fails: EMFILE
                conn.sock.recv(1)
            subprocess.run(["prlimit", f"--pid={pid}", "--nofile=4096:4096"], check=True,
                           timeout=10)
            conn.sock.settimeout(5.0)
            assert conn.read_response().body == b"Hello, World!"
        assert "Too many open files" in server.log()


def test_sigterm_to_the_worker_itself_drains_it(tmp_path: Path) -> None:
    """The worker alone stopped (as the arbiter does on HUP or max-requests): its in-flight
    response completes, it exits 0, and the arbiter's replacement serves the next client."""
    with Server(tmp_path, "tests.apps:raw", "--threads", "2",
                "--graceful-timeout", "10") as server:
        old_worker = server.worker_pid
        with server.connect(timeout_s=10) as busy:
            busy.send(request_bytes("GET", "/slow-tail?s=1"))
            assert busy.read_until(b"started;").endswith(b"started;")
            os.kill(old_worker, signal.SIGTERM)
            rest = busy.read_to_close()
            assert rest.endswith(b"8\r\nfinished\r\n0\r\n\r\n"), rest
        def replaced() -> bool:
            workers = children_of(server.pid)
            return bool(workers) and old_worker not in workers
        wait_until(replaced, 10, message="a new worker in place of the old one")
        status, body, _ = timed_get(server, "/hello", timeout_s=10)
        assert (status, body) == (200, b"Hello, World!")
