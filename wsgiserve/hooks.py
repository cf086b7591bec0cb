"""Resolve the server hooks named in ``[hooks]`` to callables.

The arbiter calls ``load_hooks(config.hooks)`` once at start (and again on reload) and
calls each hook it finds by its gunicorn name. Imports ``config`` and ``appload`` only.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from wsgiserve.appload import AppLoadError, load_object
from wsgiserve.config import Hooks

__all__ = ["HookError", "load_hook", "load_hooks"]

Hook = Callable[..., object]


class HookError(AppLoadError):
    """A hook's module or callable cannot be found; the message names the hook."""


def load_hook(path: str) -> Hook:
    """Import ``module:callable`` or ``module.callable`` (``module:obj.method`` works too).

    Raises:
        HookError: the module or attribute is missing, importing failed (original as
            ``__cause__``), or the object is not callable.
    """
    try:
        hook = load_object(path)
    except AppLoadError as exc:
        raise HookError(str(exc)) from exc.__cause__
    if not callable(hook):
        raise HookError(f"{path!r}: found {type(hook).__name__}, not a callable")
    return hook  # type: ignore[no-any-return]  # load_object returns Any; checked callable


def load_hooks(hooks: Hooks) -> Mapping[str, Hook]:
    """Resolve every hook that is set: ``{"pre_fork": callable, ...}``.

    Raises:
        HookError: naming the hook setting, e.g. ``[hooks] pre_fork: 'm:f': ...``.
    """
    found: dict[str, Hook] = {}
    for item in dataclasses.fields(hooks):
        path = getattr(hooks, item.name)
        if path:
            try:
                found[item.name] = load_hook(path)
            except HookError as exc:
                raise HookError(f"[hooks] {item.name}: {exc}") from exc.__cause__
    return found
