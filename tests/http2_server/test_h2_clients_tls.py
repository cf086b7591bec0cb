"""Real HTTP/2 clients over TLS (ALPN h2) against a running server with a trustme
certificate: curl, nghttp, a raw ALPN client, and headless Chromium loading the Flask
example with every request of the page made over h2. HTTP/1.1 on the same port still
works.
"""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import Browser
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from h2client import PREFACE, PROTOCOL_ERROR, H2Connection, frame
from h2servers import Certificates, curl, start_server, tool, wait_for_line
from processes import REPO_ROOT
from serving import Server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           certificates: Certificates) -> Iterator[Server]:
    started = start_server(tmp_path_factory.mktemp("h2tls"), *certificates.server_args())
    yield started
    started.stop()


def url(server: Server, path: str = "/hello") -> str:
    return f"https://localhost:{server.port}{path}"


def test_curl_http2_over_tls_reports_version_2(server: Server,
                                               certificates: Certificates) -> None:
    result = curl("--http2", "--cacert", str(certificates.ca_path), "--write-out",
                  "\n%{http_version}", url(server))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, World!\n2"
    wait_for_line(server, '"GET /hello HTTP/2.0" 200 13')


def test_curl_http11_on_the_same_tls_port(server: Server, certificates: Certificates) -> None:
    result = curl("--http1.1", "--cacert", str(certificates.ca_path), "--write-out",
                  "\n%{http_version}", url(server))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, World!\n1.1"


def test_curl_http2_upload_over_tls(server: Server, certificates: Certificates,
                                    tmp_path: Path) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)
    result = curl("--http2", "--cacert", str(certificates.ca_path), "--data-binary",
                  f"@{upload}", "--header", "Content-Type: application/octet-stream",
                  url(server, "/echo"))
    assert result.returncode == 0, result.stderr
    echoed = json.loads(result.stdout)
    assert echoed["body_length"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("offered,expected", [
    pytest.param(("h2", "http/1.1"), "h2", id="h2-preferred"),
    pytest.param(("http/1.1",), "http/1.1", id="http1-only-client"),
    pytest.param((), None, id="no-alpn"),
])
def test_alpn_selects_h2_when_offered(server: Server, certificates: Certificates,
                                      offered: tuple[str, ...], expected: str | None) -> None:
    context = certificates.client_context(offered)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == expected
        if expected != "h2":
            tls.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert tls.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_h2_over_tls_environ(server: Server, certificates: Certificates) -> None:
    with H2Connection(server.port, tls=certificates.client_context()) as conn:
        response = conn.handshake().get("/environ-h2")
    environ = json.loads(response.body)
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["HTTP_HOST"] == "127.0.0.1"


def test_invalid_preface_after_alpn_h2_is_protocol_error(server: Server,
                                                         certificates: Certificates) -> None:
    with H2Connection(server.port, tls=certificates.client_context()) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + frame(0x4, 0, 0))
        conn.expect_connection_error(PROTOCOL_ERROR)
    with H2Connection(server.port, tls=certificates.client_context()) as conn:
        conn.send(PREFACE[:-2] + b"XX")
        conn.expect_connection_error(PROTOCOL_ERROR)


def test_nghttp_over_tls(server: Server, certificates: Certificates) -> None:
    result = subprocess.run([tool("nghttp"), "-nv", "--timeout=20", url(server)],
                            capture_output=True, timeout=30, check=False)
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    assert "recv SETTINGS frame" in output and "; ACK" in output
    assert "recv (stream_id=13) :status: 200" in output
    assert "END_STREAM" in output


# -- a browser ------------------------------------------------------------------------------


def spki_hash(certificate_path: Path) -> str:
    """Base64 SHA-256 of the certificate's public key: what Chromium's
    --ignore-certificate-errors-spki-list trusts (that key only)."""
    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    der = certificate.public_key().public_bytes(Encoding.DER,
                                                PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def flask_tls_server(tmp_path_factory: pytest.TempPathFactory,
                     certificates: Certificates) -> Iterator[Server]:
    pytest.importorskip("flask")
    folder = REPO_ROOT / "examples" / "flask_app"
    server = Server(tmp_path_factory.mktemp("flask-h2"), "", "--config", "wsgiserve.toml",
                    "--threads", "4", "--access-logfile", "-", *certificates.server_args(),
                    pythonpath=[folder], cwd=folder).start()
    yield server
    server.stop()


def test_chromium_loads_the_flask_example_over_h2(flask_tls_server: Server,
                                                  certificates: Certificates,
                                                  tmp_path: Path) -> None:
    base = f"https://localhost:{flask_tls_server.port}"
    spki = spki_hash(certificates.cert_path)
    with Browser(tmp_path / "profile", f"--ignore-certificate-errors-spki-list={spki}") \
            as browser:
        browser.open(f"{base}/?autosubmit=sent%20over%20h2")
        # The script submits the form; the POST's 303 brings the page back with it.
        browser.wait_for("document.readyState === 'complete' && "
                         "document.body.innerText.includes('sent over h2')")
        entries = json.loads(browser.evaluate(
            "JSON.stringify(performance.getEntries()"
            ".filter(e => e.entryType === 'navigation' || e.entryType === 'resource')"
            ".map(e => [e.name, e.nextHopProtocol]))"))
    names = {name.replace(base, "") for name, _ in entries}
    assert {"/", "/static/style.css", "/static/app.js"} <= names, entries
    assert all(protocol == "h2" for _, protocol in entries), entries
    wait_for_line(flask_tls_server, '"POST /messages HTTP/2.0" 303')
    wait_for_line(flask_tls_server, '"GET /static/app.js HTTP/2.0" 200')
    log = flask_tls_server.log()
    browser_lines = [line for line in log.splitlines() if "HeadlessChrome" in line]
    assert any('"POST /messages HTTP/2.0" 303' in line for line in browser_lines), log
