"""The pieces behind ``--metrics-bind``, in one process: the shared counter layout, the
recorder's per-thread regions (counts exact with many threads, visible across fork), the
exposition text as prometheus_client parses it, the master's folding of a reaped worker's
counts, the health and readiness rules, and the status listener over real sockets (routes,
bad requests, a client that never reads, the connection cap, deadlines).
"""
from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from processes import wait_until
from prometheus_client.parser import text_string_to_metric_families

from wsgiserve.config import Config
from wsgiserve.server.counters import (
    DURATION_BUCKETS_S,
    HAS_GIL,
    HTTP1,
    LAYOUT,
    METHODS,
    PROTOCOLS,
    STATUS_CLASSES,
    Recorder,
    WorkerCounters,
)
from wsgiserve.server.heartbeat import Heartbeat
from wsgiserve.server.master import probes
from wsgiserve.server.master.exposition import Family, render
from wsgiserve.server.master.metrics import MasterMetrics
from wsgiserve.server.master.status_server import MAX_CONNECTIONS, StatusServer
from wsgiserve.server.master.workers import WorkerProcess


def _done(recorder: Recorder, status: int, received: int, method: bytes = b"GET",
          started: float | None = None, sent: int = 0, flush: bool = True) -> None:
    """Count one request; ``flush`` writes the sums as the worker's main thread would (only
    that thread flushes: counting threads pass False)."""
    recorder.request_done(HTTP1, method,
                          0.0 if started is None else time.monotonic() - started,
                          status, received, sent)
    if flush:
        recorder.flush()


def _parsed(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text.decode("utf-8"))
            for s in family.samples}


# --- the layout and the recorder -----------------------------------------------------------


def test_layout_slots_are_disjoint_and_fill_the_region() -> None:
    ranges = [
        range(LAYOUT.requests, LAYOUT.duration_sums),
        range(LAYOUT.duration_sums, LAYOUT.received_bytes),
        range(LAYOUT.received_bytes, LAYOUT.sent_bytes),
        range(LAYOUT.sent_bytes, LAYOUT.protocol_errors),
        range(LAYOUT.protocol_errors, LAYOUT.tls_handshakes),
        range(LAYOUT.tls_handshakes, LAYOUT.accepted),
        range(LAYOUT.accepted, LAYOUT.region_slots),
    ]
    slots = [slot for part in ranges for slot in part]
    assert slots == list(range(LAYOUT.region_slots))
    buckets = len(DURATION_BUCKETS_S) + 1
    assert len(range(LAYOUT.requests, LAYOUT.duration_sums)) == \
        len(PROTOCOLS) * len(METHODS) * len(STATUS_CLASSES) * buckets
    last = LAYOUT.request_slot(len(PROTOCOLS) - 1, len(METHODS) - 1, len(STATUS_CLASSES) - 1,
                               buckets - 1)
    assert last == LAYOUT.duration_sums - 1


@pytest.mark.parametrize(("method", "status", "method_label", "class_label"), [
    (b"GET", 200, "GET", "2xx"), (b"OPTIONS", 101, "OPTIONS", "1xx"),
    (b"PATCH", 308, "PATCH", "3xx"), (b"get", 404, "other", "4xx"),
    (b"PROPFIND", 503, "other", "5xx"), (b"POST", 999, "POST", "5xx"),
])
def test_a_request_lands_in_its_method_and_status_class(
        method: bytes, status: int, method_label: str, class_label: str) -> None:
    counters = WorkerCounters(threads=1)
    _done(Recorder(counters), status, 0, method)
    values = counters.read().counters
    slot = LAYOUT.request_slot(HTTP1, METHODS.index(method_label),
                               STATUS_CLASSES.index(class_label))
    assert sum(values[slot:slot + len(DURATION_BUCKETS_S) + 1]) == 1  # in whichever bucket
    assert sum(values[LAYOUT.requests:LAYOUT.duration_sums]) == 1
    counters.close()


