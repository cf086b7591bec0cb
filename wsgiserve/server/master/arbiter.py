"""The arbiter: the master process that owns the listeners and the workers' lives.

It binds (or inherits) the listening sockets, forks workers, watches their heartbeats,
replaces the dead, and turns signals into deploy actions: HUP reload, USR2 upgrade,
TTIN/TTOU scaling, TERM/INT/QUIT stop. Signal handlers only record (``signals``); one loop
does the work. It delegates to small collaborators: ``workers`` (the worker table),
``spawn`` (the forked child's boot), ``generations`` (HUP and ``--reload``: the pending
generation, its failure or promotion), ``listeners`` (open, rebind, close), ``reload``
(config re-read, file watch), ``upgrade`` (USR2), ``shutdown`` (stopping the workers),
``pidfile`` and ``systemd``; with ``--metrics-bind``, ``monitor`` (the status listener,
served from this loop).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Final, NoReturn

from wsgiserve.appload import AppLoadError, load_app
from wsgiserve.config import Config, ConfigError
from wsgiserve.exitcodes import EXIT_APP_LOAD, EXIT_ERROR, EXIT_OK, EXIT_USAGE
from wsgiserve.hooks import Hook, load_hooks
from wsgiserve.log import reopen_log_files, report_gauge
from wsgiserve.server.counters import WorkerCounters
from wsgiserve.server.heartbeat import Heartbeat
from wsgiserve.server.master import systemd
from wsgiserve.server.master.generations import Generations
from wsgiserve.server.master.listeners import Listeners
from wsgiserve.server.master.monitor import Monitor
from wsgiserve.server.master.pidfile import PidFile
from wsgiserve.server.master.proctitle import set_process_title
from wsgiserve.server.master.reload import CodeWatcher
from wsgiserve.server.master.shutdown import stop_workers
from wsgiserve.server.master.sockets import ListenerError
from wsgiserve.server.master.spawn import boot_worker
from wsgiserve.server.master.startup import app_label, check_tls, resolve_ids, start_directory
from wsgiserve.server.master.upgrade import BinaryUpgrade
from wsgiserve.server.master.workers import (
    Generation,
    RespawnBackoff,
    WorkerProcess,
    WorkerTable,
    exit_description,
)
from wsgiserve.server.signals import SignalQueue
from wsgiserve.statsd import WORKERS

__all__ = ["Arbiter", "WorkerProcess"]

_log = logging.getLogger(__name__)

# A worker that booted and lived this long was healthy: its death resets the backoff.
HEALTHY_LIFETIME_S: Final = 1.0
# Main loop tick: heartbeat checks, boot detection and STATUS updates happen this often.
TICK_S: Final = 0.1
# Each worker process shows this role in its title.
_TITLE_MASTER: Final = "master"
# How often workers' resident memory is compared with max_worker_memory.
MEMORY_CHECK_S: Final = 1.0


class Arbiter:
    """The master process. ``run()`` serves until a stop signal and returns the exit code."""

    def __init__(self, config: Config, *, argv: Sequence[str] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        # What HUP re-reads and USR2 re-executes: the original command line.
        self._argv = list(sys.argv[1:] if argv is None else argv)
        self._start_directory = start_directory(config)
        self.pid = os.getpid()
        self.num_workers = config.workers.workers
        self.workers = WorkerTable()
        self._signals = SignalQueue()
        self._notifier = systemd.Notifier()
        self._watchdog = systemd.Watchdog(self._notifier)
        self._listeners = Listeners(self.pid)
        self._upgrade = BinaryUpgrade(argv=self._argv, start_directory=self._start_directory,
                                      master_pid=self.pid)
        self._pidfile: PidFile | None = None
        self._generations = Generations(self._listeners, self.workers, self._notifier,
                                        argv=self._argv, environ=environ,
                                        start_directory=self._start_directory)
        self._next_worker_id = 1
        self._backoff = RespawnBackoff()
        self._is_ready = False
        self._boot_failure: str | None = None
        self._code_watcher: CodeWatcher | None = None
        self._ids: tuple[int | None, int | None] = (None, None)
        self._monitor: Monitor | None = None  # --metrics-bind (None: off)
        self._is_stopping = False  # /readyz answers 503 from the stop signal on
        self._next_memory_check = 0.0

    # --- hooks -------------------------------------------------------------------------

    def _call_hook(self, hooks: Mapping[str, Hook], name: str, *args: object) -> bool:
        hook = hooks.get(name)
        if hook is None:
            return True
        try:
            hook(*args)
        except Exception:
            _log.exception("hook %s raised", name)
            return False
        return True

    @property
    def hooks(self) -> Mapping[str, Hook]:
        return self._generations.hooks

    # --- start-up ----------------------------------------------------------------------

    def _start(self) -> int | None:
        """Everything before the first fork; returns an exit code if start-up failed."""
        config = self.config
        set_process_title(_TITLE_MASTER, app_label(config))
        if config.server.umask:
            os.umask(config.server.umask)
        try:
            self._ids = resolve_ids(config)
            hooks = load_hooks(config.hooks)
            check_tls(config)  # TLSConfigError is a ConfigError naming the file
        except ConfigError as exc:
            _log.error("%s", exc)
            return EXIT_USAGE
        except AppLoadError as exc:
            _log.error("cannot load a hook: %s", exc)
            return EXIT_APP_LOAD
        self._signals.install()
        try:
            listeners = self._listeners.open(config, ids=self._ids)
        except (ListenerError, ValueError) as exc:
            _log.error("cannot listen: %s", exc)
            return EXIT_ERROR
        app = None
        if config.server.preload:
            try:
                app = load_app(config.server.app)
            except AppLoadError as exc:
                _log.error("cannot load the app: %s", exc)
                self._listeners.close_after_failed_start(listeners)
                return EXIT_APP_LOAD
        self._generations.serving = Generation(1, config, hooks, listeners, app, reason="start")
        self._listeners.log_listening(listeners, config)
        if config.metrics.metrics_bind:
            try:
                self._start_monitor().serve(config.metrics.metrics_bind)
            except ListenerError as exc:
                _log.error("cannot serve metrics: %s", exc)
                self._listeners.close_after_failed_start(listeners)
                return EXIT_ERROR
        if config.server.pid:
            self._pidfile = PidFile(config.server.pid, self.pid)
            try:
                self._pidfile.write()
            except OSError as exc:
                _log.error("cannot write the pid file %s: %s", self._pidfile.path, exc.strerror)
                self._listeners.close_after_failed_start(listeners)
                return EXIT_ERROR
        if config.server.reload:
            self._code_watcher = CodeWatcher(config)
        _log.info("master %d starting %d worker(s) for %s", self.pid, self.num_workers,
                    app_label(config))
        self._call_hook(hooks, "on_starting", self)
        return None

    # --- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped. Returns ``EXIT_OK`` after TERM/INT/QUIT, ``EXIT_APP_LOAD``
        when the first workers cannot load the app, ``EXIT_ERROR``/``EXIT_USAGE`` when the
        listeners, pid file, user or hooks are wrong."""
        failure = self._start()
        if failure is not None:
            self._notifier.close()
            return failure
        try:
            return self._loop()
        finally:
            self._notifier.close()

    def _loop(self) -> int:
        while True:
            is_graceful = self._handle_signals()
            if is_graceful is not None:
                return self._stop(graceful=is_graceful)
            self._reap_workers()
            if self._boot_failure is not None:
                _log.error("%s; stopping", self._boot_failure)
                self._stop(graceful=False)
                return EXIT_APP_LOAD
            self._check_heartbeats()
            self._check_memory()
            self._generations.promote(self.num_workers, self._switch_config)
            self._maintain_worker_count()
            self._poll_reloader()
            self._tell_systemd()
            self._wait(self._sleep_s())

    def _wait(self, timeout_s: float) -> None:
        """Sleep until a signal (or a status-listener event) or ``timeout_s``."""
        if self._monitor is None:
            self._signals.wait(timeout_s)
        else:
            self._monitor.wait(self._signals, timeout_s)

    def _sleep_s(self) -> float:
        now = time.monotonic()
        sleep_s = TICK_S
        if self._backoff.next_spawn_at > now:
            sleep_s = min(sleep_s, self._backoff.next_spawn_at - now)
        return sleep_s

    def _handle_signals(self) -> bool | None:
        """Act on queued signals; returns True/False to stop gracefully/fast, else None."""
        while (signum := self._signals.pop()) is not None:
            if signum == signal.SIGTERM:
                return True
            if signum in (signal.SIGINT, signal.SIGQUIT):
                return False
            if signum == signal.SIGHUP:
                _log.info("SIGHUP: reloading")
                self._reload(reread=True, reason="HUP")
            elif signum == signal.SIGTTIN:
                self.num_workers += 1
                _log.info("SIGTTIN: %d worker(s)", self.num_workers)
            elif signum == signal.SIGTTOU:
                self.num_workers = max(1, self.num_workers - 1)
                _log.info("SIGTTOU: %d worker(s)", self.num_workers)
            elif signum == signal.SIGUSR1:
                count = reopen_log_files()
                _log.info("SIGUSR1: reopened %d log file(s)", count)
                self._signal_workers(signal.SIGUSR1, retire=False)
            elif signum == signal.SIGUSR2:
                serving = self._generations.serving
                self._upgrade.start(serving.listeners if serving else [],
                                    self._pidfile, self._signals,
                                    self._monitor.listener if self._monitor else None)
            elif signum == signal.SIGWINCH:
                _log.info("SIGWINCH: stopping all workers gracefully (the master stays)")
                self.num_workers = 0
                self._signal_workers(signal.SIGTERM, retire=True)
        return None

    # --- metrics, health and readiness -------------------------------------------------

    def _start_monitor(self) -> Monitor:
        if self._monitor is None:
            self._monitor = Monitor(
                workers=lambda: list(self.workers), has_started=lambda: self._is_ready,
                is_stopping=lambda: self._is_stopping,
                timeout_s=lambda: self.config.workers.timeout)
        return self._monitor

    # --- workers -----------------------------------------------------------------------

    def _spawn_worker(self, generation: Generation) -> None:
        config = generation.config
        heartbeat = Heartbeat()
        record = WorkerProcess(self._next_worker_id, generation.number, heartbeat, config,
                               time.monotonic())
        if self._monitor is not None or config.metrics.metrics_bind:
            # (With a reload that turns metrics on, the monitor starts with the new workers.)
            record.counters = WorkerCounters(config.workers.threads)
        self._next_worker_id += 1
        if not self._call_hook(generation.hooks, "pre_fork", self, record):
            _release(record)
            self._backoff.delay()
            return
        try:
            pid = os.fork()
        except OSError as exc:
            _log.error("cannot fork a worker: %s", exc.strerror)
            _release(record)
            self._backoff.delay()
            return
        if pid == 0:
            self._run_worker(record, generation)
        record.pid = pid
        self.workers.add(record)
        _log.info("booting worker %d (pid %d, generation %d)", record.worker_id, pid,
                    generation.number)

    def _run_worker(self, record: WorkerProcess, generation: Generation) -> NoReturn:
        """The forked child: shed the master's state, then boot the worker; never returns."""
        try:
            record.pid = os.getpid()
            self._signals.restore_defaults()
            self._notifier.close()
            if self._monitor is not None:
                self._monitor.close_in_child()
            for other in self.workers:
                _release(other)
            self.workers = WorkerTable()
            for stale in self._generations.all_listeners():
                if all(stale is not sock for sock in generation.listeners):
                    stale.close()
        except BaseException:
            os._exit(EXIT_ERROR)
        boot_worker(record, generation, ids=self._ids, arbiter=self,
                    post_fork=lambda: self._call_hook(generation.hooks, "post_fork", self, record))

    def _signal_workers(self, signum: int, *, retire: bool) -> None:
        for record in self.workers:
            if retire:
                record.retire("stop", signum)
            else:
                record.send(signum)

    def _reap_workers(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            if pid == 0:
                return
            if pid == self._upgrade.new_master_pid:
                self._upgrade.new_master_exited(status, self._pidfile)
                self._notifier.notify(f"MAINPID={self.pid}")
                continue
            record = self.workers.pop(pid)
            if record is not None:
                self._worker_exited(record, status)

    def _worker_exited(self, record: WorkerProcess, status: int) -> None:
        code, description = exit_description(status)
        record.check_booted()
        if self._monitor is not None:
            self._monitor.worker_exited(record, code)
        _release(record)
        lifetime = time.monotonic() - record.spawned_at
        record.log_exit(code, description)
        if record.stop_sent_at is not None or code == EXIT_OK:
            return
        if not record.has_booted:
            self._boot_failed(record, code, description)
        if record.has_booted and lifetime >= HEALTHY_LIFETIME_S:
            self._backoff.reset()
        else:
            self._backoff.delay()

    def _boot_failed(self, record: WorkerProcess, code: int, description: str) -> None:
        if self._generations.fail_pending(record.generation, description):
            return
        if code == EXIT_APP_LOAD and not self._is_ready:
            self._boot_failure = (f"worker {record.worker_id} failed to boot ({description}): "
                                  "the app or a hook cannot be loaded, see the error above")

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        for record in self.workers:
            record.check_booted()
            record.enforce_timeouts(now)

    def _maintain_worker_count(self) -> None:
        for generation in (self._generations.serving, self._generations.pending):
            if generation is None:
                continue
            active = self.workers.active(generation.number)
            while len(active) > self.num_workers:
                oldest = active.pop(0)
                _log.info("retiring worker %d (pid %d)", oldest.worker_id, oldest.pid)
                oldest.retire("scale")
            missing = self.num_workers - len(active)
            while missing > 0 and time.monotonic() >= self._backoff.next_spawn_at:
                self._spawn_worker(generation)
                missing -= 1

    def _check_memory(self) -> None:
        """Once a second, mark the workers over max_worker_memory: no longer counted as
        active, each gets a replacement from ``_maintain_worker_count``; each retires
        gracefully once its generation is complete again (as after max_requests)."""
        now = time.monotonic()
        if now >= self._next_memory_check:
            self._next_memory_check = now + MEMORY_CHECK_S
            self.workers.mark_over_memory(now)
        self.workers.retire_replaced(self.num_workers, now)

    # --- reload ------------------------------------------------------------------------

    def _reload(self, *, reread: bool, reason: str) -> None:
        """Start a pending generation (new config, code and maybe listeners)."""
        pending = self._generations.start_pending(reread=reread, reason=reason)
        if pending is None:
            return
        self.num_workers = pending.config.workers.workers if reread else max(self.num_workers, 1)
        self._backoff.reset()
        self._call_hook(pending.hooks, "on_reload", self)

    def _switch_config(self, config: Config) -> None:
        """A reload's generation now serves: the master takes its config."""
        self.config = config
        if self._monitor is not None:
            self._monitor.rebind(config.metrics.metrics_bind)
        elif config.metrics.metrics_bind:
            try:
                self._start_monitor().serve(config.metrics.metrics_bind)
            except ListenerError as exc:
                _log.error("reload: cannot serve metrics: %s", exc)

    def _poll_reloader(self) -> None:
        changed = self._code_watcher.changed() if self._code_watcher else []
        if changed:
            _log.info("changed: %s; restarting workers", ", ".join(changed[:5]))
            self._reload(reread=False, reason="--reload")

    # --- systemd -----------------------------------------------------------------------

    def _tell_systemd(self) -> None:
        serving = self._generations.serving
        booted = self.workers.count_booted(serving.number if serving else 0)
        if not self._is_ready and booted >= self.num_workers and self._generations.pending is None:
            self._is_ready = True
            _log.info("ready: %d worker(s) serving", booted)
            fields = ["READY=1"]
            if self._listeners.is_from_old_master:
                fields.insert(0, f"MAINPID={self.pid}")
            self._notifier.notify(*fields)
            self._call_hook(self.hooks, "when_ready", self)
        booting = self.workers.count_booting()
        retiring = self.workers.count_retiring()
        self._notifier.notify_status(
            f"{booted} worker(s) serving, {booting} booting, {retiring} stopping")
        self._watchdog.ping()
        report_gauge(WORKERS, len(self.workers))  # StatsD, when on

    # --- stop --------------------------------------------------------------------------

    def _stop(self, *, graceful: bool) -> int:
        """Numbered shutdown under one deadline. 0: /readyz turns 503; 1: tell systemd;
        2: close the listeners so new connections are refused; 3: TERM (graceful) or QUIT
        (fast) the workers; 4: wait for them (the status listener still answers); 5: SIGKILL
        stragglers, close the status listener; 6: on_exit, pid file."""
        # 0: /readyz answers 503 from now on, before the listeners close, and while the
        # workers drain; after USR2 the new master (sharing the status listener) answers.
        self._is_stopping = True
        handed_over = self._upgrade.is_running
        if handed_over and self._monitor is not None:
            self._monitor.close(unlink=False)
        if not handed_over:
            self._notifier.notify("STOPPING=1")
        _log.info("%s stop: %d worker(s)", "graceful" if graceful else "fast", len(self.workers))
        self._generations.close_listeners_for_stop(unlink=not handed_over)
        stop_workers(self.workers, graceful=graceful,
                     graceful_timeout_s=self.config.workers.graceful_timeout, tick_s=TICK_S,
                     reap=self._reap_workers, wait=self._wait, signals=self._signals,
                     watchdog=self._watchdog)
        for record in self.workers:
            _release(record)
        self.workers.clear()
        if self._monitor is not None:
            self._monitor.close()
        self._call_hook(self.hooks, "on_exit", self)
        if self._pidfile is not None:
            self._pidfile.remove()
        _log.info("master %d exiting", self.pid)
        return EXIT_OK


def _release(record: WorkerProcess) -> None:
    """Unmap a worker's heartbeat and counters (it is gone, or in a forked child)."""
    record.heartbeat.close()
    if record.counters is not None:
        record.counters.close()
        record.counters = None
