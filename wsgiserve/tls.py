"""Server-side TLS: the ``SSLContext`` built from ``[tls]``, a non-blocking handshake step,
and the mod_ssl environ fields of a finished handshake.

The context is built once per worker process (``server_context``), never per connection
(gunicorn rebuilds it, re-reading the chain from disk, for every accepted connection), so a
certificate renewed on disk is served by the workers started after the next SIGHUP. The
arbiter calls ``check_config`` before it forks, so a bad file fails start-up or the reload
with a message naming the file. The HTTP client has its own client-side TLS code.
"""
from __future__ import annotations

import ssl
from collections.abc import Sequence
from enum import Enum
from typing import Any, Final

from wsgiserve.config import TLS, ConfigError

__all__ = [
    "HandshakeResult",
    "TLSConfigError",
    "check_config",
    "connection_environ",
    "handshake_step",
    "is_plain_http",
    "server_context",
]

_MIN_VERSIONS: Final = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}

# OpenSSL's reasons for a first record that is plain text: "GET ", "POST", "HEAD", "PUT "
# (HTTP_REQUEST) or "CONNECT" (HTTPS_PROXY_REQUEST).
_PLAIN_HTTP_REASONS: Final = frozenset({"HTTP_REQUEST", "HTTPS_PROXY_REQUEST"})

# X.509 attribute names as getpeercert() spells them -> the short names RFC 4514 (and
# mod_ssl's SSL_CLIENT_S_DN) use; names not listed keep their long form.
_SHORT_NAMES: Final = {
    "commonName": "CN", "countryName": "C", "localityName": "L",
    "stateOrProvinceName": "ST", "organizationName": "O", "organizationalUnitName": "OU",
    "streetAddress": "STREET", "domainComponent": "DC", "userId": "UID",
    "emailAddress": "emailAddress", "serialNumber": "serialNumber", "surname": "SN",
    "givenName": "GN", "title": "title", "initials": "initials",
}


class TLSConfigError(ConfigError):
    """A ``[tls]`` file is missing, unreadable, malformed or inconsistent; the message
    names the setting and the file."""


class HandshakeResult(Enum):
    DONE = "done"
    WANT_READ = "want-read"
    WANT_WRITE = "want-write"


def check_config(settings: TLS) -> None:
    """Build (and drop) the server context, so misconfiguration fails before any fork.

    Does nothing while TLS is off (``certfile`` empty).

    Raises:
        TLSConfigError: naming the setting and file at fault.
    """
    if settings.certfile:
        server_context(settings)


# --http-protocols names -> ALPN protocol ids (RFC 7301 registry).
_ALPN_IDS: Final = {"h2": "h2", "h1": "http/1.1"}