def test_durations_fall_in_the_first_bucket_whose_bound_they_do_not_exceed() -> None:
    counters = WorkerCounters(threads=1)
    recorder = Recorder(counters)
    now = time.monotonic()
    # Durations far from the bounds, so that a preempted test thread cannot move them.
    _done(recorder, 200, 0, started=now + 1)  # -1 s: the first bucket
    _done(recorder, 200, 10, started=now - 0.3, sent=20)  # <= 0.5 s
    _done(recorder, 200, 0, started=now - 60, sent=5)  # past them all
    values = counters.read().counters
    buckets = [values[LAYOUT.request_slot(HTTP1, 0, 1, b)]
               for b in range(len(DURATION_BUCKETS_S) + 1)]
    assert buckets[0] == 1 and buckets[DURATION_BUCKETS_S.index(0.5)] == 1 and buckets[-1] == 1
    assert sum(buckets) == 3
    assert values[LAYOUT.received_bytes + HTTP1] == 10
    assert values[LAYOUT.sent_bytes + HTTP1] == 25
    assert 59.3 < values[LAYOUT.duration_sums + HTTP1] < 60
    del recorder  # its views of the memory go first
    counters.close()


def _count_in_threads(recorder: Recorder, threads: int, per_thread: int) -> None:
    start = threading.Barrier(threads)

    def count() -> None:
        start.wait(10)
        for _ in range(per_thread):
            _done(recorder, 200, 0, sent=1, flush=False)
    workers = [threading.Thread(target=count) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)


def test_without_a_gil_each_thread_counts_in_its_own_region() -> None:
    counters = WorkerCounters(threads=4, per_thread=True)  # 4 serving, main, the rest
    assert counters.regions == 6
    recorder = Recorder(counters)
    per_thread = 5000
    _count_in_threads(recorder, 8, per_thread)
    slots = slice(LAYOUT.request_slot(HTTP1, 0, 1), LAYOUT.request_slot(HTTP1, 0, 2))
    per_region = [sum(counters.region(i)[0][slots]) for i in range(counters.regions)]
    assert per_region == [per_thread] * 5 + [3 * per_thread]  # GET 2xx, in any bucket
    assert sum(counters.read().counters[slots]) == 8 * per_thread
    del recorder
    counters.close()


@pytest.mark.skipif(not HAS_GIL, reason="a free-threaded Python counts per thread")
def test_with_the_gil_threads_share_one_region_and_lose_no_increment() -> None:
    counters = WorkerCounters(threads=4)
    assert counters.regions == 1
    recorder = Recorder(counters)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a thread switch as often as CPython allows
    try:
        _count_in_threads(recorder, 8, 20000)
    finally:
        sys.setswitchinterval(interval)
    recorder.flush()  # the sums (bytes, durations) are written by the main thread's tick
    values = counters.read().counters
    get_2xx = slice(LAYOUT.request_slot(HTTP1, 0, 1), LAYOUT.request_slot(HTTP1, 0, 2))
    assert sum(values[get_2xx]) == 8 * 20000
    assert values[LAYOUT.sent_bytes + HTTP1] == 8 * 20000
    del recorder
    counters.close()


def test_counts_made_in_a_forked_child_are_read_by_the_parent() -> None:
    counters = WorkerCounters(threads=1)
    pid = os.fork()
    if pid == 0:  # the "worker"
        recorder = Recorder(counters)
        for _ in range(3):
            _done(recorder, 201, 7, b"POST")
        recorder.protocol_error(HTTP1, 431)
        recorder.tls_handshake(False)
        recorder.connections_accepted(4)
        recorder.set_gauges([1] * LAYOUT.gauge_slots)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    values = counters.read()
    assert values.counters[LAYOUT.request_slot(HTTP1, METHODS.index("POST"), 1)] == 3
    assert values.counters[LAYOUT.received_bytes + HTTP1] == 21
    assert values.counters[LAYOUT.protocol_error_slot(HTTP1, 5)] == 1  # 431
    assert values.counters[LAYOUT.tls_handshakes + 1] == 1
    assert values.counters[LAYOUT.accepted] == 4
    assert values.gauges == [1] * LAYOUT.gauge_slots
    counters.close()


# --- exposition and the master's totals -------------------------------------------------------


