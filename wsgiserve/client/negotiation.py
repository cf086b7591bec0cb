"""Which HTTP version a pool speaks: the ``HttpVersion`` choice (curl's --http1.1, --http2,
--http2-prior-knowledge), the ALPN ids it offers, and RFC 9113 §9.2's rules for the TLS
connection HTTP/2 runs on. Pure functions over what the handshake reports; no socket work.
"""
from __future__ import annotations

from enum import Enum
from typing import Final

__all__ = ["ALPN_H2", "ALPN_HTTP11", "HttpVersion", "alpn_protocols", "h2_tls_problem",
           "is_h2_direct"]

# RFC 9113 §3.2 and RFC 7301: the ALPN protocol ids.
ALPN_H2: Final = "h2"
ALPN_HTTP11: Final = "http/1.1"
# RFC 9113 §9.2.1: TLS 1.2 or later.
_H2_TLS_VERSIONS: Final = frozenset({"TLSv1.2", "TLSv1.3"})
# RFC 9113 §9.2.2 and Appendix A: over TLS 1.2, only ephemeral key exchange with an AEAD
# cipher is allowed (the block list is every other suite); OpenSSL names them so.
_H2_KEY_EXCHANGES: Final = ("ECDHE-", "DHE-")
_H2_AEAD_MARKER: Final = "-GCM-"
_H2_AEAD_SUFFIX: Final = "-CHACHA20-POLY1305"


class HttpVersion(Enum):
    """What a pool speaks.

    ``HTTP_2`` (the default, curl's ``--http2``): https offers ALPN ``h2,http/1.1`` and
    speaks what the server picks; http stays HTTP/1.1 (no h2c Upgrade). ``HTTP_1_1``
    (``--http1.1``): HTTP/1.1 everywhere, ALPN ``http/1.1`` only.
    ``HTTP_2_PRIOR_KNOWLEDGE`` (``--http2-prior-knowledge``): http speaks HTTP/2 at once
    (RFC 9113 §3.3); https negotiates as with ``HTTP_2``.
    """

    HTTP_1_1 = "1.1"
    HTTP_2 = "2"
    HTTP_2_PRIOR_KNOWLEDGE = "2-prior-knowledge"


def alpn_protocols(version: HttpVersion) -> list[str]:
    """The ALPN ids to offer over TLS, most preferred first."""
    if version is HttpVersion.HTTP_1_1:
        return [ALPN_HTTP11]
    return [ALPN_H2, ALPN_HTTP11]


def is_h2_direct(version: HttpVersion, is_tls: bool, is_forwarded: bool) -> bool:
    """True when a plain-text connection starts with the HTTP/2 preface (prior knowledge).

    A forwarding proxy speaks HTTP/1.1, so requests through one never do.
    """
    return version is HttpVersion.HTTP_2_PRIOR_KNOWLEDGE and not is_tls and not is_forwarded


def h2_tls_problem(tls_version: str | None, cipher_name: str | None,
                   compression: str | None) -> str | None:
    """Why this TLS connection may not carry HTTP/2 (RFC 9113 §9.2), or None if it may.

    Args:
        tls_version, cipher_name, compression: ``SSLSocket.version()``,
            ``SSLSocket.cipher()[0]`` and ``SSLSocket.compression()``.
    """
    if tls_version not in _H2_TLS_VERSIONS:
        return f"HTTP/2 needs TLS 1.2 or later, not {tls_version}"
    if compression is not None:
        return f"HTTP/2 forbids TLS compression ({compression})"
    if tls_version == "TLSv1.2":
        name = cipher_name or ""
        is_aead = _H2_AEAD_MARKER in name or name.endswith(_H2_AEAD_SUFFIX)
        if not (name.startswith(_H2_KEY_EXCHANGES) and is_aead):
            return f"the cipher suite {name} is prohibited for HTTP/2 (RFC 9113 Appendix A)"
    return None
