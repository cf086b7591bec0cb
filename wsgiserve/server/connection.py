"""One client connection: socket + parser + the exchange in progress + a state machine.

The worker's loop calls ``on_readable()`` / ``on_writable()`` when the socket is ready (in
whichever of its threads got the event; one at a time per connection) and acts on the
``Outcome``: wait for readability, for writability, or close. Nothing here blocks except
inside the application's own calls (``wsgi.input`` reads and the legacy ``write()``), which
wait with a timeout.

States (``ConnState``) and the transitions allowed (``_TRANSITIONS``)::

    READING_HEAD -> READING_BODY (pre-buffering a small body) -> IN_APP
    READING_HEAD -> IN_APP -> WRITING (socket full) <-> IN_APP (app resumes)
    IN_APP/WRITING -> IDLE (keep-alive) -> READING_HEAD (next bytes) ...
    any -> CLOSING (a final write, then lingering close) -> CLOSED

``server.preamble`` starts TLS and PROXY-protocol connections in READING_PROXY_HEADER or
HANDSHAKING; both lead to READING_HEAD (or CLOSING).
"""
from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any, Final

from wsgiserve.http import (
    NEED_DATA,
    PAUSED,
    BodyKind,
    Data,
    EndOfMessage,
    RemoteProtocolError,
    Request,
    RequestParser,
)
from wsgiserve.http.writer import BodyWriter
from wsgiserve.log import AccessRecord
from wsgiserve.server.context import (
    DRAIN_MAX_BYTES,
    LINGER_S,
    PREBUFFER_MAX_BYTES,
    SERVER_HEADER,
    ServerContext,
)
from wsgiserve.server.response import head_template
from wsgiserve.wsgi import (
    EmptyInput,
    ErrorStream,
    FileWrapper,
    RequestBody,
    build_environ,
    check_response_headers,
)

_log = logging.getLogger(__name__)

RECV_BYTES: Final = 65536
_WOULD_BLOCK: Final = (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                       ssl.SSLWantWriteError)
_CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_EXHAUSTED: Final[Iterator[bytes]] = iter(())  # stays exhausted: safe to share


class ConnState(Enum):
    __hash__ = object.__hash__  # identity hashing: C-speed lookups in the state table

    READING_HEAD = "reading-head"
    READING_BODY = "reading-body"
    IN_APP = "in-app"
    WRITING = "writing"
    IDLE = "idle"
    CLOSING = "closing"
    CLOSED = "closed"
    READING_PROXY_HEADER = "reading-proxy-header"  # server.preamble only
    HANDSHAKING = "handshaking"  # server.preamble only


class Outcome(Enum):
    """What the worker's loop does with the connection next."""

    WAIT_READABLE = "wait-readable"
    WAIT_WRITABLE = "wait-writable"
    CLOSE = "close"


_C = ConnState
_TRANSITIONS: Final[dict[ConnState, frozenset[ConnState]]] = {
    _C.READING_HEAD: frozenset({_C.READING_HEAD, _C.READING_BODY, _C.IN_APP, _C.CLOSING,
                                _C.CLOSED}),
    _C.READING_BODY: frozenset({_C.READING_BODY, _C.IN_APP, _C.CLOSING, _C.CLOSED}),
    _C.IN_APP: frozenset({_C.WRITING, _C.IDLE, _C.CLOSING, _C.CLOSED}),
    _C.WRITING: frozenset({_C.IN_APP, _C.CLOSING, _C.CLOSED}),
    # IDLE -> IN_APP / READING_BODY: a pipelined request was already buffered.
    _C.IDLE: frozenset({_C.READING_HEAD, _C.READING_BODY, _C.IN_APP, _C.CLOSING, _C.CLOSED}),
    _C.CLOSING: frozenset({_C.CLOSING, _C.CLOSED}),
    _C.CLOSED: frozenset({_C.CLOSED}),
    _C.READING_PROXY_HEADER: frozenset({_C.HANDSHAKING, _C.READING_HEAD, _C.CLOSING,
                                        _C.CLOSED}),
    _C.HANDSHAKING: frozenset({_C.READING_HEAD, _C.CLOSING, _C.CLOSED}),
}

