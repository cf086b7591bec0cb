"""A blocking HTTP/1.1 client connection: one ``Transport``, one ``ResponseParser``, one state.

It connects (TCP, optionally through a proxy's CONNECT tunnel, optionally TLS), sends one
request at a time and reads the response through the sans-IO core. The connection is the
``BodyStream`` its ``Response`` pulls the body from: at the end of the body it goes IDLE
(and back to the pool) or closes.

State machine (``ConnectionState``); a transition not in ``_TRANSITIONS`` raises::

    NEW ──> IDLE ──> SENDING ──> AWAITING ──> READING_BODY ──> IDLE (keep-alive)
                       │  ↑         ↑                    └──> CLOSED
                       ↓  │         │
                     EXPECTING ─────┘  (final status before 100: the body is not sent)
    any state ──> CLOSED (close(), an error, or a response that ends the connection)
"""
from __future__ import annotations

import itertools
import ssl
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Final

from wsgiserve.client.body import RequestBody
from wsgiserve.client.errors import (
    ClientError,
    InvalidRequest,
    Phase,
    ProtocolError,
    ReadError,
    ServerDisconnected,
    TransportError,
    TruncatedResponse,
    WriteError,
    translate_error,
)
from wsgiserve.client.proxy import Proxy, check_connect_response, connect_request
from wsgiserve.client.response import Response
from wsgiserve.client.timeouts import Timeouts, limit_timeout
from wsgiserve.client.transport import Transport
from wsgiserve.client.url import Origin
from wsgiserve.http.errors import LocalProtocolError, RemoteProtocolError
from wsgiserve.http.events import (
    NEED_DATA,
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
)
from wsgiserve.http.events import Response as ResponseHead
from wsgiserve.http.framing import BodyKind, Framing, choose_request_framing
from wsgiserve.http.limits import HttpLimits
from wsgiserve.http.parser import ParserState, ResponseParser
from wsgiserve.http.writer import BodyWriter, encode_request_head

# A body this small goes out in the same send() as the head (one packet, no Nagle stall).
_COALESCE_BYTES: Final = 16384
_METHODS_WITH_CONTENT: Final = frozenset({"POST", "PUT", "PATCH"})

InformationalCallback = Callable[[InformationalResponse], None]


class ConnectionState(Enum):
    NEW = "new"
    IDLE = "idle"
    SENDING = "sending"
    EXPECTING = "expecting"        # head sent with Expect: 100-continue, body held back
    AWAITING = "awaiting"          # request sent, waiting for the final response head
    READING_BODY = "reading-body"
    CLOSED = "closed"


_C = ConnectionState
_TRANSITIONS: Final[dict[ConnectionState, frozenset[ConnectionState]]] = {
    _C.NEW: frozenset({_C.IDLE, _C.CLOSED}),
    _C.IDLE: frozenset({_C.SENDING, _C.CLOSED}),
    _C.SENDING: frozenset({_C.EXPECTING, _C.AWAITING, _C.CLOSED}),
    _C.EXPECTING: frozenset({_C.SENDING, _C.READING_BODY, _C.CLOSED}),
    _C.AWAITING: frozenset({_C.READING_BODY, _C.CLOSED}),
    _C.READING_BODY: frozenset({_C.IDLE, _C.CLOSED}),
    _C.CLOSED: frozenset({_C.CLOSED}),
}


