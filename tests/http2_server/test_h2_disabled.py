"""``--http-protocols h1`` turns HTTP/2 off: over TLS, ALPN no longer offers h2 and curl
falls back to HTTP/1.1; on the cleartext port, the HTTP/2 preface is read as an
HTTP/1.1 request and refused with a clean error (a response, then the close).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
from h2client import PREFACE, SETTINGS, frame
from h2servers import Certificates, start_server
from serving import Server

pytestmark = pytest.mark.timeout(60)

SERVER_ARGS = ("--http-protocols", "h1")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory,
               certificates: Certificates) -> Iterator[Server]:
    started = start_server(tmp_path_factory.mktemp("h1tls"), "--http-protocols", "h1",
                           *certificates.server_args())
    yield started
    started.stop()


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    path = shutil.which("curl")
    if path is None:
        pytest.skip("curl is not installed")
    return subprocess.run([path, "--silent", "--show-error", "--max-time", "20", *args],
                          capture_output=True, timeout=30, check=False)


def test_tls_alpn_does_not_offer_h2(tls_server: Server, certificates: Certificates) -> None:
    context = certificates.client_context(("h2",))
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() is None


def test_curl_http2_over_tls_falls_back_to_http11(tls_server: Server,
                                                  certificates: Certificates) -> None:
    result = curl("--http2", "--cacert", str(certificates.ca_path), "--write-out",
                  "\n%{http_version}", f"https://localhost:{tls_server.port}/hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, World!\n1.1"


def test_prior_knowledge_preface_gets_an_http11_error_and_the_close(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        received = b""
        while data := sock.recv(65536):
            received += data
    status_line = received.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 4") or status_line.startswith(b"HTTP/1.1 505"), \
        received
    assert b"\r\n\r\n" in received


def test_curl_prior_knowledge_fails_cleanly_and_http11_goes_on(server: Server) -> None:
    result = curl("--http2-prior-knowledge", f"{server.url}/hello")
    assert result.returncode != 0
    assert curl("--write-out", "\n%{http_version}", f"{server.url}/hello").stdout \
        == b"Hello, World!\n1.1"
