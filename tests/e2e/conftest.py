"""Fixtures for the end-to-end tests: the example Flask and Django apps, each served by a
real ``python -m wsgiserve --config wsgiserve.toml`` from its own folder on 127.0.0.1:0."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import REPO_ROOT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from serving import Server  # noqa: E402

EXAMPLES = REPO_ROOT / "examples"


def serve_example(folder: Path, tmp_path: Path) -> Server:
    return Server(tmp_path, "", "--config", "wsgiserve.toml", "--threads", "2",
                  "--access-logfile", "-", pythonpath=[folder], cwd=folder).start()


@pytest.fixture(scope="module")
def flask_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("flask")
    server = serve_example(EXAMPLES / "flask_app", tmp_path_factory.mktemp("flask"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def django_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("django")
    server = serve_example(EXAMPLES / "django_project", tmp_path_factory.mktemp("django"))
    yield server
    server.stop()
