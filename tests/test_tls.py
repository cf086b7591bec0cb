"""wsgiserve.tls without a server: the context from [tls] settings, start-up errors that
name the file, the non-blocking handshake step, and the mod_ssl environ fields. Certificates
come from trustme at test time. The server end to end is in tests/server/test_tls_server.py.
"""
from __future__ import annotations

import select
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from wsgiserve import tls
from wsgiserve.config import TLS, ConfigError


@dataclass
class Files:
    ca: trustme.CA
    certfile: str
    keyfile: str
    ca_file: str
    directory: Path


@pytest.fixture
def files(tmp_path: Path) -> Files:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    certfile, keyfile = tmp_path / "server.crt", tmp_path / "server.key"
    leaf.private_key_pem.write_to_path(str(keyfile))
    certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return Files(ca, str(certfile), str(keyfile), str(tmp_path / "ca.pem"), tmp_path)


def encrypted_key(files: Files, password: bytes) -> str:
    key = serialization.load_pem_private_key(Path(files.keyfile).read_bytes(), None)
    path = files.directory / "encrypted.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(password)))
    return str(path)


# --- building the context ----------------------------------------------------------------

def test_context_defaults(files: Files) -> None:
    context = tls.server_context(TLS(certfile=files.certfile, keyfile=files.keyfile))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_NONE
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.check_hostname is False


def test_key_inside_certfile(files: Files) -> None:
    combined = files.directory / "combined.pem"
    combined.write_bytes(Path(files.certfile).read_bytes() + Path(files.keyfile).read_bytes())
    tls.check_config(TLS(certfile=str(combined)))


def test_check_config_is_a_no_op_without_tls() -> None:
    tls.check_config(TLS())


def test_encrypted_key_with_password(files: Files) -> None:
    keyfile = encrypted_key(files, b"s3cret")
    tls.check_config(TLS(certfile=files.certfile, keyfile=keyfile,
                                 keyfile_password="s3cret"))


def misconfigurations(files: Files) -> Iterator[tuple[str, TLS, str]]:
    other = files.ca.issue_cert("other.example")
    other_key = files.directory / "other.key"
    other.private_key_pem.write_to_path(str(other_key))
    garbage = files.directory / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
    missing = str(files.directory / "missing.pem")
    encrypted = encrypted_key(files, b"right")
    yield ("missing-certfile", TLS(certfile=missing, keyfile=files.keyfile),
           f"[tls] certfile: cannot read {missing}: No such file or directory")
    yield ("missing-keyfile", TLS(certfile=files.certfile, keyfile=missing),
           f"[tls] keyfile: cannot read {missing}: No such file or directory")
    yield ("key-not-matching", TLS(certfile=files.certfile, keyfile=str(other_key)),
           f"[tls] keyfile: the key in {other_key} does not match the certificate in "
           f"{files.certfile}")
    yield ("wrong-password", TLS(certfile=files.certfile, keyfile=encrypted,
                                         keyfile_password="wrong"),
           f"[tls] keyfile_password: wrong password for the key in {encrypted}")
    yield ("no-password", TLS(certfile=files.certfile, keyfile=encrypted),
           f"[tls] keyfile_password: the key in {encrypted} is encrypted; set "
           "keyfile_password")
    yield ("key-as-certfile", TLS(certfile=files.keyfile, keyfile=files.keyfile),
           f"[tls] certfile: no PEM certificate in {files.keyfile}")
    yield ("cert-as-keyfile", TLS(certfile=files.certfile, keyfile=files.certfile),
           f"[tls] keyfile: no PEM private key in {files.certfile}")
    yield ("no-key-at-all", TLS(certfile=files.certfile),
           f"[tls] certfile: no PEM private key in {files.certfile}")
    yield ("broken-certificate", TLS(certfile=str(garbage), keyfile=files.keyfile),
           f"[tls] certfile: cannot load the certificate chain in {garbage}")
    yield ("missing-ca", TLS(certfile=files.certfile, keyfile=files.keyfile,
                                     cert_reqs="required", ca_certs=missing),
           f"[tls] ca_certs: cannot read {missing}")
    yield ("ca-without-certificates", TLS(certfile=files.certfile,
                                                  keyfile=files.keyfile, cert_reqs="optional",
                                                  ca_certs=files.keyfile),
           f"[tls] ca_certs: cannot load CA certificates from {files.keyfile}")
    yield ("bad-ciphers", TLS(certfile=files.certfile, keyfile=files.keyfile,
                                      ciphers="NO-SUCH-CIPHER"),
           "[tls] ciphers: 'NO-SUCH-CIPHER' selects no cipher")


