"""The WebSocket an app gets from ``environ["wsgiserve.websocket"].accept()``.

A ``WebSocket`` drives the sans-IO core (``wsgiserve.websocket``) over the connection's
socket in one of two styles. Blocking: the WSGI call itself reads (``receive``, or
``for message in ws``) on its serving thread. Event mode: the app sets ``on_message`` (and
``on_close``) and returns; the connection's protocol (``websocket.WebSocketProtocol``) then
reads in the worker's loop, and callbacks run on the serving threads (``context.submit``),
one at a time per socket, in message order, with no thread held while the socket is idle.
Either way the next frame is parsed only once the app has taken the message before it
(its echo is queued first), pings keep proxies from timing out, and every socket call and
the core are under the WebSocket's lock: ``send`` and ``close`` work from any thread.
"""
from __future__ import annotations

import collections
import logging
import math
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from wsgiserve.server.worker.context import ServerContext
from wsgiserve.server.worker.transport import Transport, wait_for_socket
from wsgiserve.server.worker.websocket_io import SocketIO
from wsgiserve.server.worker.websocket_timers import CLOSE_TIMEOUT_S, Due, WebSocketTimers
from wsgiserve.websocket import (
    NEED_DATA,
    BytesMessage,
    CloseReceived,
    ConnectionClosed,
    ConnectionState,
    LocalProtocolError,
    Pong,
    ProtocolViolation,
    TextMessage,
    WebSocketConnection,
)

if TYPE_CHECKING:
    from wsgiserve.log import AccessRecord

__all__ = ["CLOSE_TIMEOUT_S", "MAX_SEND_BUFFER_BYTES", "WebSocket", "WebSocketClosed"]

_log = logging.getLogger(__name__)

# Bytes a socket may hold unsent once the loop reads it (event mode) before ``send`` waits
# for the peer to read (then drops it: see ``send``). websockets' write_limit is 32 KiB;
# we allow a whole default-size message.
MAX_SEND_BUFFER_BYTES: Final = 1 << 20
# How long ``send`` waits for room without a timeout of its own.
SEND_TIMEOUT_S: Final = 10.0
# A sender waiting for room looks up at least this often: the WebSocket may have been
# dropped or closed meanwhile (as an HTTP/2 stream's reader does: READER_POLL_MAX_S).
ROOM_POLL_MAX_S: Final = 0.5
# RFC 6455 §7.4.1: 1008 policy violation (the peer does not read what we send), 1011 an
# unexpected condition (no pong, a callback failed), 1006 closed without a Close frame.
_POLICY: Final = 1008
_INTERNAL_ERROR: Final = 1011
_ABNORMAL: Final = 1006
_OPEN: Final = ConnectionState.OPEN
_PING_PAYLOAD: Final = b"wsgiserve"

Message = str | bytes
OnMessage = Callable[["WebSocket", Message], object]
OnClose = Callable[["WebSocket", int, str], object]


