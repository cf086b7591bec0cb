"""The worker timeout (workers.timeout) on the worker's side: the heartbeat is withheld
while some request has run longer than the timeout, so the arbiter sends SIGABRT; on that
signal the worker writes every thread's stack to the error log, runs the worker_abort hook
and exits with EXIT_ABORTED.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final, NoReturn

from wsgiserve.server.heartbeat import Heartbeat

__all__ = ["EXIT_ABORTED", "HeartbeatGate", "dump_and_abort"]

_log = logging.getLogger(__name__)

EXIT_ABORTED: Final = 134  # 128 + SIGABRT, what a shell reports for an aborted process


class HeartbeatGate:
    """Beats the heartbeat unless a request has run for longer than the timeout."""

    def __init__(self, heartbeat: Heartbeat, timeout_s: float,
                 in_app: Mapping[object, float]) -> None:
        """``timeout_s``: workers.timeout (0: no limit); ``in_app``: when each request
        now in the app started (monotonic seconds)."""
        self._heartbeat = heartbeat
        self._timeout_s = timeout_s
        self._in_app = in_app
        self._is_hung_reported = False

    def beat(self, now: float) -> None:
        """Beat unless some request has run longer than the timeout (then the arbiter acts)."""
        timeout = self._timeout_s
        if timeout > 0:
            started = list(self._in_app.values())
            if started and now - min(started) > timeout:
                if not self._is_hung_reported:
                    self._is_hung_reported = True
                    _log.warning("A request has run for more than %.0f s; withholding the "
                                 "heartbeat", timeout)
                return
        self._is_hung_reported = False
        self._heartbeat.beat()


def dump_and_abort(worker: object, pid: int,
                   hooks: Mapping[str, Callable[..., object]]) -> NoReturn:
    """SIGABRT from the arbiter: this worker stopped beating. Say where every thread is,
    run the worker_abort hook (given ``worker``), and exit at once."""
    _log.critical("WORKER TIMEOUT (pid:%d): stacks of all threads follow", pid)
    stream = _error_log_stream()
    try:
        faulthandler.dump_traceback(file=stream, all_threads=True)
        stream.flush()
    except (OSError, ValueError):
        faulthandler.dump_traceback(file=2, all_threads=True)
    hook = hooks.get("worker_abort")
    if hook is not None:
        try:
            hook(worker)
        except Exception:  # noqa: BLE001 - aborting anyway
            _log.exception("worker_abort hook failed")
    for handler in logging.getLogger().handlers + logging.getLogger("wsgiserve").handlers:
        handler.flush()
    os._exit(EXIT_ABORTED)


def _error_log_stream() -> Any:
    """The stream the error log writes to (for faulthandler), else stderr."""
    for handler in logging.getLogger("wsgiserve").handlers + logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        if stream is not None:
            try:
                stream.fileno()
                return stream
            except (OSError, ValueError, AttributeError):
                continue
    return sys.stderr
