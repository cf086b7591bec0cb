"""HTTP/1.1 on a connection: the sequence of exchanges, keep-alive, pipelining, and when
the server answers by itself (4xx for bad requests, 408, 500, 503 while shedding: built in
``http1_errors``). Upgrades run in ``http1_upgrade``; the connection ends in ``closing``.

``Http1`` drives the sans-IO ``RequestParser`` over a ``Transport``. The connection calls
``on_readable`` / ``on_writable`` / ``on_timeout`` (one thread at a time) and acts on the
``Outcome``. Each request becomes an ``Exchange``: the app runs in the calling thread, and
the exchange reports waiting (the socket is full: park as WRITING), finished (keep-alive or
close) or failed (a 500 or an abort). Nothing here blocks except inside the app's own calls
(``wsgi.input`` reads and the legacy ``write()``), which wait with a timeout.

States are ``states.ConnState`` (the table is there). NEW is a connection before its first
byte: its header timeout runs from the accept, once. IDLE is between requests: the
keep-alive timeout runs, and the header timeout starts with the next request's first byte.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from wsgiserve.http import (
    NEED_DATA,
    PAUSED,
    BodyKind,
    Data,
    EndOfMessage,
    IncompleteMessage,
    RemoteProtocolError,
    Request,
    RequestParser,
)
from wsgiserve.http.framing import NO_BODY
from wsgiserve.server.counters import HTTP1
from wsgiserve.server.worker.closing import (
    close_or_linger,
    linger,
    send_final,
    start_closing,
    start_lingering,
)
from wsgiserve.server.worker.context import DRAIN_MAX_BYTES, PREBUFFER_MAX_BYTES, ServerContext
from wsgiserve.server.worker.exchange import PUMP_FAILED, WAITING, Exchange
from wsgiserve.server.worker.h2c import h2c_settings
from wsgiserve.server.worker.http1_errors import (
    count_failed,
    error_answer,
    failure_answer,
    reject_answer,
    shed_answer,
)
from wsgiserve.server.worker.http1_upgrade import record_upgrade, serve_upgrade
from wsgiserve.server.worker.states import (
    CLOSE,
    CLOSED,
    CLOSING,
    IDLE,
    IN_APP,
    NEW,
    READING_BODY,
    READING_HEAD,
    SWITCH,
    SWITCHED,
    StateMachine,
    WAIT_READABLE,
    WAIT_WRITABLE,
    WRITING,
    Outcome,
)
from wsgiserve.server.worker.transport import Transport
from wsgiserve.server.worker.upgrade import ANSWERED, HIJACKED, WebSocketUpgrade
from wsgiserve.wsgi import EmptyInput, InputStream

if TYPE_CHECKING:
    from wsgiserve.server.worker.protocol import Protocol

__all__ = ["Http1"]

_log = logging.getLogger(__name__)

_LENGTH, _UNTIL_CLOSE, _NONE = BodyKind.LENGTH, BodyKind.UNTIL_CLOSE, BodyKind.NONE  # see states.py
_CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 §3.4
_EMPTY_INPUT: Final = EmptyInput()  # stateless: one for every bodiless request


class Http1(StateMachine):
    """HTTP/1.1 requests on one connection, one exchange at a time."""

    __slots__ = ("transport", "context", "parser", "state", "deadline", "idle_since",
                 "exchange", "next_protocol", "_pending_request", "_base_environ",
                 "_start_http2", "_held", "_is_shedding", "_upgrade_http2")
    protocol_name = "http/1.1"  # the connection gauges' label (server.counters)

    def __init__(self, transport: Transport, context: ServerContext,
                 base_environ: dict[str, Any],
                 start_http2: Callable[[bytes], Protocol] | None = None,
                 upgrade_http2: Callable[[bytes, bytes, Request], Protocol] | None = None
                 ) -> None:
        """``start_http2``: makes the HTTP/2 protocol for a connection that opens with the
        HTTP/2 preface (cleartext with prior knowledge); None when that is off.
        ``upgrade_http2``: makes it for a request that upgrades to h2c (the bytes read
        after the request, its HTTP2-Settings, the request); None when that is off."""
        self.transport = transport
        self.context = context
        self.parser = RequestParser(context.limits, head_cache=context.request_heads,
                                    name_cache=context.field_names)
        self.state = NEW
        self.deadline = time.monotonic() + context.header_timeout_s
        self.idle_since = 0.0
        self.exchange: Exchange | None = None
        self.next_protocol: Protocol | None = None
        self._pending_request: Request | None = None
        self._base_environ = base_environ
        self._start_http2 = start_http2
        self._held = b""  # the start of what may be an HTTP/2 preface
        self._is_shedding = False  # shed(): answer the next request 503, do not serve it
        self._upgrade_http2 = upgrade_http2

    @property
    def is_idle(self) -> bool:
        """Parked between requests after at least one response (safe to close on stop)."""
        return self.state is IDLE

    # -- events from the loop ------------------------------------------------------------
    def on_readable(self) -> Outcome:
        """Read what the socket has and move on as far as possible without blocking.

        Raises:
            OSError: the connection failed (the caller closes it).
        """
        state = self.state
        if state is CLOSING:
            return linger(self.transport)
        if state is WRITING:
            return self.on_writable()
        data = self.transport.recv()
        if data is None:
            return WAIT_READABLE
        if state is NEW and self._start_http2 is not None:
            held = self._held + data
            if held[:24] == PREFACE:
                # RFC 9113 §3.3: HTTP/2 with prior knowledge, on the same port.
                self.set_state(SWITCHED)
                self.next_protocol = self._start_http2(held)
                return SWITCH
            if data and PREFACE.startswith(held):
                self._held = held  # wait for the rest before deciding
                return WAIT_READABLE
            self._held = b""
            if held != data:
                self.parser.feed(held)
                if data:
                    return self._advance()
        self.parser.feed(data)
        return self._advance()

    def on_writable(self) -> Outcome:
        """Send what is pending; then let the app produce more.

        Raises:
            OSError: the connection failed (the caller closes it).
        """
        if not self.transport.flush():
            return WAIT_WRITABLE
        if self.state is CLOSING:
            return start_lingering(self)
        exchange = self.exchange
        if exchange is None:
            return self._advance()
        self.set_state(IN_APP)
        self.context.in_app[self] = time.monotonic()
        outcome = self._settle(exchange, exchange.pump())
        return outcome if outcome is not None else self._advance()

    def on_timeout(self) -> Outcome:
        """The deadline passed while the loop waited for this connection.

        A partial request gets a 408 and a lingering close: the client is usually still
        sending, and closing with its bytes unread would reset the connection and could
        destroy the 408 before it is read. A new or keep-alive connection whose request
        came but waits for a thread (every one in the app: its event is queued) is not idle
        and is kept for another period; load shedding bounds that wait, when it is on.
        Anything else (a silent new connection, idle keep-alive, a linger that ran out, a
        stalled write) is closed at once.
        """
        if (self.state is IDLE or self.state is NEW) and self.transport.has_input():
            context = self.context
            period = context.keepalive_s if self.state is IDLE else context.header_timeout_s
            self.deadline = time.monotonic() + (period or 1.0)
            return WAIT_READABLE
        if self.state is READING_HEAD or self.state is READING_BODY:
            _log.debug("request head or body from %s timed out", self.transport.remote_addr)
            method = self._pending_request.method if self._pending_request else None
            if self.context.metrics is not None:
                self.context.metrics.protocol_error(HTTP1, 408)
            self.set_state(CLOSING)
            self.transport.try_send(error_answer(self.context, 408, "request timed out", method))
            return start_lingering(self)
        return CLOSE

    def start_graceful_close(self, quiet_since: float) -> Outcome | None:
        """Close a keep-alive connection idle since ``quiet_since`` as the worker stops:
        FIN first. A busier one is left to answer its next request with Connection: close.

        Closing a keep-alive connection races with the client sending its next request on
        it (the request is lost and a client like http.client reports an error); a client
        that checks its pooled connection before reusing it sees the FIN and opens a new
        one instead.
        """
        if self.state is IDLE and self.idle_since <= quiet_since:
            return start_closing(self)
        return None

    def shed(self) -> Outcome | None:
        """Read what waits; a complete request gets 503 with Retry-After and the
        connection closes (load shedding: see ``Worker``)."""
        if self.state is not NEW and self.state is not IDLE and self.state is not READING_HEAD:
            return None
        self._is_shedding = True
        try:
            return self.on_readable()
        finally:
            self._is_shedding = False

    def close(self) -> None:
        if self.state is not CLOSED:
            self.set_state(CLOSED)
            self.context.in_app.pop(self, None)
            exchange = self.exchange
            if exchange is not None:
                exchange.close_result()
            self.transport.close()

    # -- the request cycle ---------------------------------------------------------------
    def _advance(self) -> Outcome:
        """Parse and serve buffered requests until more bytes are needed."""
        parser = self.parser
        while True:
            request = self._pending_request
            if request is not None:
                if parser.buffered_bytes < request.framing.length:
                    return self._wait_for_body(request)
                self._pending_request = None
            else:
                try:
                    event = parser.next_event()
                except RemoteProtocolError as exc:
                    return self._reject(exc)
                if event is NEED_DATA:
                    if parser.buffered_bytes or self.state is not IDLE:
                        return self._wait_for_head()
                    return WAIT_READABLE  # the keep-alive case: all was answered
                if type(event) is not Request:
                    # ConnectionClosed, PAUSED after a "Connection: close" request, or a
                    # stray event: the conversation is over.
                    return CLOSE if event is not PAUSED else start_closing(self)
                request = event
                framing = request.framing
                if self._upgrade_http2 is not None and framing.kind is _NONE \
                        and b"upgrade" in request.headers:
                    settings = h2c_settings(request)
                    if settings is not None:
                        self.parser.skip_empty_body()
                        self.set_state(SWITCHED)
                        self.next_protocol = self._upgrade_http2(self.parser.trailing_data,
                                                                 settings, request)
                        return SWITCH
                if framing.kind is _LENGTH and framing.length <= PREBUFFER_MAX_BYTES \
                        and not request.expects_continue \
                        and parser.buffered_bytes < framing.length:
                    # A small body is read by the loop before a thread runs the app, so a
                    # slow uploader never holds a thread (nginx buffers bodies the same way).
                    self._pending_request = request
                    return self._wait_for_body(request)
            outcome = self._serve(request)
            if outcome is not None:
                return outcome

    def _wait_for_head(self) -> Outcome:
        if not self.parser.buffered_bytes:
            if self.parser.is_peer_closed:
                return CLOSE
            return WAIT_READABLE  # IDLE, or a new connection
        state = self.state
        if state is not READING_HEAD:
            # The slowloris defence: a head must be complete within header_timeout of its
            # first byte (of the accept, for a new connection), however slowly it comes.
            if state is IDLE:
                self.deadline = time.monotonic() + self.context.header_timeout_s
            self.set_state(READING_HEAD)
        return WAIT_READABLE

    def _wait_for_body(self, request: Request) -> Outcome:
        if self.parser.is_peer_closed:
            # RFC 9112 §8: a message cut short by the close is incomplete: answer, never wait.
            self._pending_request = None
            exc = IncompleteMessage("the peer closed before the end of the request body")
            exc.method = request.method
            return self._reject(exc)
        if self.state is IDLE:
            self.deadline = time.monotonic() + self.context.header_timeout_s
        if self.state is not READING_BODY:
            self.set_state(READING_BODY)
        return WAIT_READABLE

    def _serve(self, request: Request) -> Outcome | None:
        """Run the app for one request. None: the exchange ended, go on parsing."""
        context = self.context
        if self._is_shedding:
            return send_final(self, shed_answer(context, request, self.transport.remote_addr))
        self.set_state(IN_APP)
        exchange = self.exchange = Exchange(request, self.transport, context)
        if context.is_stopping or context.keepalive_s <= 0:
            # keep_alive = 0 disables keep-alive: say so in the head rather than let the
            # idle timer close a connection the client believes it may reuse.
            exchange.should_close = True
        environ = exchange.environ = context.environs.build(request, self._base_environ,
                                                            context.script_name)
        if context.proxy is not None:
            context.proxy.apply(environ, request, self.transport.remote_addr)
        if request.framing.has_body:
            exchange.body = InputStream(self._read_body)
        else:
            # Consume the EndOfMessage now; the app gets an empty stream.
            self.parser.skip_empty_body()
            exchange.body = _EMPTY_INPUT
        environ["wsgi.input"] = exchange.body
        # Bound to the protocol, not the exchange: the environ would then reference its own
        # exchange, a cycle only the garbage collector frees (~5,000 instructions a request).
        environ["wsgi.early_hints"] = self._early_hints
        if "HTTP_UPGRADE" in environ:
            answer = serve_upgrade(exchange, self.transport, context, self.parser, self)
            if isinstance(answer, WebSocketUpgrade):
                return self._end_upgrade(exchange, answer)
            return self._settle(exchange, answer)
        hooks = context.hooks
        context.in_app[self] = exchange.started
        try:
            if "pre_request" in hooks:
                hooks["pre_request"](context.worker, environ)
            exchange.result = context.app(environ, exchange.start_response)
        except Exception as exc:  # noqa: BLE001 - the app boundary: log, answer 500
            return self._settle(exchange, exchange.fail(exc))
        return self._settle(exchange, exchange.pump())

    def _settle(self, exchange: Exchange, progress: object) -> Outcome | None:
        """Act on what the exchange reported. None: it finished and the connection stays:
        go on parsing."""
        self.context.in_app.pop(self, None)
        if progress is WAITING:
            self.set_state(WRITING)
            self.deadline = time.monotonic() + self.context.body_timeout_s
            return WAIT_WRITABLE
        if progress is PUMP_FAILED:
            return self._app_failed(exchange)
        return self._finish_exchange(exchange)

    def _finish_exchange(self, exchange: Exchange) -> Outcome | None:
        context = self.context
        self.exchange = None
        now = time.monotonic()
        if context.access_log is not None:
            exchange.log_access()
        hooks = context.hooks
        if "post_request" in hooks:
            try:
                hooks["post_request"](context.worker, exchange.environ)
            except Exception:  # noqa: BLE001 - a hook must not take the worker down
                _log.exception("post_request hook failed")
        if context.on_request_done is not None:
            context.on_request_done()
        metrics = context.metrics
        if metrics is not None:
            request = exchange.request
            writer = exchange.writer
            metrics.request_done(
                HTTP1, request.method, now - exchange.started, exchange.status_code,
                0 if request.framing is NO_BODY
                else self.parser.body_bytes_received(request.framing),
                writer.bytes_written if writer is not None else 0)
        if exchange.should_close:
            writer = exchange.writer
            if writer is not None and writer.framing.kind is _UNTIL_CLOSE:
                # The close is the end of this body: linger, so that no reset can cut it.
                return start_closing(self)
            return close_or_linger(self, self.parser)
        # A worker that began stopping after this head went out (saying keep-alive) must
        # not close now: the client may already be sending its next request. That one is
        # answered with "Connection: close"; a connection left quiet is closed by the
        # worker's stop sequence.
        body = exchange.body
        if body is not None and not body.is_finished:
            # (Not the body of an Expect: 100-continue never invited: the exchange made
            # that response close when it built the head.)
            try:
                if not body.drain(DRAIN_MAX_BYTES):
                    return start_closing(self)
            except TimeoutError:
                # The rest of the body is not here yet: close, and let the lingering
                # close (in the loop, not this thread) drop it.
                return start_closing(self)
            except (RemoteProtocolError, OSError):
                return CLOSE
        self.set_state(IDLE)
        self.idle_since = now
        self.deadline = now + context.keepalive_s
        return None

    def _app_failed(self, exchange: Exchange) -> Outcome:
        exc = exchange.error
        assert exc is not None
        context = self.context
        context.in_app.pop(self, None)
        if context.metrics is not None:
            count_failed(context, self.parser, exchange, exc)
        self.exchange = None
        exchange.close_result()
        answer = failure_answer(context, exchange, exc, self.transport.remote_addr)
        return CLOSE if answer is None else send_final(self, answer)

    def _reject(self, exc: RemoteProtocolError) -> Outcome:
        return send_final(self, reject_answer(self.context, exc, self.transport.remote_addr))

    def _early_hints(self, headers: Sequence[tuple[str, str]]) -> None:
        """``environ["wsgi.early_hints"]``: see ``Exchange.early_hints``."""
        exchange = self.exchange
        if exchange is not None:
            exchange.early_hints(headers)

    def _end_upgrade(self, exchange: Exchange, upgrade: WebSocketUpgrade) -> Outcome:
        """The app answered through the upgrade (see http1_upgrade.py): what it returned
        is not sent."""
        context = self.context
        context.in_app.pop(self, None)
        self.exchange = None
        exchange.close_result()
        record_upgrade(exchange, upgrade, context, self.parser)
        result = upgrade.result
        if result is HIJACKED:
            self.set_state(SWITCHED)
            return CLOSE  # the transport no longer holds the socket: nothing is closed
        if result is ANSWERED:
            self.set_state(CLOSING)
            return start_lingering(self)
        factory = context.websocket_protocol
        assert factory is not None and upgrade.websocket is not None
        self.next_protocol = factory(upgrade.websocket, self.transport, context)
        self.set_state(SWITCHED)
        return SWITCH

    # -- request body (called from the app's thread) -----------------------------------------
    def _read_body(self) -> bytes:
        """The next piece of the request body, or b"" at its end. May wait for the peer.

        Raises:
            RemoteProtocolError: the body is invalid, too large, or cut short by a close.
            TimeoutError, OSError: the peer is too slow, or gone.
        """
        exchange = self.exchange
        parser = self.parser
        while True:
            event = parser.next_event()
            if type(event) is Data:
                return event.data
            if type(event) is EndOfMessage:
                return b""
            if event is not NEED_DATA:
                raise RemoteProtocolError("the request body ended unexpectedly")
            if exchange is not None and exchange.request.expects_continue \
                    and not exchange.continue_sent:
                if exchange.head_sent:
                    # The final response went out before the app asked for the body, so
                    # no 100 can invite it now and the client need not send it (RFC 9110
                    # §10.1.1): fail the read rather than wait for bytes that won't come.
                    raise ConnectionAbortedError("the body of an Expect: 100-continue "
                                                 "request was read after the response")
                # RFC 9110 §10.1.1: the app asked for the body, so now we invite it.
                exchange.continue_sent = True
                self.transport.send_blocking(_CONTINUE_100, self.context.body_timeout_s)
            # No exchange: _finish_exchange is draining what the app left unread. Take only
            # what has arrived; never hold the thread for a client that stalls its body.
            data = self.transport.recv_blocking(self.context.body_timeout_s if exchange else 0.0)
            parser.feed(data)
