"""Before the first HTTP byte: a PROXY protocol header and/or a TLS handshake, done in the
worker's event loop so a slow or silent client never holds a thread.

``connection_factory`` gives the worker ``Connection`` itself when TLS and the PROXY protocol
are both off, so plain HTTP pays nothing for them; otherwise it gives a factory of
``PreambleConnection``, which starts in one of two extra states and then behaves as a
``Connection``::

    READING_PROXY_HEADER -> HANDSHAKING -> READING_HEAD -> ... (see server.connection)
    READING_PROXY_HEADER / HANDSHAKING -> CLOSING (plain HTTP on a TLS port: 400) -> CLOSED

The header is peeked at and only its own bytes are consumed, so the TLS ClientHello (or the
request) behind it stays in the socket. The socket is wrapped for TLS after the header, with
the worker's one ``SSLContext``. Both stages share one deadline, the header timeout (Go's
net/http bounds its TLS handshake by ReadHeaderTimeout the same way). Imported by
``server.worker``; imports ``server.connection``, ``server.proxy``,
``server.proxy_protocol`` and ``tls``.
"""
from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from wsgiserve.config import Proxy, TLSSettings
from wsgiserve.server.connection import Connection, ConnState, Outcome, use_tls
from wsgiserve.server.context import WOULD_BLOCK, ServerContext
from wsgiserve.server.proxy import AddressMatcher
from wsgiserve.server.proxy_protocol import V2_MAX_BYTES, ProxyHeaderParser, ProxyProtocolError

if TYPE_CHECKING:
    import ssl

__all__ = ["ConnectionFactory", "PreambleConnection", "PreambleSettings", "connection_factory"]

_log = logging.getLogger(__name__)

ConnectionFactory = Callable[[socket.socket, Any, ServerContext, dict[str, Any]], Connection]

# Used when header_timeout is 0 (disabled): a handshake must still end (nginx's
# client_header_timeout, which also bounds its handshakes, defaults to 60 s; we use less).
DEFAULT_PREAMBLE_TIMEOUT_S: Final = 10.0
_PREAMBLE_STATES: Final = frozenset({ConnState.READING_PROXY_HEADER, ConnState.HANDSHAKING})


@dataclass(frozen=True)
class PreambleSettings:
    """Built once per worker: the server ``SSLContext`` (None: no TLS) and the peers
    allowed to send a PROXY header (None: no PROXY protocol)."""

    ssl_context: ssl.SSLContext | None
    proxy_allowed: AddressMatcher | None


def connection_factory(tls_settings: TLSSettings, proxy: Proxy,
                       proxy_protocol: bool) -> ConnectionFactory:
    """What the worker calls for each accepted socket; builds the ``SSLContext`` now.

    Raises:
        tls.TLSConfigError: the certificate, key or CA files cannot be used.
    """
    if not tls_settings.certfile and not proxy_protocol:
        return Connection
    ssl_context = None
    if tls_settings.certfile:
        # wsgiserve.tls (and so the ssl module: ~5 MiB per process) only when TLS is on.
        from wsgiserve import tls
        ssl_context = tls.server_context(tls_settings)
        use_tls()
    settings = PreambleSettings(
        ssl_context=ssl_context,
        proxy_allowed=AddressMatcher(proxy.proxy_allow_ips) if proxy_protocol else None)
    return functools.partial(PreambleConnection, settings=settings)


