"""The master's children: what the arbiter records of each worker, and the worker's boot.

``boot_worker`` runs in the forked child: title, privileges, ``post_fork``, app import, the
first heartbeat (which tells the arbiter the worker booted), then ``Worker.run()`` and
``os._exit``. A ``WorkerProcess`` also applies the timeouts (SIGABRT when its heartbeat
goes stale, SIGKILL when it outlives that or TERM) and ``RespawnBackoff`` paces replacements
after fast deaths. Also the small process helpers the arbiter uses (exit statuses, ids, the
directory the command ran in). Imported by ``server.arbiter`` and its helpers only; imports
``server.worker``.
"""
from __future__ import annotations

import grp
import importlib.util
import logging
import os
import pwd
import random
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, NoReturn
from wsgiref.types import WSGIApplication

from wsgiserve.appload import DEMO_APP, AppLoadError, load_app
from wsgiserve.config import Config, ConfigError
from wsgiserve.exitcodes import EXIT_APP_LOAD, EXIT_ERROR, EXIT_OK
from wsgiserve.hooks import Hook
from wsgiserve.server.heartbeat import Heartbeat
from wsgiserve.server.proctitle import set_process_title
from wsgiserve.server.worker import Worker

__all__ = [
    "Generation",
    "RespawnBackoff",
    "WorkerProcess",
    "app_label",
    "app_source_files",
    "boot_worker",
    "drop_privileges",
    "exit_description",
    "resolve_ids",
    "start_directory",
]

logger = logging.getLogger(__name__)

_TITLE_WORKER: Final = "worker"
# After SIGABRT (stack dump) a stale worker gets this long to die before SIGKILL.
ABORT_GRACE_S: Final = 2.0
# A worker still running this long after TERM and its graceful timeout gets SIGKILL.
_STOP_GRACE_S: Final = 1.0
# Respawn backoff after fast deaths: doubles from the first to the last value.
FIRST_BACKOFF_S: Final = 0.1
MAX_BACKOFF_S: Final = 10.0


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

    @property
    def is_retiring(self) -> bool:
        return self.stop_sent_at is not None or self.abort_sent_at is not None

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

    def retire(self, signum: int = signal.SIGTERM) -> None:
        """Ask the worker to stop with ``signum``, once: later calls do nothing."""
        if self.stop_sent_at is None:
            self.stop_sent_at = time.monotonic()
            self.send(signum)

    def log_exit(self, code: int, description: str) -> None:
        """Log the exit reaped with ``code`` (``exit_description``): info when it was asked
        for or clean, error for a timeout, a crash or a kill."""
        name = f"worker {self.worker_id} (pid {self.pid})"
        if self.abort_sent_at is not None:
            logger.error("%s %s after a timeout (its stack is in the log above)", name,
                         description)
        elif self.stop_sent_at is not None:
            logger.info("%s %s", name, description)
        elif code == EXIT_OK:
            logger.info("%s exited (max requests reached or master changed)", name)
        elif code == signal.SIGKILL * -1:
            logger.error("%s %s; perhaps out of memory?", name, description)
        else:
            logger.error("%s %s", name, description)

    def enforce_timeouts(self, now: float) -> None:
        """SIGABRT a worker silent for longer than its timeout (it dumps its stacks), then
        SIGKILL it if it outlives that by ``ABORT_GRACE_S``; SIGKILL a worker still running
        a second after TERM and its graceful timeout. Each signal is sent once."""
        timeout_s = self.config.workers.timeout
        if self.kill_sent_at is not None:
            return
        if self.abort_sent_at is not None:
            if now - self.abort_sent_at >= ABORT_GRACE_S:
                logger.critical("worker %d (pid %d) did not die on SIGABRT: SIGKILL",
                                self.worker_id, self.pid)
                self.kill_sent_at = now
                self.send(signal.SIGKILL)
            return
        # The graceful timeout; a worker that goes silent meanwhile is caught below.
        if self.stop_sent_at is not None and \
                now - self.stop_sent_at >= self.config.workers.graceful_timeout + _STOP_GRACE_S:
            logger.warning("worker %d (pid %d) still running %.0f s after TERM: SIGKILL",
                           self.worker_id, self.pid, now - self.stop_sent_at)
            self.kill_sent_at = now
            self.send(signal.SIGKILL)
            return
        if timeout_s > 0 and self.heartbeat.age() > timeout_s:
            logger.critical("WORKER TIMEOUT: worker %d (pid %d) silent for %.1f s; "
                            "SIGABRT dumps its stacks", self.worker_id, self.pid,
                            self.heartbeat.age())
            self.abort_sent_at = now
            self.send(signal.SIGABRT)


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


