"""``--metrics-bind`` on real processes: /metrics parsed by prometheus_client's own parser
counts exactly the requests sent (by method, status and protocol, with body bytes,
durations, protocol errors and TLS handshakes), across a SIGKILLed worker, HUP and
TTIN/TTOU; gauges see a request in the app and an idle connection; /healthz and /readyz
follow boot, WINCH and a graceful stop (503 before the listeners close, while in-flight
requests finish); stalled scrapers do not hold up supervision; a worker over
--max-worker-memory is replaced under load with no failed request; USR2 hands the status
listener to the new master.
"""
from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import trustme
from arbiter_processes import (
    KeepAliveLoad,
    ServerProcess,
    assert_no_failed_requests,
    connect,
    get,
)
from processes import is_alive, wait_until
from prometheus_client.parser import text_string_to_metric_families
from tls_servers import pem_files
from websockets.sync.client import connect as ws_connect

from wsgiserve.exitcodes import EXIT_OK

StartServer = Callable[..., ServerProcess]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_AT = r"Serving metrics at: http://127\.0\.0\.1:(\d+)/metrics"
METRICS_APP = '''\
import os
import time

LEAKED = []


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    body = environ["wsgi.input"].read()
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/sleep":
        time.sleep(float(query or "1"))
    if path == "/leak":
        LEAKED.append(b"x" * (5 << 20))  # written, so resident
        time.sleep(0.05)  # the work: keeps the leak to 100 MiB/s per worker
    status = query if path == "/status" else "200"
    reply = b"%d %d" % (os.getpid(), len(body))
    start_response(status + " X", [("Content-Length", str(len(reply))),
                                   ("X-Worker-Pid", str(os.getpid()))])
    return [reply]
'''


@pytest.fixture
def metrics_app(app_dir: Path) -> str:
    (app_dir / "metrics_app.py").write_text(METRICS_APP)
    return "metrics_app:app"


def metrics_port(server: ServerProcess) -> int:
    match = re.search(METRICS_AT, server.wait_for_log(METRICS_AT))
    assert match is not None
    return int(match.group(1))


def scrape(port: int) -> Samples:
    status, body, headers = get(port, "/metrics")
    assert status == 200, body
    assert headers["content-type"] == CONTENT_TYPE
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode("utf-8"))
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def wait_for_value(port: int, name: str, expected: float, timeout_s: float = 10.0,
                   **labels: str) -> Samples:
    """Scrape until ``value(name, labels) == expected`` (the worker counts just after the
    response has gone); the failure says what was seen last."""
    seen: list[Samples] = []

    def matches() -> bool:
        seen[:] = [scrape(port)]
        return value(seen[0], name, **labels) == expected
    try:
        wait_until(matches, timeout_s, interval_s=0.05, message=f"{name}{labels} == {expected}")
    except AssertionError as exc:
        got = value(seen[0], name, **labels) if seen else None
        raise AssertionError(f"{exc}; last value {got}") from None
    return seen[0]


def probe(port: int, path: str) -> tuple[int, str]:
    status, body, _ = get(port, path)
    return status, body.decode()


def send_requests(port: int, count: int, path: str = "/") -> None:
    for _ in range(count):
        assert get(port, path)[0] == 200


# --- counting ------------------------------------------------------------------------------


