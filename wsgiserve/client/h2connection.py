"""An HTTP/2 client connection: concurrent requests from many threads, one stream each,
over one socket driven by the sans-IO core (``wsgiserve.http2``).

One I/O thread per connection owns the socket and its TLS object: it writes what the
core queued, reads, feeds the core and hands each event to its stream (``h2stream``).
Requesting threads never touch the socket; they call the core under ``lock``, wake the
I/O thread and wait on their stream's condition. States (``Http2State``; others raise)::

    STARTING (preface sent; waiting for the server's SETTINGS) ──> OPEN ──> DRAINING
    (a GOAWAY, or close(): no new streams; closes after the last) ──> CLOSED;
    any state ──> CLOSED on an error, an idle timeout, or the server's close.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Final

from wsgiserve import http2
from wsgiserve.client.body import RequestBody
from wsgiserve.client.errors import (
    ClientError,
    ConnectTimeout,
    InvalidRequest,
    Phase,
    ProtocolError,
    ServerDisconnected,
    StreamError,
    TLSError,
    WriteTimeout,
    translate_error,
)
from wsgiserve.client.h2failures import stream_failure, stream_reset_error
from wsgiserve.client.h2stream import Http2Stream, InformationalCallback, request_fields
from wsgiserve.client.negotiation import h2_tls_problem
from wsgiserve.client.proxy import Proxy
from wsgiserve.client.response import Response
from wsgiserve.client.transport import Transport, Waker
from wsgiserve.client.url import Origin
from wsgiserve.http.errors import LocalProtocolError
from wsgiserve.http.events import InformationalResponse
from wsgiserve.http.writer import encode_request_head

_log = logging.getLogger(__name__)

# The client's windows: Go's HTTP/2 transport gives each stream 4 MiB and the connection
# 1 GiB; we bound what one connection can buffer for slow readers to 16 MiB and one
# stream to 1 MiB (its reader gives the credit back as it reads).
CLIENT_LIMITS: Final = http2.Http2Limits(initial_window_size=1 << 20,
                                          connection_window_size=16 << 20)
# curl closes a connection left idle for 118 s (CURLOPT_MAXAGE_CONN).
IDLE_CLOSE_S: Final = 118.0
# Streams per connection when the server sets no SETTINGS_MAX_CONCURRENT_STREAMS.
_MAX_STREAMS_WITHOUT_LIMIT: Final = 256
# Bytes per send() call (TLS repeats a call that would block with the same bytes).
_WRITE_CHUNK_BYTES: Final = 1 << 16
# recv() calls per round before pending writes (window updates) get their turn.
_READS_PER_ROUND: Final = 16
# The longest the I/O thread sleeps at once while streams are open (it wakes for work).
_POLL_S: Final = 60.0
# After a connection error, how long the server gets to read our GOAWAY before the close.
_LINGER_S: Final = 1.0
_METHODS_WITH_CONTENT: Final = frozenset({"POST", "PUT", "PATCH"})
_STREAM_EVENTS: Final = frozenset({http2.ResponseReceived, http2.DataReceived,
                                   http2.InformationalResponseReceived,
                                   http2.TrailersReceived, http2.StreamEnded})


class Http2State(Enum):
    STARTING = "starting"
    OPEN = "open"
    DRAINING = "draining"
    CLOSED = "closed"


_H = Http2State
_TRANSITIONS: Final[dict[Http2State, frozenset[Http2State]]] = {
    _H.STARTING: frozenset({_H.OPEN, _H.DRAINING, _H.CLOSED}),
    _H.OPEN: frozenset({_H.DRAINING, _H.CLOSED}),
    _H.DRAINING: frozenset({_H.CLOSED}),
    _H.CLOSED: frozenset(),
}


class Http2Connection:
    """One HTTP/2 connection to ``origin`` over a connected ``transport``.

    ``on_change`` is called (from any thread, holding this connection's lock: it must
    not call back into the connection) when a stream slot frees, when the connection
    stops taking streams, and when it closes. Thread-safe.
    """

    def __init__(self, origin: Origin, transport: Transport, *, proxy: Proxy | None = None,
                 write_s: float | None = 60.0, limits: http2.Http2Limits | None = None,
                 on_change: Callable[[Http2Connection], None] | None = None):
        self.origin = origin
        self.proxy = proxy
        self.where = origin.host_port
        self.lock = threading.Lock()
        self.core = http2.Connection(is_client=True, limits=limits or CLIENT_LIMITS)
        self.unsent_bytes = 0
        self._transport = transport
        self._write_s = write_s
        self._on_change = on_change
        self._state = Http2State.STARTING
        self._ready = threading.Condition(self.lock)
        self._streams: dict[int, Http2Stream] = {}
        self._reserved = 0              # slots taken by requests (streams open or opening)
        self._pending: list[bytes] = []  # the core's output, for the I/O thread
        self._pending_bytes = 0
        self._is_woken = False
        self._waker = Waker()
        self._is_close_requested = False
        self._idle_since = time.monotonic()
        self._goaway = ""               # why the server is closing, for messages
        self._start_error: ClientError | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"wsgiserve-h2 {self.where}")

    # -- state ----------------------------------------------------------------------------------
    @property
    def state(self) -> Http2State:
        return self._state

    def _set_state_locked(self, new: Http2State) -> None:
        if new is self._state:
            return
        if new not in _TRANSITIONS[self._state]:
            raise AssertionError(f"HTTP/2 connection {self._state} -> {new} is not in the table")
        self._state = new

    @property
    def active_streams(self) -> int:
        """Requests holding a slot (their stream is open or about to open)."""
        return self._reserved

    @property
    def max_streams(self) -> int:
        """The server's SETTINGS_MAX_CONCURRENT_STREAMS (ours when it sets none)."""
        limit = self.core.max_outbound_streams
        return limit if limit < 1 << 31 else _MAX_STREAMS_WITHOUT_LIMIT

    @property
    def is_open(self) -> bool:
        """Taking new streams (not starting, draining or closed)."""
        return self._state is Http2State.OPEN

    def reserve_first(self) -> None:
        """Take the first stream slot of a connection just started.

        Raises:
            StreamError: it takes no stream (a GOAWAY came at once, or a limit of 0); the
                connection is closed and the request may go elsewhere.
        """
        if not self.try_reserve():
            self.close()
            raise StreamError(f"{self.where}: the new HTTP/2 connection takes no stream",
                              http2.ErrorCode.REFUSED_STREAM, is_unprocessed=True)

    def try_reserve(self) -> bool:
        """Take a stream slot for a request; False when full or not OPEN."""
        with self.lock:
            if self._state is not Http2State.OPEN or self._reserved >= self.max_streams:
                return False
            self._reserved += 1
            return True

    # -- starting and closing -------------------------------------------------------------------
    def start(self, timeout_s: float | None) -> None:
        """Check the TLS session (RFC 9113 §9.2), send the preface and wait up to
        ``timeout_s`` for the server's SETTINGS.

        Raises:
            TLSError: the TLS session may not carry HTTP/2 (a GOAWAY with
                INADEQUATE_SECURITY was sent). ConnectTimeout, ProtocolError,
                TransportError. The connection is then CLOSED.
        """
        problem = h2_tls_problem(*self._transport.tls_facts()) \
            if self.origin.is_tls else None
        if problem is not None:
            self.core.close(http2.ErrorCode.INADEQUATE_SECURITY, 0, problem.encode()[:100])
            try:
                self._transport.send(self.core.data_to_send(), timeout_s)
            except OSError:
                pass
            self._shut_transport()
            raise TLSError(f"{self.where}: {problem}")
        self._transport.set_nonblocking()
        with self.lock:
            self.flush_locked()
        self._thread.start()
        end = None if timeout_s is None else time.monotonic() + timeout_s
        with self.lock:
            while self._state is Http2State.STARTING:
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._ready.wait(remaining)
            state = self._state
        if state is Http2State.STARTING:
            self.close()
            raise ConnectTimeout(f"{self.where}: no HTTP/2 SETTINGS from the server "
                                 f"within {timeout_s} s")
        if state is Http2State.CLOSED:
            raise self._failure_for_start()

    def _failure_for_start(self) -> ClientError:
        error = self._start_error
        return error if error is not None else ServerDisconnected(
            f"{self.where}: the server closed the connection before its HTTP/2 SETTINGS")

    def close(self) -> None:
        """Take no new stream; close once the open ones end (at once if none); idempotent."""
        with self.lock:
            self._is_close_requested = True
            if self._state is Http2State.OPEN or self._state is Http2State.STARTING:
                self._set_state_locked(Http2State.DRAINING)
            self._wake_locked()

    # -- one exchange ---------------------------------------------------------------------------
    def request(self, method: str, target: str, headers: Sequence[tuple[str, str]],
                body: RequestBody | None = None, *, url: str = "",
                read_s: float | None = 60.0, write_s: float | None = 60.0,
                deadline: float | None = None, expect_continue: bool = False,
                expect_continue_s: float = 1.0,
                on_informational: InformationalCallback | None = None,
                on_head_sent: Callable[[bytes], None] | None = None) -> Response:
        """Send a request on a new stream (a slot taken with ``try_reserve``); return the
        response with its head read. The slot is freed when the stream ends.

        ``headers`` are HTTP/1.1-style fields (Host included, no framing fields): Host
        becomes :authority and the rest is lowercased; the body's length, when known, is
        sent as content-length.

        Raises:
            StreamError: ``is_unprocessed`` when the request may go elsewhere.
            InvalidRequest, RequestTimeout, ProtocolError, TransportError.
        """
        content_length = body.content_length if body is not None else \
            (0 if method in _METHODS_WITH_CONTENT else None)
        shown = list(headers)
        if content_length is not None:
            shown.append(("content-length", str(content_length)))
        stream = Http2Stream(self, read_s=read_s, write_s=write_s, deadline=deadline,
                             is_head_request=method == "HEAD")
        try:
            head = encode_request_head(method, target, shown, "2")
            fields = request_fields(method, self.origin.scheme, target, headers, content_length)
        except (LocalProtocolError, UnicodeEncodeError) as exc:
            with self.lock:
                self._release_slot_locked()
            if isinstance(exc, UnicodeEncodeError):
                raise InvalidRequest(f"{self.where}: a header is not latin-1 text") from exc
            raise translate_error(exc, Phase.REQUEST) from exc
        with self.lock:
            try:
                if self._state is not Http2State.OPEN:
                    raise StreamError(f"{self.where}: the connection takes no new stream"
                                      f"{self._goaway}", http2.ErrorCode.REFUSED_STREAM,
                                      is_unprocessed=True)
                stream.open(fields, end_stream=body is None)
            except BaseException:
                self._release_slot_locked()
                raise
        if on_head_sent is not None:
            on_head_sent(head)
        interim: list[InformationalResponse] = []
        try:
            if body is not None:
                stream.send_body(body, expect_continue, interim, on_informational,
                                 expect_continue_s)
            else:
                stream.request_sent()
            final = stream.await_head(interim, on_informational)
        except BaseException:
            stream.close()
            raise
        return Response(final, stream, url=url, interim=interim)

    # -- what streams call (h2stream.StreamLink), holding the lock ------------------------------
    def flush_locked(self) -> None:
        data = self.core.data_to_send()
        if data:
            self._pending.append(data)
            self._pending_bytes += len(data)
            self.unsent_bytes += len(data)
            self._wake_locked()

    def _wake_locked(self) -> None:
        if not self._is_woken:
            self._is_woken = True
            self._waker.wake()

    def register_locked(self, stream: Http2Stream) -> None:
        self._streams[stream.stream_id] = stream

    def finish_locked(self, stream: Http2Stream) -> None:
        if self._streams.pop(stream.stream_id, None) is None:
            return
        try:
            # CANCEL (RFC 9113 §8.7) unless the stream ended both ways (then a no-op).
            self.core.reset_stream(stream.stream_id, http2.ErrorCode.CANCEL)
        except http2.Http2UsageError:
            pass        # the connection is closed
        self.flush_locked()
        self._release_slot_locked()

    def _release_slot_locked(self) -> None:
        self._reserved -= 1
        if not self._reserved:
            self._idle_since = time.monotonic()
            if self._state is Http2State.DRAINING:
                self._wake_locked()
        if self._on_change is not None:
            self._on_change(self)

    # -- the I/O thread -------------------------------------------------------------------------
    def _run(self) -> None:
        failure: ClientError | None = None
        is_goaway_sent = False
        try:
            failure = self._loop()
        except ProtocolError as exc:
            failure = exc
            is_goaway_sent = self._send_last_words()
        except OSError as exc:
            failure = translate_error(exc, Phase.READ, self.where)
            failure.__cause__ = exc
        finally:
            self._shut(failure, is_goaway_sent)

    def _loop(self) -> ClientError | None:
        """Move bytes until the connection ends; return why (None: closed by us)."""
        transport = self._transport
        buffer = bytearray()
        out = b""
        blocked_since: float | None = None
        is_closing = False
        while True:
            with self.lock:
                for data in self._pending:
                    buffer += data
                self._pending.clear()
                self._pending_bytes = 0
                self._is_woken = False
                if not is_closing and self._should_close_locked():
                    is_closing = True
                    self._begin_close_locked(buffer)
                timeout = self._poll_timeout_locked(blocked_since)
            while buffer or out:
                if not out:
                    out = bytes(buffer[:_WRITE_CHUNK_BYTES])
                    del buffer[:_WRITE_CHUNK_BYTES]
                sent = transport.send_nowait(out)
                if not sent:
                    break
                out = out[sent:]
            with self.lock:
                # What the socket took frees uploads waiting for room (before we sleep:
                # nothing else may come to wake us).
                self.unsent_bytes = len(buffer) + len(out) + self._pending_bytes
                self._notify_senders_locked()
            has_unsent = bool(buffer or out)
            if is_closing and not has_unsent:
                return None
            now = time.monotonic()
            if not has_unsent:
                blocked_since = None
            elif blocked_since is None:
                blocked_since = now
            elif self._write_s is not None and now - blocked_since >= self._write_s:
                return WriteTimeout(f"{self.where}: write timed out")
            readable, _, woken = transport.wait(self._waker.fileno(), has_unsent, timeout)
            if woken:
                self._waker.drain()
            if readable and not self._receive():
                return ServerDisconnected(f"{self.where}: the server closed the connection"
                                          f"{self._goaway}")

    def _should_close_locked(self) -> bool:
        if self._reserved:
            return False
        return self._state is Http2State.DRAINING or self._is_close_requested or \
            time.monotonic() - self._idle_since >= IDLE_CLOSE_S

    def _begin_close_locked(self, buffer: bytearray) -> None:
        if self._state is not Http2State.DRAINING:
            self._set_state_locked(Http2State.DRAINING)
        if self._on_change is not None:
            self._on_change(self)
        try:
            self.core.close()
        except http2.Http2UsageError:
            pass
        buffer += self.core.data_to_send()

    def _poll_timeout_locked(self, blocked_since: float | None) -> float:
        now = time.monotonic()
        timeout = _POLL_S
        if blocked_since is not None and self._write_s is not None:
            timeout = min(timeout, blocked_since + self._write_s - now)
        if not self._reserved:
            timeout = min(timeout, self._idle_since + IDLE_CLOSE_S - now)
        return max(0.0, timeout)

    def _notify_senders_locked(self) -> None:
        for stream in self._streams.values():
            if stream.is_sending:
                stream.cond.notify()

    def _receive(self) -> bool:
        """Read what has arrived and dispatch its events; False once the server closed."""
        transport = self._transport
        for _ in range(_READS_PER_ROUND):
            data = transport.recv_nowait()
            if data is None:
                return True
            if not data:
                return False
            with self.lock:
                try:
                    events = self.core.receive_data(data)
                except http2.Http2ConnectionError as exc:
                    if self._state is Http2State.STARTING and data.startswith(b"HTTP/"):
                        raise ProtocolError(
                            f"{self.where}: the server answered in HTTP/1.x: it does not "
                            "speak HTTP/2 (prior knowledge)") from exc
                    raise translate_error(exc, Phase.READ, self.where) from exc
                self._dispatch_locked(events)
                self.flush_locked()
        return True

    def _dispatch_locked(self, events: list[http2.Event]) -> None:
        streams = self._streams
        for event in events:
            kind = type(event)
            if kind in _STREAM_EVENTS:
                stream = streams.get(event.stream_id)  # type: ignore[attr-defined]
                if stream is not None:
                    if kind is http2.ResponseReceived:
                        stream.is_head_received = True
                    stream.events.append(event)
                    stream.cond.notify()
            elif kind is http2.StreamReset:
                assert isinstance(event, http2.StreamReset)
                self._on_reset_locked(event)
            elif kind is http2.WindowUpdated:
                self._notify_senders_locked()
            elif kind is http2.SettingsChanged:
                if self._state is Http2State.STARTING:
                    self._set_state_locked(Http2State.OPEN)
                    self._ready.notify_all()
                self._notify_senders_locked()
                if self._on_change is not None:
                    self._on_change(self)     # the stream limit may have grown
            elif kind is http2.GoAwayReceived:
                assert isinstance(event, http2.GoAwayReceived)
                self._on_goaway_locked(event)

    def _on_reset_locked(self, event: http2.StreamReset) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None or stream.error is not None:
            return
        if event.remote:
            stream.error = stream_reset_error(self.where, event.error_code,
                                              stream.is_head_received)
        else:
            stream.error = ProtocolError(f"{self.where}: the server's frames on stream "
                                         f"{event.stream_id} break RFC 9113")
        stream.cond.notify()

    def _on_goaway_locked(self, event: http2.GoAwayReceived) -> None:
        code = event.error_code
        name = code.name if isinstance(code, http2.ErrorCode) else f"{code:#x}"
        debug = event.debug_data[:100].decode("utf-8", "replace")
        self._goaway = f" (GOAWAY {name}{': ' + debug if debug else ''})"
        _log.debug("%s: GOAWAY %s, last stream %d", self.where, name, event.last_stream_id)
        if self._state is not Http2State.DRAINING:
            self._set_state_locked(Http2State.DRAINING)
        self._ready.notify_all()
        if self._on_change is not None:
            self._on_change(self)

    def _send_last_words(self) -> bool:
        """After a connection error, try once to send the GOAWAY the core queued."""
        with self.lock:
            data = self.core.data_to_send()
        try:
            return bool(data) and self._transport.send_nowait(data) == len(data)
        except OSError:
            return False

    def _shut(self, failure: ClientError | None, is_goaway_sent: bool = False) -> None:
        """End of the I/O thread: fail the streams still open, close the socket."""
        with self.lock:
            if self._state is Http2State.STARTING and failure is not None:
                self._start_error = failure
            self._set_state_locked(Http2State.CLOSED)
            for stream in self._streams.values():
                if stream.error is None:
                    stream.error = stream_failure(stream.is_head_received, failure,
                                                  self.where, self._goaway)
                stream.cond.notify_all()
            self._ready.notify_all()
            if self._on_change is not None:
                self._on_change(self)
        if is_goaway_sent:
            self._transport.linger(_LINGER_S)
        self._shut_transport()

    def _shut_transport(self) -> None:
        self._transport.close()
        self._waker.close()
