"""The master's pid file (``--pid``): written at start, removed at exit if still ours.

During a USR2 upgrade the old master moves its file aside to ``PATH.oldbin`` (nginx's
convention) so the new master can write ``PATH``, and moves it back if the upgrade fails.
"""
from __future__ import annotations

import logging
import os
from typing import Final

__all__ = ["OLDBIN_SUFFIX", "PidFile"]

_log = logging.getLogger(__name__)

# nginx names the old master's pid file this way during a binary upgrade.
OLDBIN_SUFFIX: Final = ".oldbin"


class PidFile:
    """One pid file: ``path`` is where it is now, ``original_path`` where ``--pid`` put it."""

    def __init__(self, path: str, pid: int) -> None:
        self.original_path = path
        self.path = path
        self._pid = pid

    def write(self) -> None:
        """Write the pid to ``path`` atomically (a temporary file, then a rename).

        Raises:
            OSError: the directory is missing or not writable; ``path`` is then unchanged.
        """
        self._write(self.path)

    def _write(self, path: str) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        temporary = os.path.join(directory, f".{os.path.basename(path)}.{self._pid}.tmp")
        with open(temporary, "w", encoding="ascii") as file:
            file.write(f"{self._pid}\n")
        os.replace(temporary, path)

    def move_aside(self) -> None:
        """Rename the file to ``original_path + ".oldbin"`` for a new master to take its place.

        Raises:
            OSError: the rename failed; ``path`` is then unchanged.
        """
        oldbin = self.original_path + OLDBIN_SUFFIX
        os.replace(self.path, oldbin)
        self.path = oldbin

    def restore(self) -> None:
        """Undo ``move_aside`` after a failed upgrade (logs, never raises)."""
        if self.path != self.original_path:
            try:
                self._write(self.original_path)
                os.unlink(self.path)
            except OSError as exc:
                _log.error("cannot restore the pid file: %s", exc.strerror)
            self.path = self.original_path

    def remove(self) -> None:
        """Delete the file if it still holds our pid (a new master may have rewritten it)."""
        try:
            with open(self.path, encoding="ascii") as file:
                is_ours = file.read().strip() == str(self._pid)
            if is_ours:
                os.unlink(self.path)
        except OSError:
            pass
