"""A worker's metrics in shared memory: the worker counts in place, the master reads.

The master creates one ``WorkerCounters`` per worker before forking it (like its
``Heartbeat``): an anonymous shared mapping of 64-bit slots, so counting in the worker is a
store into memory (no system call, no lock) and reading it in the master a load. A request
costs one increment (its slot stands for its protocol, method, status class and duration
bucket at once); its duration and bytes are summed in the worker and flushed each tick.

A worker's threads share one region while the GIL is on: an increment of a memoryview
item (``ints[i] += 1``: a subscript, an add and a store, all in C) is never interrupted
by another thread, as CPython 3.11+ hands the GIL over only at calls, function starts and
backward jumps (the tests check: eight threads, no increment lost, with a 1 us switch
interval). Without a GIL (free-threaded CPython) each thread counts in a region of its own,
claimed on its first count: one for each serving thread, one for the worker's main thread
(timeouts, the stop sequence) and a last one shared by any further thread; the lookup of
the thread's region costs about 0.5 us a request, which the GIL makes unnecessary. Gauges
(open connections, requests in the app) are a block written by the worker's main thread
alone.

How a protocol reports (HTTP/1.1 does; HTTP/2 and WebSocket will): with its index in
``PROTOCOLS``, ``Recorder.request_done`` when a request's response is finished or
abandoned, ``Recorder.protocol_error`` for every error answer the server gives for the
client's mistake, and a ``protocol_name`` attribute (a value of ``CONNECTION_PROTOCOLS``)
on the protocol object, by which the worker's gauges count its connections.
"""
from __future__ import annotations

import array
import bisect
import mmap
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CONNECTION_PROTOCOLS",
    "CONNECTION_STATES",
    "DURATION_BUCKETS_S",
    "H2",
    "HAS_GIL",
    "HTTP1",
    "METHODS",
    "PROTOCOLS",
    "PROTOCOL_ERROR_STATUSES",
    "STATUS_CLASSES",
    "TLS_RESULTS",
    "WEBSOCKET",
    "CounterValues",
    "Layout",
    "Recorder",
    "WorkerCounters",
]

# --- what is counted, and the label values ---------------------------------------------

# The protocols requests are served over, as the ``protocol`` label spells them (ALPN ids).
PROTOCOLS: Final = ("http/1.1", "h2", "websocket")
HTTP1: Final = 0
H2: Final = 1
WEBSOCKET: Final = 2
# A connection's protocol: one of the above, or "preamble" while a PROXY header or a TLS
# handshake comes first and the protocol is not known yet.
CONNECTION_PROTOCOLS: Final = (*PROTOCOLS, "preamble")
CONNECTION_STATES: Final = ("handshaking", "reading", "active", "idle", "closing")
# RFC 9110's methods minus CONNECT and TRACE (which no WSGI app serves); the rest are
# "other", so a client cannot grow the label set.
METHODS: Final = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other")
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Upper bounds of the request duration histogram: prometheus_client's default buckets,
# which dashboards made for other Python servers assume.
DURATION_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
                             2.5, 5.0, 7.5, 10.0)
# The statuses the server answers a client's protocol error with (http.errors); any other
# is counted as "other".
PROTOCOL_ERROR_STATUSES: Final = (400, 408, 413, 414, 417, 431, 501, 505)
TLS_RESULTS: Final = ("ok", "failed")

_ERROR_INDEX: Final = {status: i for i, status in enumerate(PROTOCOL_ERROR_STATUSES)}
_BUCKETS: Final = len(DURATION_BUCKETS_S) + 1  # the last one: above every bound
_SLOT_BYTES: Final = 8
# Python 3.13+ may run without the GIL (sys._is_gil_enabled); before, it always has one.
HAS_GIL: Final[bool] = getattr(sys, "_is_gil_enabled", lambda: True)()