def test_every_request_is_counted_with_its_method_status_bytes_and_duration(
        start_server: StartServer, metrics_app: str) -> None:
    server = start_server("--workers", "2", "--metrics-bind", "127.0.0.1:0",
                          "--limit-request-field_size", "200", app=metrics_app)
    port = metrics_port(server)
    sent = 0
    for _ in range(12):
        status, body, _ = get(server.port)
        assert status == 200
        sent += len(body)
    for _ in range(4):  # requests, a second client; one connection each
        response = requests.post(f"http://127.0.0.1:{server.port}/", data=b"a" * 1000,
                                 timeout=5)
        assert response.status_code == 200
        sent += len(response.content)
    for method, path in [("HEAD", "/"), ("HEAD", "/"), ("HEAD", "/"), ("DELETE", "/"),
                         ("PROPFIND", "/"), ("GET", "/status?404"), ("GET", "/status?404"),
                         ("GET", "/status?302"), ("GET", "/boom")]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request(method, path)
        answer = conn.getresponse()
        sent += len(answer.read()) if path != "/boom" else 0  # the server's own 500
        conn.close()
    with connect(server.port) as sock:  # a field line over the limit: 431
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 300 + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 431 ")
    with connect(server.port) as sock:  # no Host: 400
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")

    wait_for_value(port, "wsgiserve_requests_total", 25)
    # Durations and bytes are summed in the worker and written each housekeeping tick.
    samples = wait_for_value(port, "wsgiserve_sent_bytes_total", sent, protocol="http/1.1")
    http1 = {"protocol": "http/1.1"}
    expected = {("GET", "2xx"): 12, ("POST", "2xx"): 4, ("HEAD", "2xx"): 3,
                ("DELETE", "2xx"): 1, ("other", "2xx"): 1, ("GET", "4xx"): 2,
                ("GET", "3xx"): 1, ("GET", "5xx"): 1}
    found = {(dict(labels)["method"], dict(labels)["status"]): v
             for (name, labels), v in samples.items() if name == "wsgiserve_requests_total"}
    assert found == expected
    assert value(samples, "wsgiserve_request_duration_seconds_count", **http1) == 25
    assert value(samples, "wsgiserve_request_duration_seconds_bucket", le="+Inf",
                 **http1) == 25
    assert 0 < value(samples, "wsgiserve_request_duration_seconds_sum", **http1) < 25
    assert value(samples, "wsgiserve_received_bytes_total", **http1) == 4000
    assert value(samples, "wsgiserve_sent_bytes_total", **http1) == sent
    assert value(samples, "wsgiserve_protocol_errors_total", status="431") == 1
    assert value(samples, "wsgiserve_protocol_errors_total", status="400") == 1
    assert value(samples, "wsgiserve_protocol_errors_total") == 2
    assert value(samples, "wsgiserve_connections_accepted_total") == 27
    assert value(samples, "wsgiserve_workers", state="serving") == 2
    assert value(samples, "wsgiserve_worker_boots_total") == 2
    assert value(samples, "wsgiserve_worker_exits_total") == 0
    assert value(samples, "wsgiserve_build_info") == 1
    assert value(samples, "process_open_fds") > 0
    ages = [v for (name, _), v in samples.items()
            if name == "wsgiserve_worker_heartbeat_age_seconds"]
    assert len(ages) == 2 and all(0 <= age < 30 for age in ages)


def test_counts_survive_a_sigkilled_worker(start_server: StartServer) -> None:
    server = start_server("--workers", "2", "--metrics-bind", "127.0.0.1:0")
    port = metrics_port(server)
    before = server.wait_workers(2)
    send_requests(server.port, 10)
    wait_for_value(port, "wsgiserve_requests_total", 10)
    os.kill(before[0], signal.SIGKILL)
    server.wait_workers(2, 10, exclude=[before[0]])
    send_requests(server.port, 7)
    samples = wait_for_value(port, "wsgiserve_requests_total", 17)
    assert value(samples, "wsgiserve_worker_exits_total", cause="crash") == 1
    assert value(samples, "wsgiserve_worker_exits_total") == 1
    wait_for_value(port, "wsgiserve_worker_boots_total", 3)


def test_counts_survive_hup_ttin_and_ttou(start_server: StartServer) -> None:
    server = start_server("--workers", "2", "--metrics-bind", "127.0.0.1:0")
    port = metrics_port(server)
    first = server.wait_workers(2)
    send_requests(server.port, 5)
    server.signal(signal.SIGHUP)
    server.wait_for_log(r"reload \(HUP\) done", 15)
    second = server.wait_workers(2, 10, exclude=first)
    send_requests(server.port, 5)
    wait_for_value(port, "wsgiserve_requests_total", 10)
    wait_for_value(port, "wsgiserve_worker_exits_total", 2, cause="reload")
    server.signal(signal.SIGTTIN)
    server.wait_workers(3, 10)
    send_requests(server.port, 5)
    server.signal(signal.SIGTTOU)
    server.wait_workers(2, 10)
    send_requests(server.port, 5)
    samples = wait_for_value(port, "wsgiserve_requests_total", 20)
    samples = wait_for_value(port, "wsgiserve_worker_exits_total", 1, cause="scale")
    assert value(samples, "wsgiserve_worker_exits_total") == 3
    assert value(samples, "wsgiserve_worker_boots_total") == 5
    assert value(samples, "wsgiserve_workers", state="serving") == 2
    assert not set(second) & set(first)


