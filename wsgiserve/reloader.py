"""``--reload``: notice when a loaded module's source file or an extra file changes.

Polls ``os.stat`` (stdlib only, no inotify); cheap enough to call once a second. Used by
the arbiter, which restarts workers when ``changed()`` returns paths. Imports nothing from
wsgiserve.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Final

__all__ = ["Reloader"]

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
