"""What a reload starts from: HUP's re-read of the config and ``--reload``'s file watch.

``reread_config`` loads the config again from the original command line, in the directory
the command first ran in, and applies its ``chdir``, ``pythonpath`` and ``env`` to this
process. ``CodeWatcher`` polls the app's source files (``Reloader``: ``os.stat`` of each
file, stdlib only, no inotify). The arbiter turns either into a new worker generation.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from wsgiserve import config as config_module
from wsgiserve.appload import DEMO_APP
from wsgiserve.config import Config

__all__ = ["RELOAD_POLL_S", "CodeWatcher", "Reloader", "app_source_files", "reread_config"]

_log = logging.getLogger(__name__)

# --reload polls file signatures this often (Reloader is stat-based).
RELOAD_POLL_S: Final = 1.0


def reread_config(argv: Sequence[str], environ: Mapping[str, str] | None,
                  start_directory: str) -> Config:
    """Load the config for ``argv`` as the command did at start, then apply it to the process.

    Raises:
        ConfigError: the command line, the file or the environment is invalid; the process
            is then unchanged.
    """
    here = os.getcwd()
    os.chdir(start_directory)
    try:
        config = config_module.load(argv, environ)
    finally:
        os.chdir(here)
    if config.server.chdir:
        os.chdir(os.path.join(start_directory, config.server.chdir))
    for directory in reversed(config.server.pythonpath):
        directory = os.path.abspath(directory)
        if directory not in sys.path:
            sys.path.insert(0, directory)
    for pair in config.server.env:
        name, _, value = pair.partition("=")
        os.environ[name] = value
    return config


class CodeWatcher:
    """``--reload``: the app's source files and ``reload_extra_files`` (with ``--preload``,
    every module the master imported), polled at most every ``RELOAD_POLL_S``."""

    def __init__(self, config: Config) -> None:
        if config.server.preload:
            _log.warning("--reload with --preload restarts workers but cannot load "
                           "new app code")
        extra = [*app_source_files(config.server.app), *config.server.reload_extra_files]
        self._reloader = Reloader(extra, watch_modules=config.server.preload)
        self._next_poll_at = 0.0

    def changed(self) -> list[str]:
        """The files changed since the last poll; ``[]`` when none did or it is too soon."""
        if time.monotonic() < self._next_poll_at:
            return []
        self._next_poll_at = time.monotonic() + RELOAD_POLL_S
        return self._reloader.changed()


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


# Files Python loads but never from an editable source (zip imports, frozen modules).
_NOT_FILES: Final = ("<frozen", "<string>")


def _source_files() -> set[str]:
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or path.startswith(_NOT_FILES):
            continue
        if path.endswith(".pyc"):
            path = path[:-1]
        files.add(os.path.abspath(path))
    return files


def _signature(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size)


class Reloader:
    """Snapshots (mtime, size) of watched files; ``changed()`` reports what moved since.

    Watches the source file of every module in ``sys.modules`` (modules imported later are
    picked up, not reported, on the next call) plus ``extra_files``. A file that vanishes is
    reported when it comes back changed, so an editor's save-by-rename is seen once.
    """

    def __init__(self, extra_files: Iterable[str] = (), *, watch_modules: bool = True) -> None:
        self._extra_files = {os.path.abspath(path) for path in extra_files}
        self._watch_modules = watch_modules
        self._snapshot: dict[str, tuple[int, int] | None] = {}
        for path in self._watched():
            self._snapshot[path] = _signature(path)

    def _watched(self) -> set[str]:
        return (_source_files() | self._extra_files) if self._watch_modules else self._extra_files

    def changed(self) -> list[str]:
        """Paths modified since the previous call (or construction), sorted; updates the
        snapshot so each change is reported once."""
        changes = []
        for path in self._watched():
            current = _signature(path)
            if path not in self._snapshot:
                self._snapshot[path] = current
            elif current is not None and current != self._snapshot[path]:
                self._snapshot[path] = current
                changes.append(path)
        return sorted(changes)
