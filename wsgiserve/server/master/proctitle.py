"""Process titles (``wsgiserve: master [app]``) through setproctitle, when it is installed.

setproctitle is optional (the runtime is stdlib-only): without it titles stay as they are.
The master sets its own, and a worker's after fork.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Final

__all__ = ["set_process_title"]

_PREFIX: Final = "wsgiserve"


def _load() -> Callable[[str], None] | None:
    try:
        module = importlib.import_module("setproctitle")
    except ImportError:
        return None
    setter = getattr(module, "setproctitle", None)
    return setter if callable(setter) else None


_SETTER: Final = _load()


def set_process_title(role: str, label: str) -> None:
    """Set ``wsgiserve: ROLE [LABEL]`` (``ROLE`` is master or worker) if setproctitle exists."""
    if _SETTER is not None:
        _SETTER(f"{_PREFIX}: {role} [{label}]")