def test_misconfiguration_names_the_file(files: Files) -> None:
    for name, settings, message in misconfigurations(files):
        with pytest.raises(tls.TLSConfigError) as caught:
            tls.check_config(settings)
        assert str(caught.value).startswith(message), name
        assert isinstance(caught.value, ConfigError)


# --- handshakes over a socket pair -----------------------------------------------------

def client_context(files: Files, client_cert: trustme.LeafCert | None = None
                   ) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=files.ca_file)
    if client_cert is not None:
        client_cert.configure_cert(context)
    return context


def handshake(server_context: ssl.SSLContext, client: ssl.SSLContext
              ) -> tuple[dict[str, str] | BaseException, list[tls.HandshakeResult]]:
    """Drive the server side with handshake_step and poll, the client in a thread."""
    server_sock, client_sock = socket.socketpair()
    client_error: list[BaseException] = []

    def run_client() -> None:
        try:
            client_sock.settimeout(10)
            wrapped = client.wrap_socket(client_sock, server_hostname="localhost")
            wrapped.recv(1)  # read the server's close, if any, past the handshake
            wrapped.close()
        except (OSError, ValueError) as exc:
            client_error.append(exc)
            client_sock.close()

    thread = threading.Thread(target=run_client)
    thread.start()
    server_sock.setblocking(False)
    wrapped = server_context.wrap_socket(server_sock, server_side=True,
                                         do_handshake_on_connect=False)
    steps: list[tls.HandshakeResult] = []
    result: dict[str, str] | BaseException
    try:
        while True:
            step = tls.handshake_step(wrapped)
            steps.append(step)
            if step is tls.HandshakeResult.DONE:
                result = tls.connection_environ(wrapped)
                break
            events = select.POLLIN if step is tls.HandshakeResult.WANT_READ else select.POLLOUT
            poller = select.poll()
            poller.register(wrapped.fileno(), events)
            assert poller.poll(10_000), "handshake stalled"
    except OSError as exc:
        result = exc
    finally:
        wrapped.close()
        thread.join(10)
    return result, steps


