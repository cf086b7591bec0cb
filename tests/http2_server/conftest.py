"""Fixtures for the HTTP/2 server tests: one real ``python -m wsgiserve`` per module on
127.0.0.1:0 (flags from the module's ``SERVER_ARGS``), a TLS variant with a trustme
certificate, and a check after every test that the server logged no unexpected error.
"""
from __future__ import annotations

import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from serving import Server  # noqa: E402

APP = "tests.http2_server.h2_apps:app"


def start_server(directory: Path, *args: str, app: str = APP) -> Server:
    return Server(directory, app, "--threads", "4", "--access-logfile", "-", *args).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[Server]:
    """The module's server: ``SERVER_ARGS`` (a module global) are added to its flags."""
    args = getattr(request.module, "SERVER_ARGS", ())
    started = start_server(tmp_path_factory.mktemp("h2server"), *args)
    yield started
    started.stop()


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


class Certificates:
    """A trustme CA and a server certificate for localhost and 127.0.0.1, in files."""

    def __init__(self, directory: Path) -> None:
        import trustme

        self.ca = trustme.CA()
        certificate = self.ca.issue_cert("localhost", "127.0.0.1")
        self.cert_path = directory / "server.pem"
        self.key_path = directory / "server.key"
        self.ca_path = directory / "ca.pem"
        certificate.private_key_pem.write_to_path(str(self.key_path))
        certificate.cert_chain_pems[0].write_to_path(str(self.cert_path))
        self.ca.cert_pem.write_to_path(str(self.ca_path))

    def server_args(self) -> tuple[str, ...]:
        return ("--certfile", str(self.cert_path), "--keyfile", str(self.key_path))

    def client_context(self, alpn: tuple[str, ...] = ("h2",)) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.set_alpn_protocols(list(alpn))
        return context


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certs"))