def server_context(settings: TLS, http_protocols: Sequence[str] = ("h1",)) -> ssl.SSLContext:
    """Return the server ``SSLContext`` for ``settings`` (call once per worker process).

    TLS 1.2 or later (``ssl_min_version``), no renegotiation, ALPN ``settings.alpn`` or, by
    default, the ``http_protocols`` served (h2, http/1.1, in that order of preference),
    client certificates per ``cert_reqs`` verified against ``ca_certs``.
    Sockets are wrapped with ``do_handshake_on_connect=False`` by the caller and shaken
    hands with ``handshake_step`` in the event loop.

    Raises:
        TLSConfigError: a file is missing or unreadable, holds no certificate or key, the key
            does not match the certificate, the key is encrypted and the password is missing
            or wrong, or ``ciphers`` selects nothing.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSIONS[settings.ssl_min_version]
    # Renegotiation is a CPU-exhaustion vector and nothing HTTP/1.1 needs (nginx and
    # OpenSSL-based servers refuse client-initiated renegotiation too).
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if settings.ciphers:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError:
            raise TLSConfigError(f"[tls] ciphers: {settings.ciphers!r} selects no cipher "
                                 "this OpenSSL knows") from None
    context.set_alpn_protocols(list(settings.alpn) or
                               [_ALPN_IDS[name] for name in http_protocols])
    _load_chain(context, settings)
    if settings.cert_reqs != "none":
        _load_client_cas(context, settings.ca_certs)
        context.verify_mode = (ssl.CERT_REQUIRED if settings.cert_reqs == "required"
                               else ssl.CERT_OPTIONAL)
    return context


def _read_pem(setting: str, path: str) -> str:
    try:
        with open(path, encoding="latin-1") as file:
            return file.read()
    except OSError as exc:
        raise TLSConfigError(f"[tls] {setting}: cannot read {path}: "
                             f"{exc.strerror or exc}") from None


def _load_chain(context: ssl.SSLContext, settings: TLS) -> None:
    certfile = settings.certfile
    keyfile = settings.keyfile or certfile
    key_setting = "keyfile" if settings.keyfile else "certfile"
    cert_text = _read_pem("certfile", certfile)
    key_text = _read_pem(key_setting, keyfile) if keyfile != certfile else cert_text
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        raise TLSConfigError(f"[tls] certfile: no PEM certificate in {certfile}")
    if "PRIVATE KEY-----" not in key_text:
        raise TLSConfigError(f"[tls] {key_setting}: no PEM private key in {keyfile}")
    try:
        # Parse the certificates alone first, so that a broken chain is blamed on certfile.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=certfile)
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(f"[tls] certfile: cannot load the certificate chain in "
                             f"{certfile}: {_reason(exc)}") from None
    asked: list[bool] = []

    def password() -> bytes:
        # Always a callable: with no password OpenSSL would prompt on the terminal.
        asked.append(True)
        if not settings.keyfile_password:
            raise TLSConfigError(f"[tls] keyfile_password: the key in {keyfile} is "
                                 "encrypted; set keyfile_password")
        return settings.keyfile_password.encode("utf-8")

    try:
        context.load_cert_chain(certfile, keyfile, password=password)
    except TLSConfigError:
        raise
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSConfigError(f"[tls] {key_setting}: the key in {keyfile} does not match "
                                 f"the certificate in {certfile}") from None
        if asked:
            raise TLSConfigError(f"[tls] keyfile_password: wrong password for the key in "
                                 f"{keyfile}") from None
        raise TLSConfigError(f"[tls] {key_setting}: cannot load the private key in "
                             f"{keyfile}: {_reason(exc)}") from None
    except OSError as exc:  # a file vanished between the reads above and this load
        raise TLSConfigError(f"[tls] certfile: cannot load {certfile} / {keyfile}: "
                             f"{exc.strerror or exc}") from None


def _load_client_cas(context: ssl.SSLContext, ca_certs: str) -> None:
    _read_pem("ca_certs", ca_certs)
    try:
        context.load_verify_locations(cafile=ca_certs)
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(f"[tls] ca_certs: cannot load CA certificates from {ca_certs}: "
                             f"{_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason.replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def handshake_step(sock: ssl.SSLSocket) -> HandshakeResult:
    """Advance a non-blocking server handshake as far as the socket allows.

    Returns:
        DONE, or what to wait for before calling again (``SSLWantReadError`` means wait
        until readable, even while sending: OpenSSL decides which).

    Raises:
        ssl.SSLError: the handshake failed (bad ClientHello, no shared protocol or cipher,
            a client certificate that does not verify); see ``is_plain_http``.
        OSError: the peer reset or closed the connection.
    """
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        return HandshakeResult.WANT_READ
    except ssl.SSLWantWriteError:
        return HandshakeResult.WANT_WRITE
    return HandshakeResult.DONE


def is_plain_http(exc: BaseException) -> bool:
    """True when a handshake failed because the client spoke plain HTTP."""
    return isinstance(exc, ssl.SSLError) \
        and getattr(exc, "reason", None) in _PLAIN_HTTP_REASONS


def connection_environ(sock: ssl.SSLSocket) -> dict[str, str]:
    """The mod_ssl variables of a finished handshake, set once per connection.

    ``SSL_PROTOCOL`` and ``SSL_CIPHER`` always; with a verified client certificate
    ``SSL_CLIENT_S_DN`` and ``SSL_CLIENT_I_DN`` (RFC 4514 strings, as mod_ssl writes them
    by default since 2.3), ``SSL_CLIENT_M_SERIAL`` (hex), ``SSL_CLIENT_V_START`` and
    ``SSL_CLIENT_V_END`` (``Mon DD HH:MM:SS YYYY GMT``, OpenSSL's format, as mod_ssl).
    ``SSL_CLIENT_VERIFY`` is ``SUCCESS`` or ``NONE`` (a certificate that fails to verify
    fails the handshake, so mod_ssl's ``FAILED:...`` never reaches an app).
    """
    cipher = sock.cipher()
    environ = {"SSL_PROTOCOL": sock.version() or "", "SSL_CIPHER": cipher[0] if cipher else ""}
    certificate: dict[str, Any] | None = None
    if sock.context.verify_mode != ssl.CERT_NONE:
        # Only a verified certificate is decoded: with CERT_NONE getpeercert() is empty.
        certificate = sock.getpeercert()
    if not certificate:
        environ["SSL_CLIENT_VERIFY"] = "NONE"
        return environ
    environ["SSL_CLIENT_VERIFY"] = "SUCCESS"
    environ["SSL_CLIENT_S_DN"] = _rfc4514(certificate.get("subject", ()))
    environ["SSL_CLIENT_I_DN"] = _rfc4514(certificate.get("issuer", ()))
    environ["SSL_CLIENT_M_SERIAL"] = str(certificate.get("serialNumber", ""))
    environ["SSL_CLIENT_V_START"] = str(certificate.get("notBefore", ""))
    environ["SSL_CLIENT_V_END"] = str(certificate.get("notAfter", ""))
    return environ


def _rfc4514(name: Any) -> str:
    """getpeercert()'s ((("commonName", "x"),), ...) -> "CN=x,O=y,C=z" (RFC 4514: the
    last RDN of the certificate first; ``+`` joins a multi-valued RDN)."""
    rdns = []
    for rdn in reversed(name):
        rdns.append("+".join(f"{_SHORT_NAMES.get(key, key)}={_escape_dn(str(value))}"
                             for key, value in rdn))
    return ",".join(rdns)


def _escape_dn(value: str) -> str:
    # RFC 4514 §2.4: escape , + " \ < > ; everywhere, # and space at the start, space at
    # the end, and NUL as a hex pair.
    out = []
    for index, char in enumerate(value):
        if char in ',+"\\<>;' or (index == 0 and char in "# ") \
                or (index == len(value) - 1 and char == " "):
            out.append("\\" + char)
        elif char == "\0":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)

