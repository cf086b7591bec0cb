"""Booting a worker in the forked child: the one master module that imports the worker.

``boot_worker`` runs after the fork, once the child has shed the master's state: process
title, privileges, ``post_fork``, the app import, the first heartbeat (which tells the
arbiter the worker booted), then ``Worker.run()`` and ``os._exit``. The worker gets plain
values: config, listeners, app, hooks, heartbeat, its id and its metrics counters.
"""
from __future__ import annotations

import logging
import os
import random
import functools
from collections.abc import Callable, Mapping
from typing import Final, NoReturn

from wsgiserve.appload import AppLoadError, load_app
from wsgiserve.exitcodes import EXIT_APP_LOAD, EXIT_ERROR, EXIT_OK
from wsgiserve.hooks import Hook
from wsgiserve.server.master.proctitle import set_process_title
from wsgiserve.server.master.startup import app_label
from wsgiserve.server.master.workers import Generation, WorkerProcess
from wsgiserve.server.worker.loop import Worker

__all__ = ["boot_worker", "drop_privileges"]

_log = logging.getLogger(__name__)

_TITLE_WORKER: Final = "worker"


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
                post_fork: Callable[[], bool], arbiter: object = None) -> NoReturn:
    """In the forked child (master state already shed): boot and run one worker, then exit.

    ``arbiter`` is only bound into the hooks that take it first (``worker_exit(server,
    worker)``, as gunicorn calls it); the worker itself never sees it.

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
                        max_requests=max_requests, hooks=_worker_hooks(generation.hooks, arbiter),
                        counters=record.counters)
        code = worker.run()
    except AppLoadError as exc:
        _log.error("worker %d cannot load the app: %s", os.getpid(), exc)
    except OSError as exc:
        _log.error("worker %d failed to start: %s", os.getpid(), exc)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except BaseException:
        _log.exception("worker %d crashed", os.getpid())
        if code == EXIT_OK:
            code = EXIT_ERROR
    finally:
        for handler in logging.getLogger("wsgiserve").handlers + logging.getLogger().handlers:
            try:
                handler.flush()
            except (OSError, ValueError):  # a closed or broken stream: exiting anyway
                continue
        os._exit(code)


def _worker_hooks(hooks: Mapping[str, Hook], arbiter: object) -> dict[str, Hook]:
    """The hooks as the worker calls them: each with the worker's own arguments only."""
    bound = dict(hooks)
    if "worker_exit" in bound:
        bound["worker_exit"] = functools.partial(bound["worker_exit"], arbiter)
    return bound