_REASONS: Final = {400: "Bad Request", 408: "Request Timeout", 411: "Length Required",
                   413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed",
                   431: "Request Header Fields Too Large", 500: "Internal Server Error",
                   501: "Not Implemented", 505: "HTTP Version Not Supported"}


class AppError(Exception):
    """The application broke the WSGI contract (raised to our own handler, logged)."""


class Exchange:
    """One request and the response being produced for it."""

    __slots__ = ("request", "environ", "body", "status", "headers", "head_sent", "writer",
                 "result", "iterator", "should_close", "started", "start_wall", "is_finished",
                 "head_bytes", "status_code", "sendfile", "file_remaining", "connection")

    def __init__(self, request: Request, connection: Connection) -> None:
        self.request = request
        self.connection = connection
        self.environ: dict[str, Any] = {}
        self.body: RequestBody | EmptyInput | None = None
        self.status = ""
        self.status_code = 0
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.head_bytes = b""
        self.writer: BodyWriter | None = None
        self.result: Any = None
        self.iterator: Iterator[bytes] | None = None
        self.should_close = not request.keep_alive
        self.started = time.monotonic()
        self.start_wall = time.time()
        self.is_finished = False
        self.sendfile: FileWrapper | None = None
        self.file_remaining = -1

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], object]:
        """PEP 3333 start_response (a bound method: no closure per request)."""
        if exc_info is not None:
            try:
                if self.head_sent:
                    # PEP 3333: too late to change the response: re-raise.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status:
            raise AppError("start_response called twice without exc_info")
        check_response_headers(status, headers)
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy imperative write(): PEP 3333 requires the data to be sent (or
        buffered for sending) before it returns, so this waits for the socket."""
        if type(data) is not bytes:
            raise AppError(f"write() takes bytes, got {type(data).__name__}")
        if data:
            connection = self.connection
            connection._send_blocking(connection._frame(self, data))


class Connection:
    """A client connection, driven by the worker through ``on_readable``/``on_writable``."""

    def __init__(self, sock: socket.socket, peer: Any, context: ServerContext,
                 base_environ: dict[str, Any]) -> None:
        self.sock = sock
        self.fileno = sock.fileno()
        self.context = context
        self.parser = RequestParser(context.limits)
        self.state = ConnState.READING_HEAD
        self.deadline = time.monotonic() + context.header_timeout_s
        self.idle_since = 0.0
        self.is_tls = isinstance(sock, ssl.SSLSocket)
        self._pending_out: memoryview | None = None
        self._pending_request: Request | None = None
        self._exchange: Exchange | None = None
        self._head_started = False
        self._continue_sent = False
        if isinstance(peer, tuple):
            self.remote_addr, self.remote_port = str(peer[0]), int(peer[1])
        else:
            self.remote_addr, self.remote_port = "", 0
        self._base_environ = base_environ
        base_environ["REMOTE_ADDR"] = self.remote_addr
        base_environ["REMOTE_PORT"] = str(self.remote_port)

    # -- state ---------------------------------------------------------------------------
    def _set_state(self, new: ConnState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise AssertionError(f"connection transition {self.state} -> {new} not in table")
        self.state = new

    @property
    def is_idle(self) -> bool:
        """Parked between requests after at least one response (safe to close on stop)."""
        return self.state is ConnState.IDLE

    @property
    def has_partial_request(self) -> bool:
        return self.parser.buffered_bytes > 0 or self._pending_request is not None

    # -- events from the loop ------------------------------------------------------------
    def on_readable(self) -> Outcome:
        """Read what the socket has and move on as far as possible without blocking."""
        if self.state is ConnState.CLOSING:
            return self._linger_read()
        if self.state is ConnState.WRITING:
            return self.on_writable()
        try:
            data = self.sock.recv(RECV_BYTES)
        except _WOULD_BLOCK:
            return Outcome.WAIT_READABLE
        except OSError as exc:
            _log.debug("recv from %s failed: %s", self.remote_addr, exc)
            return self._close_now()
        self.parser.feed(data)
        if self.state is ConnState.IDLE:
            self._set_state(ConnState.READING_HEAD)
        return self._advance()

    def on_writable(self) -> Outcome:
        """Send what is pending; then let the app produce more."""
        if not self._flush_pending():
            return Outcome.WAIT_WRITABLE
        if self.state is ConnState.CLOSING:
            return self._start_lingering()
        exchange = self._exchange
        if exchange is None:
            return self._advance()
        self._set_state(ConnState.IN_APP)
        self.context.in_app[self] = time.monotonic()
        outcome = self._pump(exchange)
        if outcome is None:
            return self._advance()
        return outcome

    def on_timeout(self) -> Outcome:
        """The deadline passed while the loop waited for this connection.

        A partial request gets a 408 and a lingering close: the client is usually still
        sending, and closing with its bytes unread would reset the connection and could
        destroy the 408 before it is read. Anything else (idle keep-alive, a linger that
        ran out, a stalled write) is closed at once.
        """
        if self.state is ConnState.READING_HEAD and self.has_partial_request \
                or self.state is ConnState.READING_BODY:
            _log.debug("request head or body from %s timed out", self.remote_addr)
            self._set_state(ConnState.CLOSING)
            self._try_send(self._error_response(408, "request timed out"))
            return self._start_lingering()
        return Outcome.CLOSE

    def close(self) -> None:
        if self.state is not ConnState.CLOSED:
            self.state = ConnState.CLOSED
            self.context.in_app.pop(self, None)
            exchange = self._exchange
            if exchange is not None and not exchange.is_finished:
                self._close_result(exchange)
            try:
                self.sock.close()
            except OSError:
                pass

    def start_graceful_close(self) -> Outcome:
        """Close an idle keep-alive connection as the worker stops: FIN first.

        A client that checks its pooled connection before reusing it sees the FIN and opens
        a new one instead of losing a request to the race with our close.
        """
        self._set_state(ConnState.CLOSING)
        return self._start_lingering()

    # -- the request cycle ---------------------------------------------------------------
    def _advance(self) -> Outcome:
        """Parse and serve buffered requests until more bytes are needed."""
        parser = self.parser
        while True:
            request = self._pending_request
            if request is not None:
                if not self._is_body_buffered(request):
                    return self._wait_for_body()
                self._pending_request = None
            else:
                try:
                    event = parser.next_event()
                except RemoteProtocolError as exc:
                    return self._reject(exc)
                if event is NEED_DATA:
                    if not parser.buffered_bytes:
                        return Outcome.WAIT_READABLE  # IDLE, or a fresh connection
                    if self.state is not ConnState.READING_HEAD:
                        self._set_state(ConnState.READING_HEAD)
                    if not self._head_started:
                        # The slowloris defence: a head must be complete within
                        # header_timeout of its first byte, however slowly it comes.
                        self._head_started = True
                        self.deadline = time.monotonic() + self.context.header_timeout_s
                    return Outcome.WAIT_READABLE
                if type(event) is not Request:
                    # ConnectionClosed, PAUSED after a "Connection: close" request, or a
                    # stray event: the conversation is over.
                    return self._close_now() if event is not PAUSED else self._start_closing()
                request = event
                if request.framing.kind is BodyKind.LENGTH \
                        and request.framing.length <= PREBUFFER_MAX_BYTES \
                        and not request.expects_continue \
                        and not self._is_body_buffered(request):
                    self._pending_request = request
                    self._set_state(ConnState.READING_BODY)
                    return self._wait_for_body()
            outcome = self._serve(request)
            if outcome is not None:
                return outcome

    def _is_body_buffered(self, request: Request) -> bool:
        return self.parser.buffered_bytes >= request.framing.length

    def _wait_for_body(self) -> Outcome:
        if self.state is not ConnState.READING_BODY:
            self._set_state(ConnState.READING_BODY)
        return Outcome.WAIT_READABLE

    def _serve(self, request: Request) -> Outcome | None:
        """Run the app for one request. None: the exchange ended, continue the loop."""
        context = self.context
        self._set_state(ConnState.IN_APP)
        self._head_started = False
        self._continue_sent = False
        exchange = self._exchange = Exchange(request, self)
        if context.is_stopping or context.keepalive_s <= 0:
            # keep_alive = 0 disables keep-alive: say so in the head rather than let the
            # idle timer close a connection the client believes it may reuse.
            exchange.should_close = True
        environ = build_environ(request, self._base_environ, context.script_name)
        if context.proxy is not None:
            context.proxy.apply(environ, request, self.remote_addr)
        exchange.environ = environ
        if request.framing.has_body:
            exchange.body = RequestBody(self._read_body)
        else:
            # Consume the EndOfMessage now; the app gets an empty stream.
            self.parser.next_event()
            exchange.body = EmptyInput()
        environ["wsgi.input"] = exchange.body
        hooks = context.hooks
        context.in_app[self] = time.monotonic()
        try:
            if "pre_request" in hooks:
                hooks["pre_request"](context.worker, environ)
            exchange.result = context.app(environ, exchange.start_response)
        except Exception as exc:  # noqa: BLE001 - the app boundary: log, answer 500
            return self._app_failed(exchange, exc)
        return self._pump(exchange)

    def _prepare_head(self, exchange: Exchange) -> None:
        """Decide the framing and build the head; called once, before the first body byte."""
        if not exchange.status:
            raise AppError("the application did not call start_response")
        context = self.context
        request = exchange.request
        template = head_template(exchange.status, exchange.headers, request.method,
                                 request.http_version)
        exchange.status_code = template.status_code
        should_close = exchange.should_close or template.forces_close or context.is_stopping
        if not should_close and request.expects_continue and not self._continue_sent:
            body = exchange.body
            if body is not None and not body.is_finished:
                # The app answers without having asked for the body of an Expect:
                # 100-continue request: the client may still be waiting to send it, so
                # close rather than guess (RFC 9110 §10.1.1).
                should_close = True
        exchange.should_close = should_close
        exchange.writer = BodyWriter(template.framing)
        exchange.head_bytes = template.render(context.dates.line(), should_close,
                                              request.http_version == b"1.0")
        exchange.headers = template.fields

    def _frame(self, exchange: Exchange, data: bytes) -> bytes:
        writer = exchange.writer
        if writer is None:
            self._prepare_head(exchange)
            writer = exchange.writer
            assert writer is not None
        if writer.framing.kind is BodyKind.LENGTH and len(data) > writer.remaining:
            # More than the app declared: send what was declared, then close, so the
            # extra bytes can never be read as the next response.
            exchange.should_close = True
            data = data[:writer.remaining]
        framed = writer.write(data)
        if not exchange.head_sent:
            exchange.head_sent = True
            framed = exchange.head_bytes + framed
        return framed

    def _pump(self, exchange: Exchange) -> Outcome | None:
        """Send the app's body as the socket takes it; None when the exchange is over.

        The caller has put this connection in ``context.in_app``; it is removed here.
        """
        context = self.context
        first = b""
        try:
            if exchange.iterator is None:
                result = exchange.result
                if type(result) is list and len(result) == 1 and type(result[0]) is bytes:
                    # The most common shape: one piece. Head, body and end in one send.
                    exchange.iterator = _EXHAUSTED
                    if result[0]:
                        first = self._frame(exchange, result[0])
                elif isinstance(result, FileWrapper) and not self.is_tls \
                        and result.fileno() is not None:
                    exchange.sendfile = result
                    exchange.iterator = _EXHAUSTED
                else:
                    exchange.iterator = iter(result)
            for data in exchange.iterator:
                if type(data) is not bytes:
                    raise AppError(f"the app yielded {type(data).__name__}, not bytes")
                if data:
                    framed = self._frame(exchange, data)
                    if not self._send_or_park(framed):
                        return Outcome.WAIT_WRITABLE
            if exchange.sendfile is not None:
                outcome = self._send_file(exchange)
                if outcome is not None or self._exchange is not exchange:
                    # Waiting to write, or _send_file's fallback (_pump over the file's
                    # blocks: HEAD, chunked, HTTP/1.0) already finished the exchange.
                    return outcome
            if not exchange.is_finished:
                exchange.is_finished = True
                writer = exchange.writer
                if writer is None:
                    self._prepare_head(exchange)
                    writer = exchange.writer
                    assert writer is not None
                if writer.framing.kind is BodyKind.LENGTH and writer.remaining:
                    # Fewer bytes than declared: the client will see a short body; close
                    # so that the next response is never read as the rest of this one.
                    exchange.should_close = True
                    tail = b""
                else:
                    tail = writer.end()
                if not exchange.head_sent:
                    exchange.head_sent = True
                    tail = exchange.head_bytes + tail
                elif first:
                    tail = first + tail
                if exchange.result is not None:
                    self._close_result(exchange)
                if tail and not self._send_or_park(tail):
                    return Outcome.WAIT_WRITABLE
        except Exception as exc:  # noqa: BLE001 - the app boundary
            return self._app_failed(exchange, exc)
        finally:
            context.in_app.pop(self, None)
        return self._finish_exchange(exchange)

    def _send_file(self, exchange: Exchange) -> Outcome | None:
        wrapper = exchange.sendfile
        assert wrapper is not None
        fileno = wrapper.fileno()
        assert fileno is not None
        if exchange.writer is None:
            self._prepare_head(exchange)
        writer = exchange.writer
        assert writer is not None
        if not exchange.head_sent:
            exchange.head_sent = True
            if not self._send_or_park(exchange.head_bytes):
                return Outcome.WAIT_WRITABLE
        if writer.framing.kind is not BodyKind.LENGTH:
            # Chunked or close-delimited: frame the file's blocks ourselves.
            exchange.sendfile = None
            exchange.iterator = iter(wrapper)
            return self._pump(exchange)
        if exchange.file_remaining < 0:
            exchange.file_remaining = writer.remaining
        while exchange.file_remaining:
            try:
                offset = os.lseek(fileno, 0, os.SEEK_CUR)
                sent = os.sendfile(self.fileno, fileno, offset,
                                   min(exchange.file_remaining, 1 << 20))
            except _WOULD_BLOCK:
                # Park as WRITING, like _send_or_park: on_writable resumes from there.
                self._set_state(ConnState.WRITING)
                return Outcome.WAIT_WRITABLE
            if sent == 0:
                break  # the file is shorter than the declared length
            os.lseek(fileno, offset + sent, os.SEEK_SET)
            exchange.file_remaining -= sent
        if exchange.file_remaining:
            exchange.should_close = True
        else:
            writer.account(writer.remaining)
        exchange.sendfile = None
        return None

    def _finish_exchange(self, exchange: Exchange) -> Outcome | None:
        context = self.context
        self._exchange = None
        if context.access_log is not None:
            self._log_access(exchange)
        hooks = context.hooks
        if "post_request" in hooks:
            try:
                hooks["post_request"](context.worker, exchange.environ)
            except Exception:  # noqa: BLE001 - a hook must not take the worker down
                _log.exception("post_request hook failed")
        if context.on_request_done is not None:
            context.on_request_done()
        if exchange.should_close:
            return self._start_closing()
        # A worker that began stopping after this head went out (saying keep-alive) must
        # not close now: the client may already be sending its next request. That one is
        # answered with "Connection: close"; a connection left quiet is closed by the
        # worker's _close_idle.
        body = exchange.body
        if body is not None and not body.is_finished:
            if exchange.request.expects_continue and not self._continue_sent:
                return self._start_closing()
            try:
                if not body.drain(DRAIN_MAX_BYTES):
                    return self._start_closing()
            except TimeoutError:
                # The rest of the body is not here yet: close, and let the lingering
                # close (in the loop, not this thread) drop it.
                return self._start_closing()
            except (RemoteProtocolError, OSError):
                return self._close_now()
        self._set_state(ConnState.IDLE)
        self.idle_since = now = time.monotonic()
        self.deadline = now + context.keepalive_s
        return None

    def _app_failed(self, exchange: Exchange, exc: BaseException) -> Outcome:
        context = self.context
        context.in_app.pop(self, None)
        self._exchange = None
        self._close_result(exchange)
        if isinstance(exc, RemoteProtocolError):
            # The body the app was reading was invalid, too large, or cut short.
            _log.debug("bad request body from %s: %s", self.remote_addr, exc)
            if exchange.head_sent:
                return self._close_now()
            return self._reject(exc)
        if isinstance(exc, ConnectionError):
            _log.debug("client %s went away: %s", self.remote_addr, exc)
            return self._close_now()
        if isinstance(exc, TimeoutError) and not exchange.head_sent:
            _log.debug("client %s timed out: %s", self.remote_addr, exc)
            self._set_state(ConnState.CLOSING)
            return self._send_final(self._error_response(408, "request timed out"))
        _log.error("Error handling request %s %s", exchange.request.method.decode("ascii"),
                   exchange.request.target.decode("latin-1")[:200], exc_info=exc)
        if exchange.head_sent:
            # Too late for a 500: abort so the client sees a truncated response.
            return self._close_now()
        exchange.status_code = 500
        self._log_access(exchange)
        self._set_state(ConnState.CLOSING)
        return self._send_final(self._error_response(500, "Internal Server Error"))

    def _reject(self, exc: RemoteProtocolError) -> Outcome:
        _log.debug("invalid request from %s: %s", self.remote_addr, exc)
        if self.state is not ConnState.CLOSING:
            self._set_state(ConnState.CLOSING)
        return self._send_final(self._error_response(exc.status, str(exc)))

    def _error_response(self, status: int, message: str) -> bytes:
        reason = _REASONS.get(status, "Error")
        body = f"{status} {reason}\n{message}\n".encode("latin-1", "replace")
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                f"Date: {self.context.dates.now()}\r\nServer: {SERVER_HEADER}\r\n\r\n")
        return head.encode("latin-1") + body

    def _close_result(self, exchange: Exchange) -> None:
        result = exchange.result
        exchange.result = None
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - the app boundary
                _log.exception("the application's close() failed")

    def _log_access(self, exchange: Exchange) -> None:
        access_log = self.context.access_log
        if access_log is None:
            return
        request = exchange.request
        writer = exchange.writer
        access_log.log(AccessRecord(
            remote_addr=self.remote_addr, remote_port=self.remote_port,
            method=request.method.decode("ascii"), target=request.target.decode("latin-1"),
            version="HTTP/1.0" if request.http_version == b"1.0" else "HTTP/1.1",
            status=exchange.status_code, response_bytes=writer.bytes_written if writer else 0,
            start_time=exchange.start_wall, duration_s=time.monotonic() - exchange.started,
            request_headers=request.headers.lowered(), response_headers=exchange.headers,
            pid=self.context.pid, remote_user=_remote_user(exchange.environ)))

    # -- request body (called from the app's thread) -----------------------------------------
    def _read_body(self) -> bytes:
        """The next piece of the request body, or b"" at its end. May wait for the peer."""
        exchange = self._exchange
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
                    and not self._continue_sent:
                if exchange.head_sent:
                    # The final response went out before the app asked for the body, so
                    # no 100 can invite it now and the client need not send it (RFC 9110
                    # §10.1.1): fail the read rather than wait for bytes that won't come.
                    raise ConnectionAbortedError("the body of an Expect: 100-continue "
                                                 "request was read after the response")
                # RFC 9110 §10.1.1: the app asked for the body, so now we invite it.
                self._continue_sent = True
                self._send_blocking(_CONTINUE_100)
            # No exchange: _finish_exchange is draining what the app left unread. Take only
            # what has arrived; never hold the thread for a client that stalls its body.
            data = self._recv_blocking(self.context.body_timeout_s if exchange else 0.0)
            parser.feed(data)

    def _recv_blocking(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.sock.recv(RECV_BYTES)
            except _WOULD_BLOCK:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out reading the request body")
            _wait(self.fileno, select.POLLIN, remaining)

    # -- output ----------------------------------------------------------------------------
    def _send_or_park(self, data: bytes) -> bool:
        """Send without blocking; False when the rest waits in ``_pending_out``."""
        try:
            sent = self.sock.send(data)
        except _WOULD_BLOCK:
            sent = 0
        if sent == len(data):
            return True
        self._pending_out = memoryview(data)[sent:]
        if self.state is ConnState.IN_APP:
            self._set_state(ConnState.WRITING)
        return False

    def _flush_pending(self) -> bool:
        pending = self._pending_out
        while pending is not None and len(pending):
            try:
                sent = self.sock.send(pending)
            except _WOULD_BLOCK:
                self._pending_out = pending
                return False
            except OSError as exc:
                _log.debug("send to %s failed: %s", self.remote_addr, exc)
                self._pending_out = None
                raise
            pending = pending[sent:]
        self._pending_out = None
        return True

    def _send_blocking(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self.context.body_timeout_s
        while len(view):
            try:
                sent = self.sock.send(view)
                view = view[sent:]
                continue
            except _WOULD_BLOCK:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out writing to the client")
            _wait(self.fileno, select.POLLOUT, remaining)

    def _try_send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except OSError:
            pass

    def _send_final(self, data: bytes) -> Outcome:
        try:
            if not self._send_or_park(data):
                return Outcome.WAIT_WRITABLE
        except OSError:
            return self._close_now()
        return self._start_lingering()

    def _start_closing(self) -> Outcome:
        self._set_state(ConnState.CLOSING)
        return self._start_lingering()

    def _start_lingering(self) -> Outcome:
        """Half-close and wait (in the loop, not a thread) for the peer to finish.

        Closing a socket with unread input makes the kernel send RST, which can destroy
        the response before the client reads it (RFC 9112 §9.6): shut down our side,
        read and drop for up to LINGER_S, then close.
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return self._close_now()
        self.deadline = time.monotonic() + LINGER_S
        return self._linger_read()

    def _linger_read(self) -> Outcome:
        try:
            while True:
                data = self.sock.recv(RECV_BYTES)
                if not data:
                    return self._close_now()
        except _WOULD_BLOCK:
            return Outcome.WAIT_READABLE
        except OSError:
            return self._close_now()

    def _close_now(self) -> Outcome:
        return Outcome.CLOSE


def _wait(fileno: int, events: int, timeout_s: float) -> None:
    poller = select.poll()
    poller.register(fileno, events)
    poller.poll(max(0.0, timeout_s) * 1000)


def _remote_user(environ: dict[str, Any]) -> str:
    user = environ.get("REMOTE_USER")
    return str(user) if user else "-"


def make_base_environ(server_name: str, server_port: str, url_scheme: str, *,
                      multithread: bool, multiprocess: bool,
                      errors: ErrorStream | None = None) -> dict[str, Any]:
    """The part of every environ that depends only on the listener and the worker."""
    return {
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SCRIPT_NAME": "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.errors": errors or ErrorStream(),
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
        "SERVER_SOFTWARE": SERVER_HEADER,
    }


__all__ = ["ConnState", "Connection", "Outcome", "make_base_environ"]