def test_max_requests_exits_and_a_slow_head_are_counted(start_server: StartServer) -> None:
    server = start_server("--max-requests", "5", "--header-timeout", "1",
                          "--metrics-bind", "127.0.0.1:0")
    port = metrics_port(server)
    # A worker at max_requests still answers what is in the listen backlog as it stops,
    # so the first may serve a few more than five: send until two have exited.
    sent = 0
    while sent < 40 and value(scrape(port), "wsgiserve_worker_exits_total",
                              cause="max_requests") < 2:
        send_requests(server.port, 12 if sent == 0 else 1)
        sent += 12 if sent == 0 else 1
        if sent > 12:
            time.sleep(0.05)
    with connect(server.port) as sock:  # half a head, then nothing: 408 after a second
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(10)
        assert sock.recv(100).startswith(b"HTTP/1.1 408 ")
    samples = wait_for_value(port, "wsgiserve_worker_exits_total", 2, cause="max_requests")
    assert value(samples, "wsgiserve_requests_total") == sent
    assert value(samples, "wsgiserve_protocol_errors_total", status="408") == 1
    assert value(samples, "wsgiserve_worker_exits_total") == 2


def test_hup_moves_the_status_listener_when_metrics_bind_changes(
        start_server: StartServer, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('[metrics]\nmetrics_bind = "127.0.0.1:0"\n')
    server = start_server("--config", str(config))
    port = metrics_port(server)
    send_requests(server.port, 3)
    wait_for_value(port, "wsgiserve_requests_total", 3)
    path = tmp_path / "metrics.sock"
    config.write_text(f'[metrics]\nmetrics_bind = "unix:{path}"\n')
    server.signal(signal.SIGHUP)
    server.wait_for_log(r"Serving metrics at: unix:", 15)
    with pytest.raises(ConnectionRefusedError):
        connect(port, 2).close()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    samples = [s for family in text_string_to_metric_families(body.decode())
               for s in family.samples if s.name == "wsgiserve_requests_total"]
    assert sum(s.value for s in samples) == 3  # the same master: nothing was reset
    server.signal(signal.SIGTERM)
    assert server.wait_exit(15) == EXIT_OK
    assert not path.exists()


def test_tls_handshakes_are_counted(start_server: StartServer, app_dir: Path) -> None:
    ca = trustme.CA()
    certfile, keyfile = pem_files(app_dir, ca.issue_cert("127.0.0.1"), "server")
    server = start_server("--metrics-bind", "127.0.0.1:0", "--certfile", certfile,
                          "--keyfile", keyfile)
    port = metrics_port(server)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=5, context=context)
    conn.request("GET", "/")
    assert conn.getresponse().read().startswith(b"v1 ")
    conn.close()
    with connect(server.port) as sock:  # plain HTTP on the TLS port
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    samples = wait_for_value(port, "wsgiserve_tls_handshakes_total", 1, result="failed")
    assert value(samples, "wsgiserve_tls_handshakes_total", result="ok") == 1
    assert value(samples, "wsgiserve_requests_total") == 1


# --- gauges --------------------------------------------------------------------------------


def test_gauges_show_a_request_in_the_app_and_an_idle_connection(
        start_server: StartServer, metrics_app: str) -> None:
    server = start_server("--threads", "2", "--metrics-bind", "127.0.0.1:0", app=metrics_app)
    port = metrics_port(server)
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    idle.request("GET", "/")
    idle.getresponse().read()
    slow = threading.Thread(target=lambda: get(server.port, "/sleep?3", timeout_s=10))
    slow.start()
    try:
        samples = wait_for_value(port, "wsgiserve_requests_in_app", 1, protocol="http/1.1")
        samples = wait_for_value(port, "wsgiserve_connections", 1, state="idle")
        assert value(samples, "wsgiserve_connections", state="active") == 1
    finally:
        slow.join(10)
        idle.close()
    wait_for_value(port, "wsgiserve_requests_in_app", 0)
    wait_for_value(port, "wsgiserve_connections", 0)


# --- HTTP/2 and WebSocket -------------------------------------------------------------------


