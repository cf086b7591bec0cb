"""Before the first HTTP byte: a PROXY protocol header and/or a TLS handshake, done in the
worker's event loop so a slow or silent client never holds a thread.

``Preamble`` is the first protocol of a connection when TLS or the PROXY protocol is on
(``preamble_settings`` is None otherwise, and plain HTTP pays nothing for them)::

    READING_PROXY_HEADER -> HANDSHAKING -> SWITCHED (to HTTP, with ``start_http``)
    READING_PROXY_HEADER / HANDSHAKING -> CLOSING (plain HTTP on a TLS port: 400) -> CLOSED

The header is peeked at and only its own bytes are consumed, so the TLS ClientHello (or the
request) behind it stays in the socket. The socket is wrapped for TLS after the header, with
the worker's one ``SSLContext``. Both stages share one deadline, the header timeout (Go's
net/http bounds its TLS handshake by ReadHeaderTimeout the same way).
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from wsgiserve.config import TLS, Proxy
from wsgiserve.http import RemoteProtocolError
from wsgiserve.server.worker.context import LINGER_S, WOULD_BLOCK, ServerContext
from wsgiserve.server.worker.forwarded import AddressMatcher
from wsgiserve.server.worker.heads import error_response
from wsgiserve.server.worker.protocol import Protocol
from wsgiserve.server.worker.proxy_protocol import (
    V2_MAX_BYTES,
    ProxyHeaderParser,
    ProxyProtocolError,
)
from wsgiserve.server.worker.states import (
    CLOSE,
    CLOSED,
    CLOSING,
    HANDSHAKING,
    READING_PROXY_HEADER,
    SWITCH,
    SWITCHED,
    StateMachine,
    WAIT_READABLE,
    WAIT_WRITABLE,
    Outcome,
)
from wsgiserve.server.worker.transport import HandshakeStep, Transport

if TYPE_CHECKING:
    import ssl

__all__ = ["Preamble", "PreambleSettings", "preamble_settings"]

_log = logging.getLogger(__name__)

# Used when header_timeout is 0 (disabled): a handshake must still end (nginx's
# client_header_timeout, which also bounds its handshakes, defaults to 60 s; we use less).
DEFAULT_PREAMBLE_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True)
class PreambleSettings:
    """Built once per worker: the server ``SSLContext`` (None: no TLS) and the peers
    allowed to send a PROXY header (None: no PROXY protocol)."""

    ssl_context: ssl.SSLContext | None
    proxy_allowed: AddressMatcher | None


def preamble_settings(tls_settings: TLS, proxy: Proxy, proxy_protocol: bool,
                      http_protocols: Sequence[str] = ("h1",)) -> PreambleSettings | None:
    """The worker's preamble settings (None when neither TLS nor PROXY is on); builds the
    ``SSLContext`` now, once per worker process, so a HUP's new workers read renewed
    certificates.

    Raises:
        tls.TLSConfigError: the certificate, key or CA files cannot be used.
    """
    if not tls_settings.certfile and not proxy_protocol:
        return None
    ssl_context = None
    if tls_settings.certfile:
        # wsgiserve.tls (and so the ssl module: ~5 MiB per process) only when TLS is on.
        from wsgiserve import tls
        ssl_context = tls.server_context(tls_settings, http_protocols)
    return PreambleSettings(
        ssl_context=ssl_context,
        proxy_allowed=AddressMatcher(proxy.proxy_allow_ips) if proxy_protocol else None)


class Preamble(StateMachine):
    """Reads a PROXY header and/or completes a TLS handshake, then hands over to HTTP."""

    __slots__ = ("transport", "context", "state", "deadline", "idle_since", "next_protocol",
                 "_settings", "_base_environ", "_proxy_parser", "_start_http")
    protocol_name = "preamble"  # the connection gauges' label (server.counters)

    def __init__(self, transport: Transport, context: ServerContext,
                 base_environ: dict[str, Any], settings: PreambleSettings,
                 start_http: Callable[[], Protocol]) -> None:
        self.transport = transport
        self.context = context
        self._settings = settings
        self._base_environ = base_environ
        self._start_http = start_http
        self.next_protocol: Protocol | None = None
        self.idle_since = 0.0
        self._proxy_parser: ProxyHeaderParser | None = None
        if settings.proxy_allowed is not None:
            self._proxy_parser = ProxyHeaderParser()
            self.state = READING_PROXY_HEADER
        else:
            self.state = HANDSHAKING
        timeout_s = context.header_timeout_s or DEFAULT_PREAMBLE_TIMEOUT_S
        self.deadline = time.monotonic() + timeout_s

    @property
    def is_idle(self) -> bool:
        return False

    def on_readable(self) -> Outcome:
        state = self.state
        if state is HANDSHAKING:
            return self._handshake()
        if state is READING_PROXY_HEADER:
            return self._read_proxy_header()
        if state is CLOSING:
            return CLOSE if self.transport.discard_input() else WAIT_READABLE
        return CLOSE

    def on_writable(self) -> Outcome:
        if self.state is HANDSHAKING:
            return self._handshake()
        return WAIT_READABLE

    def on_timeout(self) -> Outcome:
        _log.debug("%s from %s timed out", self.state.value, self.transport.remote_addr)
        if self.state is HANDSHAKING:
            self._count_handshake(is_ok=False)
        return CLOSE

    def start_graceful_close(self, quiet_since: float) -> Outcome | None:
        return None  # let the handshake finish: HTTP then closes after one request

    def shed(self) -> Outcome | None:
        return None  # the handshake goes on: the request is judged after it

    def close(self) -> None:
        if self.state is not CLOSED:
            self.set_state(CLOSED)
            self.transport.close()

    # -- PROXY protocol ----------------------------------------------------------------
    def _read_proxy_header(self) -> Outcome:
        allowed = self._settings.proxy_allowed
        parser = self._proxy_parser
        assert allowed is not None and parser is not None
        transport = self.transport
        if transport.remote_addr not in allowed:
            _log.debug("connection from %s closed: not in proxy_allow_ips",
                       transport.remote_addr)
            return CLOSE
        sock = transport.sock
        try:
            data = sock.recv(V2_MAX_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            taken = parser.feed(data)
            # The peeked bytes are in the socket buffer: this takes exactly the header's.
            if taken and len(sock.recv(taken, socket.MSG_DONTWAIT)) != taken:
                return CLOSE
        except WOULD_BLOCK:
            transport.read_pending = False
            return WAIT_READABLE
        except (ProxyProtocolError, EOFError, OSError) as exc:
            _log.debug("bad PROXY protocol header from %s: %s", transport.remote_addr, exc)
            return CLOSE
        header = parser.result
        if header is None:
            transport.read_pending = False  # a partial header: all there is was peeked
            return WAIT_READABLE
        self._proxy_parser = None
        if header.source is not None:
            transport.remote_addr, transport.remote_port = header.source
            self._base_environ["REMOTE_ADDR"] = transport.remote_addr
            self._base_environ["REMOTE_PORT"] = str(transport.remote_port)
        if self._settings.ssl_context is not None:
            self.set_state(HANDSHAKING)
            return self._handshake()
        return self._switch_to_http()

    # -- TLS -----------------------------------------------------------------------------
    def _handshake(self) -> Outcome:
        from wsgiserve import tls  # loaded by preamble_settings already
        transport = self.transport
        if not transport.is_tls:
            ssl_context = self._settings.ssl_context
            assert ssl_context is not None
            try:
                transport.start_tls(ssl_context)
            except OSError as exc:
                _log.debug("TLS with %s failed to start: %s", transport.remote_addr, exc)
                self._count_handshake(is_ok=False)
                return CLOSE
        try:
            step = transport.handshake()
        except OSError as exc:
            self._count_handshake(is_ok=False)
            if tls.is_plain_http(exc):
                return self._answer_plain_http()
            _log.debug("TLS handshake with %s failed: %s", transport.remote_addr, exc)
            return CLOSE
        if step == HandshakeStep.WANT_READ:
            transport.read_pending = False
            return WAIT_READABLE
        if step == HandshakeStep.WANT_WRITE:
            return WAIT_WRITABLE
        self._count_handshake(is_ok=True)
        self._base_environ.update(tls.connection_environ(transport.sock))  # type: ignore[arg-type]
        # The request may already be buffered (it often follows the client's Finished):
        # the connection runs HTTP's on_readable at once.
        transport.read_pending = True
        return self._switch_to_http()

    def _count_handshake(self, *, is_ok: bool) -> None:
        if self.context.metrics is not None:
            self.context.metrics.tls_handshake(is_ok)

    def _answer_plain_http(self) -> Outcome:
        """Plain HTTP on a TLS port: a plain-text 400, as nginx does, then close."""
        transport = self.transport
        _log.debug("plain HTTP from %s on a TLS port", transport.remote_addr)
        exc = RemoteProtocolError("The plain HTTP request was sent to HTTPS port")
        response = error_response(exc.status, exc.reason, str(exc), method=None,
                                  date_line=self.context.dates.line())
        try:
            # Past the TLS layer (the handshake never happened): a fresh socket buffer
            # takes these few hundred bytes at once.
            transport.send_raw(response)
            transport.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return CLOSE
        self.set_state(CLOSING)
        self.deadline = time.monotonic() + LINGER_S
        return self.on_readable()

    # -- then HTTP ------------------------------------------------------------------------
    def _switch_to_http(self) -> Outcome:
        self.set_state(SWITCHED)
        protocol = self.next_protocol = self._start_http()
        protocol.deadline = time.monotonic() + self.context.header_timeout_s
        return SWITCH
