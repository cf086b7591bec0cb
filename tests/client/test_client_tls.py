"""TLS: verification on by default, cafile, host names, SNI, expiry, client certificates,
and how a body ends: with TLS close_notify, or with a bare TCP close (a possible truncation).

Certificates come from ``trustme`` at test time.
"""
from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
import trustme
from client_peers import (
    TEST_TIMEOUTS,
    PeerConnection,
    PeerFactory,
    Script,
    answer,
    chunked,
    respond,
)

from wsgiserve.client import (
    CertificateError,
    ClientError,
    IncompleteResponse,
    Pool,
    TLSError,
    TLSSettings,
    TruncatedResponse,
)
from wsgiserve.client.cli import main


def _server_context(ca: trustme.CA, *names: str, **options: object) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names, **options).configure_cert(context)  # type: ignore[arg-type]
    return context


def _pool(**tls: object) -> Pool:
    return Pool(timeouts=TEST_TIMEOUTS, tls=TLSSettings(**tls), trust_env=False)  # type: ignore[arg-type]


def test_verified_with_cafile_and_kept_alive(peer: PeerFactory, tls_server_context: ssl.SSLContext,
                                            ca_file: str) -> None:
    server = peer(answer(respond(200, b"one"), respond(200, b"two")),
                  tls_context=tls_server_context)
    with _pool(cafile=ca_file) as pool:
        assert pool.get(f"https://localhost:{server.port}/").read() == b"one"
        assert pool.get(f"https://localhost:{server.port}/").read() == b"two"
    assert server.connection_count == 1


def test_ip_address_certificate(peer: PeerFactory, tls_server_context: ssl.SSLContext,
                                ca_file: str) -> None:
    server = peer(answer(respond(200, b"ip")), tls_context=tls_server_context)
    with _pool(cafile=ca_file) as pool:
        assert pool.get(server.url()).read() == b"ip"


def test_default_trust_store_rejects_an_unknown_ca(peer: PeerFactory,
                                                   tls_server_context: ssl.SSLContext) -> None:
    server = peer(answer(respond(200, b"never")), tls_context=tls_server_context)
    with _pool() as pool, pytest.raises(CertificateError) as caught:
        pool.get(f"https://localhost:{server.port}/")
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert caught.value.exit_code == 60
    assert server.requests == []


def test_host_name_mismatch(peer: PeerFactory, ca: trustme.CA, ca_file: str) -> None:
    server = peer(answer(respond(200, b"never")), tls_context=_server_context(ca, "wrong.test"))
    with _pool(cafile=ca_file) as pool, pytest.raises(CertificateError, match="[Hh]ost"):
        pool.get(f"https://localhost:{server.port}/")
    assert server.requests == []


def test_expired_certificate(peer: PeerFactory, ca: trustme.CA, ca_file: str) -> None:
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    context = _server_context(ca, "localhost", not_before=past - datetime.timedelta(days=30),
                              not_after=past)
    server = peer(answer(respond(200, b"never")), tls_context=context)
    with _pool(cafile=ca_file) as pool, pytest.raises(CertificateError, match="expired"):
        pool.get(f"https://localhost:{server.port}/")


def test_insecure_skips_verification(peer: PeerFactory, ca: trustme.CA) -> None:
    server = peer(answer(respond(200, b"anyway")), tls_context=_server_context(ca, "wrong.test"))
    with _pool(verify=False) as pool:
        assert pool.get(f"https://localhost:{server.port}/").read() == b"anyway"


def test_sni_carries_the_host_name(peer: PeerFactory, ca: trustme.CA, ca_file: str) -> None:
    names: list[str | None] = []
    context = _server_context(ca, "localhost", "127.0.0.1")
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = peer(answer(respond(200, b"x")), tls_context=context)
    with _pool(cafile=ca_file) as pool:
        pool.get(f"https://localhost:{server.port}/").read()
        pool.close()
    with _pool(cafile=ca_file) as pool:
        pool.get(f"https://127.0.0.1:{server.port}/").read()
    assert names == ["localhost", None]   # RFC 6066 §3: no SNI for an IP address


def test_client_certificate(peer: PeerFactory, ca: trustme.CA, ca_file: str,
                            tmp_path: Path) -> None:
    context = _server_context(ca, "localhost")
    context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(context)
    subjects: list[object] = []

    def script(connection: PeerConnection) -> None:
        sock = connection.sock
        assert isinstance(sock, ssl.SSLSocket)
        subjects.append(sock.getpeercert())
        answer(respond(200, b"hello client"))(connection)

    server = peer(script, tls_context=context)
    client_pem = tmp_path / "client.pem"
    ca.issue_cert("client@example.test").private_key_and_cert_chain_pem.write_to_path(
        str(client_pem))
    with _pool(cafile=ca_file, certfile=str(client_pem)) as pool:
        assert pool.get(f"https://localhost:{server.port}/").read() == b"hello client"
    assert subjects and subjects[0]
    with _pool(cafile=ca_file) as pool, pytest.raises(ClientError):
        pool.get(f"https://localhost:{server.port}/").read()


