"""Find the WSGI application named on the command line (``APP``) and import it.

Loaded by the master (``--preload``, ``--check-config``) or by each worker after fork.
Never evaluates code
from the spec: factory arguments must be Python literals (``ast.literal_eval``). A
PasteDeploy URI (``config:FILE.ini#NAME``) is loaded with PasteDeploy, an optional extra.
"""
from __future__ import annotations

import ast
import importlib
import linecache
import os
import traceback
from typing import Any, Final, cast
from wsgiref.types import WSGIApplication

__all__ = ["DEMO_APP", "PASTE_SCHEME", "AppLoadError", "error_location", "is_paste_spec",
           "load_app", "load_object"]

# What `wsgiserve` with no APP serves.
DEMO_APP: Final = "wsgiserve.demo:app"
# Tried in order for a bare module, as gunicorn and Django's wsgi.py name it.
_DEFAULT_NAMES: Final = ("application", "app")
# PasteDeploy's URI scheme for an ini file; gunicorn's --paste FILE becomes config:FILE.
PASTE_SCHEME: Final = "config:"
_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__))


class AppLoadError(Exception):
    """The app spec is malformed, or its module or attribute cannot be found or built.

    An import that fails inside the app's own code keeps the original as ``__cause__``.
    """


def _attribute_path(node: ast.expr, spec: str) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [*_attribute_path(node.value, spec), node.attr]
    raise AppLoadError(f"{spec!r}: expected NAME, NAME.ATTR or NAME(literal args)")


def _parse_expression(expression: str, spec: str) -> tuple[list[str], tuple[Any, ...] | None,
                                                           dict[str, Any]]:
    """Split ``factory('x', n=2)`` into (path, args, kwargs); args None means no call."""
    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        raise AppLoadError(f"{spec!r}: cannot parse {expression!r}") from None
    if not isinstance(node, ast.Call):
        return _attribute_path(node, spec), None, {}
    try:
        args = tuple(ast.literal_eval(arg) for arg in node.args)
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except ValueError:
        raise AppLoadError(f"{spec!r}: factory arguments must be literals") from None
    if len(kwargs) != len(node.keywords):
        raise AppLoadError(f"{spec!r}: factory arguments must be literals")
    return _attribute_path(node.func, spec), args, kwargs


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise AppLoadError(f"{spec!r}: no module named {missing!r} (check the working "
                               "directory, --chdir or --pythonpath)") from None
        raise AppLoadError(f"{spec!r}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise AppLoadError(f"{spec!r}: importing {module_name!r} failed: "
                           f"{type(exc).__name__}: {exc}") from exc


def load_object(spec: str, default_names: tuple[str, ...] = ()) -> Any:
    """Import ``module:attr.sub``, ``module:factory(literals)`` or ``module``.

    A bare ``module`` looks up the first of ``default_names`` it defines; with no default
    names, ``module.attr`` (no colon) is read as module ``module`` and attribute ``attr``.

    Raises:
        AppLoadError: naming the spec and what is missing; an exception raised by the
            module's import or by the factory is kept as ``__cause__``.
    """
    module_name, colon, expression = spec.partition(":")
    if not colon and not default_names and "." in spec:
        module_name, _, expression = spec.rpartition(".")
    if not module_name or not all(p.isidentifier() for p in module_name.split(".")):
        raise AppLoadError(f"{spec!r}: expected MODULE or MODULE:CALLABLE")
    module = _import(module_name, spec)
    if not expression:
        for name in default_names:
            if hasattr(module, name):
                return getattr(module, name)
        names = " nor ".join(repr(name) for name in default_names) or "anything"
        raise AppLoadError(f"{spec!r}: module {module_name!r} defines neither {names}")
    path, args, kwargs = _parse_expression(expression, spec)
    target: Any = module
    for depth, name in enumerate(path):
        if not hasattr(target, name):
            where = ".".join([module_name, *path[:depth]])
            raise AppLoadError(f"{spec!r}: {where!r} has no attribute {name!r}")
        target = getattr(target, name)
    if args is None:
        return target
    if not callable(target):
        raise AppLoadError(f"{spec!r}: {'.'.join(path)!r} is not callable")
    try:
        return target(*args, **kwargs)
    except Exception as exc:
        raise AppLoadError(f"{spec!r}: factory raised {type(exc).__name__}: {exc}") from exc


def is_paste_spec(spec: str) -> bool:
    """``config:PATH.ini[#NAME]`` or ``config:/PATH[#NAME]``: never a module spec, since
    ``/`` and ``.ini#`` cannot follow a module's colon."""
    if not spec.startswith(PASTE_SCHEME):
        return False
    path = spec[len(PASTE_SCHEME):].partition("#")[0]
    return path.startswith("/") or path.endswith(".ini")


def _load_paste(spec: str) -> Any:
    try:
        from paste.deploy import loadapp  # type: ignore[import-not-found, import-untyped, unused-ignore]  # an optional extra
    except ImportError:
        raise AppLoadError(f"{spec!r}: PasteDeploy is not installed (pip install "
                           "'wsgiserve[paste]')") from None
    path, hash_sign, name = spec[len(PASTE_SCHEME):].partition("#")
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise AppLoadError(f"{spec!r}: no such file {path}")
    try:
        return loadapp(f"{PASTE_SCHEME}{path}{hash_sign}{name}")
    except Exception as exc:
        raise AppLoadError(f"{spec!r}: PasteDeploy could not load it: "
                           f"{type(exc).__name__}: {exc}") from exc


def load_app(spec: str) -> WSGIApplication:
    """Import the WSGI application named by ``spec``; empty means the bundled demo.

    Accepts ``module:callable``, ``module`` (its ``application``, else ``app``),
    ``module:factory()`` / ``module:factory('x', 2)`` (literal arguments only),
    ``module:attr.sub``, and a PasteDeploy ``config:FILE.ini#NAME`` (a relative FILE is
    found from the working directory).

    Raises:
        AppLoadError: the spec is malformed, the module or attribute is missing, the import
            or factory failed (original as ``__cause__``), or the result is not callable.
    """
    spec = spec.strip() or DEMO_APP
    app = _load_paste(spec) if is_paste_spec(spec) else load_object(spec, _DEFAULT_NAMES)
    if app is None or not callable(app):
        raise AppLoadError(f"{spec!r}: found {type(app).__name__}, not a WSGI application "
                           "(a callable taking environ and start_response)")
    return cast(WSGIApplication, app)


def error_location(error: AppLoadError) -> str | None:
    """Where the app's own code failed: ``FILE, line N: SOURCE``, or None.

    The innermost frame of the original exception that is neither the import machinery
    nor wsgiserve; for a SyntaxError, the line it names.
    """
    cause = error.__cause__
    if cause is None:
        return None
    if isinstance(cause, SyntaxError) and cause.filename and cause.lineno:
        filename, lineno = cause.filename, cause.lineno
    else:
        frames = [frame for frame in traceback.extract_tb(cause.__traceback__)
                  if not frame.filename.startswith("<")
                  and not os.path.abspath(frame.filename).startswith(_PACKAGE_DIR + os.sep)]
        if not frames or frames[-1].lineno is None:
            return None
        filename, lineno = frames[-1].filename, frames[-1].lineno
    source = linecache.getline(filename, lineno).strip()
    return f"{filename}, line {lineno}" + (f": {source}" if source else "")
