"""The arbiter: the master process that owns the listeners and the workers' lives.

It binds (or inherits) the listening sockets, forks workers, watches their heartbeats,
replaces the dead, and turns signals into deploy actions: HUP reload, USR2 upgrade,
TTIN/TTOU scaling, TERM/INT/QUIT stop. Signal handlers only record (``signals``); one loop
does the work. Imported by ``cli``; imports ``children`` (which runs the worker) and the rest

Worker generations: every reload (HUP, ``--reload``) starts a *pending* generation with the
new config. Old workers keep serving until every pending worker has booted; then the old
ones are retired with TERM. A pending worker that dies before booting fails the reload and
the serving generation carries on (gunicorn instead stops the whole server).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Final, NoReturn

from wsgiserve import config as config_module, tls
from wsgiserve.appload import AppLoadError, load_app
from wsgiserve.config import Config, ConfigError
from wsgiserve.exitcodes import EXIT_APP_LOAD, EXIT_ERROR, EXIT_OK, EXIT_USAGE
from wsgiserve.hooks import Hook, load_hooks
from wsgiserve.log import reopen_log_files
from wsgiserve.reloader import Reloader
from wsgiserve.server import sockets, systemd
from wsgiserve.server.children import (
    Generation,
    WorkerProcess,
    app_label,
    app_source_files,
    boot_worker,
    exit_description,
    resolve_ids,
    start_directory,
)
from wsgiserve.server.heartbeat import Heartbeat
from wsgiserve.server.proctitle import set_process_title
from wsgiserve.server.signals import SignalQueue

__all__ = ["Arbiter", "WorkerProcess"]

logger = logging.getLogger(__name__)

# After SIGABRT (stack dump) a stale worker gets this long to die before SIGKILL.
ABORT_GRACE_S: Final = 2.0
# INT/QUIT: workers stop at once; this is how long we wait before SIGKILL (the probes
# require the master gone within 3 s).
FAST_STOP_WAIT_S: Final = 1.0
# A worker that booted and lived this long was healthy: its death resets the backoff.
HEALTHY_LIFETIME_S: Final = 1.0
# Respawn backoff after fast deaths: doubles from the first to the last value.
FIRST_BACKOFF_S: Final = 0.1
MAX_BACKOFF_S: Final = 10.0
# Main loop tick: heartbeat checks, boot detection and STATUS updates happen this often.
TICK_S: Final = 0.1
# --reload polls file signatures this often (Reloader is stat-based).
RELOAD_POLL_S: Final = 1.0
# Each worker process shows this role in its title.
_TITLE_MASTER: Final = "master"


class Arbiter:
    """The master process. ``run()`` serves until a stop signal and returns the exit code."""

    def __init__(self, config: Config, *, argv: Sequence[str] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        # What HUP re-reads and USR2 re-executes: the original command line.
        self._argv = list(sys.argv[1:] if argv is None else argv)
        self._environ = environ
        self._start_directory = start_directory(config)
        self.pid = os.getpid()
        self.num_workers = config.workers.workers
        self.workers: dict[int, WorkerProcess] = {}
        self._signals = SignalQueue()
        self._notifier = systemd.Notifier()
        self._listener_source = "bind"
        self._serving: Generation | None = None
        self._pending: Generation | None = None
        self._next_worker_id = 1
        self._backoff_s = 0.0
        self._next_spawn_at = 0.0
        self._is_ready = False
        self._boot_failure: str | None = None
        self._upgrade_pid = 0
        self._is_upgraded_master = False
        self._pidfile = ""
        self._pidfile_original = ""
        self._status_line = ""
        self._watchdog_s = systemd.watchdog_interval_s(os.environ)
        self._next_watchdog_at = 0.0
        self._reloader: Reloader | None = None
        self._next_reload_poll_at = 0.0
        self._ids: tuple[int | None, int | None] = (None, None)
        self._bound_for: tuple[str, ...] = ()
        self._unix_paths_owned: set[str] = set()

    # --- hooks -------------------------------------------------------------------------

    def _call_hook(self, hooks: Mapping[str, Hook], name: str, *args: object) -> bool:
        hook = hooks.get(name)
        if hook is None:
            return True
        try:
            hook(*args)
        except Exception:
            logger.exception("hook %s raised", name)
            return False
        return True

    @property
    def hooks(self) -> Mapping[str, Hook]:
        return self._serving.hooks if self._serving else {}

    # --- start-up ----------------------------------------------------------------------

    def _open_listeners(self, config: Config) -> list[socket.socket]:
        """Inherit ($WSGISERVE_FDS from a USR2 parent, or systemd's) or bind ``--bind``."""
        inherited = sockets.inherited_fds(os.environ)
        os.environ.pop(sockets.INHERITED_FDS_VARIABLE, None)
        if inherited:
            self._listener_source = "upgrade"
            self._is_upgraded_master = True
            listeners = [sockets.adopt_fd(fd) for fd in inherited]
        else:
            activated = systemd.listen_fds(os.environ)
            if activated:
                self._listener_source = "systemd"
                listeners = [sockets.adopt_fd(item.fd) for item in activated]
            else:
                return self._bind_all(config, [])
        logger.info("using %d inherited listener(s) from %s; --bind is not used",
                    len(listeners), "the old master" if inherited else "systemd")
        return listeners

    def _bind_all(self, config: Config, keep: Sequence[socket.socket]) -> list[socket.socket]:
        """Listeners for ``config.server.bind``, reusing those in ``keep`` with the same
        address. Raises ListenerError with nothing new left open."""
        reusable = {sockets.listener_key(sock): sock for sock in keep}
        listeners: list[socket.socket] = []
        try:
            for text in config.server.bind:
                key = sockets.bind_key(text)
                if key is not None and key in reusable:
                    listeners.append(reusable.pop(key))
                    continue
                sock = sockets.bind(text, backlog=config.server.backlog,
                                    reuse_port=config.server.reuse_port,
                                    umask=config.server.umask)
                path = sockets.unix_path(sock)
                if path:
                    self._unix_paths_owned.add(path)
                    self._chown_unix_socket(path)
                listeners.append(sock)
        except sockets.ListenerError:
            sockets.close_listeners([s for s in listeners if s not in keep], unlink=True)
            raise
        return listeners

    def _chown_unix_socket(self, path: str) -> None:
        uid, gid = self._ids
        if uid is not None or gid is not None:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)

    def _scheme(self, config: Config) -> str:
        return "https" if config.tls.certfile else "http"

    def _write_pidfile(self, path: str) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        temporary = os.path.join(directory, f".{os.path.basename(path)}.{self.pid}.tmp")
        with open(temporary, "w", encoding="ascii") as file:
            file.write(f"{self.pid}\n")
        os.replace(temporary, path)

    def _remove_pidfile(self) -> None:
        if not self._pidfile:
            return
        try:
            with open(self._pidfile, encoding="ascii") as file:
                is_ours = file.read().strip() == str(self.pid)
            if is_ours:
                os.unlink(self._pidfile)
        except OSError:
            pass

    def _start(self) -> int | None:
        """Everything before the first fork; returns an exit code if start-up failed."""
        config = self.config
        set_process_title(_TITLE_MASTER, app_label(config))
        if config.server.umask:
            os.umask(config.server.umask)
        try:
            self._ids = resolve_ids(config)
            hooks = load_hooks(config.hooks)
            tls.check_config(config.tls)  # TLSConfigError is a ConfigError naming the file
        except ConfigError as exc:
            logger.error("%s", exc)
            return EXIT_USAGE
        except AppLoadError as exc:
            logger.error("cannot load a hook: %s", exc)
            return EXIT_APP_LOAD
        self._signals.install()
        try:
            listeners = self._open_listeners(config)
        except (sockets.ListenerError, ValueError) as exc:
            logger.error("cannot listen: %s", exc)
            return EXIT_ERROR
        self._bound_for = config.server.bind
        app = None
        if config.server.preload:
            try:
                app = load_app(config.server.app)
            except AppLoadError as exc:
                logger.error("cannot load the app: %s", exc)
                sockets.close_listeners(listeners, unlink=self._listener_source == "bind")
                return EXIT_APP_LOAD
        self._serving = Generation(1, config, hooks, listeners, app, reason="start")
        for sock in listeners:
            logger.info("Listening at: %s (%d)", sockets.describe(sock, scheme=self._scheme(config)),
                        self.pid)
        if config.server.pid:
            self._pidfile = self._pidfile_original = config.server.pid
            try:
                self._write_pidfile(self._pidfile)
            except OSError as exc:
                logger.error("cannot write the pid file %s: %s", self._pidfile, exc.strerror)
                sockets.close_listeners(listeners, unlink=self._listener_source == "bind")
                return EXIT_ERROR
        if config.server.reload:
            if config.server.preload:
                logger.warning("--reload with --preload restarts workers but cannot load "
                               "new app code")
            extra = [*app_source_files(config.server.app), *config.server.reload_extra_files]
            self._reloader = Reloader(extra, watch_modules=config.server.preload)
        logger.info("master %d starting %d worker(s) for %s", self.pid, self.num_workers,
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
                logger.error("%s; stopping", self._boot_failure)
                self._stop(graceful=False)
                return EXIT_APP_LOAD
            self._check_heartbeats()
            self._advance_generations()
            self._maintain_worker_count()
            self._poll_reloader()
            self._tell_systemd()
            self._signals.wait(self._sleep_s())

    def _sleep_s(self) -> float:
        now = time.monotonic()
        sleep_s = TICK_S
        if self._next_spawn_at > now:
            sleep_s = min(sleep_s, self._next_spawn_at - now)
        return sleep_s

    def _handle_signals(self) -> bool | None:
        """Act on queued signals; returns True/False to stop gracefully/fast, else None."""
        while (signum := self._signals.pop()) is not None:
            if signum == signal.SIGTERM:
                return True
            if signum in (signal.SIGINT, signal.SIGQUIT):
                return False
            if signum == signal.SIGHUP:
                logger.info("SIGHUP: reloading")
                self._reload(reread=True, reason="HUP")
            elif signum == signal.SIGTTIN:
                self.num_workers += 1
                logger.info("SIGTTIN: %d worker(s)", self.num_workers)
            elif signum == signal.SIGTTOU:
                self.num_workers = max(1, self.num_workers - 1)
                logger.info("SIGTTOU: %d worker(s)", self.num_workers)
            elif signum == signal.SIGUSR1:
                count = reopen_log_files()
                logger.info("SIGUSR1: reopened %d log file(s)", count)
                self._signal_workers(signal.SIGUSR1, retire=False)
            elif signum == signal.SIGUSR2:
                self._upgrade()
            elif signum == signal.SIGWINCH:
                logger.info("SIGWINCH: stopping all workers gracefully (the master stays)")
                self.num_workers = 0
                self._signal_workers(signal.SIGTERM, retire=True)
        return None

    # --- workers -----------------------------------------------------------------------

    def _spawn_worker(self, generation: Generation) -> None:
        config = generation.config
        heartbeat = Heartbeat()
        record = WorkerProcess(self._next_worker_id, generation.number, heartbeat, config,
                               time.monotonic())
        self._next_worker_id += 1
        if not self._call_hook(generation.hooks, "pre_fork", self, record):
            heartbeat.close()
            self._delay_next_spawn()
            return
        try:
            pid = os.fork()
        except OSError as exc:
            logger.error("cannot fork a worker: %s", exc.strerror)
            heartbeat.close()
            self._delay_next_spawn()
            return
        if pid == 0:
            self._run_worker(record, generation)
        record.pid = pid
        self.workers[pid] = record
        logger.info("booting worker %d (pid %d, generation %d)", record.worker_id, pid,
                    generation.number)

    def _run_worker(self, record: WorkerProcess, generation: Generation) -> NoReturn:
        """The forked child: shed the master's state, then boot the worker; never returns."""
        try:
            record.pid = os.getpid()
            self._signals.restore_defaults()
            self._notifier.close()
            for other in self.workers.values():
                other.heartbeat.close()
            self.workers = {}
            for stale in self._all_listeners():
                if all(stale is not sock for sock in generation.listeners):
                    stale.close()
        except BaseException:
            os._exit(EXIT_ERROR)
        boot_worker(record, generation, ids=self._ids,
                    post_fork=lambda: self._call_hook(generation.hooks, "post_fork", self, record))

    def _all_listeners(self) -> list[socket.socket]:
        seen: list[socket.socket] = []
        for generation in (self._serving, self._pending):
            if generation is not None:
                seen += [s for s in generation.listeners if all(s is not x for x in seen)]
        return seen

    def _delay_next_spawn(self) -> None:
        self._backoff_s = min(MAX_BACKOFF_S, max(FIRST_BACKOFF_S, self._backoff_s * 2))
        self._next_spawn_at = time.monotonic() + self._backoff_s

    def _send(self, record: WorkerProcess, signum: int) -> None:
        try:
            os.kill(record.pid, signum)
        except ProcessLookupError:
            pass

    def _retire(self, record: WorkerProcess, signum: int = signal.SIGTERM) -> None:
        if record.stop_sent_at is None:
            record.stop_sent_at = time.monotonic()
            self._send(record, signum)

    def _signal_workers(self, signum: int, *, retire: bool) -> None:
        for record in list(self.workers.values()):
            if retire:
                self._retire(record, signum)
            else:
                self._send(record, signum)

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
            if pid == self._upgrade_pid:
                self._upgrade_child_exited(status)
                continue
            record = self.workers.pop(pid, None)
            if record is not None:
                self._worker_exited(record, status)

    def _worker_exited(self, record: WorkerProcess, status: int) -> None:
        code, description = exit_description(status)
        record.check_booted()
        record.heartbeat.close()
        lifetime = time.monotonic() - record.spawned_at
        name = f"worker {record.worker_id} (pid {record.pid})"
        if record.abort_sent_at is not None:
            logger.error("%s %s after a timeout (its stack is in the log above)", name,
                         description)
        elif record.stop_sent_at is not None:
            logger.info("%s %s", name, description)
        elif code == EXIT_OK:
            logger.info("%s exited (max requests reached or master changed)", name)
        elif code == signal.SIGKILL * -1:
            logger.error("%s %s; perhaps out of memory?", name, description)
        else:
            logger.error("%s %s", name, description)
        if record.stop_sent_at is not None or code == EXIT_OK:
            return
        if not record.has_booted:
            self._boot_failed(record, code, description)
        if record.has_booted and lifetime >= HEALTHY_LIFETIME_S:
            self._backoff_s = 0.0
            self._next_spawn_at = 0.0
        else:
            self._delay_next_spawn()

    def _boot_failed(self, record: WorkerProcess, code: int, description: str) -> None:
        pending = self._pending
        if pending is not None and record.generation == pending.number:
            serving = self._serving.number if self._serving else 0
            logger.error("reload (%s) failed: a new worker %s before it booted; the %d "
                         "worker(s) of generation %d keep serving", pending.reason,
                         description, self._count(serving), serving)
            self._abandon_pending()
            self._notifier.notify("READY=1")
        elif code == EXIT_APP_LOAD and not self._is_ready:
            self._boot_failure = (f"worker {record.worker_id} failed to boot ({description}): "
                                  "the app or a hook cannot be loaded, see the error above")

    def _count(self, generation: int) -> int:
        return sum(1 for w in self.workers.values()
                   if w.generation == generation and not w.is_retiring)

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        for record in list(self.workers.values()):
            record.check_booted()
            timeout_s = record.config.workers.timeout
            if record.kill_sent_at is not None:
                continue
            if record.abort_sent_at is not None:
                if now - record.abort_sent_at >= ABORT_GRACE_S:
                    logger.critical("worker %d (pid %d) did not die on SIGABRT: SIGKILL",
                                    record.worker_id, record.pid)
                    record.kill_sent_at = now
                    self._send(record, signal.SIGKILL)
                continue
            # The graceful timeout; a worker that goes silent meanwhile is caught below.
            if record.stop_sent_at is not None and \
                    now - record.stop_sent_at >= record.config.workers.graceful_timeout + 1.0:
                logger.warning("worker %d (pid %d) still running %.0f s after TERM: SIGKILL",
                               record.worker_id, record.pid, now - record.stop_sent_at)
                record.kill_sent_at = now
                self._send(record, signal.SIGKILL)
                continue
            if timeout_s > 0 and record.heartbeat.age() > timeout_s:
                logger.critical("WORKER TIMEOUT: worker %d (pid %d) silent for %.1f s; "
                                "SIGABRT dumps its stacks", record.worker_id, record.pid,
                                record.heartbeat.age())
                record.abort_sent_at = now
                self._send(record, signal.SIGABRT)

    def _maintain_worker_count(self) -> None:
        for generation in (self._serving, self._pending):
            if generation is None:
                continue
            active = sorted((w for w in self.workers.values()
                             if w.generation == generation.number and not w.is_retiring),
                            key=lambda w: w.spawned_at)
            while len(active) > self.num_workers:
                oldest = active.pop(0)
                logger.info("retiring worker %d (pid %d)", oldest.worker_id, oldest.pid)
                self._retire(oldest)
            missing = self.num_workers - len(active)
            while missing > 0 and time.monotonic() >= self._next_spawn_at:
                self._spawn_worker(generation)
                missing -= 1

    # --- reload ------------------------------------------------------------------------

    def _reload(self, *, reread: bool, reason: str) -> None:
        """Start a pending generation (new config, code and maybe listeners)."""
        serving = self._serving
        assert serving is not None
        self._notifier.notify("RELOADING=1",
                              f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        base = self._pending or serving
        config = base.config
        if reread:
            try:
                config = self._reread_config()
                hooks = load_hooks(config.hooks)
                tls.check_config(config.tls)
            except (ConfigError, AppLoadError) as exc:
                logger.error("reload (%s) failed, keeping the running configuration: %s",
                             reason, exc)
                self._notifier.notify("READY=1")
                return
        else:
            hooks = base.hooks
        try:
            listeners = self._listeners_for(config, base.listeners)
        except sockets.ListenerError as exc:
            logger.error("reload (%s) failed, keeping the running listeners: %s", reason, exc)
            self._notifier.notify("READY=1")
            return
        if self._pending is not None:
            self._abandon_pending(keep=listeners)
        number = max(serving.number, max((w.generation for w in self.workers.values()),
                                         default=0)) + 1
        self._pending = Generation(number, config, hooks, listeners, serving.app, reason)
        self.num_workers = config.workers.workers if reread else max(self.num_workers, 1)
        self._backoff_s = 0.0
        self._next_spawn_at = 0.0
        self._call_hook(hooks, "on_reload", self)

    def _reread_config(self) -> Config:
        here = os.getcwd()
        os.chdir(self._start_directory)
        try:
            config = config_module.load(self._argv, self._environ)
        finally:
            os.chdir(here)
        if config.server.chdir:
            os.chdir(os.path.join(self._start_directory, config.server.chdir))
        for directory in reversed(config.server.pythonpath):
            directory = os.path.abspath(directory)
            if directory not in sys.path:
                sys.path.insert(0, directory)
        for pair in config.server.env:
            name, _, value = pair.partition("=")
            os.environ[name] = value
        return config

    def _listeners_for(self, config: Config,
                       current: list[socket.socket]) -> list[socket.socket]:
        if self._listener_source != "bind" or config.server.bind == self._bound_for:
            return current
        logger.info("bind changed: %s -> %s", ", ".join(self._bound_for),
                    ", ".join(config.server.bind))
        listeners = self._bind_all(config, current)
        for sock in listeners:
            logger.info("Listening at: %s (%d)",
                        sockets.describe(sock, scheme=self._scheme(config)), self.pid)
        return listeners

    def _abandon_pending(self, keep: Sequence[socket.socket] = ()) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        for record in self.workers.values():
            if record.generation == pending.number:
                self._retire(record)
        self._close_unused_listeners(pending.listeners, keep)

    def _close_unused_listeners(self, candidates: Sequence[socket.socket],
                                keep: Sequence[socket.socket] = ()) -> None:
        in_use = [*keep, *(self._serving.listeners if self._serving else []),
                  *(self._pending.listeners if self._pending else [])]
        unused = [s for s in candidates if all(s is not x for x in in_use)]
        for sock in unused:
            path = sockets.unix_path(sock)
            if path:
                self._unix_paths_owned.discard(path)
        sockets.close_listeners(unused, unlink=True)

    def _advance_generations(self) -> None:
        """Promote the pending generation once all its workers have booted."""
        pending = self._pending
        if pending is None:
            return
        booted = [w for w in self.workers.values()
                  if w.generation == pending.number and not w.is_retiring and w.has_booted]
        if len(booted) < self.num_workers:
            return
        old, self._serving, self._pending = self._serving, pending, None
        self.config = pending.config
        if pending.config.server.bind != self._bound_for and self._listener_source == "bind":
            self._bound_for = pending.config.server.bind
        retired = 0
        for record in self.workers.values():
            if record.generation != pending.number and not record.is_retiring:
                self._retire(record)
                retired += 1
        if old is not None:
            self._close_unused_listeners(old.listeners)
        logger.info("reload (%s) done: %d new worker(s) serving, %d old one(s) retiring",
                    pending.reason, len(booted), retired)
        self._notifier.notify("READY=1")

    def _poll_reloader(self) -> None:
        if self._reloader is None or time.monotonic() < self._next_reload_poll_at:
            return
        self._next_reload_poll_at = time.monotonic() + RELOAD_POLL_S
        changed = self._reloader.changed()
        if changed:
            logger.info("changed: %s; restarting workers", ", ".join(changed[:5]))
            self._reload(reread=False, reason="--reload")

    # --- USR2 upgrade -------------------------------------------------------------------

    def _upgrade(self) -> None:
        """Fork and exec a new master that inherits the listeners (nginx's binary upgrade)."""
        if self._upgrade_pid:
            logger.warning("SIGUSR2 ignored: new master %d is still running", self._upgrade_pid)
            return
        if self._pidfile:
            oldbin = self._pidfile_original + ".oldbin"
            try:
                os.replace(self._pidfile, oldbin)
                self._pidfile = oldbin
            except OSError as exc:
                logger.error("SIGUSR2 ignored: cannot rename %s: %s", self._pidfile, exc.strerror)
                return
        listeners = self._serving.listeners if self._serving else []
        arguments = [sys.executable, "-m", "wsgiserve", *self._argv]
        try:
            pid = os.fork()
        except OSError as exc:
            logger.error("SIGUSR2 failed: cannot fork: %s", exc.strerror)
            self._restore_pidfile()
            return
        if pid == 0:
            try:
                self._signals.restore_defaults()
                environment = {k: v for k, v in os.environ.items()
                               if k not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
                environment[sockets.INHERITED_FDS_VARIABLE] = sockets.export_for_exec(listeners)
                os.chdir(self._start_directory)
                os.execve(sys.executable, arguments, environment)
            finally:
                os._exit(EXIT_ERROR)
        self._upgrade_pid = pid
        logger.info("SIGUSR2: started new master %d; TERM this one (%d) once it is ready",
                    pid, self.pid)

    def _upgrade_child_exited(self, status: int) -> None:
        _, description = exit_description(status)
        logger.error("new master %d %s; this master carries on", self._upgrade_pid, description)
        self._upgrade_pid = 0
        self._restore_pidfile()
        self._notifier.notify(f"MAINPID={self.pid}")

    def _restore_pidfile(self) -> None:
        """Undo the ``.oldbin`` rename after a failed upgrade."""
        if self._pidfile and self._pidfile != self._pidfile_original:
            try:
                self._write_pidfile(self._pidfile_original)
                os.unlink(self._pidfile)
            except OSError as exc:
                logger.error("cannot restore the pid file: %s", exc.strerror)
            self._pidfile = self._pidfile_original

    # --- systemd -----------------------------------------------------------------------

    def _tell_systemd(self) -> None:
        serving = self._serving.number if self._serving else 0
        booted = sum(1 for w in self.workers.values()
                     if w.generation == serving and w.has_booted and not w.is_retiring)
        if not self._is_ready and booted >= self.num_workers and self._pending is None:
            self._is_ready = True
            logger.info("ready: %d worker(s) serving", booted)
            fields = ["READY=1"]
            if self._is_upgraded_master:
                fields.insert(0, f"MAINPID={self.pid}")
            self._notifier.notify(*fields)
            self._call_hook(self.hooks, "when_ready", self)
        booting = sum(1 for w in self.workers.values() if not w.has_booted and not w.is_retiring)
        retiring = sum(1 for w in self.workers.values() if w.is_retiring)
        status = f"STATUS={booted} worker(s) serving, {booting} booting, {retiring} stopping"
        if status != self._status_line and self._notifier.is_enabled:
            self._status_line = status
            self._notifier.notify(status)
        self._ping_watchdog()

    def _ping_watchdog(self) -> None:
        now = time.monotonic()
        if self._watchdog_s is not None and now >= self._next_watchdog_at:
            self._notifier.notify("WATCHDOG=1")
            self._next_watchdog_at = now + self._watchdog_s

    # --- stop --------------------------------------------------------------------------

    def _stop(self, *, graceful: bool) -> int:
        """Numbered shutdown under one deadline. 1: tell systemd; 2: close the listeners so
        new connections are refused; 3: TERM (graceful) or QUIT (fast) the workers; 4: wait
        for them; 5: SIGKILL stragglers; 6: on_exit, pid file."""
        handed_over = self._upgrade_pid != 0
        if not handed_over:
            self._notifier.notify("STOPPING=1")
        logger.info("%s stop: %d worker(s)", "graceful" if graceful else "fast", len(self.workers))
        self._close_listeners_for_stop(unlink=not handed_over)
        signum = signal.SIGTERM if graceful else signal.SIGQUIT
        for record in self.workers.values():
            record.stop_sent_at = time.monotonic()
            self._send(record, signum)
        wait_s = self.config.workers.graceful_timeout if graceful else FAST_STOP_WAIT_S
        deadline = time.monotonic() + wait_s
        while self.workers and time.monotonic() < deadline:
            self._reap_workers()
            if not self.workers:
                break
            self._ping_watchdog()  # a long graceful stop is not a hang
            self._signals.wait(min(TICK_S, max(0.0, deadline - time.monotonic())))
            while (pending_signal := self._signals.pop()) is not None:
                if graceful and pending_signal in (signal.SIGINT, signal.SIGQUIT):
                    logger.info("fast stop requested during graceful stop")
                    graceful = False
                    for record in self.workers.values():
                        self._send(record, signal.SIGQUIT)
                    deadline = min(deadline, time.monotonic() + FAST_STOP_WAIT_S)
        self._kill_remaining()
        self._call_hook(self.hooks, "on_exit", self)
        self._remove_pidfile()
        logger.info("master %d exiting", self.pid)
        return EXIT_OK

    def _close_listeners_for_stop(self, *, unlink: bool) -> None:
        listeners = self._all_listeners()
        for generation in (self._serving, self._pending):
            if generation is not None:
                generation.listeners = []
        for sock in listeners:
            path = sockets.unix_path(sock)
            owned = bool(path) and path in self._unix_paths_owned or \
                self._listener_source == "upgrade"
            sockets.close_listeners([sock], unlink=unlink and owned)

    def _kill_remaining(self) -> None:
        for record in self.workers.values():
            logger.warning("worker %d (pid %d) did not stop in time: SIGKILL",
                           record.worker_id, record.pid)
            self._send(record, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while self.workers and time.monotonic() < deadline:
            self._reap_workers()
            if self.workers:
                time.sleep(0.01)
        for record in self.workers.values():
            record.heartbeat.close()
        self.workers.clear()