def test_exposition_round_trips_through_prometheus_clients_parser() -> None:
    counter = Family("x_requests_total", "counter", 'Help with a \\ and a\nnewline')
    counter.add(3, [("path", 'a "quoted" \\ value\nwith a newline')])
    counter.add(1.5e-7, [("path", "/")])
    histogram = Family("x_seconds", "histogram", "h")
    histogram.add_histogram((0.1, 1.0), [2, 1, 1], 2.75, [("protocol", "h2")])
    empty = Family("x_unused", "gauge", "left out")
    text = render([counter, histogram, empty])
    assert text.endswith(b"\n") and b"x_unused" not in text
    samples = _parsed(text)
    assert samples[("x_requests_total",
                    frozenset({("path", 'a "quoted" \\ value\nwith a newline')}))] == 3
    assert samples[("x_requests_total", frozenset({("path", "/")}))] == 1.5e-7
    buckets = {dict(labels)["le"]: v for (name, labels), v in samples.items()
               if name == "x_seconds_bucket"}
    assert buckets == {"0.1": 2, "1.0": 3, "+Inf": 4}
    assert samples[("x_seconds_count", frozenset({("protocol", "h2")}))] == 4
    assert samples[("x_seconds_sum", frozenset({("protocol", "h2")}))] == 2.75
    with pytest.raises(ValueError, match="unknown metric type"):
        Family("x", "summary-ish", "")


def _record(worker_id: int, threads: int = 1) -> WorkerProcess:
    record = WorkerProcess(worker_id, 1, Heartbeat(), Config(), time.monotonic(),
                           pid=os.getpid())
    record.counters = WorkerCounters(threads)
    return record


def test_a_reaped_workers_counts_are_kept_and_its_gauges_dropped() -> None:
    metrics = MasterMetrics()
    first, second = _record(1), _record(2)
    _done(Recorder(first.counters), 200, 0, sent=2)  # type: ignore[arg-type]
    Recorder(first.counters).set_gauges([1] * LAYOUT.gauge_slots)  # type: ignore[arg-type]
    _done(Recorder(second.counters), 500, 0)  # type: ignore[arg-type]
    first.has_booted = second.has_booted = True
    first.heartbeat.beat()
    samples = _parsed(metrics.render([first, second]))
    assert samples[("wsgiserve_requests_total", frozenset(
        {("method", "GET"), ("status", "2xx"), ("protocol", "http/1.1")}))] == 1
    assert samples[("wsgiserve_requests_in_app", frozenset({("protocol", "http/1.1")}))] == 1
    metrics.worker_exited(first, "crash")
    assert first.counters is None
    samples = _parsed(metrics.render([second]))
    statuses = {dict(labels)["status"]: v for (name, labels), v in samples.items()
                if name == "wsgiserve_requests_total"}
    assert statuses == {"2xx": 1, "5xx": 1}
    assert samples[("wsgiserve_sent_bytes_total", frozenset({("protocol", "http/1.1")}))] == 2
    assert samples[("wsgiserve_requests_in_app", frozenset({("protocol", "http/1.1")}))] == 0
    assert samples[("wsgiserve_worker_exits_total", frozenset({("cause", "crash")}))] == 1
    assert samples[("wsgiserve_worker_boots_total", frozenset())] == 2
    assert ("wsgiserve_request_duration_seconds_count",
            frozenset({("protocol", "h2")})) not in samples  # h2 never counted anything
    second.heartbeat.close()
    second.counters.close()  # type: ignore[union-attr]
    first.heartbeat.close()


# --- health and readiness ---------------------------------------------------------------------


def test_health_and_readiness_follow_boot_heartbeats_and_stop() -> None:
    booting, serving = _record(1), _record(2)
    serving.has_booted = True
    workers = [booting, serving]
    assert probes.check_health(workers, 30).is_ok
    assert not probes.check_readiness(workers, has_started=False, is_stopping=False,
                                      stale_s=30).is_ok
    ready = probes.check_readiness(workers, has_started=True, is_stopping=False, stale_s=30)
    assert ready.answer() == (200, "text/plain; charset=utf-8", b"ready: 1 worker(s) serving\n")
    stopping = probes.check_readiness(workers, has_started=True, is_stopping=True, stale_s=30)
    assert stopping.answer()[0] == 503 and b"stopping" in stopping.answer()[2]
    # A heartbeat older than the timeout: neither healthy nor serving.
    assert not probes.check_health(workers, 0.0).is_ok
    assert not probes.check_readiness(workers, has_started=True, is_stopping=False,
                                      stale_s=0.0).is_ok
    serving.stop_sent_at = time.monotonic()  # retiring: alive, but not serving
    assert probes.check_health(workers, 30).is_ok
    assert not probes.check_readiness(workers, has_started=True, is_stopping=False,
                                      stale_s=30).is_ok
    assert probes.stale_after_s(0) == probes.DEFAULT_STALE_AFTER_S
    assert probes.stale_after_s(5) == 5
    for record in workers:
        record.heartbeat.close()
        record.counters.close()  # type: ignore[union-attr]


