"""Fixtures for the HTTP/2 server tests: one real ``python -m wsgiserve`` per module on
127.0.0.1:0 (flags from the module's ``SERVER_ARGS``), a TLS variant with a trustme
certificate, and a check after every test that the server logged no unexpected error.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from h2client import H2Connection
from h2servers import Certificates, start_server
from serving import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[Server]:
    """The module's server: ``SERVER_ARGS`` (a module global) are added to its flags."""
    args = getattr(request.module, "SERVER_ARGS", ())
    started = start_server(tmp_path_factory.mktemp("h2server"), *args)
    yield started
    started.stop()


@pytest.fixture
def conn(server: Server) -> Iterator[H2Connection]:
    """A connection to the module's server, its SETTINGS exchanged."""
    with H2Connection(server.port) as connection:
        yield connection.handshake()


@pytest.fixture(autouse=True)
def no_unexpected_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test using ``server``: no loop-level error in what it logged meanwhile."""
    if "server" not in request.fixturenames:
        yield
        return
    server: Server = request.getfixturevalue("server")
    start = len(server.log())
    yield
    logged = server.log()[start:]
    assert "Unexpected error" not in logged, logged[-3000:]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certs"))
