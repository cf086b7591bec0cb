"""Fixtures for the arbiter tests: an app directory and servers stopped at teardown.

The process helpers themselves are in ``arbiter_processes``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from arbiter_processes import APP_SOURCE, ServerProcess


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: heavy load or many-connection arbiter tests")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "arbiter_app.py").write_text(APP_SOURCE)
    return tmp_path


@pytest.fixture
def start_server(app_dir: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``start_server(*args, env=..., wait=True)``: a started (and, by default, ready)
    server for ``arbiter_app:app`` on ``127.0.0.1:0`` (unless ``args`` bind or
    ``default_bind`` is False); every one is stopped when the test ends."""
    started: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, wait: bool = True,
              app: str = "arbiter_app:app", pass_fds: Sequence[int] = (),
              command: Sequence[str] | None = None, default_bind: bool = True
              ) -> ServerProcess:
        has_bind = "--bind" in args or "-b" in args
        full_args = ["--bind", "127.0.0.1:0", *args] if default_bind and not has_bind \
            else list(args)
        if app:
            full_args.append(app)
        server = ServerProcess(app_dir, full_args, env=env, pass_fds=pass_fds,
                               command=command)
        started.append(server)
        server.start()
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
