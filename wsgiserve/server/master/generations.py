"""Worker generations: the one serving and, while a reload runs, the pending one.

Every reload (HUP, ``--reload``) starts a *pending* generation with the new config. Old
workers keep serving until every pending worker has booted; then the old ones are retired
with TERM. A pending worker that dies before booting fails the reload and the serving
generation carries on (gunicorn instead stops the whole server).
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence

from wsgiserve.appload import AppLoadError
from wsgiserve.config import Config, ConfigError
from wsgiserve.hooks import Hook, load_hooks
from wsgiserve.server.master import systemd
from wsgiserve.server.master.listeners import Listeners
from wsgiserve.server.master.reload import reread_config
from wsgiserve.server.master.sockets import ListenerError
from wsgiserve.server.master.startup import check_tls
from wsgiserve.server.master.workers import Generation, WorkerTable

__all__ = ["Generations"]

_log = logging.getLogger(__name__)


class Generations:
    """The serving generation (None before start-up made it) and the pending one (None
    unless a reload is under way), with the steps of a reload: start, fail, promote."""

    def __init__(self, listeners: Listeners, workers: WorkerTable, notifier: systemd.Notifier,
                 *, argv: Sequence[str], environ: Mapping[str, str] | None,
                 start_directory: str) -> None:
        self.serving: Generation | None = None
        self.pending: Generation | None = None
        self._listeners = listeners
        self._workers = workers
        self._notifier = notifier
        # What HUP re-reads: the original command line, from where it ran.
        self._argv = argv
        self._environ = environ
        self._start_directory = start_directory

    @property
    def hooks(self) -> Mapping[str, Hook]:
        return self.serving.hooks if self.serving else {}

    def all_listeners(self) -> list[socket.socket]:
        seen: list[socket.socket] = []
        for generation in (self.serving, self.pending):
            if generation is not None:
                seen += [s for s in generation.listeners if all(s is not x for x in seen)]
        return seen

    def start_pending(self, *, reread: bool, reason: str) -> Generation | None:
        """Start a pending generation (new config, code and maybe listeners); returns it,
        or None when the reload failed (logged; the running generations are unchanged)."""
        serving = self.serving
        assert serving is not None
        self._notifier.notify("RELOADING=1",
                              f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        base = self.pending or serving
        config = base.config
        if reread:
            try:
                config = reread_config(self._argv, self._environ, self._start_directory)
                hooks = load_hooks(config.hooks)
                check_tls(config)
            except (ConfigError, AppLoadError) as exc:
                _log.error("reload (%s) failed, keeping the running configuration: %s",
                             reason, exc)
                self._notifier.notify("READY=1")
                return None
        else:
            hooks = base.hooks
        try:
            listeners = self._listeners.for_reload(config, base.listeners)
        except ListenerError as exc:
            _log.error("reload (%s) failed, keeping the running listeners: %s", reason, exc)
            self._notifier.notify("READY=1")
            return None
        if self.pending is not None:
            self.abandon_pending(keep=listeners)
        number = max(serving.number, self._workers.newest_generation()) + 1
        self.pending = Generation(number, config, hooks, listeners, serving.app, reason)
        return self.pending

    def abandon_pending(self, keep: Sequence[socket.socket] = ()) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        self._workers.retire_generation(pending.number)
        self._listeners.close_unused(pending.listeners, in_use=[*keep, *self.all_listeners()])

    def fail_pending(self, generation: int, description: str) -> bool:
        """A worker of ``generation`` died before it booted: when that is the pending
        generation, the reload failed and is abandoned (True)."""
        pending = self.pending
        if pending is None or generation != pending.number:
            return False
        serving = self.serving.number if self.serving else 0
        _log.error("reload (%s) failed: a new worker %s before it booted; the %d "
                     "worker(s) of generation %d keep serving", pending.reason,
                     description, self._workers.count_active(serving), serving)
        self.abandon_pending()
        self._notifier.notify("READY=1")
        return True

    def promote(self, num_workers: int, on_switch: Callable[[Config], None]) -> None:
        """Promote the pending generation once ``num_workers`` of its workers have booted:
        ``on_switch(config)`` first (the master takes the new config), then the old workers
        retire and the listeners only they used close."""
        pending = self.pending
        if pending is None:
            return
        booted = self._workers.count_booted(pending.number)
        if booted < num_workers:
            return
        old, self.serving, self.pending = self.serving, pending, None
        on_switch(pending.config)
        self._listeners.mark_serving(pending.config)
        retired = self._workers.retire_generation(pending.number, keep=True)
        if old is not None:
            self._listeners.close_unused(old.listeners, in_use=self.all_listeners())
        _log.info("reload (%s) done: %d new worker(s) serving, %d old one(s) retiring",
                    pending.reason, booted, retired)
        self._notifier.notify("READY=1")

    def close_listeners_for_stop(self, *, unlink: bool) -> None:
        listeners = self.all_listeners()
        for generation in (self.serving, self.pending):
            if generation is not None:
                generation.listeners = []
        self._listeners.close_for_stop(listeners, unlink=unlink)
