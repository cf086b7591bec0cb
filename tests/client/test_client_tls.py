"""TLS: verification on by default, cafile, host names, SNI, expiry, client certificates.

Certificates come from ``trustme`` at test time.
"""
from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
import trustme
from client_peers import TEST_TIMEOUTS, answer, PeerConnection, PeerFactory, respond

from wsgiserve.client import (
    CertificateError,
    ClientError,
    Pool,
    TLSError,
    TLSSettings,
)


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
