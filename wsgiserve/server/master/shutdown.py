"""How the master stops its workers: steps 3 to 5 of its numbered stop sequence.

TERM (graceful) or QUIT (fast) every worker, wait for them under one deadline (INT or QUIT
meanwhile turns a graceful stop fast), then SIGKILL the stragglers. The master's loop
keeps the steps around these (readiness, listeners, hooks, pid file).
"""
from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Final

from wsgiserve.server.master import systemd
from wsgiserve.server.master.workers import WorkerTable
from wsgiserve.server.signals import SignalQueue

__all__ = ["FAST_STOP_WAIT_S", "stop_workers"]

_log = logging.getLogger(__name__)

# INT/QUIT: workers stop at once; this is how long we wait before SIGKILL (the probes
# require the master gone within 3 s).
FAST_STOP_WAIT_S: Final = 1.0


def stop_workers(workers: WorkerTable, *, graceful: bool, graceful_timeout_s: float,
                 tick_s: float, reap: Callable[[], None], wait: Callable[[float], None],
                 signals: SignalQueue, watchdog: systemd.Watchdog) -> None:
    """Signal every worker to stop and wait up to ``graceful_timeout_s`` (graceful) or
    FAST_STOP_WAIT_S, reaping them with ``reap`` and sleeping in ``wait`` (at most
    ``tick_s`` at a time, so the status listener still answers); then SIGKILL the rest
    and wait 2 s more for them. Workers still in ``workers`` afterwards did not exit."""
    signum = signal.SIGTERM if graceful else signal.SIGQUIT
    for record in workers:
        record.stop_sent_at = time.monotonic()
        record.stop_cause = record.stop_cause or "stop"
        record.send(signum)
    wait_s = graceful_timeout_s if graceful else FAST_STOP_WAIT_S
    deadline = time.monotonic() + wait_s
    while workers and time.monotonic() < deadline:
        reap()
        if not workers:
            break
        watchdog.ping()  # a long graceful stop is not a hang
        wait(min(tick_s, max(0.0, deadline - time.monotonic())))
        while (pending_signal := signals.pop()) is not None:
            if graceful and pending_signal in (signal.SIGINT, signal.SIGQUIT):
                _log.info("fast stop requested during graceful stop")
                graceful = False
                for record in workers:
                    record.send(signal.SIGQUIT)
                deadline = min(deadline, time.monotonic() + FAST_STOP_WAIT_S)
    _kill_remaining(workers, reap)


def _kill_remaining(workers: WorkerTable, reap: Callable[[], None]) -> None:
    for record in workers:
        _log.warning("worker %d (pid %d) did not stop in time: SIGKILL",
                       record.worker_id, record.pid)
        record.send(signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while workers and time.monotonic() < deadline:
        reap()
        if workers:
            time.sleep(0.01)
