"""What the master's ``/metrics`` says: every worker's counters summed, the counts of
workers that have exited kept, and the master's own view of its workers and itself.

Counters stay monotonic for the life of a master: when a worker is reaped its final
counts are folded into ``retained`` (a crash, a timeout, max_requests, a reload or TTOU
loses none), while its gauges (connections, requests in the app) go with it. A new master
after a USR2 upgrade starts from zero: Prometheus's ``rate()`` takes that as the counter
reset it is (``process_start_time_seconds`` changes too).
"""
from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Iterable, Sequence
from typing import Final

from wsgiserve import __version__
from wsgiserve.server.counters import (
    CONNECTION_PROTOCOLS,
    CONNECTION_STATES,
    DURATION_BUCKETS_S,
    LAYOUT,
    METHODS,
    PROTOCOL_ERROR_STATUSES,
    PROTOCOLS,
    STATUS_CLASSES,
    TLS_RESULTS,
    CounterValues,
)
from wsgiserve.server.master.exposition import Family, render
from wsgiserve.server.master.workers import EXIT_CAUSES, WorkerProcess

__all__ = ["MasterMetrics"]

# Series of these protocols are shown from the start (at zero); those of the others once
# they have counted something, so a server without HTTP/2 shows no h2 series.
_ALWAYS_SHOWN: Final = frozenset({"http/1.1"})


