"""Client-side ``SSLContext``: built once per pool (never per connection), verifying by default.

The server's TLS lives in ``wsgiserve/tls.py``; the two never import each other.
"""
from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from wsgiserve.client.errors import Phase, translate_error


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """What the client's TLS context is built from.

    ``verify`` False (curl ``-k``) skips both the chain and the host name check.
    ``cafile`` replaces the system trust store; ``certfile``/``keyfile`` is a client
    certificate (the key may sit in ``certfile``).
    """

    verify: bool = True
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None


def create_client_context(settings: TLSSettings = TLSSettings(),
                          alpn_protocols: Sequence[str] = ("http/1.1",)) -> ssl.SSLContext:
    """Return an ``SSLContext`` for connecting to servers.

    Verification uses the system trust store (``ssl.create_default_context``) unless
    ``cafile`` is given; host names are checked, SNI is sent by ``wrap_socket`` from the
    ``server_hostname`` the connection passes. ALPN offers ``alpn_protocols`` (a pool
    offers ``h2`` too unless it speaks HTTP/1.1 only); with ``h2`` offered, renegotiation
    is refused (RFC 9113 §9.2.1; TLS 1.2 at least and no compression are the defaults).

    Raises:
        TLSError: a file cannot be read or does not hold what it should.
    """
    try:
        if settings.cafile is not None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.cafile)
        else:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if not settings.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if settings.certfile is not None:
            context.load_cert_chain(settings.certfile, settings.keyfile)
    except OSError as exc:  # ssl.SSLError is one
        files = ", ".join(f for f in (settings.cafile, settings.certfile, settings.keyfile) if f)
        raise translate_error(exc, Phase.TLS_FILES, files or "system trust store") from exc
    context.set_alpn_protocols(list(alpn_protocols))
    if "h2" in alpn_protocols:
        context.options |= ssl.OP_NO_RENEGOTIATION
    return context
