"""One client connection: socket + parser + the exchange in progress + a state machine.

The worker's loop calls ``on_readable()`` / ``on_writable()`` when the socket is ready (in
whichever of its threads got the event; one at a time per connection) and acts on the
``Outcome``: wait for readability, for writability, or close. Nothing here blocks except
inside the application's own calls (``wsgi.input`` reads and the legacy ``write()``), which
wait with a timeout.

The states and their transitions are in ``server.states``; the response to one request
(PEP 3333's side, framing, pumping the body to the socket) is ``server.exchange``. This
module reads requests, runs the app, decides keep-alive or close, and does the socket I/O
both use: non-blocking sends that park the connection as WRITING, waits with a timeout for
the app's own reads and writes, and the lingering close.
"""
from __future__ import annotations

import logging
import select
import socket
import time
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
from wsgiserve.server.context import (
    DRAIN_MAX_BYTES,
    LINGER_S,
    PREBUFFER_MAX_BYTES,
    SERVER_HEADER,
    WOULD_BLOCK,
    ServerContext,
)
from wsgiserve.server.exchange import Exchange
from wsgiserve.server.states import TRANSITIONS, ConnState, Outcome
from wsgiserve.wsgi import (
    EmptyInput,
    ErrorStream,
    FileWrapper,
    RequestBody,
    build_environ,
)

_log = logging.getLogger(__name__)

RECV_BYTES: Final = 65536
# What a non-blocking socket call raises when it has to wait. ``use_tls`` adds ssl's two
# errors once a worker serves TLS: the ssl module is imported only then (it costs ~5 MiB
# of RSS in every process).
_WOULD_BLOCK: tuple[type[Exception], ...] = WOULD_BLOCK