def test_handshake_runs_in_steps_and_reports_protocol(files: Files) -> None:
    context = tls.server_context(TLS(certfile=files.certfile, keyfile=files.keyfile))
    fields, steps = handshake(context, client_context(files))
    assert isinstance(fields, dict)
    assert steps[0] is tls.HandshakeResult.WANT_READ and steps[-1] is tls.HandshakeResult.DONE
    assert fields["SSL_PROTOCOL"] == "TLSv1.3"
    assert fields["SSL_CIPHER"].startswith("TLS_")
    assert fields["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_S_DN" not in fields


def test_tls12_cipher_and_min_version(files: Files) -> None:
    context = tls.server_context(TLS(certfile=files.certfile, keyfile=files.keyfile))
    client = client_context(files)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    fields, _ = handshake(context, client)
    assert isinstance(fields, dict)
    assert fields["SSL_PROTOCOL"] == "TLSv1.2"
    assert "-" in fields["SSL_CIPHER"]  # an OpenSSL TLS 1.2 name such as ECDHE-RSA-...
    strict = tls.server_context(TLS(certfile=files.certfile, keyfile=files.keyfile,
                                            ssl_min_version="TLSv1.3"))
    failure, _ = handshake(strict, client)
    assert isinstance(failure, ssl.SSLError)


def test_client_certificate_fields(files: Files) -> None:
    context = tls.server_context(TLS(certfile=files.certfile, keyfile=files.keyfile,
                                             cert_reqs="required", ca_certs=files.ca_file))
    client_cert = files.ca.issue_cert("client@example.com", common_name="Client, One",
                                      organization_name="Acme+Co")
    fields, _ = handshake(context, client_context(files, client_cert))
    assert isinstance(fields, dict), fields
    decoded: Any = ssl._ssl._test_decode_cert(  # type: ignore[attr-defined]  # the reference decoder
        _write(files.directory / "client.pem", client_cert.cert_chain_pems[0].bytes()))
    assert fields["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert fields["SSL_CLIENT_S_DN"].startswith("CN=Client\\, One,")
    assert "O=Acme\\+Co" in fields["SSL_CLIENT_S_DN"]
    # The same strings as OpenSSL's own RFC 2253 printer (which mod_ssl uses).
    pem = str(files.directory / "client.pem")
    for option, key in (("-subject", "SSL_CLIENT_S_DN"), ("-issuer", "SSL_CLIENT_I_DN")):
        printed = subprocess.run(["openssl", "x509", "-noout", option, "-nameopt", "RFC2253",
                                  "-in", pem], capture_output=True, text=True, timeout=10,
                                 check=True).stdout.strip()
        assert printed.split("=", 1)[1] == fields[key]
    assert fields["SSL_CLIENT_M_SERIAL"] == decoded["serialNumber"]
    assert fields["SSL_CLIENT_V_START"] == decoded["notBefore"]
    assert fields["SSL_CLIENT_V_END"] == decoded["notAfter"]
    assert fields["SSL_CLIENT_V_END"].endswith(" GMT")


def test_required_client_certificate_missing_fails(files: Files) -> None:
    context = tls.server_context(TLS(certfile=files.certfile, keyfile=files.keyfile,
                                             cert_reqs="required", ca_certs=files.ca_file))
    failure, _ = handshake(context, client_context(files))
    assert isinstance(failure, (ssl.SSLError, ConnectionError))


def test_optional_client_certificate(files: Files) -> None:
    context = tls.server_context(TLS(certfile=files.certfile, keyfile=files.keyfile,
                                             cert_reqs="optional", ca_certs=files.ca_file))
    fields, _ = handshake(context, client_context(files))
    assert isinstance(fields, dict) and fields["SSL_CLIENT_VERIFY"] == "NONE"
    with_cert, _ = handshake(context, client_context(files, files.ca.issue_cert("c.example")))
    assert isinstance(with_cert, dict) and with_cert["SSL_CLIENT_VERIFY"] == "SUCCESS"
    # A certificate from another CA fails the handshake even when optional.
    stranger = trustme.CA().issue_cert("stranger.example")
    failure, _ = handshake(context, client_context(files, stranger))
    assert isinstance(failure, (ssl.SSLError, ConnectionError))


def test_plain_http_is_recognised(files: Files) -> None:
    context = tls.server_context(TLS(certfile=files.certfile, keyfile=files.keyfile))
    server_sock, client_sock = socket.socketpair()
    with server_sock, client_sock:
        client_sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        wrapped = context.wrap_socket(server_sock, server_side=True,
                                      do_handshake_on_connect=False)
        with pytest.raises(ssl.SSLError) as caught:
            tls.handshake_step(wrapped)
        assert tls.is_plain_http(caught.value)
    assert not tls.is_plain_http(ssl.SSLError(1, "other"))


def test_alpn_http11(files: Files) -> None:
    context = tls.server_context(TLS(certfile=files.certfile, keyfile=files.keyfile))
    client = client_context(files)
    client.set_alpn_protocols(["h2", "http/1.1"])
    server_sock, client_sock = socket.socketpair()
    chosen: list[str | None] = []

    def run_client() -> None:
        client_sock.settimeout(10)
        with client.wrap_socket(client_sock, server_hostname="localhost") as wrapped:
            chosen.append(wrapped.selected_alpn_protocol())

    thread = threading.Thread(target=run_client)
    thread.start()
    server_sock.settimeout(10)
    with context.wrap_socket(server_sock, server_side=True):
        thread.join(10)
    assert chosen == ["http/1.1"]


def test_rfc4514_escaping() -> None:
    escape = tls._escape_dn
    assert escape(" lead") == "\\ lead"
    assert escape("trail ") == "trail\\ "
    assert escape("#x") == "\\#x"
    assert escape('a,b+c"d\\e<f>g;h') == 'a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h'
    name = ((("countryName", "US"),), (("organizationName", "O"),),
            (("commonName", "a"), ("userId", "u")))
    assert tls._rfc4514(name) == "CN=a+UID=u,O=O,C=US"


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)