# --- the status listener -----------------------------------------------------------------------


class _Loop:
    """Drives a StatusServer the way the arbiter does (poll its descriptors, handle) in a
    thread, until stopped; ``ticks`` counts loop turns (the master never stalls)."""

    def __init__(self, server: StatusServer) -> None:
        self.server = server
        self.ticks = 0
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._halt.is_set():
            poller = select.poll()
            for fd, events in self.server.watch():
                poller.register(fd, events)
            self.server.handle(poller.poll(20))
            self.ticks += 1

    def __enter__(self) -> _Loop:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._halt.set()
        self._thread.join(10)
        self.server.close()


@pytest.fixture
def status() -> Iterator[tuple[_Loop, int]]:
    listener = socket.create_server(("127.0.0.1", 0))
    def broken() -> tuple[int, str, bytes]:
        raise ZeroDivisionError("a bug in a route")

    routes = {
        "/small": lambda: (200, "text/plain", b"fine\n"),
        "/big": lambda: (200, "text/plain", b"x" * (16 << 20)),
        "/broken": broken,
    }
    server = StatusServer(listener, routes, request_timeout_s=1.0, linger_s=0.5)
    with _Loop(server) as loop:
        yield loop, listener.getsockname()[1]


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(("raw", "start", "body"), [
    (b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n", b"fine\n"),
    (b"GET /small?x=1 HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 OK\r\n", b"fine\n"),
    (b"GET http://x/small HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n", b"fine\n"),
    (b"HEAD /small HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n", b""),
    (b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
     b"HTTP/1.1 405 Method Not Allowed\r\n", b"only GET and HEAD\n"),
    (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 404 Not Found\r\n",
     b"not found; try /big, /broken, /small\n"),
    (b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 500 Internal Server Error\r\n",
     b"internal error: see the server log\n"),
    (b"GET /small HTTP/1.1\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n", None),
    (b"GET /small HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 5000 + b"\r\n\r\n",
     b"HTTP/1.1 431 ", None),
], ids=["get", "query-and-1.0", "absolute-form", "head", "post", "unknown-path", "failing-route",
        "no-host", "field-too-large"])
def test_status_listener_answers(status: tuple[_Loop, int], raw: bytes, start: bytes,
                                 body: bytes | None) -> None:
    answer = _exchange(status[1], raw)
    assert answer.startswith(start), answer[:200]
    head, _, got = answer.partition(b"\r\n\r\n")
    assert b"\r\nConnection: close\r\n" in head + b"\r\n"
    if body is not None:
        assert got == body
        if not raw.startswith(b"HEAD"):
            assert f"\r\nContent-Length: {len(body)}\r\n".encode() in head


def test_a_client_that_never_reads_a_big_answer_does_not_block_others(
        status: tuple[_Loop, int]) -> None:
    loop, port = status
    with socket.create_connection(("127.0.0.1", port), timeout=5) as greedy:
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(3):
            assert _exchange(port, b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"fine\n")
        # At its deadline the server gives up on it: only the listener is watched again.
        wait_until(lambda: len(loop.server.watch()) == 1, 5, message="the greedy client dropped")


def test_at_most_max_connections_are_served_at_once_and_deadlines_free_them(
        status: tuple[_Loop, int]) -> None:
    loop, port = status
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5)
              for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in silent:
            sock.sendall(b"GET /small HTTP/1.1\r\n")  # never finished
        # The next one waits in the backlog until the deadline closes the silent ones.
        started = loop.ticks
        assert _exchange(port, b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"fine\n")
        assert loop.ticks > started
        for sock in silent:
            sock.settimeout(5)
            assert sock.recv(100) == b""  # closed at its deadline, without an answer
    finally:
        for sock in silent:
            sock.close()
