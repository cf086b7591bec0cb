"""What the master records of its workers: one ``WorkerProcess`` per child, the
``WorkerTable`` that answers "how many are active / booted / retiring in a generation",
the ``Generation`` they belong to, and ``RespawnBackoff`` pacing replacements.

A ``WorkerProcess`` also applies the timeouts: SIGABRT when its heartbeat goes stale,
SIGKILL when it outlives that or TERM. It says why it exited (``exit_cause``: one of
``EXIT_CAUSES``) and how much memory it holds (``resident_bytes``).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final
from wsgiref.types import WSGIApplication

from wsgiserve.config import Config
from wsgiserve.exitcodes import EXIT_OK
from wsgiserve.hooks import Hook
from wsgiserve.server.counters import WorkerCounters
from wsgiserve.server.heartbeat import Heartbeat

__all__ = [
    "EXIT_CAUSES",
    "Generation",
    "RespawnBackoff",
    "WorkerProcess",
    "WorkerTable",
    "exit_description",
]

_log = logging.getLogger(__name__)

# After SIGABRT (stack dump) a stale worker gets this long to die before SIGKILL.
ABORT_GRACE_S: Final = 2.0
# A worker still running this long after TERM and its graceful timeout gets SIGKILL.
_STOP_GRACE_S: Final = 1.0
# Respawn backoff after fast deaths: doubles from the first to the last value.
FIRST_BACKOFF_S: Final = 0.1
MAX_BACKOFF_S: Final = 10.0
# Why a worker exited, as /metrics counts it: it crashed (or was killed unasked), its
# heartbeat stopped, it reached max_requests, it outgrew max_worker_memory, a reload
# replaced it, the master stopped it (TERM/INT/QUIT to the master, WINCH), or TTOU (or a
# smaller worker count on reload) scaled it away.
EXIT_CAUSES: Final = ("crash", "timeout", "max_requests", "memory", "reload", "stop", "scale")
# A worker over max_worker_memory retires once its replacement has booted, or after this
# long if none boots (a leak must not outlive a broken deploy for ever).
MEMORY_REPLACEMENT_WAIT_S: Final = 30.0
_PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")
_MIB: Final = 1 << 20


@dataclass(eq=False)
class WorkerProcess:
    """What the arbiter knows of one worker; hooks receive it as ``worker``."""

    worker_id: int
    generation: int
    heartbeat: Heartbeat
    config: Config
    spawned_at: float
    pid: int = 0
    has_booted: bool = False
    stop_sent_at: float | None = None
    abort_sent_at: float | None = None
    kill_sent_at: float | None = None
    # Its metrics in shared memory (None: metrics are off).
    counters: WorkerCounters | None = None
    # Why the master asked it to stop (an EXIT_CAUSES value), set with the first request.
    stop_cause: str | None = None
    # When it was found over max_worker_memory: a replacement boots, then it retires.
    replace_requested_at: float | None = None

    @property
    def is_retiring(self) -> bool:
        return self.stop_sent_at is not None or self.abort_sent_at is not None

    @property
    def is_leaving(self) -> bool:
        """Retiring, or about to once its replacement has booted: no longer counted as
        one of its generation's workers."""
        return self.is_retiring or self.replace_requested_at is not None

    def exit_cause(self, code: int) -> str:
        """Why it exited with ``code`` (``exit_description``'s): an ``EXIT_CAUSES`` value."""
        if self.stop_cause is not None:
            return self.stop_cause
        if self.abort_sent_at is not None:
            return "timeout"
        return "max_requests" if code == EXIT_OK else "crash"

    def resident_bytes(self) -> int:
        """Its resident set size (pages shared with the master included); 0 once gone."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * _PAGE_BYTES
        except (OSError, IndexError, ValueError):
            return 0

    def check_booted(self) -> bool:
        """True once the child has beaten after fork (it beats when its app is loaded)."""
        if not self.has_booted:
            last_beat = time.monotonic() - self.heartbeat.age()
            self.has_booted = last_beat > self.spawned_at
        return self.has_booted

    def send(self, signum: int) -> None:
        """Send ``signum``; a worker that has exited but is not yet reaped is ignored."""
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def retire(self, cause: str, signum: int = signal.SIGTERM) -> None:
        """Ask the worker to stop with ``signum`` for ``cause`` (an ``EXIT_CAUSES``
        value), once: later calls do nothing."""
        if self.stop_sent_at is None:
            self.stop_sent_at = time.monotonic()
            self.stop_cause = self.stop_cause or cause
            self.send(signum)

    def log_exit(self, code: int, description: str) -> None:
        """Log the exit reaped with ``code`` (``exit_description``): info when it was asked
        for or clean, error for a timeout, a crash or a kill."""
        name = f"worker {self.worker_id} (pid {self.pid})"
        if self.abort_sent_at is not None:
            _log.error("%s %s after a timeout (its stack is in the log above)", name,
                         description)
        elif self.stop_sent_at is not None:
            _log.info("%s %s", name, description)
        elif code == EXIT_OK:
            _log.info("%s exited (max requests reached or master changed)", name)
        elif code == signal.SIGKILL * -1:
            _log.error("%s %s; perhaps out of memory?", name, description)
        else:
            _log.error("%s %s", name, description)

    def enforce_timeouts(self, now: float) -> None:
        """SIGABRT a worker silent for longer than its timeout (it dumps its stacks), then
        SIGKILL it if it outlives that by ``ABORT_GRACE_S``; SIGKILL a worker still running
        a second after TERM and its graceful timeout. Each signal is sent once."""
        timeout_s = self.config.workers.timeout
        if self.kill_sent_at is not None:
            return
        if self.abort_sent_at is not None:
            if now - self.abort_sent_at >= ABORT_GRACE_S:
                _log.critical("worker %d (pid %d) did not die on SIGABRT: SIGKILL",
                                self.worker_id, self.pid)
                self.kill_sent_at = now
                self.send(signal.SIGKILL)
            return
        # The graceful timeout; a worker that goes silent meanwhile is caught below.
        if self.stop_sent_at is not None and \
                now - self.stop_sent_at >= self.config.workers.graceful_timeout + _STOP_GRACE_S:
            _log.warning("worker %d (pid %d) still running %.0f s after TERM: SIGKILL",
                           self.worker_id, self.pid, now - self.stop_sent_at)
            self.kill_sent_at = now
            self.send(signal.SIGKILL)
            return
        if timeout_s > 0 and self.heartbeat.age() > timeout_s:
            _log.critical("WORKER TIMEOUT: worker %d (pid %d) silent for %.1f s; "
                            "SIGABRT dumps its stacks", self.worker_id, self.pid,
                            self.heartbeat.age())
            self.abort_sent_at = now
            self.send(signal.SIGABRT)


class WorkerTable:
    """The live workers by pid, and the counts the arbiter decides from.

    "Active" means not leaving (no TERM or SIGABRT sent, no replacement asked for);
    "booted" means the worker has beaten since its fork (its app is loaded). Counts are
    per generation.
    """

    def __init__(self) -> None:
        self._by_pid: dict[int, WorkerProcess] = {}

    def __len__(self) -> int:
        return len(self._by_pid)

    def __iter__(self) -> Iterator[WorkerProcess]:
        return iter(list(self._by_pid.values()))

    def __contains__(self, pid: object) -> bool:
        return pid in self._by_pid

    def add(self, record: WorkerProcess) -> None:
        self._by_pid[record.pid] = record

    def pop(self, pid: int) -> WorkerProcess | None:
        return self._by_pid.pop(pid, None)

    def clear(self) -> None:
        self._by_pid.clear()

    def active(self, generation: int) -> list[WorkerProcess]:
        """The generation's workers that are not leaving, oldest first."""
        return sorted((w for w in self._by_pid.values()
                       if w.generation == generation and not w.is_leaving),
                      key=lambda w: w.spawned_at)

    def count_active(self, generation: int) -> int:
        return sum(1 for w in self._by_pid.values()
                   if w.generation == generation and not w.is_leaving)

    def count_booted(self, generation: int) -> int:
        """Active workers of the generation that have booted (checked now)."""
        return sum(1 for w in self._by_pid.values()
                   if w.generation == generation and not w.is_leaving and w.check_booted())

    def count_booting(self) -> int:
        return sum(1 for w in self._by_pid.values() if not w.is_retiring and not w.has_booted)

    def count_retiring(self) -> int:
        return sum(1 for w in self._by_pid.values() if w.is_retiring)

    def newest_generation(self) -> int:
        return max((w.generation for w in self._by_pid.values()), default=0)

    def mark_over_memory(self, now: float) -> None:
        """Mark each booted worker whose resident memory passed its max_worker_memory
        (logged once): it is leaving, and its generation gets a replacement."""
        for record in self._by_pid.values():
            limit_mib = record.config.workers.max_worker_memory
            if limit_mib and record.has_booted and not record.is_leaving:
                resident = record.resident_bytes()
                if resident > limit_mib * _MIB:
                    _log.warning("worker %d (pid %d) uses %d MiB, over max_worker_memory "
                                   "(%d MiB): starting its replacement, then retiring it",
                                   record.worker_id, record.pid, resident // _MIB, limit_mib)
                    record.replace_requested_at = now

    def retire_replaced(self, wanted: int, now: float) -> None:
        """Retire (TERM) each marked worker once its generation has ``wanted`` booted
        workers without it, or ``MEMORY_REPLACEMENT_WAIT_S`` after it was marked."""
        for record in list(self._by_pid.values()):
            marked_at = record.replace_requested_at
            if marked_at is not None and not record.is_retiring and (
                    self.count_booted(record.generation) >= wanted
                    or now - marked_at >= MEMORY_REPLACEMENT_WAIT_S):
                record.retire("memory")

    def retire_generation(self, generation: int, *, keep: bool = False) -> int:
        """Retire (TERM) the workers of ``generation``, or with ``keep`` those of every
        other generation, for a reload. Returns how many were retired."""
        retired = 0
        for record in list(self._by_pid.values()):
            if (record.generation == generation) != keep and not record.is_retiring:
                record.retire("reload")
                retired += 1
        return retired


@dataclass(eq=False)
class Generation:
    """One configuration of workers: what they run and where they listen."""

    number: int
    config: Config
    hooks: Mapping[str, Hook]
    listeners: list[socket.socket]
    app: WSGIApplication | None = None
    reason: str = ""


class RespawnBackoff:
    """When the next worker may be forked. Each ``delay()`` (a fast death, a failed fork or
    ``pre_fork``) waits longer, from ``FIRST_BACKOFF_S`` doubling up to ``MAX_BACKOFF_S``;
    ``reset()`` (a healthy worker's death, a reload) allows a fork at once."""

    def __init__(self) -> None:
        self._backoff_s = 0.0
        self.next_spawn_at = 0.0

    def delay(self) -> None:
        self._backoff_s = min(MAX_BACKOFF_S, max(FIRST_BACKOFF_S, self._backoff_s * 2))
        self.next_spawn_at = time.monotonic() + self._backoff_s

    def reset(self) -> None:
        self._backoff_s = 0.0
        self.next_spawn_at = 0.0


def exit_description(status: int) -> tuple[int, str]:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return code, f"was killed by {name}"
    return code, f"exited with status {code}"