class PreambleConnection(Connection):
    """A ``Connection`` that first reads a PROXY header and/or completes a TLS handshake."""

    def __init__(self, sock: socket.socket, peer: Any, context: ServerContext,
                 base_environ: dict[str, Any], *, settings: PreambleSettings) -> None:
        super().__init__(sock, peer, context, base_environ)
        self._settings = settings
        self.is_tls = settings.ssl_context is not None
        self._is_wrapped = False
        self._is_handshaken = False
        self._proxy_parser: ProxyHeaderParser | None = None
        if settings.proxy_allowed is not None:
            self._proxy_parser = ProxyHeaderParser()
            self.state = ConnState.READING_PROXY_HEADER
        else:
            self.state = ConnState.HANDSHAKING
        timeout_s = context.header_timeout_s or DEFAULT_PREAMBLE_TIMEOUT_S
        self.deadline = time.monotonic() + timeout_s

    def on_readable(self) -> Outcome:
        state = self.state
        if state is ConnState.HANDSHAKING:
            return self._handshake()
        if state is ConnState.READING_PROXY_HEADER:
            return self._read_proxy_header()
        return Connection.on_readable(self)

    def on_writable(self) -> Outcome:
        if self.state is ConnState.HANDSHAKING:
            return self._handshake()
        return Connection.on_writable(self)

    def on_timeout(self) -> Outcome:
        if self.state in _PREAMBLE_STATES:
            _log.debug("%s from %s timed out", self.state.value, self.remote_addr)
        return Connection.on_timeout(self)

    # -- PROXY protocol ----------------------------------------------------------------
    def _read_proxy_header(self) -> Outcome:
        allowed = self._settings.proxy_allowed
        parser = self._proxy_parser
        assert allowed is not None and parser is not None
        if self.remote_addr not in allowed:
            _log.debug("connection from %s closed: not in proxy_allow_ips", self.remote_addr)
            return Outcome.CLOSE
        sock = self.sock
        try:
            data = sock.recv(V2_MAX_BYTES, socket.MSG_PEEK)
            taken = parser.feed(data)
            # The peeked bytes are in the socket buffer: this takes exactly the header's.
            if taken and len(sock.recv(taken)) != taken:
                return Outcome.CLOSE
        except WOULD_BLOCK:
            return Outcome.WAIT_READABLE
        except (ProxyProtocolError, EOFError, OSError) as exc:
            _log.debug("bad PROXY protocol header from %s: %s", self.remote_addr, exc)
            return Outcome.CLOSE
        header = parser.result
        if header is None:
            return Outcome.WAIT_READABLE
        self._proxy_parser = None
        if header.source is not None:
            self.remote_addr, self.remote_port = header.source
            self._base_environ["REMOTE_ADDR"] = self.remote_addr
            self._base_environ["REMOTE_PORT"] = str(self.remote_port)
        if self.is_tls:
            self.set_state(ConnState.HANDSHAKING)
            return self._handshake()
        return self._start_http()

    # -- TLS -----------------------------------------------------------------------------
    def _handshake(self) -> Outcome:
        from wsgiserve import tls  # loaded by connection_factory already
        if not self._is_wrapped:
            ssl_context = self._settings.ssl_context
            assert ssl_context is not None
            try:
                self.sock = ssl_context.wrap_socket(
                    self.sock, server_side=True, do_handshake_on_connect=False)
            except OSError as exc:
                _log.debug("TLS with %s failed to start: %s", self.remote_addr, exc)
                return Outcome.CLOSE
            self._is_wrapped = True
        sock = cast("ssl.SSLSocket", self.sock)
        try:
            result = tls.handshake_step(sock)
        except OSError as exc:
            if tls.is_plain_http(exc):
                return self._answer_plain_http()
            _log.debug("TLS handshake with %s failed: %s", self.remote_addr, exc)
            return Outcome.CLOSE
        if result is tls.HandshakeResult.WANT_READ:
            return Outcome.WAIT_READABLE
        if result is tls.HandshakeResult.WANT_WRITE:
            return Outcome.WAIT_WRITABLE
        self._is_handshaken = True
        self._base_environ.update(tls.connection_environ(sock))
        return self._start_http()

    def _answer_plain_http(self) -> Outcome:
        """Plain HTTP on a TLS port: a plain-text 400, as nginx does, then close."""
        _log.debug("plain HTTP from %s on a TLS port", self.remote_addr)
        response = self._error_response(400, "The plain HTTP request was sent to HTTPS port")
        try:
            # Past the TLS layer (the handshake never happened): a fresh socket buffer
            # takes these few hundred bytes at once.
            socket.socket.send(self.sock, response)
        except OSError:
            return Outcome.CLOSE
        return self._start_closing()

    def _start_lingering(self) -> Outcome:
        if self._is_handshaken:
            # Send close_notify (RFC 8446 §6.1) so the client can tell the end of the
            # response from a truncation; do not wait for the peer's own.
            try:
                cast("ssl.SSLSocket", self.sock).unwrap()
            except (OSError, ValueError):
                pass
        return Connection._start_lingering(self)

    # -- then HTTP ------------------------------------------------------------------------
    def _start_http(self) -> Outcome:
        self.set_state(ConnState.READING_HEAD)
        self.deadline = time.monotonic() + self.context.header_timeout_s
        # The request may already be buffered (it often follows the client's Finished):
        # read now rather than wait for an event that may not come.
        return Connection.on_readable(self)
