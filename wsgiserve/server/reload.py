"""What a reload starts from: HUP's re-read of the config and ``--reload``'s file watch.

``reread_config`` loads the config again from the original command line, in the directory
the command first ran in, and applies its ``chdir``, ``pythonpath`` and ``env`` to this
process. ``CodeWatcher`` polls the app's source files. The arbiter turns either into a new
worker generation. Imported by ``server.arbiter`` only.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Final

from wsgiserve import config as config_module
from wsgiserve.config import Config
from wsgiserve.reloader import Reloader
from wsgiserve.server.children import app_source_files

__all__ = ["RELOAD_POLL_S", "CodeWatcher", "reread_config"]

logger = logging.getLogger(__name__)

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
            logger.warning("--reload with --preload restarts workers but cannot load "
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