@dataclass(frozen=True)
class Layout:
    """Where each counter lives in a region, and where the gauges live.

    A request is one increment: its slot is its protocol, method, status class and
    duration bucket at once (the master sums it into ``wsgiserve_requests_total`` and the
    duration histogram). Integer slots (``q``) and float slots (``d``, the duration sums)
    share the index space of one region: a slot is one or the other, never both.
    """

    requests: int = 0  # [protocol][method][status class][duration bucket]
    duration_sums: int = requests + len(PROTOCOLS) * len(METHODS) * len(STATUS_CLASSES) \
        * _BUCKETS  # float
    received_bytes: int = duration_sums + len(PROTOCOLS)
    sent_bytes: int = received_bytes + len(PROTOCOLS)
    protocol_errors: int = sent_bytes + len(PROTOCOLS)  # [protocol][status or other]
    tls_handshakes: int = protocol_errors + len(PROTOCOLS) * (len(PROTOCOL_ERROR_STATUSES) + 1)
    accepted: int = tls_handshakes + len(TLS_RESULTS)
    shed: int = accepted + 1  # requests answered 503 by load shedding
    region_slots: int = shed + 1
    # The gauge block (after the regions): [connection protocol][state], then in-app
    # requests [protocol].
    connections: int = 0
    in_app: int = connections + len(CONNECTION_PROTOCOLS) * len(CONNECTION_STATES)
    gauge_slots: int = in_app + len(PROTOCOLS)

    def request_slot(self, protocol: int, method: int, status_class: int,
                     bucket: int = 0) -> int:
        return self.requests + ((protocol * len(METHODS) + method) * len(STATUS_CLASSES)
                                + status_class) * _BUCKETS + bucket

    def protocol_error_slot(self, protocol: int, status_index: int) -> int:
        return self.protocol_errors + protocol * (len(PROTOCOL_ERROR_STATUSES) + 1) \
            + status_index

    def connection_slot(self, protocol: int, state: int) -> int:
        return self.connections + protocol * len(CONNECTION_STATES) + state

    @property
    def float_slots(self) -> range:
        return range(self.duration_sums, self.duration_sums + len(PROTOCOLS))


LAYOUT: Final = Layout()

# The request path's offsets, computed once from LAYOUT.
_METHOD_OFFSET: Final = {name.encode("ascii"): LAYOUT.request_slot(0, i, 0)
                         for i, name in enumerate(METHODS[:-1])}
