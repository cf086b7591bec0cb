"""The signal queue of the master and of each worker: handlers only record, the main loop
(the arbiter's, the worker's housekeeping) does the work.

A handler appends the signal number to a deque and Python's C-level handler writes a byte to
a non-blocking wakeup pipe (``signal.set_wakeup_fd``), so the loop's ``select`` wakes up.
Handlers never log (logging takes locks a signal may interrupt).
"""
from __future__ import annotations

import collections
import math
import os
import select
import signal
from collections.abc import Iterable, Sequence
from types import FrameType
from typing import Final

__all__ = ["MASTER_SIGNALS", "WORKER_SIGNALS", "SignalQueue"]

# What the master acts on (gunicorn's set); CHLD only wakes the loop to reap.
MASTER_SIGNALS: Final = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGTTIN,
    signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCHLD,
)
# What a worker acts on: stop (TERM graceful; INT, QUIT fast), USR1 reopen, ABRT dump.
WORKER_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
                         signal.SIGABRT)
# Bounds the queue against a signal flood (gunicorn keeps 5); stop signals always get in.
_MAX_QUEUED: Final = 64
_STOP_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


class SignalQueue:
    """Owns the wakeup pipe and the handlers for ``MASTER_SIGNALS``."""

    def __init__(self) -> None:
        self._pending: collections.deque[int] = collections.deque()
        self._read_fd, self._write_fd = os.pipe()  # close-on-exec, as Python opens them
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._previous_wakeup_fd = -1
        self._is_installed = False

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD and (len(self._pending) < _MAX_QUEUED
                                         or signum in _STOP_SIGNALS):
            self._pending.append(signum)

    def install(self, signals: Iterable[int] = MASTER_SIGNALS) -> None:
        """Install the recording handlers and the wakeup fd (main thread only)."""
        for signum in signals:
            signal.signal(signum, self._record)
            # Restart interrupted system calls in the rest of the program (PEP 475 does this
            # for Python's own calls; this covers C extensions).
            signal.siginterrupt(signum, False)
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._is_installed = True

    def wait(self, timeout_s: float,
             watch: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
        """Sleep until a signal arrives, one of the ``watch`` descriptors is ready (pairs
        of descriptor and ``select.POLL*`` events), or ``timeout_s`` passes; then drain
        the pipe. Returns the ready ``watch`` descriptors with their events."""
        ready: list[tuple[int, int]] = []
        if watch:
            poller = select.poll()
            poller.register(self._read_fd, select.POLLIN)
            for fd, events in watch:
                poller.register(fd, events)
            timeout_ms = 0 if self._pending else math.ceil(max(0.0, timeout_s) * 1000)
            ready = [(fd, events) for fd, events in poller.poll(timeout_ms)
                     if fd != self._read_fd]
        elif not self._pending:
            try:
                select.select([self._read_fd], [], [], max(0.0, timeout_s))
            except InterruptedError:  # pragma: no cover - PEP 475 retries select
                pass
        self._drain()
        return ready

    def _drain(self) -> None:
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def push(self, signum: int) -> None:
        """Queue ``signum`` as if it had arrived, and wake the loop (from any thread)."""
        self._pending.append(signum)
        self.wake()

    def wake(self) -> None:
        """End the loop's current ``wait`` early (from any thread)."""
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the loop is waking up anyway

    def pop(self) -> int | None:
        """The oldest recorded signal, or None."""
        try:
            return self._pending.popleft()
        except IndexError:
            return None

    def restore_defaults(self, signals: Iterable[int] = MASTER_SIGNALS) -> None:
        """In a forked child: default handlers, no wakeup fd, pipe closed."""
        if self._is_installed:
            signal.set_wakeup_fd(-1)
            for signum in signals:
                signal.signal(signum, signal.SIG_DFL)
        self._pending.clear()
        self.close()

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._read_fd = self._write_fd = -1
