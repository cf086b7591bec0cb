"""The import direction of ../shared/STYLE.md section 2, checked on the source with ast.

cli -> server.arbiter -> server.worker -> server.connection -> {wsgi, tls, http};
client -> {http}; http/ imports only the standard library (and never socket, ssl,
selectors or logging); http2/ likewise, and may import http/ (its field-character rules),
and reads no clock; the config package (wsgiserve/config/) imports no other wsgiserve
module: its modules import only each other.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wsgiserve"


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules that ``path`` imports; relative imports are resolved."""
    package = ["wsgiserve", *path.relative_to(PACKAGE).parent.parts]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1])
            if node.module:
                names.add(f"{base}.{node.module}")
            else:
                names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, *packages: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(PACKAGE)) for path in paths]


HTTP_MODULES = _modules("http")


@pytest.mark.parametrize("path", HTTP_MODULES, ids=_ids(HTTP_MODULES))
def test_http_layer_is_sans_io_and_imports_nothing_above_it(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in {"socket", "ssl", "selectors", "logging", "select", "threading"}, name
        if top == "wsgiserve":
            assert name.startswith("wsgiserve.http"), name


HTTP2_MODULES = _modules("http2")
_SANS_IO_FORBIDDEN = {"socket", "ssl", "selectors", "logging", "select", "threading", "time"}


def test_http2_modules_are_found() -> None:
    assert PACKAGE / "http2" / "connection.py" in HTTP2_MODULES and len(HTTP2_MODULES) > 5


@pytest.mark.parametrize("path", HTTP2_MODULES, ids=_ids(HTTP2_MODULES))
def test_http2_layer_is_sans_io_and_imports_nothing_above_it(path: Path) -> None:
    for name in _imports(path):
        assert name.split(".")[0] not in _SANS_IO_FORBIDDEN, name
        if name.split(".")[0] == "wsgiserve":
            assert _within(name, "wsgiserve.http2", "wsgiserve.http"), name


@pytest.mark.parametrize("path", HTTP2_MODULES, ids=_ids(HTTP2_MODULES))
def test_http2_layer_reads_no_clock(path: Path) -> None:
    # No time, datetime or monotonic reads: flood limits count frames, not seconds.
    source = path.read_text(encoding="utf-8")
    assert "datetime" not in _imports(path) and "monotonic" not in source, path


CONFIG_MODULES = _modules("config")


def test_config_modules_are_found() -> None:
    assert PACKAGE / "config" / "__init__.py" in CONFIG_MODULES and len(CONFIG_MODULES) > 1


@pytest.mark.parametrize("path", CONFIG_MODULES, ids=_ids(CONFIG_MODULES))
def test_config_imports_no_other_wsgiserve_module(path: Path) -> None:
    bad = [n for n in _imports(path)
           if _within(n, "wsgiserve") and not _within(n, "wsgiserve.config")]
    assert not bad


CLIENT_MODULES = _modules("client")
SERVER_MODULES = _modules("server")


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


@pytest.mark.parametrize("lower, upper", [
    ("server/connection.py", "wsgiserve.server.worker"),
    ("server/connection.py", "wsgiserve.server.arbiter"),
    ("server/worker.py", "wsgiserve.server.arbiter"),
])
def test_nothing_imports_upward(lower: str, upper: str) -> None:
    assert upper not in _imports(PACKAGE / lower)
