"""The arbiter under steady load: deploy actions (HUP x3, USR2 upgrade, TTIN/TTOU,
max-requests recycling) with zero failed requests, SIGKILL of a busy worker, 2000 idle
connections beside a normal client, and no descriptor leak after 10,000 connections.

Marked slow: each test runs a few seconds of real traffic on loopback, bounded in count and
time; together they take about a minute.
"""
from __future__ import annotations

import ctypes
import http.client
import os
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from arbiter_processes import (
    KeepAliveLoad,
    ServerProcess,
    assert_no_failed_requests,
    fd_count,
    get,
    raise_nofile,
)
from processes import is_alive, wait_until

from wsgiserve.exitcodes import EXIT_OK

pytestmark = pytest.mark.slow
StartServer = Callable[..., ServerProcess]
PR_SET_CHILD_SUBREAPER = 36


def _wait_reload_done(server: ServerProcess, count: int) -> None:
    server.wait_for_log(r"reload \(HUP\) done", 15, count=count)


def test_hup_ttin_ttou_and_usr2_under_keepalive_load_fail_no_request(
        start_server: StartServer, tmp_path: Path) -> None:
    pidfile = tmp_path / "server.pid"
    server = start_server("--workers", "2", "--threads", "2", "--pid", str(pidfile))
    first = server.wait_workers(2)
    with KeepAliveLoad(server.port, threads=4, max_seconds=90) as load:
        wait_until(lambda: load.snapshot_ok() > 100, 10, message="load to start")
        for number in (1, 2, 3):
            server.signal(signal.SIGHUP)
            _wait_reload_done(server, number)
            _wait_progress(load, 50)
        after_hups = server.wait_workers(2, 10, exclude=first)
        server.signal(signal.SIGTTIN)
        server.wait_workers(3, 10)
        server.signal(signal.SIGTTOU)  # one at a time: the kernel merges pending signals
        server.wait_workers(2, 10)
        server.signal(signal.SIGTTOU)
        server.wait_workers(1, 10)
        server.signal(signal.SIGTTIN)
        server.wait_workers(2, 10)
        new_master = _upgrade(server, pidfile)
        _wait_progress(load, 200)
        result = load.stop()
    assert not set(after_hups) & set(first)
    assert str(new_master) in result.masters and str(server.pid) in result.masters
    assert get(server.port)[2]["x-master-pid"] == str(new_master)
    _stop_new_master(new_master)
    assert_no_failed_requests(result)



def _wait_progress(load: KeepAliveLoad, requests: int) -> None:
    start = load.snapshot_ok()
    wait_until(lambda: load.snapshot_ok() > start + requests, 10, message="progress")


