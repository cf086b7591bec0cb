"""The USR2 binary upgrade (nginx's): fork and exec a new master that inherits the listeners.

The child execs ``python -m wsgiserve`` with the original arguments, from the directory the
command first ran in, with the listening descriptors named in ``$WSGISERVE_FDS`` and the
status listener's in ``$WSGISERVE_METRICS_FD`` (systemd's ``LISTEN_*`` variables removed:
they were for this master). The old master's pid file moves
to ``.oldbin`` until the new master exits early, when it moves back. The operator TERMs the
old master once the new one is ready.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import NoReturn

from wsgiserve.exitcodes import EXIT_ERROR
from wsgiserve.server.master import sockets, systemd
from wsgiserve.server.master.workers import exit_description
from wsgiserve.server.master.pidfile import PidFile
from wsgiserve.server.signals import SignalQueue

__all__ = ["BinaryUpgrade"]

_log = logging.getLogger(__name__)


class BinaryUpgrade:
    """At most one new master at a time; ``new_master_pid`` is 0 when none is running."""

    def __init__(self, *, argv: Sequence[str], start_directory: str, master_pid: int) -> None:
        self._argv = list(argv)
        self._start_directory = start_directory
        self._master_pid = master_pid
        self.new_master_pid = 0

    @property
    def is_running(self) -> bool:
        """True from the fork until the new master exits: while it runs, this master stops
        without telling systemd ``STOPPING=1`` or removing the unix socket files."""
        return self.new_master_pid != 0

    def start(self, listeners: Sequence[socket.socket], pidfile: PidFile | None,
              signals: SignalQueue, status_listener: socket.socket | None = None) -> None:
        """Start the new master, or log why not (one is running, the pid file or the fork).
        ``status_listener`` (``--metrics-bind``'s) is handed over too."""
        if self.new_master_pid:
            _log.warning("SIGUSR2 ignored: new master %d is still running",
                           self.new_master_pid)
            return
        if pidfile is not None:
            try:
                pidfile.move_aside()
            except OSError as exc:
                _log.error("SIGUSR2 ignored: cannot rename %s: %s", pidfile.path, exc.strerror)
                return
        arguments = [sys.executable, "-m", "wsgiserve", *self._argv]
        try:
            pid = os.fork()
        except OSError as exc:
            _log.error("SIGUSR2 failed: cannot fork: %s", exc.strerror)
            if pidfile is not None:
                pidfile.restore()
            return
        if pid == 0:
            self._exec_new_master(arguments, listeners, signals, status_listener)
        self.new_master_pid = pid
        _log.info("SIGUSR2: started new master %d; TERM this one (%d) once it is ready",
                    pid, self._master_pid)

    def _exec_new_master(self, arguments: list[str], listeners: Sequence[socket.socket],
                         signals: SignalQueue,
                         status_listener: socket.socket | None) -> NoReturn:
        """The forked child: hand the listeners over across ``exec``; never returns."""
        try:
            signals.restore_defaults()
            environment = {k: v for k, v in os.environ.items()
                           if k not in systemd.ACTIVATION_VARIABLES}
            environment[sockets.INHERITED_FDS_VARIABLE] = sockets.export_for_exec(listeners)
            if status_listener is not None:
                environment[sockets.INHERITED_METRICS_FD_VARIABLE] = \
                    sockets.export_for_exec([status_listener])
            os.chdir(self._start_directory)
            os.execve(sys.executable, arguments, environment)
        finally:
            os._exit(EXIT_ERROR)

    def new_master_exited(self, status: int, pidfile: PidFile | None) -> None:
        """The new master died (``status`` from ``waitpid``): this master carries on."""
        _, description = exit_description(status)
        _log.error("new master %d %s; this master carries on", self.new_master_pid,
                     description)
        self.new_master_pid = 0
        if pidfile is not None:
            pidfile.restore()
