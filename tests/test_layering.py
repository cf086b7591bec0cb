"""The package rules of the architecture, checked on the source with ast; imports under
``TYPE_CHECKING`` count like any other.

- The sans-IO protocol packages (``http/``, ``http2/``, ``websocket/``) import only the
  standard library, never socket, ssl, selectors, select, threading or logging, and of
  wsgiserve only themselves (and ``http/`` for the shared field rules).
- ``config/`` imports no other wsgiserve module; the client and the server never import
  each other; ``wsgi``, ``tls`` and ``log`` never import the server.
- The server's two processes: ``server/worker/`` never imports ``server/master/``; of the
  master only ``master/spawn.py`` (which boots a worker) imports the worker; the shared
  ``heartbeat``, ``signals`` and ``counters`` import neither.
- Inside a worker, imports run one way: loop -> connection -> protocols -> exchange ->
  transport -> context (``WORKER_RANKS``).
- No import cycle anywhere in wsgiserve.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wsgiserve"


def _module_name(path: Path) -> str:
    parts = ["wsgiserve", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


ALL_MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Absolute names of what ``path`` imports; relative imports are resolved, and
    ``from package import module`` names the module."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                base = ".".join(package[:len(package) - node.level + 1]
                                + ([node.module] if node.module else []))
            modules = {f"{base}.{alias.name}" for alias in node.names} & ALL_MODULES.keys()
            names.update(modules)
            if len(modules) < len(node.names):  # names from the package itself, too
                names.add(base)
    return names


def _within(name: str, *packages: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(PACKAGE)) for path in paths]


def _wsgiserve_imports(path: Path) -> set[str]:
    return {name for name in _imports(path) if _within(name, "wsgiserve")}


SANS_IO = {"http": ("wsgiserve.http",), "http2": ("wsgiserve.http2", "wsgiserve.http"),
           "websocket": ("wsgiserve.websocket", "wsgiserve.http")}
SANS_IO_MODULES = [path for folder in SANS_IO for path in _modules(folder)]
_BANNED = {"socket", "ssl", "selectors", "logging", "select", "threading", "time"}


@pytest.mark.parametrize("path", SANS_IO_MODULES, ids=_ids(SANS_IO_MODULES))
def test_protocol_cores_are_sans_io_and_import_nothing_above_them(path: Path) -> None:
    allowed = SANS_IO[path.relative_to(PACKAGE).parts[0]]
    for name in _imports(path):
        assert name.split(".")[0] not in _BANNED, name
        if _within(name, "wsgiserve"):
            assert _within(name, *allowed), name


CONFIG_MODULES = _modules("config")


def test_config_modules_are_found() -> None:
    assert PACKAGE / "config" / "__init__.py" in CONFIG_MODULES and len(CONFIG_MODULES) > 1


@pytest.mark.parametrize("path", CONFIG_MODULES, ids=_ids(CONFIG_MODULES))
def test_config_imports_no_other_wsgiserve_module(path: Path) -> None:
    assert not [n for n in _wsgiserve_imports(path) if not _within(n, "wsgiserve.config")]


CLIENT_MODULES = _modules("client")
SERVER_MODULES = _modules("server")
MASTER_MODULES = _modules("server/master")
WORKER_MODULES = _modules("server/worker")


@pytest.mark.parametrize("path", CLIENT_MODULES, ids=_ids(CLIENT_MODULES))
def test_client_never_imports_the_server(path: Path) -> None:
    bad = [n for n in _imports(path)
           if _within(n, "wsgiserve.server", "wsgiserve.wsgi", "wsgiserve.cli")]
    assert not bad


@pytest.mark.parametrize("path", SERVER_MODULES, ids=_ids(SERVER_MODULES))
def test_server_never_imports_the_client_or_the_cli(path: Path) -> None:
    bad = [n for n in _imports(path) if _within(n, "wsgiserve.client", "wsgiserve.cli")]
    assert not bad


@pytest.mark.parametrize("name", ["wsgi.py", "tls.py", "log.py"])
def test_leaf_modules_do_not_import_the_server(name: str) -> None:
    assert not [n for n in _imports(PACKAGE / name) if _within(n, "wsgiserve.server")]


@pytest.mark.parametrize("path", WORKER_MODULES, ids=_ids(WORKER_MODULES))
def test_the_worker_never_imports_the_master(path: Path) -> None:
    assert not [n for n in _imports(path) if _within(n, "wsgiserve.server.master")]


@pytest.mark.parametrize("path", MASTER_MODULES, ids=_ids(MASTER_MODULES))
def test_only_spawn_imports_the_worker(path: Path) -> None:
    imports_worker = any(_within(n, "wsgiserve.server.worker") for n in _imports(path))
    assert imports_worker == (path.name == "spawn.py")


@pytest.mark.parametrize("name", ["heartbeat.py", "signals.py", "counters.py"])
def test_what_both_processes_share_imports_neither(name: str) -> None:
    bad = [n for n in _imports(PACKAGE / "server" / name)
           if _within(n, "wsgiserve.server.master", "wsgiserve.server.worker")]
    assert not bad


# A worker module may import worker modules of lower rank only.
WORKER_RANKS = {
    "states": 0, "heads": 0, "forwarded": 0, "proxy_protocol": 0, "h2c": 0, "shared_tls": 0,
    "context": 1, "protocol": 1, "metrics": 1, "hang": 1,
    # A WebSocket's clock (pings, deadlines): plain arithmetic.
    "websocket_timers": 1,
    "transport": 2,
    # How an HTTP/1.1 connection ends: over its transport, under the protocol.
    "closing": 2.5,
    # A WebSocket's non-blocking socket I/O and send buffer: under the WebSocket.
    "websocket_io": 2.5,
    "exchange": 3, "stream": 3, "websocket_api": 3,
    # Between the exchange it answers and the protocols that offer it.
    "upgrade": 3.5,
    # What the streams' threads call on an HTTP/2 connection: under its loop's side.
    "http2_output": 3.5,
    # Parts of HTTP/1.1 (http1.py): its own answers, then the upgrades it runs.
    "http1_errors": 3.6, "http1_upgrade": 3.7,
    "http1": 4, "http2": 4, "preamble": 4, "websocket": 4,
    "connection": 5,
    # Parts of the loop (loop.py): its listeners, the context it builds, its load shedding.
    "accept": 5.5, "settings": 5.5, "shedding": 5.6,
    "loop": 6,
    "__init__": 7,
}


@pytest.mark.parametrize("path", WORKER_MODULES, ids=_ids(WORKER_MODULES))
def test_worker_imports_run_one_way(path: Path) -> None:
    assert path.stem in WORKER_RANKS, f"give {path.name} a rank in WORKER_RANKS"
    rank = WORKER_RANKS[path.stem]
    for name in _imports(path):
        if _within(name, "wsgiserve.server.worker") and name != "wsgiserve.server.worker":
            other = name.split(".")[3]
            assert WORKER_RANKS[other] < rank, f"{path.stem} imports {other}"


def _cycle() -> list[str] | None:
    graph = {name: sorted(n for n in _wsgiserve_imports(path) if n in ALL_MODULES and n != name)
             for name, path in ALL_MODULES.items()}
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> list[str] | None:
        if name in stack:
            return stack[stack.index(name):] + [name]
        if name in done:
            return None
        for child in graph[name]:
            found = visit(child, [*stack, name])
            if found:
                return found
        done.add(name)
        return None

    for name in graph:
        found = visit(name, [])
        if found:
            return found
    return None


def test_no_import_cycle_in_the_package() -> None:
    assert len(ALL_MODULES) > 50
    assert _cycle() is None


def test_the_cycle_finder_finds_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _wsgiserve_imports

    def with_a_cycle(path: Path) -> set[str]:
        found = real(path)
        if _module_name(path) == "wsgiserve.http.errors":
            found.add("wsgiserve.http.parser")  # parser imports errors: now a cycle
        return found
    monkeypatch.setitem(globals(), "_wsgiserve_imports", with_a_cycle)
    assert _cycle() is not None