def test_unreadable_cafile_is_a_tls_error(tmp_path: Path) -> None:
    with _pool(cafile=str(tmp_path / "missing.pem")) as pool, pytest.raises(TLSError):
        pool.get("https://localhost:1/")


def test_plain_http_to_a_tls_port_fails_cleanly(peer: PeerFactory,
                                               tls_server_context: ssl.SSLContext) -> None:
    server = peer(answer(respond(200, b"x")), tls_context=tls_server_context)
    with _pool() as pool, pytest.raises(ClientError):
        pool.get(f"http://127.0.0.1:{server.port}/")


# -- the end of a body over TLS: close_notify or a bare TCP close (RFC 9112 §9.8) --------------
def _answer_then_close(raw: bytes, *, notify: bool) -> Script:
    """Answer one request with ``raw``, then close: after TLS close_notify (``unwrap``), or
    with the TCP close alone, as a truncation attack or a careless server would."""
    def script(connection: PeerConnection) -> None:
        if connection.read_request() is None:
            return
        connection.send(raw)
        sock = connection.sock
        assert isinstance(sock, ssl.SSLSocket)
        if notify:
            try:
                sock.unwrap()   # sends close_notify, then waits for the client's close
            except (OSError, ssl.SSLError):
                pass
        connection.close()  # SSLSocket.close() sends no close_notify
    return script


CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
TLS_ENDINGS = [
    pytest.param(CLOSE_DELIMITED, True, b"until the end", id="close-delimited-with-notify"),
    pytest.param(CLOSE_DELIMITED, False, TruncatedResponse, id="close-delimited-without-notify"),
    pytest.param(b"HTTP/1.0 200 OK\r\n\r\nold", False, TruncatedResponse,
                 id="http10-close-delimited-without-notify"),
    pytest.param(b"HTTP/1.1 200 OK\r\n\r\n", False, TruncatedResponse,
                 id="empty-close-delimited-without-notify"),
    pytest.param(respond(200, b"complete"), False, b"complete",
                 id="content-length-complete-without-notify"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"all"),
                 False, b"all", id="chunked-complete-without-notify"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", False,
                 IncompleteResponse, id="content-length-short-without-notify"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True,
                 IncompleteResponse, id="content-length-short-with-notify"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nshort\r\n", False,
                 IncompleteResponse, id="chunked-short-without-notify"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nshort\r\n", True,
                 IncompleteResponse, id="chunked-short-with-notify"),
]


@pytest.mark.parametrize(("raw", "notify", "expected"), TLS_ENDINGS)
def test_end_of_body_over_tls(peer: PeerFactory, tls_server_context: ssl.SSLContext,
                              ca_file: str, raw: bytes, notify: bool,
                              expected: bytes | type[IncompleteResponse]) -> None:
    server = peer(_answer_then_close(raw, notify=notify), tls_context=tls_server_context)
    with _pool(cafile=ca_file) as pool:
        response = pool.get(f"https://localhost:{server.port}/")
        if isinstance(expected, bytes):
            assert response.read() == expected
            assert response.is_complete
            return
        pieces: list[bytes] = []
        with pytest.raises(expected) as caught:
            pieces.extend(response)
        assert not response.is_complete and pool.idle_count == 0
    assert type(caught.value) is expected
    assert b"".join(pieces) in raw   # what arrived was delivered, then the error
    assert caught.value.exit_code == (56 if expected is TruncatedResponse else 18)


def test_truncated_tls_body_exits_56_from_the_cli(peer: PeerFactory,
                                                   tls_server_context: ssl.SSLContext,
                                                   ca_file: str,
                                                   capfdbinary: pytest.CaptureFixture[bytes]
                                                   ) -> None:
    server = peer(_answer_then_close(CLOSE_DELIMITED, notify=False),
                  _answer_then_close(CLOSE_DELIMITED, notify=True),
                  tls_context=tls_server_context)
    url = f"https://localhost:{server.port}/"
    assert main(["--cacert", ca_file, url]) == 56
    out, err = capfdbinary.readouterr()
    assert out == b"until the end" and b"close_notify" in err
    assert main(["--cacert", ca_file, url]) == 0
    assert capfdbinary.readouterr()[0] == b"until the end"


def test_idle_tls_connection_closed_without_notify_is_retried(
        peer: PeerFactory, tls_server_context: ssl.SSLContext, ca_file: str) -> None:
    # The second request arrives on a connection the server drops unanswered, with no
    # close_notify: it never reached the application, so a GET is sent again.
    def drop_next(connection: PeerConnection) -> None:
        connection.read_request()
        connection.send(respond(200, b"first"))
        connection.read_request()
        connection.close()

    server = peer(drop_next, answer(respond(200, b"second")), tls_context=tls_server_context)
    with _pool(cafile=ca_file) as pool:
        assert pool.get(f"https://localhost:{server.port}/").read() == b"first"
        assert pool.get(f"https://localhost:{server.port}/").read() == b"second"
    assert server.connection_count == 2