def use_tls() -> None:
    """Let the I/O below treat ssl's SSLWantRead/WriteError as "wait" (TLS sockets)."""
    global _WOULD_BLOCK
    import ssl
    _WOULD_BLOCK = (*WOULD_BLOCK, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


# Reasons for the errors the server answers itself; a RemoteProtocolError carries its own.
_REASONS: Final = {400: "Bad Request", 408: "Request Timeout", 500: "Internal Server Error"}


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
        self.is_tls = False  # server.preamble's connections may be TLS
        self._pending_out: memoryview | None = None
        self._pending_request: Request | None = None
        self.exchange: Exchange | None = None
        self._head_started = False
        self.continue_sent = False
        if isinstance(peer, tuple):
            self.remote_addr, self.remote_port = str(peer[0]), int(peer[1])
        else:
            self.remote_addr, self.remote_port = "", 0
        self._base_environ = base_environ
        base_environ["REMOTE_ADDR"] = self.remote_addr
        base_environ["REMOTE_PORT"] = str(self.remote_port)

    # -- state ---------------------------------------------------------------------------
    def set_state(self, new: ConnState) -> None:
        if new not in TRANSITIONS[self.state]:
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
            self.set_state(ConnState.READING_HEAD)
        return self._advance()

    def on_writable(self) -> Outcome:
        """Send what is pending; then let the app produce more."""
        if not self._flush_pending():
            return Outcome.WAIT_WRITABLE
        if self.state is ConnState.CLOSING:
            return self._start_lingering()
        exchange = self.exchange
        if exchange is None:
            return self._advance()
        self.set_state(ConnState.IN_APP)
        self.context.in_app[self] = time.monotonic()
        outcome = exchange.pump()
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
            self.set_state(ConnState.CLOSING)
            self._try_send(self._error_response(408, "request timed out"))
            return self._start_lingering()
        return Outcome.CLOSE

    def close(self) -> None:
        if self.state is not ConnState.CLOSED:
            self.state = ConnState.CLOSED
            self.context.in_app.pop(self, None)
            exchange = self.exchange
            if exchange is not None and not exchange.is_finished:
                exchange.close_result()
            try:
                self.sock.close()
            except OSError:
                pass

    def start_graceful_close(self) -> Outcome:
        """Close an idle keep-alive connection as the worker stops: FIN first.

        A client that checks its pooled connection before reusing it sees the FIN and opens
        a new one instead of losing a request to the race with our close.
        """
        return self._start_closing()

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
                        self.set_state(ConnState.READING_HEAD)
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
                    self.set_state(ConnState.READING_BODY)
                    return self._wait_for_body()
            outcome = self._serve(request)
            if outcome is not None:
                return outcome

    def _is_body_buffered(self, request: Request) -> bool:
        return self.parser.buffered_bytes >= request.framing.length

    def _wait_for_body(self) -> Outcome:
        if self.state is not ConnState.READING_BODY:
            self.set_state(ConnState.READING_BODY)
        return Outcome.WAIT_READABLE

    def _serve(self, request: Request) -> Outcome | None:
        """Run the app for one request. None: the exchange ended, continue the loop."""
        context = self.context
        self.set_state(ConnState.IN_APP)
        self._head_started = False
        self.continue_sent = False
        exchange = self.exchange = Exchange(request, self)
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
        context.in_app[self] = exchange.started
        try:
            if "pre_request" in hooks:
                hooks["pre_request"](context.worker, environ)
            exchange.result = context.app(environ, exchange.start_response)
        except Exception as exc:  # noqa: BLE001 - the app boundary: log, answer 500
            return self.app_failed(exchange, exc)
        return exchange.pump()

    def finish_exchange(self, exchange: Exchange) -> Outcome | None:
        context = self.context
        self.exchange = None
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
        if exchange.should_close:
            return self._start_closing()
        # A worker that began stopping after this head went out (saying keep-alive) must
        # not close now: the client may already be sending its next request. That one is
        # answered with "Connection: close"; a connection left quiet is closed by the
        # worker's _close_idle.
        body = exchange.body
        if body is not None and not body.is_finished:
            # (Not the body of an Expect: 100-continue never invited: the exchange made
            # that response close when it built the head.)
            try:
                if not body.drain(DRAIN_MAX_BYTES):
                    return self._start_closing()
            except TimeoutError:
                # The rest of the body is not here yet: close, and let the lingering
                # close (in the loop, not this thread) drop it.
                return self._start_closing()
            except (RemoteProtocolError, OSError):
                return self._close_now()
        self.set_state(ConnState.IDLE)
        self.idle_since = now = time.monotonic()
        self.deadline = now + context.keepalive_s
        return None

    def app_failed(self, exchange: Exchange, exc: BaseException) -> Outcome:
        context = self.context
        context.in_app.pop(self, None)
        self.exchange = None
        exchange.close_result()
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
            self.set_state(ConnState.CLOSING)
            return self._send_final(self._error_response(408, "request timed out"))
        _log.error("Error handling request %s %s", exchange.request.method.decode("ascii"),
                   exchange.request.target.decode("latin-1")[:200], exc_info=exc)
        if exchange.head_sent:
            # Too late for a 500: abort so the client sees a truncated response.
            return self._close_now()
        exchange.status_code = 500
        exchange.log_access()
        self.set_state(ConnState.CLOSING)
        return self._send_final(self._error_response(500, "Internal Server Error"))

    def _reject(self, exc: RemoteProtocolError) -> Outcome:
        _log.debug("invalid request from %s: %s", self.remote_addr, exc)
        if self.state is not ConnState.CLOSING:
            self.set_state(ConnState.CLOSING)
        return self._send_final(self._error_response(exc.status, str(exc), exc.reason))

    def _error_response(self, status: int, message: str, reason: str = "") -> bytes:
        reason = reason or _REASONS[status]
        body = f"{status} {reason}\n{message}\n".encode("latin-1", "replace")
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                f"Date: {self.context.dates.now()}\r\nServer: {SERVER_HEADER}\r\n\r\n")
        return head.encode("latin-1") + body

    # -- request body (called from the app's thread) -----------------------------------------
    def _read_body(self) -> bytes:
        """The next piece of the request body, or b"" at its end. May wait for the peer."""
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
                    and not self.continue_sent:
                if exchange.head_sent:
                    # The final response went out before the app asked for the body, so
                    # no 100 can invite it now and the client need not send it (RFC 9110
                    # §10.1.1): fail the read rather than wait for bytes that won't come.
                    raise ConnectionAbortedError("the body of an Expect: 100-continue "
                                                 "request was read after the response")
                # RFC 9110 §10.1.1: the app asked for the body, so now we invite it.
                self.continue_sent = True
                self.send_blocking(_CONTINUE_100)
            # No exchange: finish_exchange is draining what the app left unread. Take only
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
    def send_or_park(self, data: bytes) -> bool:
        """Send without blocking; False when the rest waits in ``_pending_out``."""
        try:
            sent = self.sock.send(data)
        except _WOULD_BLOCK:
            sent = 0
        if sent == len(data):
            return True
        self._pending_out = memoryview(data)[sent:]
        if self.state is ConnState.IN_APP:
            self.set_state(ConnState.WRITING)
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

    def send_blocking(self, data: bytes) -> None:
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
            if not self.send_or_park(data):
                return Outcome.WAIT_WRITABLE
        except OSError:
            return self._close_now()
        return self._start_lingering()

    def _start_closing(self) -> Outcome:
        self.set_state(ConnState.CLOSING)
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


__all__ = ["ConnState", "Connection", "Outcome", "make_base_environ", "use_tls"]
