"""TLS end to end on a real ``python -m wsgiserve``: Python's ssl client, our HTTP client,
curl --cacert and openssl s_client; mTLS required and optional with the environ checked;
silent handshakes that must not stall others; plain HTTP on the TLS port; start-up errors;
and a certificate swapped on disk served after SIGHUP with no failed request."""
from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import trustme
from tls_servers import Server, get, pem_files, read_response

from wsgiserve.client import Pool
from wsgiserve.client import TLSSettings as ClientTLS

ENVIRON_APP = '''
import os

def app(environ, start_response):
    keys = ("wsgi.url_scheme", "SSL_PROTOCOL", "SSL_CIPHER", "SSL_CLIENT_VERIFY",
            "SSL_CLIENT_S_DN", "SSL_CLIENT_I_DN", "SSL_CLIENT_M_SERIAL", "SSL_CLIENT_V_START",
            "SSL_CLIENT_V_END", "REMOTE_ADDR")
    body = repr({key: environ.get(key) for key in keys}).encode()
    if environ["PATH_INFO"] == "/file":
        path = os.path.join(os.path.dirname(__file__), "payload.bin")
        start_response("200 OK", [("Content-Length", str(os.path.getsize(path)))])
        return environ["wsgi.file_wrapper"](open(path, "rb"))
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


class Site:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = trustme.CA()
        self.certfile, self.keyfile = pem_files(directory, self.ca.issue_cert("localhost",
                                                                              "127.0.0.1"),
                                                "server")
        self.ca_file = str(directory / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        (directory / "environ_app.py").write_text(ENVIRON_APP)

    def server(self, *args: str) -> Server:
        return Server(self.directory, "environ_app:app", "--certfile", self.certfile,
                      "--keyfile", self.keyfile, *args)

    def client_context(self, client_cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if client_cert is not None:
            client_cert.configure_cert(context)
        return context


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def environ_of(sock: socket.socket) -> dict[str, Any]:
    status, _, body = get(sock)
    assert status == 200
    result: dict[str, Any] = eval(body)  # noqa: S307 - our own app's repr of a dict
    return result


def test_https_keep_alive_with_python_ssl(site: Site) -> None:
    with site.server() as server, server.connect_tls(site.client_context()) as sock:
        assert server.scheme == "https"
        first = environ_of(sock)
        second = environ_of(sock)
        assert sock.selected_alpn_protocol() is None  # the client offered none
        cipher = sock.cipher()
    assert cipher is not None and first["SSL_CIPHER"] == cipher[0]
    assert first == second
    assert first["wsgi.url_scheme"] == "https"
    assert first["SSL_PROTOCOL"] == "TLSv1.3"
    assert first["SSL_CLIENT_VERIFY"] == "NONE"


def test_large_response_and_file_wrapper_fall_back_to_reads(site: Site) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB: many TLS records, a full socket buffer
    (site.directory / "payload.bin").write_bytes(payload)
    with site.server() as server, server.connect_tls(site.client_context()) as sock:
        for _ in range(2):
            status, _, body = get(sock, "/file")
            assert status == 200 and body == payload


def test_our_client_and_curl_and_openssl(site: Site) -> None:
    with site.server() as server:
        url = f"https://localhost:{server.port}/"
        curl = subprocess.run(["curl", "-sS", "--cacert", site.ca_file, "--http1.1",
                               "-w", "\n%{http_code} %{http_version}", url],
                              capture_output=True, text=True, timeout=20)
        assert curl.returncode == 0, curl.stderr
        body, _, status = curl.stdout.rpartition("\n")
        assert status == "200 1.1" and "'https'" in body
        s_client = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile",
             site.ca_file, "-servername", "localhost", "-verify_return_error", "-quiet",
             "-ign_eof"],
            input="GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            capture_output=True, text=True, timeout=20)
        assert s_client.stdout.startswith("HTTP/1.1 200 "), s_client.stderr
        brief = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile",
             site.ca_file, "-alpn", "h2,http/1.1"],
            input="", capture_output=True, text=True, timeout=20)
        # HTTP/2 is on by default: offered h2 and HTTP/1.1, the server picks h2.
        assert "ALPN protocol: h2" in brief.stdout
        assert "Verify return code: 0 (ok)" in brief.stdout
        with Pool(tls=ClientTLS(cafile=site.ca_file)) as pool:
            for _ in range(2):  # the second on the pooled keep-alive connection
                response = pool.request("GET", url)
                assert response.status == 200
                assert b"'https'" in response.read()


def test_mtls_required(site: Site) -> None:
    client_cert = site.ca.issue_cert("client.example", common_name="client one")
    with site.server("--cert-reqs", "required", "--ca-certs", site.ca_file) as server:
        with server.connect_tls(site.client_context(client_cert)) as sock:
            seen = environ_of(sock)
        # Without a certificate: the TLS 1.3 client learns of the refusal on its first read.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with server.connect_tls(site.client_context()) as sock:
                get(sock)
        stranger = trustme.CA().issue_cert("stranger.example")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with server.connect_tls(site.client_context(stranger)) as sock:
                get(sock)
        # The server survived both refusals.
        with server.connect_tls(site.client_context(client_cert)) as sock:
            assert environ_of(sock)["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert seen["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert seen["SSL_CLIENT_S_DN"].startswith("CN=client one,")
    assert "O=trustme" in seen["SSL_CLIENT_I_DN"]
    assert re.fullmatch(r"[0-9A-F]+", seen["SSL_CLIENT_M_SERIAL"])
    assert seen["SSL_CLIENT_V_START"].endswith(" GMT")
    assert seen["SSL_CLIENT_V_END"].endswith(" GMT")


def test_mtls_optional(site: Site) -> None:
    client_cert = site.ca.issue_cert("client.example")
    with site.server("--cert-reqs", "optional", "--ca-certs", site.ca_file) as server:
        with server.connect_tls(site.client_context()) as sock:
            anonymous = environ_of(sock)
        with server.connect_tls(site.client_context(client_cert)) as sock:
            known = environ_of(sock)
    assert anonymous["SSL_CLIENT_VERIFY"] == "NONE" and anonymous["SSL_CLIENT_S_DN"] is None
    assert known["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert known["SSL_CLIENT_S_DN"].startswith("OU=Testing cert #")  # trustme's subject


def test_silent_handshakes_do_not_stall_others(site: Site) -> None:
    # gunicorn's gthread worker stalls on twenty of these; one thread here.
    with site.server("--threads", "1") as server:
        silent = [server.connect() for _ in range(20)]
        half = [server.connect() for _ in range(5)]
        try:
            for sock in half:  # a ClientHello cut short is no better
                sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            with server.connect_tls(site.client_context(), timeout_s=5) as sock:
                assert environ_of(sock)["wsgi.url_scheme"] == "https"
        finally:
            for sock in silent + half:
                sock.close()


def test_stalled_handshake_times_out(site: Site) -> None:
    with site.server("--header-timeout", "0.5", "--log-level", "debug") as server:
        with server.connect() as sock:
            sock.settimeout(10)
            assert sock.recv(100) == b""  # closed by the server at the deadline
        server.wait_for(re.compile("handshaking from 127.0.0.1 timed out"))


def test_plain_http_on_the_tls_port(site: Site) -> None:
    with site.server() as server:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, headers, body = read_response(sock)
            assert sock.recv(100) == b""
        with server.connect() as sock:  # garbage that is neither: a clean close
            sock.sendall(b"\x00" * 64)
            try:
                assert sock.recv(100) == b""
            except ConnectionResetError:
                pass
        with server.connect_tls(site.client_context()) as tls_sock:
            assert environ_of(tls_sock)["wsgi.url_scheme"] == "https"
    assert status == 400
    assert headers["connection"] == "close"
    assert b"The plain HTTP request was sent to HTTPS port" in body
    assert "Traceback" not in server.log


def test_close_notify_after_connection_close(site: Site) -> None:
    with site.server() as server, server.connect_tls(site.client_context()) as sock:
        status, _, _ = get(sock, headers="Connection: close\r\n")
        assert status == 200
        # A clean TLS EOF: close_notify came before the FIN (a truncation would raise).
        assert sock.recv(100) == b""


def test_misconfiguration_fails_start_up_naming_the_file(site: Site) -> None:
    other_key = site.directory / "other.key"
    site.ca.issue_cert("other").private_key_pem.write_to_path(str(other_key))
    missing = str(site.directory / "nope.pem")
    cases = [
        (["--certfile", site.certfile, "--keyfile", missing], f"cannot read {missing}"),
        (["--certfile", site.certfile, "--keyfile", str(other_key)],
         f"the key in {other_key} does not match the certificate in {site.certfile}"),
    ]
    for flags, message in cases:
        server = Server(site.directory, "environ_app:app", *flags)
        with pytest.raises(AssertionError):
            server.start(timeout_s=15)
        code = server.wait_exit()
        assert code != 0
        assert message in server.log
        assert "Traceback" not in server.log


def test_certificate_rotation_on_hup(site: Site) -> None:
    """Swap the files, HUP: new connections get the new certificate, none fails."""
    new_ca = trustme.CA()
    both = ssl.create_default_context(cafile=site.ca_file)
    new_ca.configure_trust(both)
    with site.server("--workers", "2") as server:
        served = _serial_of(server, both)
        failures: list[BaseException] = []
        done = threading.Event()
        counts = [0]
        progress = threading.Condition()

        def load() -> None:
            sock: ssl.SSLSocket | None = None
            while not done.is_set():
                try:
                    sock = _request_on(server, both, sock)
                    with progress:
                        counts[0] += 1
                        progress.notify_all()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failures.append(exc)
                    return
            if sock is not None:
                sock.close()

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            new_cert, new_key = pem_files(site.directory, new_ca.issue_cert("localhost"),
                                          "new")
            # Renewal tools replace files by rename, so a reader never sees half a file.
            shutil.copy(new_key, site.keyfile + ".tmp")
            shutil.copy(new_cert, site.certfile + ".tmp")
            Path(site.keyfile + ".tmp").replace(site.keyfile)
            Path(site.certfile + ".tmp").replace(site.certfile)
            mark = len(server.lines)
            server.signal(signal.SIGHUP)
            server.wait_for(re.compile(r"reload \(.*\) done"), timeout_s=20, start=mark)
            # Once both old workers are gone, every connection is a new worker's.
            server.wait_for(re.compile(r"worker \d+ \(pid \d+\) (exited|was killed)"),
                            timeout_s=40, start=mark, count=2)
            before = counts[0]
            rotated = _serial_of(server, both)
            expected = ssl._ssl._test_decode_cert(new_cert)  # type: ignore[attr-defined]  # the reference decoder
            _wait_for_more(progress, counts, before)
        finally:
            done.set()
            for thread in threads:
                thread.join(20)
    assert not failures, failures[:3]
    assert rotated == expected["serialNumber"] != served


def _request_on(server: Server, context: ssl.SSLContext,
                sock: ssl.SSLSocket | None) -> ssl.SSLSocket:
    """One GET, reusing ``sock`` if it is still open. As HTTP clients do (RFC 9112 §9.3.1),
    a reused connection that closes before any response byte is retried on a new one;
    a failure on a new connection is a failed request and raises."""
    if sock is not None:
        try:
            status, _, _ = get(sock)
            assert status == 200
            return sock
        except (ConnectionError, ssl.SSLError):
            sock.close()
    sock = server.connect_tls(context)
    status, _, _ = get(sock)
    assert status == 200
    return sock


def _wait_for_more(progress: threading.Condition, counts: list[int], before: int) -> None:
    """The load kept going after the rotation."""
    with progress:
        if not progress.wait_for(lambda: counts[0] > before + 20, timeout=20):
            raise AssertionError("the load stopped after the rotation")


def _serial_of(server: Server, context: ssl.SSLContext) -> str:
    with server.connect_tls(context) as sock:
        certificate = sock.getpeercert()
        environ_of(sock)
    assert certificate is not None
    return str(certificate["serialNumber"])


def test_proxy_protocol_before_tls(site: Site) -> None:
    """HAProxy in TCP mode with send-proxy: the PROXY header, then the ClientHello."""
    header = b"PROXY TCP4 203.0.113.77 127.0.0.1 4321 443\r\n"
    with site.server("--proxy-protocol") as server:
        raw = server.connect()
        raw.sendall(header)
        with site.client_context().wrap_socket(raw, server_hostname="localhost") as sock:
            seen = environ_of(sock)
        # Without the header the TLS bytes are not a PROXY header: closed.
        with server.connect() as bare, pytest.raises((ssl.SSLError, ConnectionError)):
            site.client_context().wrap_socket(bare, server_hostname="localhost")
    assert seen["REMOTE_ADDR"] == "203.0.113.77"
    assert seen["wsgi.url_scheme"] == "https" and seen["SSL_PROTOCOL"] == "TLSv1.3"