def test_http2_streams_and_websockets_are_counted_under_their_protocol(
        start_server: StartServer) -> None:
    server = start_server("--threads", "4", "--metrics-bind", "127.0.0.1:0",
                          app="tests.ws_apps:native")
    port = metrics_port(server)
    url = f"http://127.0.0.1:{server.port}/"
    for _ in range(3):  # (curl 7.88 fails reusing a prior-knowledge connection: exit 16)
        done = subprocess.run(["curl", "-s", "--http2-prior-knowledge", url],
                              capture_output=True, timeout=30, check=True)
        assert done.stdout == b"hello"
    with ws_connect(f"ws://127.0.0.1:{server.port}/event", open_timeout=10) as ws:
        ws.send("one")
        assert ws.recv(timeout=10) == "one"
        samples = wait_for_value(port, "wsgiserve_connections", 1, protocol="websocket")
        assert value(samples, "wsgiserve_requests_total", protocol="h2", method="GET",
                     status="2xx") == 3
        assert value(samples, "wsgiserve_requests_total", protocol="websocket",
                     status="1xx") == 1
        assert value(samples, "wsgiserve_requests_total", protocol="http/1.1") == 0
        wait_for_value(port, "wsgiserve_sent_bytes_total", 15, protocol="h2")
    wait_for_value(port, "wsgiserve_connections", 0, protocol="websocket")


# --- health and readiness -------------------------------------------------------------------


def test_readyz_is_503_until_the_first_workers_have_booted(start_server: StartServer,
                                                            app_dir: Path) -> None:
    gate = app_dir / "gate"
    (app_dir / "slow_app.py").write_text(
        "import os, time\n"
        f"deadline = time.monotonic() + 30\n"
        f"while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)  # a slow import, released by the test\n"
        "from arbiter_app import app\n")
    server = start_server("--workers", "2", "--metrics-bind", "127.0.0.1:0",
                          app="slow_app:app", wait=False)
    port = metrics_port(server)
    wait_for_value(port, "wsgiserve_workers", 2, state="booting")  # forked, importing
    status, text = probe(port, "/readyz")
    assert (status, text) == (503, "not ready: starting, 0 of 2 worker(s) booted\n")
    assert probe(port, "/healthz") == (503, "unhealthy: no worker has booted (2 booting)\n")
    gate.touch()
    server.wait_ready()
    assert probe(port, "/readyz") == (200, "ready: 2 worker(s) serving\n")
    assert probe(port, "/healthz") == (200, "ok: 2 worker(s) beating\n")


def test_readyz_turns_503_on_term_before_the_listener_closes_and_requests_finish(
        start_server: StartServer, metrics_app: str) -> None:
    server = start_server("--threads", "2", "--graceful-timeout", "15",
                          "--metrics-bind", "127.0.0.1:0", app=metrics_app)
    port = metrics_port(server)
    assert probe(port, "/readyz")[0] == 200
    results: list[int] = []
    slow = threading.Thread(
        target=lambda: results.append(get(server.port, "/sleep?3", timeout_s=15)[0]))
    slow.start()
    wait_for_value(port, "wsgiserve_requests_in_app", 1)
    server.signal(signal.SIGTERM)
    # The first answer after TERM is already 503, and so is every one while it drains.
    status, text = wait_until(lambda: _readyz_if_changed(port), 5, message="a 503")
    assert (status, text) == (503, "not ready: stopping, in-flight requests are draining\n")
    assert slow.is_alive()  # the in-flight request is still running
    # The listener closes (the worker's copy too, once it has its TERM); /readyz stays 503.
    wait_until(lambda: _refused(server.port), 5, message="the app listener to close")
    while slow.is_alive():
        assert probe(port, "/readyz")[0] == 503
        slow.join(0.1)
    assert results == [200]
    assert server.wait_exit(15) == EXIT_OK


def _refused(port: int) -> bool:
    try:
        connect(port, 2).close()
    except ConnectionRefusedError:
        return True
    return False


def _readyz_if_changed(port: int) -> tuple[int, str] | None:
    answer = probe(port, "/readyz")
    return answer if answer[0] != 200 else None


