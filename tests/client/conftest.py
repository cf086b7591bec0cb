"""Fixtures for the client tests: scripted peers stopped at teardown, a pool with short limits.

Test modules import names from ``client_peers`` (a unique module name), never from
``conftest``: other test folders have a conftest.py too.
"""
from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from client_peers import TEST_TIMEOUTS, Peer, PeerFactory, Script

from wsgiserve.client import Pool


@pytest.fixture
def peer() -> Iterator[PeerFactory]:
    """``peer(script, ...)`` starts a scripted peer; all are stopped after the test."""
    started: list[Peer] = []

    def start(*scripts: Script, **options: object) -> Peer:
        server = Peer(*scripts, **options)  # type: ignore[arg-type]  # tls_context only
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    for server in started:
        for error in server.errors:
            if not isinstance(error, OSError):
                raise error


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool(timeouts=TEST_TIMEOUTS, trust_env=False) as shared:
        yield shared


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway CA, made at test time (no private key is ever committed)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)