class WebSocketClosed(Exception):
    """The WebSocket is closed: ``code`` and ``reason`` are those of the close (1006 when
    the connection was lost without a Close frame)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"the WebSocket is closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class WebSocket:
    """An accepted WebSocket (see the module docstring for the two styles).

    Attributes:
        subprotocol: the one accepted, or None.
        environ: the upgrade request's environ.
        on_message: ``on_message(ws, message)``, a ``str`` (text) or ``bytes`` (binary)
            message; set it before the WSGI call returns to use event mode.
        on_close: ``on_close(ws, code, reason)``, called once after the last message.
        close_code, close_reason: set once the WebSocket has closed.
    """

    def __init__(self, transport: Transport, context: ServerContext, core: WebSocketConnection,
                 environ: dict[str, Any], subprotocol: str | None,
                 access_record: Callable[[WebSocket], AccessRecord] | None) -> None:
        self.subprotocol = subprotocol
        self.environ = environ
        self.on_message: OnMessage | None = None
        self.on_close: OnClose | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.bytes_received = 0
        self.bytes_sent = 0
        self.started = time.monotonic()
        self._transport = transport
        self._io = SocketIO(transport)
        self._context = context
        self._core = core
        self._access_record = access_record
        self._lock = threading.Lock()
        self._inbox: collections.deque[Message] = collections.deque()
        self._is_in_loop = False     # the WSGI call returned: the loop reads the socket
        self._is_finished = False    # no more frames are read; close once output is sent
        self._is_aborted = False     # close the transport at once (peer gone or not reading)
        self._is_delivering = False  # a task is running callbacks: the loop does not read
        self._is_close_notified = False
        self._has_ended = False
        settings = context.websocket
        self._timers = WebSocketTimers(self.started, settings.websocket_ping_interval,
                                       settings.websocket_ping_timeout)

    def __repr__(self) -> str:
        return f"<WebSocket {self._transport.remote_addr} {self._core.state.value}>"

    # -- the app's side ----------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """Messages can still be sent (no Close sent or received, not failed)."""
        return self._core.state is _OPEN and not self._is_finished

    def send(self, message: Message, *, timeout: float | None = None) -> None:
        """Send a text (``str``) or binary (``bytes``) message; any thread may call it.

        Backpressure: while the WSGI call runs, ``send`` returns once the socket has taken
        the message. In event mode up to MAX_SEND_BUFFER_BYTES may wait in the send buffer;
        past that ``send`` waits for the peer to read, up to ``timeout`` seconds
        (SEND_TIMEOUT_S by default; 0: no wait), and a peer that still does not read is
        dropped: close code 1008 and the connection closed.

        Raises:
            WebSocketClosed: the WebSocket is closed (or was dropped while waiting).
            TypeError: not ``str`` or ``bytes``.
        """
        is_text = isinstance(message, str)
        if not is_text and not isinstance(message, (bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        with self._lock:
            self._check_open()
            core = self._core
            if is_text:
                core.send_text(message)  # type: ignore[arg-type]  # a str: checked above
            else:
                core.send_bytes(message)  # type: ignore[arg-type]  # bytes-like: checked above
            self._write(core.data_to_send())
            out = len(self._io.out)
            if not out or (self._is_in_loop and out <= MAX_SEND_BUFFER_BYTES):
                return
        self._wait_for_room(SEND_TIMEOUT_S if timeout is None else timeout)

    def receive(self, timeout: float | None = None) -> Message | None:
        """The next message (``str`` or ``bytes``), waiting up to ``timeout`` seconds
        (None: until one comes); None when the time ran out. For the blocking style: in
        event mode messages go to ``on_message``.

        Raises:
            WebSocketClosed: the WebSocket closed (after every message was received).
        """
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._inbox:
                    return self._inbox.popleft()
                message = None if self._is_finished else self._next_message()
                if message is not None:
                    return message
                if self._is_finished:
                    raise WebSocketClosed(self.close_code or _ABNORMAL, self.close_reason)
                if self._is_in_loop:
                    raise RuntimeError("receive() in event mode: messages go to on_message")
                data = self._io.recv()
                if data is not None:
                    self._feed(data)
                    continue
                wants_write = bool(self._io.out)
                timer = self.deadline
            now = time.monotonic()
            if timer <= now:
                self.on_timer(now)
                continue
            if now >= deadline:
                return None
            wait_for_socket(self._transport.fileno,
                            select.POLLIN | (select.POLLOUT if wants_write else 0),
                            min(timer, deadline) - now)
            if wants_write:
                with self._lock:
                    self._flush()

    def __iter__(self) -> Iterator[Message]:
        """Each message until the WebSocket closes (blocking style)."""
        while True:
            try:
                message = self.receive()
            except WebSocketClosed:
                return
            if message is not None:
                yield message

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (a no-op once closing or closed); any thread.

        The peer's Close is awaited up to CLOSE_TIMEOUT_S: by ``receive`` in the blocking
        style, else by the worker's loop once the WSGI call has returned.

        Raises:
            ValueError: a code that may not be sent, or a reason over 123 bytes.
        """
        with self._lock:
            if self._core.state is not _OPEN or self._is_finished:
                return
            try:
                self._core.close(code, reason)
            except LocalProtocolError as exc:
                raise ValueError(str(exc)) from None
            self._timers.close_sent(time.monotonic())
            self.close_code, self.close_reason = code, reason
            self._write(self._core.data_to_send())

    # -- shared by both styles (called with the lock held) -------------------------------------
    def _check_open(self) -> None:
        if self._core.state is not _OPEN or self._is_finished:
            raise WebSocketClosed(self.close_code or _ABNORMAL, self.close_reason)

    def _next_message(self) -> Message | None:
        """Parse buffered input up to the next message (None: none complete, or the
        connection finished); control frames are answered on the way."""
        core = self._core
        while True:
            try:
                event = core.next_event()
            except ProtocolViolation as exc:
                self.close_code, self.close_reason = exc.close_code, ""
                self._write(core.data_to_send())
                self._finish()
                return None
            if event is NEED_DATA:
                return None
            kind = type(event)
            if kind is TextMessage:
                return event.text  # type: ignore[union-attr]  # a TextMessage
            if kind is BytesMessage:
                return event.data  # type: ignore[union-attr]  # a BytesMessage
            if kind is Pong:
                self._timers.pong_received(time.monotonic())
            elif kind is CloseReceived:
                # RFC 6455 §7.1.5: the connection's close code is that of the first Close
                # received (the peer's echo, if we closed first).
                self.close_code = event.code  # type: ignore[union-attr]  # a CloseReceived
                self.close_reason = event.reason  # type: ignore[union-attr]
            elif kind is ConnectionClosed and self.close_code is None:
                self.close_code = event.code  # type: ignore[union-attr]  # 1006 here
            data = core.data_to_send()  # a Pong, or the echo of a Close
            if data:
                self._write(data)
            if core.should_close_transport:
                self._finish()
                return None

    def _finish(self) -> None:
        """No more frames will be read (unread input is dropped)."""
        if not self._is_finished:
            self._is_finished = True
            if self.close_code is None:
                self.close_code = _ABNORMAL

    def _abort(self, code: int, reason: str) -> None:
        """Give up on the peer: no close handshake, the transport is closed at once."""
        if self._core.state is _OPEN:
            self._core.close(code, reason)
            self._io.out += self._core.data_to_send()  # sent if the socket takes it: no wait
        self.close_code, self.close_reason = code, reason
        self._is_aborted = True
        self._finish()

    def _write(self, data: bytes) -> None:
        """Send ``data`` after what is buffered, without blocking; keep what the socket
        does not take."""
        if not data:
            return
        self.bytes_sent += len(data)
        try:
            self._io.write(data)
        except OSError:
            self._lose()

    def _flush(self) -> bool:
        """Send buffered output without blocking; True when none is left."""
        try:
            return self._io.flush()
        except OSError:
            self._lose()
            return True

    def _feed(self, data: bytes) -> None:
        self.bytes_received += len(data)
        self._core.receive_data(data)

    def _lose(self) -> None:
        """The socket failed (reset, broken pipe): nothing more can be sent or read."""
        self._io.out.clear()
        self._is_aborted = True
        if self.close_code is None:
            self.close_code = _ABNORMAL
        self._finish()

    def _wait_for_room(self, timeout_s: float) -> None:
        """Wait until the send buffer is within its bound (all sent, while the WSGI call
        runs), sending as the socket takes more; past ``timeout_s`` drop the peer (1008).

        The waiting thread sends itself, in event mode too, rather than wait for the loop
        to: every serving thread may be a callback waiting here, with none left to run the
        loop's writes (they would all wait out their timeouts, then drop peers that read).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if self._is_aborted or self._has_ended:
                    # Dropped, the socket failed, or the connection closed: not all was sent.
                    raise WebSocketClosed(self.close_code or _ABNORMAL, self.close_reason)
                out = len(self._io.out)
                if not out or (self._is_in_loop and out <= MAX_SEND_BUFFER_BYTES):
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._abort(_POLICY, "the peer does not read")
                    self._context.resume_reading(self._transport.fileno)
                    raise WebSocketClosed(_POLICY, self.close_reason)
            wait_for_socket(self._transport.fileno, select.POLLOUT,
                            min(remaining, ROOM_POLL_MAX_S))
            with self._lock:
                self._flush()

    @property
    def deadline(self) -> float:
        """When ``on_timer`` is due: the next ping, the pong's, or the peer's Close."""
        return self._timers.deadline

    def on_timer(self, now: float) -> None:
        """Send a ping when one is due; give up on a peer whose pong or Close is late."""
        with self._lock:
            if self._is_finished:
                return
            due = self._timers.due(now)
            if due is Due.CLOSE_LATE:
                self._abort(_ABNORMAL, "")  # RFC 6455 §7.1.5: no Close received
            elif due is Due.PONG_LATE:
                self._abort(_INTERNAL_ERROR, "no pong")
            elif due is Due.PING and self._core.state is _OPEN:
                self._core.send_ping(_PING_PAYLOAD)
                self._timers.ping_sent(now)
                self._write(self._core.data_to_send())

    # -- the loop's side (the protocol calls these) -----------------------------------------
    @property
    def is_finished(self) -> bool:
        return self._is_finished

    @property
    def is_aborted(self) -> bool:
        return self._is_aborted

    def start_loop(self) -> None:
        """The WSGI call returned: from now on the loop reads the socket. With no callback
        set the app is done with the WebSocket: close it (1000)."""
        with self._lock:
            self._is_in_loop = True
            if self.on_message is None and self.on_close is None and not self._is_finished \
                    and self._core.state is _OPEN:
                self._core.close(1000, "")
                self._timers.close_sent(time.monotonic())
                self.close_code = 1000
                self._write(self._core.data_to_send())
            if self._inbox or (self._is_finished and self.on_close is not None):
                self._start_delivery()

    def loop_read(self) -> bool:
        """Read and parse what the socket holds (the loop, edge-triggered); True when the
        conversation is over (close once the output is sent)."""
        transport = self._transport
        with self._lock:
            while not self._is_finished:
                if self._is_delivering:
                    # The app has not taken the last message yet: leave the rest in the
                    # socket (TCP pushes back); the task resumes reading when it is done.
                    # The event may be the writable edge as well (edge-triggered polling
                    # reports both at once, and so every edge while input waits unread):
                    # send what waits, or it would wait for the callback to return.
                    transport.read_pending = False
                    self._flush()
                    return False
                message = self._next_message()
                if message is not None:
                    self._inbox.append(message)
                    self._start_delivery()
                    continue
                if self._is_finished:
                    break
                data = self._io.recv()
                if data is None:
                    transport.read_pending = False
                    self._flush()
                    return False
                self._feed(data)
            if not self._is_close_notified and self.on_close is not None \
                    and not self._is_delivering:
                self._start_delivery()
            return True

    def loop_flush(self) -> bool:
        """Send buffered output (the socket is writable); True when none is left."""
        with self._lock:
            return self._flush()

    def _start_delivery(self) -> None:
        if not self._is_delivering and (self.on_message is not None or self.on_close is not None):
            self._is_delivering = True
            self._context.submit(self._deliver)

    def _deliver(self) -> None:
        """Run the callbacks for what has arrived, in order (a task on a serving thread)."""
        while True:
            on_close: OnClose | None = None
            with self._lock:
                if self._inbox:
                    message: Message | None = self._inbox.popleft()
                elif self._is_finished or not self._is_in_loop:
                    message = None
                else:
                    message = self._next_message()
                if message is None:
                    if self._is_finished and not self._is_close_notified:
                        self._is_close_notified = True
                        on_close = self.on_close
                    if on_close is None:
                        self._is_delivering = False
                        break
            if message is not None:
                on_message = self.on_message
                if on_message is not None:
                    self._run_callback(on_message, message)
            elif on_close is not None:
                self._run_callback(on_close, self.close_code or _ABNORMAL, self.close_reason)
        if self._is_in_loop:
            # Read on (or finish) in the loop: the socket may hold what we left there.
            self._context.resume_reading(self._transport.fileno)

    def _run_callback(self, callback: Callable[..., object], *args: object) -> None:
        context = self._context
        context.in_app[self] = time.monotonic()
        try:
            callback(self, *args)
        except WebSocketClosed:
            pass
        except Exception:  # noqa: BLE001 - the app boundary: log, close 1011
            _log.exception("WebSocket callback %r failed", callback)
            with self._lock:
                if self._core.state is _OPEN and not self._is_finished:
                    self._core.close(_INTERNAL_ERROR, "")
                    self._timers.close_sent(time.monotonic())
                    self.close_code = _INTERNAL_ERROR
                    self._write(self._core.data_to_send())
        finally:
            context.in_app.pop(self, None)

    def close_for_stop(self) -> None:
        """The worker is stopping: Close 1001 (going away), from the housekeeping thread."""
        try:
            self.close(1001, "server shutting down")
        except (ValueError, OSError):
            pass

    def end(self) -> None:
        """The transport is closing: forget the WebSocket and write its access line."""
        with self._lock:
            if self._has_ended:
                return
            self._has_ended = True
            if self.close_code is None:
                self.close_code = _ABNORMAL
            self._is_finished = True
        context = self._context
        context.websockets.discard(self)
        if context.access_log is not None and self._access_record is not None:
            context.access_log.log_websocket(self._access_record(self))
