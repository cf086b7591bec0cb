"""Health and readiness, as the status listener's ``/healthz`` and ``/readyz`` answer them.

Health (a liveness probe): the master answers, and at least one booted worker has beaten
within the heartbeat timeout. Readiness (may traffic be sent here?): the first workers
have booted, the master is not stopping, and at least one worker is serving (booted, not
retiring, beating). Each answer is 200 or 503 with one line saying why.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from wsgiserve.server.master.workers import WorkerProcess

__all__ = ["Probe", "check_health", "check_readiness", "stale_after_s"]

# With --timeout 0 (no heartbeat timeout) a worker silent this long is not counted as
# alive: the default timeout.
DEFAULT_STALE_AFTER_S: Final = 30.0
_TEXT: Final = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Probe:
    is_ok: bool
    reason: str

    def answer(self) -> tuple[int, str, bytes]:
        """The status listener's answer: 200 or 503, and the reason as the body."""
        return (200 if self.is_ok else 503), _TEXT, (self.reason + "\n").encode("utf-8")


def stale_after_s(timeout_s: float) -> float:
    """How old a heartbeat may be for its worker to count as alive (``--timeout``)."""
    return timeout_s if timeout_s > 0 else DEFAULT_STALE_AFTER_S


def _is_beating(record: WorkerProcess, stale_s: float) -> bool:
    return record.has_booted and record.heartbeat.age() < stale_s


def check_health(workers: Sequence[WorkerProcess], stale_s: float) -> Probe:
    beating = sum(1 for w in workers if _is_beating(w, stale_s))
    if beating:
        return Probe(True, f"ok: {beating} worker(s) beating")
    if not any(w.has_booted for w in workers):
        return Probe(False, f"unhealthy: no worker has booted ({len(workers)} booting)")
    return Probe(False, f"unhealthy: no worker has beaten in the last {stale_s:g} s")


def check_readiness(workers: Sequence[WorkerProcess], *, has_started: bool,
                    is_stopping: bool, stale_s: float) -> Probe:
    if is_stopping:
        return Probe(False, "not ready: stopping, in-flight requests are draining")
    if not has_started:
        booted = sum(1 for w in workers if w.has_booted and not w.is_retiring)
        return Probe(False, f"not ready: starting, {booted} of {len(workers)} worker(s) "
                            "booted")
    serving = sum(1 for w in workers if not w.is_retiring and _is_beating(w, stale_s))
    if not serving:
        return Probe(False, "not ready: no worker is serving")
    return Probe(True, f"ready: {serving} worker(s) serving")