class Connection:
    """One HTTP/1.1 connection to ``origin``, directly or through ``proxy``.

    With a proxy and an http origin, requests are forwarded (the caller passes an
    absolute-form target); with an https origin, a CONNECT tunnel is opened and TLS runs
    inside it. Not thread-safe: one request at a time.
    """

    def __init__(self, origin: Origin, *, ssl_context: ssl.SSLContext | None = None,
                 timeouts: Timeouts = Timeouts(), proxy: Proxy | None = None,
                 limits: HttpLimits | None = None):
        if origin.is_tls and ssl_context is None:
            raise InvalidRequest("an https connection needs an ssl_context")
        self.origin = origin
        self.proxy = proxy
        self.timeouts = timeouts
        self._ssl_context = ssl_context
        self._limits = limits
        self._transport: Transport | None = None
        self._parser = ResponseParser(limits)
        self._state = ConnectionState.NEW
        self._must_close = False
        self._has_response_bytes = False
        self._is_body_until_close = False   # the response's body ends with the connection
        # The exchange whose body is being read: its deadline, and who takes the connection
        # back once the body has ended.
        self._deadline: float | None = None
        self._on_release: Callable[[Connection], None] | None = None
        self._where = origin.host_port

    # -- state ------------------------------------------------------------------------------
    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def is_idle(self) -> bool:
        return self._state is ConnectionState.IDLE

    def _set_state(self, new: ConnectionState) -> None:
        if new not in _TRANSITIONS[self._state]:
            raise AssertionError(f"connection transition {self._state} -> {new} is not in the table")
        self._state = new

    def is_reusable(self) -> bool:
        """True when idle and the server has neither closed nor sent anything since."""
        transport = self._transport
        if self._state is not ConnectionState.IDLE or transport is None:
            return False
        if not transport.has_input_while_idle():
            return True
        self.close()
        return False

    @property
    def alpn_protocol(self) -> str | None:
        """What the TLS server selected by ALPN once connected (``h2``, ``http/1.1``)."""
        return self._transport.alpn_protocol if self._transport is not None else None

    def detach_transport(self) -> Transport:
        """Hand the connected socket over (to an HTTP/2 connection); this one is CLOSED.

        Raises:
            AssertionError: not connected and idle.
        """
        transport = self._transport
        if self._state is not ConnectionState.IDLE or transport is None:
            raise AssertionError(f"detach_transport() in state {self._state}")
        self._transport = None
        self._set_state(ConnectionState.CLOSED)
        return transport

    def close(self) -> None:
        """Close the socket; idempotent."""
        self._state = ConnectionState.CLOSED
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    # -- connecting ---------------------------------------------------------------------------
    def connect(self, deadline: float | None = None) -> None:
        """Open the TCP connection (and CONNECT tunnel, and TLS handshake).

        Raises:
            ConnectError (NameResolutionError, ConnectTimeout, TLSError, CertificateError,
            ProxyError), TotalTimeout. The connection is then CLOSED.
        """
        if self._state is not ConnectionState.NEW:
            raise AssertionError(f"connect() in state {self._state}")
        target = self.proxy.origin if self.proxy is not None else self.origin
        try:
            timeout = self._limit(self.timeouts.connect_s, deadline)
            try:
                self._transport = Transport.open(target.host, target.port, timeout)
            except OSError as exc:
                raise translate_error(exc, Phase.CONNECT, target.host_port) from exc
            if self.proxy is not None and self.origin.is_tls:
                self._open_tunnel(deadline)
            if self.origin.is_tls:
                assert self._ssl_context is not None
                timeout = self._limit(self.timeouts.connect_s, deadline)
                try:
                    self._transport.start_tls(self._ssl_context, self.origin.host, timeout)
                except OSError as exc:
                    raise translate_error(exc, Phase.TLS, self._where) from exc
        except BaseException:
            self.close()
            raise
        self._set_state(ConnectionState.IDLE)

    def _open_tunnel(self, deadline: float | None) -> None:
        """RFC 9110 §9.3.6: CONNECT host:port, then raw bytes once a 2xx arrives."""
        assert self.proxy is not None
        self._parser.expect_response(b"CONNECT")
        self._send(connect_request(self.proxy, self.origin.host_port), deadline)
        event = self._next_event(deadline)
        while isinstance(event, InformationalResponse):
            event = self._next_event(deadline)
        check_connect_response(self.proxy, self.origin.host_port, event,
                               bool(self._parser.trailing_data))
        self._parser = ResponseParser(self._limits)

    # -- one exchange -------------------------------------------------------------------------
    def request(self, method: str, target: str, headers: Sequence[tuple[str, str]],
                body: RequestBody | None = None, *, url: str = "",
                deadline: float | None = None, expect_continue: bool = False,
                on_informational: InformationalCallback | None = None,
                on_release: Callable[[Connection], None] | None = None,
                on_head_sent: Callable[[bytes], None] | None = None) -> Response:
        """Send a request and return the response with its head read, its body not yet.

        ``headers`` must not hold Content-Length or Transfer-Encoding: the framing is
        chosen here from ``body`` (``body.content_length`` known: Content-Length, else
        chunked). Connects first if the connection is NEW.

        Raises:
            InvalidRequest: a field or the target is invalid (nothing was sent).
            ServerDisconnected: the server closed before the first response byte.
            ProtocolError, RequestTimeout, TransportError: the connection is CLOSED.
        """
        framing = choose_request_framing(
            body.content_length if body is not None else None, body is not None)
        fields = list(headers)
        if framing.kind is BodyKind.LENGTH:
            fields.append(("Content-Length", str(framing.length)))
        elif body is None and method in _METHODS_WITH_CONTENT:
            # RFC 9110 §8.6: a user agent SHOULD send Content-Length when the method
            # defines a meaning for content, even when there is none.
            fields.append(("Content-Length", "0"))
        elif framing.kind is BodyKind.CHUNKED:
            fields.append(("Transfer-Encoding", "chunked"))
        try:
            head = encode_request_head(method, target, fields)
        except LocalProtocolError as exc:
            raise translate_error(exc, Phase.REQUEST) from exc
        if self._state is ConnectionState.NEW:
            self.connect(deadline)
            if self.alpn_protocol == "h2":
                self.close()
                raise ProtocolError(f"{self._where}: the server chose HTTP/2 (ALPN h2), "
                                    "which this HTTP/1.1 connection does not speak: "
                                    "use a Pool, or an ssl_context that offers http/1.1 only")
        elif self._state is not ConnectionState.IDLE:
            raise TransportError(f"{self._where}: the connection is {self._state.value}, "
                                 "not idle")
        if on_head_sent is not None:
            on_head_sent(head)
        self._set_state(ConnectionState.SENDING)
        self._has_response_bytes = False
        self._is_body_until_close = False
        self._must_close = any(name.lower() == "connection" and "close" in value.lower()
                               for name, value in fields)
        interim: list[InformationalResponse] = []
        try:
            self._parser.expect_response(method.encode("ascii"))
            final = self._send_request(head, body, framing, deadline, expect_continue,
                                       interim, on_informational)
            if final is None:
                final = self._await_final(deadline, interim, on_informational)
        except BaseException:
            self.close()
            raise
        if not final.keep_alive:
            self._must_close = True
        self._is_body_until_close = final.framing.kind is BodyKind.UNTIL_CLOSE
        self._deadline, self._on_release = deadline, on_release
        self._set_state(ConnectionState.READING_BODY)
        return Response(final, self, url=url, interim=interim)

    def _send_request(self, head: bytes, body: RequestBody | None, framing: Framing,
                      deadline: float | None, expect_continue: bool,
                      interim: list[InformationalResponse],
                      on_informational: InformationalCallback | None) -> ResponseHead | None:
        """Send head and body; return a final response that arrived before the body."""
        if body is None or not framing.has_body:
            self._set_state(ConnectionState.AWAITING)
            self._send(head, deadline)
            return None
        writer = BodyWriter(framing)
        pieces = body.pieces()
        if expect_continue:
            self._send(head, deadline)
            self._set_state(ConnectionState.EXPECTING)
            final = self._await_continue(deadline, interim, on_informational)
            if final is not None:
                # RFC 9110 §10.1.1: the body is not sent; the server may still be waiting
                # for those bytes, so the connection cannot carry another request.
                self._must_close = True
                return final
            self._set_state(ConnectionState.SENDING)
        else:
            first = next(pieces, b"")
            if len(first) <= _COALESCE_BYTES:
                head += self._frame(writer, first)
                first = b""
            self._send(head, deadline)
            if first:
                pieces = itertools.chain((first,), pieces)
        try:
            for piece in pieces:
                self._send_body_piece(self._frame(writer, piece), deadline)
            self._send_body_piece(self._end(writer), deadline)
        except _EarlyResponse:
            pass  # the response is read next, as usual; the connection then closes
        self._set_state(ConnectionState.AWAITING)
        return None

    @staticmethod
    def _frame(writer: BodyWriter, piece: bytes) -> bytes:
        try:
            return writer.write(piece)
        except LocalProtocolError as exc:
            raise translate_error(exc, Phase.REQUEST, "request body") from exc

    @staticmethod
    def _end(writer: BodyWriter) -> bytes:
        try:
            return writer.end()
        except LocalProtocolError as exc:
            raise translate_error(exc, Phase.REQUEST, "request body") from exc

    def _send_body_piece(self, data: bytes, deadline: float | None) -> None:
        try:
            self._send(data, deadline)
        except TransportError:
            # The server may have answered early (413, 401...) and closed: that answer is
            # worth more than the write error. Nothing more can be sent either way.
            if self._transport is None or not self._transport.is_readable():
                raise
            self._must_close = True
            raise _EarlyResponse() from None

    def _await_continue(self, deadline: float | None, interim: list[InformationalResponse],
                        on_informational: InformationalCallback | None) -> ResponseHead | None:
        """Wait for 100 (send the body), a final status (do not), or the timeout (send)."""
        wait_until = time.monotonic() + self.timeouts.expect_continue_s
        while True:
            remaining = wait_until - time.monotonic()
            if remaining <= 0 or self._transport is None:
                return None
            if self._parser.buffered_bytes == 0 and not self._transport.is_readable(remaining):
                return None
            event = self._next_event(deadline)
            if isinstance(event, InformationalResponse):
                self._report(event, interim, on_informational)
                if event.status == 100:
                    return None
                continue
            assert isinstance(event, ResponseHead)
            return event

    def _await_final(self, deadline: float | None, interim: list[InformationalResponse],
                     on_informational: InformationalCallback | None) -> ResponseHead:
        if self._state is not ConnectionState.AWAITING:
            self._set_state(ConnectionState.AWAITING)
        while True:
            event = self._next_event(deadline)
            if isinstance(event, InformationalResponse):
                self._report(event, interim, on_informational)
                continue
            if isinstance(event, ResponseHead):
                return event
            raise ProtocolError(f"{self._where}: unexpected {event!r} before the response")

    @staticmethod
    def _report(event: InformationalResponse, interim: list[InformationalResponse],
                on_informational: InformationalCallback | None) -> None:
        interim.append(event)
        if on_informational is not None:
            on_informational(event)

    # -- the response body (response.BodyStream) -----------------------------------------------
    def read_event(self) -> Data | EndOfMessage:
        """Return the next piece of the response body, or its end.

        At the end the connection goes IDLE and to ``on_release`` (the pool), or closes.

        Raises:
            ClientError: the connection is then CLOSED. ``TruncatedResponse``: a body that
                ends with the connection ended without TLS close_notify.
        """
        if self._state is not ConnectionState.READING_BODY:
            raise ClientError(f"{self._where}: no response body is being read "
                              f"(the connection is {self._state.value})")
        try:
            event = self._next_event(self._deadline)
        except BaseException:
            self.close()
            raise
        if type(event) is Data:
            return event
        if type(event) is EndOfMessage:
            if self._is_body_until_close and self._transport is not None \
                    and self._transport.is_truncated:
                # RFC 9112 §9.8: only close_notify says the close is the server's own.
                self.close()
                raise TruncatedResponse(
                    f"{self._where}: the TLS connection closed without close_notify, so the "
                    "body (delimited by the close) may be truncated")
            self._finish_response()
            return event
        self.close()
        raise ProtocolError(f"{self._where}: unexpected {event!r} inside a response body")

    def _finish_response(self) -> None:
        """After EndOfMessage: go IDLE for the next request (and to ``on_release``), or close."""
        on_release, self._on_release = self._on_release, None
        # Bytes already waiting after a complete response were never asked for: whatever
        # they are, the next response could not be told apart from them.
        if self._must_close or self._parser.buffered_bytes \
                or self._parser.state is not ParserState.HEAD:
            self.close()
            return
        self._set_state(ConnectionState.IDLE)
        if on_release is not None:
            on_release(self)

    # -- socket edge --------------------------------------------------------------------------
    def _next_event(self, deadline: float | None) -> object:
        parser = self._parser
        while True:
            try:
                event = parser.next_event()
            except RemoteProtocolError as exc:
                raise translate_error(exc, Phase.READ) from exc
            if event is not NEED_DATA:
                if type(event) is ConnectionClosed and not self._has_response_bytes:
                    raise ServerDisconnected(
                        f"{self._where}: the server closed the connection without a response")
                return event
            data = self._recv(deadline)
            if data:
                self._has_response_bytes = True
            parser.feed(data)

    def _recv(self, deadline: float | None) -> bytes:
        transport = self._transport
        if transport is None:
            raise ReadError(f"{self._where}: the connection is closed")
        timeout = self._limit(self.timeouts.read_s, deadline)
        try:
            return transport.recv(timeout)
        except OSError as exc:
            phase = Phase.READ if self._has_response_bytes else Phase.AWAIT
            raise translate_error(exc, phase, self._where, deadline) from exc

    def _send(self, data: bytes, deadline: float | None) -> None:
        transport = self._transport
        if transport is None:
            raise WriteError(f"{self._where}: the connection is closed")
        timeout = self._limit(self.timeouts.write_s, deadline)
        try:
            transport.send(data, timeout)
        except OSError as exc:
            raise translate_error(exc, Phase.WRITE, self._where, deadline) from exc

    _limit = staticmethod(limit_timeout)


class _EarlyResponse(Exception):
    """Internal: the server answered (and closed) while the body was being sent."""
