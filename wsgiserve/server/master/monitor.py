"""What ``--metrics-bind`` adds to the arbiter: the status listener served from its loop,
``/metrics`` (``metrics``), ``/healthz`` and ``/readyz`` (``probes``), and the counts of
the workers reaped.

The arbiter owns one ``Monitor`` while metrics are on and tells it little: it reads the
arbiter's state through the callables it was given, when a page is asked for.
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from wsgiserve.server.master import probes
from wsgiserve.server.master.exposition import CONTENT_TYPE
from wsgiserve.server.master.metrics import MasterMetrics
from wsgiserve.server.master.sockets import ListenerError
from wsgiserve.server.master.status_server import StatusServer, open_listener
from wsgiserve.server.master.workers import WorkerProcess
from wsgiserve.server.signals import SignalQueue

__all__ = ["Monitor"]

_log = logging.getLogger(__name__)


class Monitor:
    """The status listener and what it shows.

    Args:
        workers: the live workers, now.
        has_started: whether the first generation's workers have all booted.
        is_stopping: whether a stop (TERM, INT, QUIT) has begun.
        timeout_s: the heartbeat timeout (``--timeout``) now.
    """

    def __init__(self, *, workers: Callable[[], list[WorkerProcess]],
                 has_started: Callable[[], bool], is_stopping: Callable[[], bool],
                 timeout_s: Callable[[], float]) -> None:
        self.metrics = MasterMetrics()
        self.address = ""  # the --metrics-bind value served ("" once closed)
        self._workers = workers
        self._has_started = has_started
        self._is_stopping = is_stopping
        self._timeout_s = timeout_s
        self._server: StatusServer | None = None

    @property
    def listener(self) -> socket.socket | None:
        """The listening socket (a USR2 upgrade hands it to the new master)."""
        return self._server.sock if self._server is not None else None

    def serve(self, address: str) -> None:
        """Listen at ``address`` (instead of the current address, if any).

        Raises:
            ListenerError: ``address`` cannot be bound; the current listener stays.
        """
        server = StatusServer(open_listener(address), {
            "/metrics": self._metrics_page,
            "/healthz": self._health_page,
            "/readyz": self._readiness_page,
        })
        if self._server is not None:
            self._server.close()
        self._server = server
        self.address = address
        _log.info("Serving metrics at: %s/metrics (also /healthz, /readyz)", server.address)

    def rebind(self, address: str) -> None:
        """A reload changed ``--metrics-bind`` to ``address``: move (or, for "", close) the
        listener; if the new address cannot be bound, keep the current one."""
        if address == self.address:
            return
        if not address:
            self.close()
            return
        try:
            self.serve(address)
        except ListenerError as exc:
            _log.error("reload: cannot serve metrics at %s, keeping %s: %s", address,
                         self.address or "none", exc)

    def wait(self, signals: SignalQueue, timeout_s: float) -> None:
        """The arbiter's sleep: until a signal, a status-listener event or ``timeout_s``;
        then serve the status listener's clients."""
        server = self._server
        if server is None:
            signals.wait(timeout_s)
            return
        server.handle(signals.wait(timeout_s, server.watch()))

    def worker_exited(self, record: WorkerProcess, code: int) -> None:
        """Keep a reaped worker's counts (``code``: its ``exit_description`` code)."""
        self.metrics.worker_exited(record, record.exit_cause(code))

    def close(self, *, unlink: bool = True) -> None:
        """Stop listening (``unlink=False`` while a new master from USR2 serves on the
        same unix socket file); counting goes on."""
        if self._server is not None:
            self._server.close(unlink=unlink)
            self._server = None
        self.address = ""

    def close_in_child(self) -> None:
        """In a forked worker: drop the master's sockets."""
        if self._server is not None:
            self._server.close_in_child()
            self._server = None

    # --- the pages -------------------------------------------------------------------------

    def _metrics_page(self) -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE, self.metrics.render(self._workers())

    def _health_page(self) -> tuple[int, str, bytes]:
        stale_s = probes.stale_after_s(self._timeout_s())
        return probes.check_health(self._workers(), stale_s).answer()

    def _readiness_page(self) -> tuple[int, str, bytes]:
        return probes.check_readiness(
            self._workers(), has_started=self._has_started(),
            is_stopping=self._is_stopping(),
            stale_s=probes.stale_after_s(self._timeout_s())).answer()