def _upgrade(server: ServerProcess, pidfile: Path) -> int:
    """USR2, wait until the new master is ready, then TERM the old one; returns the new
    master's pid (re-parented to this process, a subreaper, so it can be reaped)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    old = server.pid
    server.signal(signal.SIGUSR2)
    new_master = int(wait_until(lambda: _pid_from(pidfile, exclude=old), 15,
                                message="the new master's pid file"))
    server.known_pids.add(new_master)
    assert Path(f"{pidfile}.oldbin").read_text().strip() == str(old)
    server.wait_for_log(rf"\[{new_master}\] \[INFO\] ready: 2 worker", 20)
    server.known_pids.update(server.workers(master=new_master))
    server.signal(signal.SIGTERM)
    assert server.wait_exit(15) == EXIT_OK
    assert not Path(f"{pidfile}.oldbin").exists()
    assert pidfile.read_text().strip() == str(new_master)
    return new_master


def _pid_from(pidfile: Path, exclude: int) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid != exclude else None


def _stop_new_master(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not ours after all: wait for it to vanish
            wait_until(lambda: not is_alive(pid), max(0.1, deadline - time.monotonic()))
            return
        if reaped == pid:
            assert os.waitstatus_to_exitcode(status) == EXIT_OK
            return
        time.sleep(0.02)
    raise AssertionError(f"new master {pid} did not stop")


def test_a_second_upgrade_works_from_the_upgraded_master(start_server: StartServer,
                                                         tmp_path: Path) -> None:
    pidfile = tmp_path / "server.pid"
    server = start_server("--workers", "2", "--pid", str(pidfile))
    second = _upgrade(server, pidfile)
    os.kill(second, signal.SIGUSR2)
    third = int(wait_until(lambda: _pid_from(pidfile, exclude=second), 15,
                           message="the third master's pid file"))
    server.known_pids.add(third)
    server.wait_for_log(rf"\[{third}\] \[INFO\] ready: 2 worker", 20, while_running=False)
    server.known_pids.update(server.workers(master=third))
    _stop_new_master(second)
    status, _, headers = get(server.port)
    assert status == 200 and headers["x-master-pid"] == str(third)
    _stop_new_master(third)


def test_max_requests_recycling_under_load_fails_no_request(start_server: StartServer) -> None:
    server = start_server("--workers", "2", "--max-requests", "300",
                          "--max-requests-jitter", "50")
    first = server.wait_workers(2)
    with KeepAliveLoad(server.port, threads=4, max_seconds=60, max_requests=600) as load:
        wait_until(lambda: server.log().count("booting worker") >= 6, 45, interval_s=0.1,
                   message="three recycles")
        result = load.stop()
    assert not set(server.wait_workers(2, 10)) & set(first)
    assert len(result.workers) >= 4
    assert_no_failed_requests(result)


def test_sigkill_of_a_busy_worker_is_replaced_within_2_s(start_server: StartServer) -> None:
    server = start_server("--workers", "2", "--threads", "2")
    before = server.wait_workers(2)
    with KeepAliveLoad(server.port, threads=4, max_seconds=30) as load:
        wait_until(lambda: load.snapshot_ok() > 200, 10, message="load to start")
        os.kill(before[0], signal.SIGKILL)
        killed_at = time.monotonic()
        server.wait_workers(2, 2.0, exclude=[before[0]])
        replaced_s = time.monotonic() - killed_at
        progress = load.snapshot_ok()
        wait_until(lambda: load.snapshot_ok() > progress + 200, 10, message="progress")
        result = load.stop()
    assert replaced_s < 2.0
    # Only requests in flight on the killed worker may fail: at most one per client.
    assert len(result.failures) <= 4, result.failures


def _open_idle_connections(port: int, count: int, deadline: float) -> list[socket.socket]:
    """``count`` keep-alive connections that each got one answer and now sit idle."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    selector = selectors.DefaultSelector()
    sockets: list[socket.socket] = []
    pending: dict[int, bytes] = {}
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sockets.append(sock)
        selector.register(sock, selectors.EVENT_WRITE)
        pending[sock.fileno()] = b""
    while pending and time.monotonic() < deadline:
        for key, events in selector.select(0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if events & selectors.EVENT_WRITE:
                sock.send(request)
                selector.modify(sock, selectors.EVENT_READ)
                continue
            data = sock.recv(65536)
            pending[sock.fileno()] += data
            if not data or pending[sock.fileno()].count(b"v1 ") >= 1:
                assert data, "server closed an idle connection early"
                selector.unregister(sock)
                del pending[sock.fileno()]
    selector.close()
    assert not pending, f"{len(pending)} of {count} connections got no answer in time"
    return sockets


def test_2000_idle_connections_do_not_slow_a_normal_client(start_server: StartServer) -> None:
    raise_nofile(5000)
    server = start_server("--workers", "2", "--threads", "2", "--worker-connections", "3000",
                          "--keep-alive", "60")
    idle = _open_idle_connections(server.port, 2000, time.monotonic() + 60)
    try:
        latencies = []
        for _ in range(200):
            started = time.monotonic()
            status = get(server.port, timeout_s=5)[0]
            latencies.append(time.monotonic() - started)
            assert status == 200
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        assert p99 < 0.25, f"p99 {p99 * 1000:.1f} ms"
        still_open = sum(1 for sock in idle if _is_open(sock))
        assert still_open == 2000
    finally:
        for sock in idle:
            sock.close()


def _is_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def _one_connection(port: int, kind: int) -> None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return
    with sock:
        try:
            if kind == 0:  # a whole request and answer, then close
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while sock.recv(65536):
                    pass
            elif kind == 1:  # connect and leave without a byte
                pass
            elif kind == 2:  # half a head, then leave
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
            elif kind == 3:  # keep-alive, two requests on one connection
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.sock = sock
                for _ in range(2):
                    conn.request("GET", "/")
                    conn.getresponse().read()
                conn.sock = None
        except OSError:
            pass


def test_no_descriptor_leaks_after_10000_connections(start_server: StartServer) -> None:
    server = start_server("--workers", "2", "--threads", "2")
    workers = server.wait_workers(2)
    for _ in range(20):
        get(server.port)
    processes = [server.pid, *workers]
    baseline = {pid: fd_count(pid) for pid in processes}
    counter = iter(range(10_000))
    lock = threading.Lock()
    deadline = time.monotonic() + 90

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                number = next(counter, None)
            if number is None:
                return
            _one_connection(server.port, number % 4)
    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(100)
    assert next(counter, None) is None, "did not get through 10,000 connections in time"

    def settled() -> bool:
        return all(fd_count(pid) <= baseline[pid] + 2 for pid in processes)
    wait_until(settled, 20, interval_s=0.2,
               message=f"fd counts back to {baseline}: now "
                       f"{ {pid: fd_count(pid) for pid in processes} }")
    assert server.workers() == workers  # nobody was restarted