def test_no_worker_after_winch_is_unhealthy_and_unready(start_server: StartServer) -> None:
    server = start_server("--workers", "2", "--metrics-bind", "127.0.0.1:0")
    port = metrics_port(server)
    server.signal(signal.SIGWINCH)
    server.wait_workers(0)
    assert probe(port, "/readyz") == (503, "not ready: no worker is serving\n")
    assert probe(port, "/healthz") == (503, "unhealthy: no worker has booted (0 booting)\n")
    samples = wait_for_value(port, "wsgiserve_worker_exits_total", 2, cause="stop")
    assert value(samples, "wsgiserve_workers") == 0
    server.signal(signal.SIGHUP)
    server.wait_workers(2)
    wait_until(lambda: probe(port, "/readyz")[0] == 200, 10, message="ready again")


def test_stalled_scrapers_do_not_hold_up_worker_supervision(start_server: StartServer) -> None:
    server = start_server("--workers", "2", "--metrics-bind", "127.0.0.1:0")
    port = metrics_port(server)
    before = server.wait_workers(2)
    stalled = [connect(port) for _ in range(40)]  # more than the 16 served at once
    try:
        for sock in stalled[:20]:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the end of the head
        os.kill(before[0], signal.SIGKILL)
        server.wait_workers(2, 5, exclude=[before[0]])
        assert get(server.port)[0] == 200
        server.wait_for_log(r"booting worker 3")
    finally:
        for sock in stalled:
            sock.close()
    # Once the stalled ones are closed (or time out), scrapes are answered again.
    wait_until(lambda: probe(port, "/healthz")[0] == 200, 15, message="/healthz")


# --- memory recycling ---------------------------------------------------------------------


def test_a_worker_over_max_worker_memory_is_replaced_under_load_without_failures(
        start_server: StartServer, metrics_app: str) -> None:
    server = start_server("--workers", "1", "--max-worker-memory", "80",
                          "--metrics-bind", "127.0.0.1:0", app=metrics_app)
    port = metrics_port(server)
    [first] = server.wait_workers(1)
    with KeepAliveLoad(server.port, threads=3, path="/leak", max_seconds=60,
                       max_requests=2000) as load:
        wait_for_value(port, "wsgiserve_worker_exits_total", 2, 40, cause="memory")
        result = load.stop()
    assert_no_failed_requests(result)
    assert len(result.workers) >= 2
    assert not is_alive(first)
    log = server.log()
    warned = re.findall(r"worker (\d+) \(pid \d+\) uses \d+ MiB, over max_worker_memory", log)
    assert len(warned) == len(set(warned)) >= 2  # once per worker
    samples = wait_for_value(port, "wsgiserve_requests_total", result.ok, status="2xx")
    assert value(samples, "wsgiserve_worker_exits_total") == \
        value(samples, "wsgiserve_worker_exits_total", cause="memory")


# --- binary upgrade -----------------------------------------------------------------------


def test_usr2_hands_the_status_listener_to_the_new_master(start_server: StartServer,
                                                          tmp_path: Path) -> None:
    import ctypes
    pidfile = tmp_path / "server.pid"
    server = start_server("--workers", "1", "--pid", str(pidfile),
                          "--metrics-bind", "127.0.0.1:0")
    port = metrics_port(server)
    send_requests(server.port, 3)
    wait_for_value(port, "wsgiserve_requests_total", 3)
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    old = server.pid
    server.signal(signal.SIGUSR2)
    new_master = int(wait_until(lambda: _pid_from(pidfile, exclude=old), 15,
                                message="the new master's pid file"))
    server.known_pids.add(new_master)
    server.wait_for_log(rf"\[{new_master}\] \[INFO\] ready: 1 worker", 20)
    server.known_pids.update(server.workers(master=new_master))
    server.signal(signal.SIGTERM)
    assert server.wait_exit(15) == EXIT_OK
    try:
        # The same port, now the new master's: its counters started from zero.
        assert probe(port, "/readyz") == (200, "ready: 1 worker(s) serving\n")
        assert value(scrape(port), "wsgiserve_requests_total") == 0
        send_requests(server.port, 2)
        wait_for_value(port, "wsgiserve_requests_total", 2)
    finally:
        os.kill(new_master, signal.SIGTERM)
        wait_until(lambda: _reaped(new_master), 15, message="the new master to stop")


def _pid_from(pidfile: Path, exclude: int) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid != exclude else None


def _reaped(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not is_alive(pid)
    return reaped == pid