class MasterMetrics:
    """Retained counts of exited workers, and the rendering of ``/metrics``."""

    def __init__(self) -> None:
        self.retained = CounterValues.zero()
        self.exits = dict.fromkeys(EXIT_CAUSES, 0)
        self.retained_boots = 0
        self.started_at = time.time()
        self._shown: set[tuple[str, str]] = set()  # (metric, protocol) shown once, always

    def worker_exited(self, record: WorkerProcess, cause: str) -> None:
        """Fold the reaped worker's final counts in and release its shared memory."""
        self.exits[cause] += 1
        if record.has_booted:
            self.retained_boots += 1
        counters = record.counters
        if counters is not None:
            final = counters.read()
            self.retained.add(CounterValues(final.counters, [0] * LAYOUT.gauge_slots))
            record.counters = None
            counters.close()

    def totals(self, workers: Iterable[WorkerProcess]) -> CounterValues:
        """Retained counts plus every live worker's counters and gauges."""
        totals = CounterValues(list(self.retained.counters), [0] * LAYOUT.gauge_slots)
        for record in workers:
            if record.counters is not None:
                totals.add(record.counters.read())
        return totals

    def render(self, workers: Sequence[WorkerProcess]) -> bytes:
        """The exposition text of every metric."""
        values = self.totals(workers)
        families = [
            *self._request_families(values),
            *self._connection_families(values),
            *self._worker_families(workers),
            *_process_families(self.started_at),
        ]
        return render(families)

    def _is_shown(self, metric: str, protocol: str, value: float) -> bool:
        key = (metric, protocol)
        if protocol in _ALWAYS_SHOWN or value or key in self._shown:
            self._shown.add(key)
            return True
        return False

    # --- from the workers ---------------------------------------------------------------

    def _request_families(self, values: CounterValues) -> list[Family]:
        counters = values.counters
        requests = Family("wsgiserve_requests_total", "counter",
                          "Requests answered, by method, status class and protocol")
        durations = Family("wsgiserve_request_duration_seconds", "histogram",
                           "Time from a request's complete head to the end of its response")
        received = Family("wsgiserve_received_bytes_total", "counter",
                          "Request body bytes received (de-chunked) by the end of each "
                          "response")
        sent = Family("wsgiserve_sent_bytes_total", "counter",
                      "Response body bytes sent (before chunked framing)")
        errors = Family("wsgiserve_protocol_errors_total", "counter",
                        "Error responses the server gave for a client's protocol error, "
                        "by status")
        bucket_count = len(DURATION_BUCKETS_S) + 1
        for p, protocol in enumerate(PROTOCOLS):
            buckets = [0] * bucket_count
            for m, method in enumerate(METHODS):
                for c, status in enumerate(STATUS_CLASSES):
                    start = LAYOUT.request_slot(p, m, c)
                    by_bucket = counters[start:start + bucket_count]
                    count = int(sum(by_bucket))
                    if count:
                        requests.add(count, [("method", method), ("status", status),
                                             ("protocol", protocol)])
                        buckets = [a + int(b) for a, b in zip(buckets, by_bucket)]
            if self._is_shown("duration", protocol, sum(buckets)):
                durations.add_histogram(DURATION_BUCKETS_S, buckets,
                                        counters[LAYOUT.duration_sums + p],
                                        [("protocol", protocol)])
            for family, base in ((received, LAYOUT.received_bytes), (sent, LAYOUT.sent_bytes)):
                if self._is_shown(family.name, protocol, counters[base + p]):
                    family.add(counters[base + p], [("protocol", protocol)])
            statuses = [*map(str, PROTOCOL_ERROR_STATUSES), "other"]
            slots = [LAYOUT.protocol_error_slot(p, i) for i in range(len(statuses))]
            if self._is_shown("errors", protocol, sum(counters[s] for s in slots)):
                for status_text, slot in zip(statuses, slots):
                    errors.add(counters[slot], [("protocol", protocol),
                                                ("status", status_text)])
        tls = Family("wsgiserve_tls_handshakes_total", "counter",
                     "TLS handshakes completed (ok) or failed (an error, a timeout, plain "
                     "HTTP on a TLS port)")
        for i, result in enumerate(TLS_RESULTS):
            tls.add(counters[LAYOUT.tls_handshakes + i], [("result", result)])
        accepted = Family("wsgiserve_connections_accepted_total", "counter",
                          "Client connections accepted by the workers")
        accepted.add(counters[LAYOUT.accepted])
        shed = Family("wsgiserve_shed_requests_total", "counter",
                      "Requests answered 503 with Retry-After because none could start "
                      "within max_queue_time (load shedding)")
        shed.add(counters[LAYOUT.shed])
        return [requests, durations, received, sent, errors, tls, accepted, shed]

    def _connection_families(self, values: CounterValues) -> list[Family]:
        gauges = values.gauges
        connections = Family("wsgiserve_connections", "gauge",
                             "Open client connections by protocol and state (sampled by "
                             "each worker four times a second)")
        for p, protocol in enumerate(CONNECTION_PROTOCOLS):
            slots = [LAYOUT.connection_slot(p, s) for s in range(len(CONNECTION_STATES))]
            if self._is_shown("connections", protocol, sum(gauges[s] for s in slots)):
                for state, slot in zip(CONNECTION_STATES, slots):
                    connections.add(gauges[slot], [("protocol", protocol), ("state", state)])
        in_app = Family("wsgiserve_requests_in_app", "gauge",
                        "Requests whose app code is running (sampled as connections are)")
        for p, protocol in enumerate(PROTOCOLS):
            count = gauges[LAYOUT.in_app + p]
            if self._is_shown("in_app", protocol, count):
                in_app.add(count, [("protocol", protocol)])
        return [connections, in_app]

    # --- the master's own view ------------------------------------------------------------

    def _worker_families(self, workers: Sequence[WorkerProcess]) -> list[Family]:
        states = Family("wsgiserve_workers", "gauge",
                        "Worker processes: booting (app not loaded yet), serving, retiring")
        booting = sum(1 for w in workers if not w.is_retiring and not w.has_booted)
        retiring = sum(1 for w in workers if w.is_retiring)
        for state, count in (("booting", booting),
                             ("serving", len(workers) - booting - retiring),
                             ("retiring", retiring)):
            states.add(count, [("state", state)])
        boots = Family("wsgiserve_worker_boots_total", "counter",
                       "Workers that loaded the app and started serving")
        boots.add(self.retained_boots + sum(1 for w in workers if w.has_booted))
        exits = Family("wsgiserve_worker_exits_total", "counter",
                       "Workers reaped, by cause: crash, timeout, max_requests, memory, "
                       "reload, stop, scale")
        for cause, count in self.exits.items():
            exits.add(count, [("cause", cause)])
        ages = Family("wsgiserve_worker_heartbeat_age_seconds", "gauge",
                      "Seconds since each live worker's last heartbeat")
        memory = Family("wsgiserve_worker_resident_memory_bytes", "gauge",
                        "Resident set size of each live worker")
        for record in sorted(workers, key=lambda w: w.worker_id):
            labels = [("worker", str(record.worker_id))]
            ages.add(round(record.heartbeat.age(), 3), labels)
            memory.add(record.resident_bytes(), labels)
        build = Family("wsgiserve_build_info", "gauge",
                       "Always 1: the wsgiserve and Python versions")
        build.add(1, [("version", __version__), ("python", platform.python_version())])
        return [states, boots, exits, ages, memory, build]


def _process_families(started_at: float) -> list[Family]:
    """The master's process metrics, with the names prometheus_client's collector uses."""
    times = os.times()
    cpu = Family("process_cpu_seconds_total", "counter",
                 "User and system CPU time of the master process")
    cpu.add(round(times.user + times.system, 3))
    start = Family("process_start_time_seconds", "gauge",
                   "Start time of the master process since the Unix epoch")
    start.add(round(started_at, 3))
    families = [cpu, start]
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = statm.read().split()
        page_bytes = resource.getpagesize()
        resident = Family("process_resident_memory_bytes", "gauge",
                          "Resident memory of the master process")
        resident.add(int(pages[1]) * page_bytes)
        virtual = Family("process_virtual_memory_bytes", "gauge",
                         "Virtual memory of the master process")
        virtual.add(int(pages[0]) * page_bytes)
        fds = Family("process_open_fds", "gauge", "Open descriptors of the master process")
        fds.add(len(os.listdir("/proc/self/fd")))
        families += [resident, virtual, fds]
    except (OSError, IndexError, ValueError):
        pass
    limit = Family("process_max_fds", "gauge", "Descriptor limit of the master process")
    limit.add(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    families.append(limit)
    return families