_OTHER_METHOD_OFFSET: Final = LAYOUT.request_slot(0, len(METHODS) - 1, 0)
# The parser's method is a new bytes object each request: comparing it with b"GET" first
# spares the commonest method hashing it for the dict (about 380 instructions, callgrind).
_GET_OFFSET: Final = _METHOD_OFFSET[b"GET"]
# A status code's class by its first digit (codes are three digits: worker.heads checks);
# an app's odd 6xx-9xx counts as 5xx.
_CLASS_OFFSET: Final = tuple(LAYOUT.request_slot(0, 0, c) for c in (4, 0, 1, 2, 3, 4, 4, 4, 4, 4))
# The same by the whole code: a tuple subscript instead of a division, on the request path.
_STATUS_OFFSET: Final = tuple(_CLASS_OFFSET[status // 100] for status in range(1000))
_REQUESTS: Final = tuple(LAYOUT.request_slot(p, 0, 0) for p in range(len(PROTOCOLS)))
_FIRST_BOUND_S: Final = DURATION_BUCKETS_S[0]
# Module globals: one lookup each on the request path, no attribute access.
_bisect = bisect.bisect_left
_monotonic = time.monotonic
_SUMS: Final = tuple(LAYOUT.duration_sums + p for p in range(len(PROTOCOLS)))
_RECEIVED: Final = tuple(LAYOUT.received_bytes + p for p in range(len(PROTOCOLS)))
_SENT: Final = tuple(LAYOUT.sent_bytes + p for p in range(len(PROTOCOLS)))


@dataclass(frozen=True)
class CounterValues:
    """One reading of a worker's counters (summed over its regions) and gauges, indexed
    as ``LAYOUT`` says. The master adds these up across workers."""

    counters: list[float]  # ints, except the float slots
    gauges: list[int]

    @classmethod
    def zero(cls) -> CounterValues:
        return cls([0] * LAYOUT.region_slots, [0] * LAYOUT.gauge_slots)

    def add(self, other: CounterValues) -> None:
        self.counters[:] = [a + b for a, b in zip(self.counters, other.counters)]
        self.gauges[:] = [a + b for a, b in zip(self.gauges, other.gauges)]


class WorkerCounters:
    """The shared memory of one worker's metrics: ``regions`` counting regions, then the
    gauges. Created by the master before the fork; read by ``read()`` in the master.

    ``per_thread`` (without a GIL) gives each of ``threads`` serving threads a region,
    plus one for the main thread and one for the rest; else all share one.
    """

    __slots__ = ("regions", "_memory", "ints", "floats")

    def __init__(self, threads: int, *, per_thread: bool = not HAS_GIL) -> None:
        self.regions = max(1, threads) + 2 if per_thread else 1
        size = (self.regions * LAYOUT.region_slots + LAYOUT.gauge_slots) * _SLOT_BYTES
        self._memory = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
        self.ints = memoryview(self._memory).cast("q")
        self.floats = memoryview(self._memory).cast("d")

    def region(self, index: int) -> tuple[memoryview[int], memoryview[float]]:
        """The integer and float views of region ``index`` (slots indexed from 0)."""
        start = index * LAYOUT.region_slots
        end = start + LAYOUT.region_slots
        return self.ints[start:end], self.floats[start:end]

    @property
    def gauges(self) -> memoryview[int]:
        start = self.regions * LAYOUT.region_slots
        return self.ints[start:start + LAYOUT.gauge_slots]

    def read(self) -> CounterValues:
        """The counters summed over the regions, and the gauges (master side).

        Each 8-byte slot is aligned, so a slot being written is read whole: old or new.
        """
        size = LAYOUT.region_slots
        end = self.regions * size
        ints = self.ints.tolist()
        floats = self.floats[:end].tolist()
        totals: list[float] = [sum(ints[i:end:size]) for i in range(size)]
        for i in LAYOUT.float_slots:
            totals[i] = sum(floats[i:end:size])
        return CounterValues(totals, ints[end:])

    def close(self) -> None:
        self.ints.release()
        self.floats.release()
        self._memory.close()


class _Region:
    """A counting region as the threads counting into it see it: its integer and float
    views, and the sums added up since the last flush, by protocol."""

    # Slots, not a SimpleNamespace: reading them is specialised (LOAD_ATTR_SLOT), about
    # 500 instructions less a request (callgrind).
    __slots__ = ("ints", "floats", "durations", "received", "sent")

    def __init__(self, views: tuple[memoryview[int], memoryview[float]]) -> None:
        self.ints, self.floats = views
        self.durations = [0.0] * len(PROTOCOLS)
        # Integers, not floats: int + int is specialised, int + float is not.
        self.received = [0] * len(PROTOCOLS)
        self.sent = [0] * len(PROTOCOLS)


class Recorder:
    """The worker's side: counts into its ``WorkerCounters``, in the one region (with the
    GIL) or in each thread's own.

    Every method is cheap enough for the request path and never blocks: with regions per
    thread, a thread takes a lock once, on its first count, to claim its region. Counts go
    to shared memory at once (a worker that crashes loses none); the durations' sum and
    the bytes each way are added up in plain Python first and written by ``flush``, which
    the worker's main thread calls every housekeeping tick and as the worker exits (a
    memoryview store costs several times a list's: a crash loses at most a tick of sums).
    """

    __slots__ = ("_counters", "_local", "_claim_lock", "_next_region", "_regions")

    def __init__(self, counters: WorkerCounters) -> None:
        self._counters = counters
        self._claim_lock = threading.Lock()
        self._next_region = 0
        self._regions: list[_Region] = []  # each region claimed, for flush
        # The counting methods read ``ints`` and the sums on ``self._local``: the one
        # region itself, or a threading.local holding those of the thread's own region
        # (claimed on its first count).
        self._local: threading.local | _Region
        if counters.regions > 1:
            self._local = threading.local()
        else:
            self._local = _Region(counters.region(0))
            self._regions.append(self._local)

    def _claim(self) -> memoryview[int]:
        with self._claim_lock:
            index = min(self._next_region, self._counters.regions - 1)
            self._next_region += 1
            region = _Region(self._counters.region(index))
            self._regions.append(region)
        local = self._local
        local.ints = region.ints
        local.durations, local.received, local.sent = \
            region.durations, region.received, region.sent
        return region.ints

    def flush(self) -> None:
        """Write the sums added up since the last flush to shared memory (main thread)."""
        for region in self._regions:
            ints, floats = region.ints, region.floats
            for protocol in range(len(PROTOCOLS)):
                duration = region.durations[protocol]
                received = region.received[protocol]
                sent = region.sent[protocol]
                # Taken out before they are added in: a request thread adding meanwhile
                # keeps its addition for the next flush.
                region.durations[protocol] -= duration
                region.received[protocol] -= received
                region.sent[protocol] -= sent
                if duration:
                    floats[_SUMS[protocol]] += duration
                if received:
                    ints[_RECEIVED[protocol]] += received
                if sent:
                    ints[_SENT[protocol]] += sent

    def request_done(self, protocol: int, method: bytes, duration_s: float, status: int,
                     received_bytes: int, sent_bytes: int) -> None:
        """A request's response is finished (or abandoned): count it.

        Args:
            protocol: its index in ``PROTOCOLS``.
            method: the request's method.
            duration_s: from its head to the end of its response.
            status: the status code sent.
            received_bytes, sent_bytes: the request's and the response's body bytes.
        """
        local = self._local
        try:
            ints = local.ints
        except AttributeError:
            ints = self._claim()
        ints[_REQUESTS[protocol]
             + (_GET_OFFSET if method == b"GET"
                else _METHOD_OFFSET.get(method, _OTHER_METHOD_OFFSET))
             + _STATUS_OFFSET[status]
             + (0 if duration_s <= _FIRST_BOUND_S else _bisect(DURATION_BUCKETS_S, duration_s))
             ] += 1
        local.durations[protocol] += duration_s
        if received_bytes:
            local.received[protocol] += received_bytes
        if sent_bytes:
            local.sent[protocol] += sent_bytes

    def protocol_error(self, protocol: int, status: int) -> None:
        """The server answered ``status`` to a client's protocol error (and closes)."""
        try:
            ints = self._local.ints
        except AttributeError:
            ints = self._claim()
        index = _ERROR_INDEX.get(status, len(PROTOCOL_ERROR_STATUSES))
        ints[LAYOUT.protocol_error_slot(protocol, index)] += 1

    def tls_handshake(self, is_ok: bool) -> None:
        """A TLS handshake completed (``is_ok``) or failed, timed out or met plain HTTP."""
        try:
            ints = self._local.ints
        except AttributeError:
            ints = self._claim()
        ints[LAYOUT.tls_handshakes + (0 if is_ok else 1)] += 1

    def connections_accepted(self, count: int) -> None:
        try:
            ints = self._local.ints
        except AttributeError:
            ints = self._claim()
        ints[LAYOUT.accepted] += count

    def request_shed(self) -> None:
        """A request was answered 503 by load shedding (also counted by ``request_done``)."""
        try:
            ints = self._local.ints
        except AttributeError:
            ints = self._claim()
        ints[LAYOUT.shed] += 1

    def set_gauges(self, values: Sequence[int]) -> None:
        """Store the gauge block (``LAYOUT.gauge_slots`` values); main thread only."""
        self._counters.gauges[:] = array.array("q", values)
