"""One open WebSocket connection, client side: ``WebSocket`` drives the sans-IO core
(``wsgiserve.websocket``) over a connected socket, plain or TLS.

Threads: any thread may ``send``, ``ping`` or ``close`` while one thread reads (``recv``
or iteration). Frames go out whole and in the order the core queued them (the send
lock). Every call into the core and every socket call runs under one short lock that is
never held while waiting: OpenSSL forbids SSL_read and SSL_write on one connection at the
same time, so the socket is non-blocking and the waits happen in ``select``, outside it.
Memory stays bounded: the socket is read only when the caller asks for a message, one
``RECV_BYTES`` read at a time, and a message is at most ``max_message_bytes``.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

from wsgiserve.client.errors import (
    ClientError,
    InvalidRequest,
    Phase,
    ReadTimeout,
    WriteError,
    WriteTimeout,
    translate_error,
)
from wsgiserve.client.websocket.errors import (
    ABNORMAL_CLOSURE,
    WebSocketClosed,
    WebSocketClosedOK,
    closed_error,
)
from wsgiserve.client.websocket.nonblocking import (
    Wait,
    recv_some,
    send_some,
    shut_down,
    wait_for,
)
from wsgiserve.http.events import Response as ResponseHead
from wsgiserve.websocket import (
    NEED_DATA,
    BytesMessage,
    CloseReceived,
    ConnectionState,
    DeflateParameters,
    LocalProtocolError,
    Ping,
    Pong,
    ProtocolViolation,
    TextMessage,
    WebSocketConnection,
)

_log = logging.getLogger(__name__)

Message = str | bytes
Trace = Callable[[str], None]


class WebSocket:
    """An open client WebSocket connection; made by ``connect``.

    Attributes:
        url: the URL connected to.
        subprotocol: the subprotocol the server chose (RFC 6455 §1.9), or None.
        deflate: the agreed permessage-deflate parameters, or None (no compression).
        request_head: the upgrade request as sent.
        response: the server's 101 response head (status, reason, headers).
        write_timeout_s: how long one ``send`` may wait for the server to take bytes.
        close_timeout_s: how long the close handshake may take (``close``, or a Close
            from the server), after which the connection is simply closed.
    """

    def __init__(self, sock: socket.socket, core: WebSocketConnection, *, url: str,
                 subprotocol: str | None = None, deflate: DeflateParameters | None = None,
                 request_head: bytes = b"", response: ResponseHead | None = None,
                 write_timeout_s: float | None = 60.0, close_timeout_s: float = 10.0,
                 trace: Trace | None = None) -> None:
        sock.setblocking(False)
        self.url = url
        self.subprotocol = subprotocol
        self.deflate = deflate
        self.request_head = request_head
        self.response = response
        self.write_timeout_s = write_timeout_s
        self.close_timeout_s = close_timeout_s
        self.trace = trace
        self._sock: socket.socket | None = sock
        self._core = core
        self._lock = threading.Lock()        # the core and each socket call; never waits
        self._send_lock = threading.Lock()   # one writer: frames whole, in queue order
        self._recv_lock = threading.Lock()   # one reader
        self._readers: dict[int, int] = {}   # thread id -> recv calls and iterations running
        self._closed = threading.Event()     # set once the socket is closed
        self._error: WebSocketClosed | None = None
        self._failure: ProtocolViolation | None = None
        self._lost: BaseException | None = None      # the socket error that ended it
        self._sent_close_code: int | None = None
        self._close_deadline: float | None = None

    # -- state --------------------------------------------------------------------------------
    @property
    def is_closed(self) -> bool:
        """True once the connection has ended and its socket is closed."""
        return self._closed.is_set()

    def wait_closed(self, timeout_s: float | None = None) -> bool:
        """Wait until the connection has ended (read by another thread); True if it has."""
        return self._closed.wait(timeout_s)

    @property
    def close_code(self) -> int | None:
        """The connection's close code once closed (see ``WebSocketClosed.code``), else None."""
        error = self._error
        return error.code if error is not None else None

    @property
    def close_reason(self) -> str:
        error = self._error
        return error.reason if error is not None else ""

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Message]:
        """Yield messages until the connection closes: quietly on a normal close
        (``WebSocketClosedOK``); any other end raises its ``WebSocketClosed``.

        While an iteration runs, ``close`` from another thread leaves the reading to it.
        """
        self._count_reader(1)
        try:
            while True:
                try:
                    yield self.recv()
                except WebSocketClosedOK:
                    return
        finally:
            self._count_reader(-1)

    def _count_reader(self, step: int) -> None:
        thread = threading.get_ident()
        with self._lock:
            count = self._readers.get(thread, 0) + step
            if count:
                self._readers[thread] = count
            else:
                del self._readers[thread]

    # -- receiving ------------------------------------------------------------------------------
    def recv(self, timeout_s: float | None = None) -> Message:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        Pings are answered and Pongs noted on the way. One thread reads at a time.

        Args:
            timeout_s: how long to wait; None waits until a message or the end.
        Raises:
            WebSocketClosed: (a kind of it) the connection is closed, now or before; its
                ``code`` and ``reason`` are the close code and reason.
            ReadTimeout: no message within ``timeout_s``; the connection stays open.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if not self._recv_lock.acquire(timeout=-1 if timeout_s is None else max(timeout_s, 0.0)):
            raise ReadTimeout(f"{self.url}: no message within {timeout_s} s (another "
                              "thread is reading)")
        self._count_reader(1)
        try:
            return self._receive(deadline)
        finally:
            self._count_reader(-1)
            self._recv_lock.release()

    def _receive(self, deadline: float | None) -> Message:
        """The reader's loop (the caller holds the receive lock)."""
        core = self._core
        while True:
            error = self._error
            if error is not None:
                raise type(error)(str(error), error.code, error.reason)
            if self._failure is not None:
                # We failed the connection: read and drop until the server closes.
                if self._read(deadline):
                    self._finish(ABNORMAL_CLOSURE)
                continue
            with self._lock:
                try:
                    event = core.next_event()
                except ProtocolViolation as exc:
                    self._failure = exc     # our Close with exc.close_code is queued
                    event = None
            if event is None:
                assert self._failure is not None
                self._note(f"failing the connection with {self._failure.close_code}: "
                           f"{self._failure}")
                self._start_closing(self.close_timeout_s)
                self._flush()
                continue
            if event is NEED_DATA:
                self._read(deadline)
                continue
            if isinstance(event, TextMessage):
                return event.text
            if isinstance(event, BytesMessage):
                return event.data
            if isinstance(event, Ping):
                self._note(f"received Ping {event.payload!r}")
                self._flush()              # its Pong, queued by the core
            elif isinstance(event, Pong):
                self._note(f"received Pong {event.payload!r}")
            elif isinstance(event, CloseReceived):
                self._note(f"received Close {event.code} {event.reason!r}")
                self._start_closing(self.close_timeout_s)
                self._flush()              # the echo, unless we had sent our Close
            else:
                self._finish(event.code, event.reason)   # ConnectionClosed

    def _read(self, deadline: float | None) -> bool:
        """Feed the core the socket's next bytes; True when the connection has ended.

        Once closing, the wait is bounded by the close deadline: RFC 6455 §7.1.1, the
        client waits for the server to close the TCP connection, then closes it itself.

        Raises:
            ReadTimeout: ``deadline`` passed first.
        """
        while True:
            data = self._recv_some()
            if isinstance(data, bytes):
                with self._lock:
                    self._core.receive_data(data)
                return not data
            close_deadline = self._close_deadline
            limit = deadline
            if close_deadline is not None and (limit is None or close_deadline <= limit):
                limit = close_deadline
            timeout = None if limit is None else limit - time.monotonic()
            if timeout is not None and timeout <= 0:
                if limit is not close_deadline:
                    raise ReadTimeout(f"{self.url}: no message within the time limit")
                self._note("the server did not close the connection in time: closing it")
                with self._lock:
                    self._core.receive_data(b"")
                return True
            self._wait(data, timeout)

    def _recv_some(self) -> bytes | Wait:
        """One non-blocking read: bytes, ``b""`` at the end, or what to wait for."""
        with self._lock:
            sock = self._sock
            if sock is None:
                return b""
            data = recv_some(sock)
            if isinstance(data, OSError):
                self._lost = data
                return b""
            return data

    def _wait(self, what: Wait, timeout: float | None) -> None:
        """Wait (without the lock) until the socket is ready or ``timeout`` passes."""
        sock = self._sock
        if sock is not None:
            wait_for(sock, what, timeout)

    def _finish(self, code: int, reason: str = "") -> None:
        """The end: close the socket and remember what every later call raises."""
        error = closed_error(self.url, code, reason, self._failure, self._lost)
        with self._lock:
            sock, self._sock = self._sock, None
            self._error = error
        if sock is not None:
            sock.close()
        self._note(f"connection closed ({error.code})")
        self._closed.set()

    def _closing_error(self) -> WebSocketClosed:
        """What ``send`` raises once a Close was sent or received (the lock is held)."""
        error = self._error
        if error is not None:
            return type(error)(str(error), error.code, error.reason)
        code = self._core.close_code or self._sent_close_code or ABNORMAL_CLOSURE
        return closed_error(self.url, code, self._core.close_reason, self._failure, self._lost)

    # -- sending --------------------------------------------------------------------------------
    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary message, compressed if deflate was agreed.

        Raises:
            WebSocketClosed: the connection is closing or closed.
            InvalidRequest: a ``str`` that cannot be UTF-8 (a lone surrogate).
            WriteTimeout, WriteError: the server did not take the bytes; the connection
                is then broken (a frame may be cut) and closes.
        """
        if isinstance(message, str):
            self._send(lambda core: core.send_text(message))
        else:
            self._send(lambda core: core.send_bytes(bytes(message)))

    def ping(self, payload: bytes = b"") -> None:
        """Send a Ping (at most 125 bytes); its Pong is noted when ``recv`` reads it.

        Raises: as ``send``.
        """
        self._send(lambda core: core.send_ping(payload))
        self._note(f"sent Ping {payload!r}")

    def _send(self, queue: Callable[[WebSocketConnection], None]) -> None:
        with self._send_lock:
            with self._lock:
                core = self._core
                if self._error is not None or core.state is not ConnectionState.OPEN:
                    raise self._closing_error()
                try:
                    queue(core)
                except LocalProtocolError as exc:
                    raise InvalidRequest(f"{self.url}: {exc}") from None
                data = core.data_to_send()
            self._write(data)

    def _flush(self) -> None:
        """Send what the core queued by itself (a Pong, a Close); a failure to write
        ends the connection, which the reader then sees."""
        with self._send_lock:
            with self._lock:
                data = self._core.data_to_send()
            if data:
                try:
                    self._write(data)
                except ClientError as exc:
                    self._lost = exc

    def _write(self, data: bytes) -> None:
        """Send all of ``data`` (the send lock is held).

        Raises:
            WriteTimeout, WriteError: the connection was then shut down.
        """
        timeout_s = self.write_timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        view = memoryview(data)
        while view:
            with self._lock:
                sock = self._sock
                if sock is None:
                    raise WriteError(f"{self.url}: the connection is closed")
                sent = send_some(sock, view)
            if isinstance(sent, int):
                view = view[sent:]
                continue
            if isinstance(sent, OSError):
                self._shut_down()
                raise translate_error(sent, Phase.WRITE, self.url) from sent
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                self._shut_down()
                raise WriteTimeout(f"{self.url}: the server took no bytes for {timeout_s} s")
            self._wait(sent, timeout)

    # -- closing --------------------------------------------------------------------------------
    def close(self, code: int = 1000, reason: str = "", *, timeout_s: float | None = None) -> None:
        """Run the close handshake: send Close, wait for the server's Close and for it to
        close the TCP connection (RFC 6455 §7.1.1), at most ``timeout_s``
        (``close_timeout_s`` by default); then the socket is closed in any case.

        Messages that arrive meanwhile go to a thread that is reading (``recv`` or an
        iteration); with none, they are dropped. Idempotent; never raises for the
        connection's state.

        Raises:
            InvalidRequest: a code that may not be sent, or a reason over 123 bytes.
        """
        timeout = self.close_timeout_s if timeout_s is None else timeout_s
        self._send_close(code, reason, timeout)
        self._wait_closed(time.monotonic() + timeout)

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake and return at once: the thread that reads (``recv``
        or an iteration) gets the messages still on their way, then the end, within
        ``close_timeout_s``. For a program whose writer is not its reader; otherwise,
        ``close``. Idempotent.

        Raises:
            InvalidRequest: as ``close``.
        """
        self._send_close(code, reason, self.close_timeout_s)

    def _send_close(self, code: int, reason: str, timeout_s: float) -> None:
        is_sent = False
        with self._send_lock:
            with self._lock:
                if self._error is None and self._core.state is ConnectionState.OPEN:
                    try:
                        self._core.close(code, reason)
                    except LocalProtocolError as exc:
                        raise InvalidRequest(f"{self.url}: {exc}") from None
                    self._sent_close_code = code
                    is_sent = True
                data = self._core.data_to_send()
            if data:
                try:
                    self._write(data)
                except ClientError as exc:
                    self._lost = exc
        if is_sent:
            self._note(f"sent Close {code} {reason!r}")
        self._start_closing(timeout_s)

    def _start_closing(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        if self._close_deadline is None or deadline < self._close_deadline:
            self._close_deadline = deadline

    def _wait_closed(self, deadline: float) -> None:
        """Read to the end ourselves, or let the thread that reads do it; then make sure."""
        while not self._closed.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            thread = threading.get_ident()
            with self._lock:
                is_read_elsewhere = any(reader != thread for reader in self._readers)
            if is_read_elsewhere:
                self._closed.wait(remaining)
            elif self._recv_lock.acquire(timeout=remaining):
                try:
                    self._drain()
                finally:
                    self._recv_lock.release()
        if self._closed.is_set():
            return
        # Out of time: shutting the socket down wakes a reader, which then finishes.
        self._shut_down()
        if self._recv_lock.acquire(blocking=False):
            try:
                self._drain()
            finally:
                self._recv_lock.release()

    def _drain(self) -> None:
        """Read until the end, dropping messages (the receive lock is held)."""
        while True:
            try:
                self._receive(None)
            except WebSocketClosed:
                return

    def _shut_down(self) -> None:
        """End the TCP connection now; the reader (or the next read) sees the end."""
        with self._lock:
            sock = self._sock
            if sock is None:
                return
            shut_down(sock)
            self._close_deadline = time.monotonic()

    def _note(self, message: str) -> None:
        _log.debug("%s: %s", self.url, message)
        if self.trace is not None:
            self.trace(message)