def start_directory(config: Config) -> str:
    """The directory the command ran in, before ``--chdir``: HUP re-reads the config and USR2
    re-executes from there. ``$PWD`` is used only when it is consistent with ``--chdir``."""
    here = os.getcwd()
    if not config.server.chdir:
        return here
    candidate = os.environ.get("PWD", "")
    path = config.config_path
    try:
        is_consistent = bool(candidate) and os.path.samefile(
            os.path.join(candidate, config.server.chdir), here)
    except OSError:
        return here
    if is_consistent and (not path or os.path.isabs(path)
                          or os.path.isfile(os.path.join(candidate, path))):
        return candidate
    return here


def app_label(config: Config) -> str:
    return config.server.name or config.server.app or DEMO_APP


def app_source_files(spec: str) -> list[str]:
    """Source files of the app's top-level module or package, found without importing it
    (the master must not import the app, or forked workers would not see new code)."""
    top = (spec.strip() or DEMO_APP).partition(":")[0].split(".")[0]
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if found is None:
        return []
    files: list[str] = []
    for directory in found.submodule_search_locations or ():
        for root, _, names in os.walk(directory):
            files += [os.path.join(root, name) for name in names if name.endswith(".py")]
            if len(files) > 5000:  # a dev server watching a whole site-packages is a mistake
                return files
    if not files and found.origin and found.origin.endswith(".py"):
        files.append(found.origin)
    return files


def resolve_ids(config: Config) -> tuple[int | None, int | None]:
    """uid and gid for ``--user``/``--group``; raises ConfigError for unknown names."""
    uid = gid = None
    user, group = config.server.user, config.server.group
    try:
        if user:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
            uid, gid = entry.pw_uid, entry.pw_gid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"[server] user/group: unknown user {user!r} or group {group!r}") from None
    return uid, gid


def drop_privileges(uid: int | None, gid: int | None, user: str) -> None:
    if gid is not None and gid != os.getgid():
        if uid is not None and not user.isdigit():
            os.initgroups(user, gid)
        else:
            os.setgroups([gid])
        os.setgid(gid)
    if uid is not None and uid != os.getuid():
        os.setuid(uid)


def boot_worker(record: WorkerProcess, generation: Generation, *,
                ids: tuple[int | None, int | None],
                post_fork: Callable[[], bool], server: object = None) -> NoReturn:
    """In the forked child (master state already shed): boot and run one worker, then exit.

    Exit status: the worker's own, ``EXIT_APP_LOAD`` when anything before the first
    heartbeat fails (privileges, ``post_fork``, the app import), ``EXIT_ERROR`` on a crash.
    """
    code = EXIT_ERROR
    try:
        config = generation.config
        set_process_title(_TITLE_WORKER, app_label(config))
        code = EXIT_APP_LOAD  # anything failing from here to the first beat is a boot failure
        drop_privileges(*ids, config.server.user)
        if not post_fork():
            raise AppLoadError("the post_fork hook failed")
        app = generation.app if generation.app is not None else load_app(config.server.app)
        record.heartbeat.beat()  # booted: the arbiter may now retire the old generation
        max_requests = config.workers.max_requests
        if max_requests > 0:
            max_requests += random.randint(0, config.workers.max_requests_jitter)
        code = EXIT_ERROR
        worker = Worker(config=config, listeners=generation.listeners, app=app,
                        heartbeat=record.heartbeat, worker_id=record.worker_id,
                        max_requests=max_requests, hooks=generation.hooks, server=server)
        code = worker.run()
    except AppLoadError as exc:
        logger.error("worker %d cannot load the app: %s", os.getpid(), exc)
    except OSError as exc:
        logger.error("worker %d failed to start: %s", os.getpid(), exc)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except BaseException:
        logger.exception("worker %d crashed", os.getpid())
        if code == EXIT_OK:
            code = EXIT_ERROR
    finally:
        for handler in logging.getLogger("wsgiserve").handlers + logging.getLogger().handlers:
            try:
                handler.flush()
            except (OSError, ValueError):  # a closed or broken stream: exiting anyway
                continue
        os._exit(code)
