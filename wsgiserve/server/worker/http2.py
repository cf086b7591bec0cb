"""HTTP/2 on a connection: frames read by the loop, each request stream's WSGI call run
on the worker's pool, so the streams of one connection are served at the same time.

``Http2`` drives the sans-IO ``wsgiserve.http2.Connection`` (the *core*). The loop's
thread reads: it feeds the core, hands request bodies to their streams and starts each
new stream's ``Http2Stream.run`` with ``context.submit`` (at most ``max_streams_in_app``
of one connection at once; the others wait their turn, so one connection cannot take
every thread). Streams write from their own threads through this protocol
(``StreamOutput``): one lock guards the core, the output not yet sent and the socket's
I/O. A stream that has to wait for the client (its request body, flow-control credit)
or for the socket (output not yet taken) waits with the body timeout, and while it waits
its thread reads and writes for the connection itself (``_wait``: one thread at a time,
the loop's reads stand aside meanwhile): every serving thread may be in the app, and
then no thread would be left to run the loop's reads. Nothing a slow client does holds a
thread for longer than the body timeout.

A cleartext connection may also arrive by HTTP/1.1's ``Upgrade: h2c`` (RFC 7540 §3.2, a
bodiless request only, see ``h2c``): the 101 goes out with our preface, and once the
client's preface has come, the upgraded request is stream 1 (``_start_upgraded``).

The connection's states (``ConnState``): IDLE (no stream open: the keep-alive timeout
runs), IN_APP (streams open), CLOSING (our GOAWAY went; the rest of the output, then our
FIN, then lingering), CLOSED. A stopping worker sends GOAWAY twice (RFC 9113 §6.8: first
with the highest stream id, then with the last one it took, once a PING has made the
round trip) and lets the streams in flight finish.
"""
from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Final

from wsgiserve.http2 import (
    MAX_STREAM_ID,
    Connection,
    ConnectionClosedError,
    DataReceived,
    ErrorCode,
    GoAwayReceived,
    Http2ConnectionError,
    Http2Limits,
    Http2UsageError,
    PingAcked,
    RequestReceived,
    StreamClosedError,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from wsgiserve.http import Request
from wsgiserve.http2.events import Event
from wsgiserve.http2.frames import CLIENT_PREFACE
from wsgiserve.server.counters import H2
from wsgiserve.server.worker.context import LINGER_S, ServerContext
from wsgiserve.server.worker.h2c import SETTINGS_ACK, SWITCHING_PROTOCOLS, upgraded_preface
from wsgiserve.server.worker.protocol import Protocol
from wsgiserve.server.worker.states import (
    CLOSE,
    CLOSED,
    CLOSING,
    IDLE,
    IN_APP,
    TRANSITIONS,
    WAIT_READABLE,
    WAIT_WRITABLE,
    ConnState,
    Outcome,
)
from wsgiserve.server.worker.stream import Fields, Http2Stream, StreamBody, StreamGone
from wsgiserve.server.worker.transport import Transport

__all__ = ["Http2", "http2_limits"]

_log = logging.getLogger(__name__)

# Output the socket has not taken yet, past which a writing stream waits (nginx's
# http2_chunk_size is 8 KiB per write; we let a few windows' worth queue up).
OUTPUT_HIGH_WATER_BYTES: Final = 256 * 1024
# The PING of the graceful stop's first GOAWAY; the second GOAWAY goes when it returns or
# after this long.
_STOP_PING: Final = b"wsgistop"
STOP_PING_WAIT_S: Final = 1.0
# A stream's thread reading for the connection (``_wait``) looks up at least this often:
# what it waits for may have come another way (a reset, the connection's close).
READER_POLL_MAX_S: Final = 0.5
_NEVER: Final = float("inf")


def http2_limits(max_concurrent_streams: int, initial_window_size: int, max_frame_size: int,
                 max_header_list_size: int) -> Http2Limits:
    """The core's limits from the [http2] settings; the connection window holds four
    streams' worth (at least the core's default of 1 MiB)."""
    return Http2Limits(
        max_concurrent_streams=max_concurrent_streams,
        initial_window_size=initial_window_size,
        connection_window_size=min(2**31 - 1, max(1 << 20, 4 * initial_window_size)),
        max_frame_size=max_frame_size, max_header_list_size=max_header_list_size,
        max_header_block_bytes=max_header_list_size)


class Http2:
    """An HTTP/2 connection (server role), its streams and their shared output."""

    protocol_name = "h2"  # the connection gauges' label (server.counters)

    __slots__ = ("transport", "context", "core", "state", "deadline", "idle_since",
                 "_idle_deadline", "_header_deadline",
                 "next_protocol", "_lock", "_changed", "_out", "_streams", "_waiting",
                 "_in_app", "_max_in_app", "_initial", "_base_environ", "_stop_step",
                 "_stop_started", "_is_peer_done", "_is_broken", "_queued", "_flush_later",
                 "_has_reader", "_is_event_left", "_is_write_shut", "_upgrade", "_held",
                 "_waiters")

    def __init__(self, transport: Transport, context: ServerContext,
                 base_environ: dict[str, Any], initial: bytes = b"",
                 upgrade: tuple[bytes, Request] | None = None) -> None:
        """``initial``: bytes already read from the client. ``upgrade``: the decoded
        HTTP2-Settings and the request of an ``Upgrade: h2c`` (its 101 is sent here)."""
        self.transport = transport
        self.context = context
        self.core = Connection(is_client=False, limits=context.http2_limits)
        self.state = IDLE
        self.idle_since = now = time.monotonic()
        # The deadline is the earlier of two: while IDLE, the keep-alive timeout (at first
        # the header timeout, for the client's preface and SETTINGS); while a header block
        # is unfinished, the header timeout from its HEADERS frame.
        self._idle_deadline = now + (context.header_timeout_s or context.keepalive_s)
        self._header_deadline = _NEVER
        self.deadline = self._idle_deadline
        self.next_protocol: Protocol | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # windows grew, output drained
        self._out = bytearray(self.core.data_to_send())  # our preface: SETTINGS first
        if upgrade is not None:
            self._out[:0] = SWITCHING_PROTOCOLS
        self._upgrade = upgrade
        self._held = b""  # the start of the client's preface, after a 101
        self._streams: dict[int, Http2Stream] = {}
        self._waiting: deque[Http2Stream] = deque()  # streams waiting for an app slot
        self._in_app = 0
        self._max_in_app = context.http2_max_streams_in_app
        self._initial = initial  # bytes read before the switch (HTTP/1.1's preface check)
        self._base_environ = base_environ
        self._stop_step = 0  # 1: first GOAWAY and PING sent; 2: final GOAWAY sent
        self._stop_started = 0.0
        self._is_peer_done = False  # the client sent GOAWAY
        self._is_broken = False  # the socket failed: streams' output is dropped
        # Streams handed to the pool that have sent nothing yet: while there are some, a
        # finished response waits for them (or the housekeeping tick) to share a write.
        # Streams waiting for an app slot are not counted: they answer after a thread
        # is free, however long that takes.
        self._queued = 0
        self._flush_later = self._flush_deferred  # one bound method: a set member
        self._has_reader = False  # a stream's thread reads for the connection (_wait)
        self._is_event_left = False  # the loop left it an event meanwhile (on_readable)
        self._waiters = 0  # streams' threads waiting on _changed (in _wait)
        self._is_write_shut = False  # our FIN went

    def set_state(self, new: ConnState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise AssertionError(f"connection transition {self.state} -> {new} not in table")
        self.state = new

    @property
    def is_idle(self) -> bool:
        return self.state is IDLE

    # -- the loop's side --------------------------------------------------------------------
    def on_readable(self) -> Outcome:
        if self.state is CLOSING:
            if not self._is_write_shut:
                return self.on_writable()  # the output first, then the FIN
            return CLOSE if self.transport.discard_input() else WAIT_READABLE
        starting: list[Http2Stream] = []
        with self._lock:
            if self._has_reader:
                # A stream's thread is reading (_wait): it reads all the socket holds
                # before it lets go, so this event's bytes are its to read (and it is told
                # so: its poll may have ended before they came).
                self._is_event_left = True
                self.transport.read_pending = False
                return WAIT_WRITABLE if self._out else WAIT_READABLE
            data = self.transport.recv()
            if self._initial:
                if data == b"":  # the preface came with the client's close
                    self._initial = b""
                    self._is_broken = True
                    return CLOSE
                data = self._initial + (data or b"")
                self._initial = b""
            if data is None:
                # Nothing to read: our preface (and a 101) go before any byte of the
                # client's, and this event may be the writable edge (edge-triggered
                # polling reports both at once).
                self._flush()
                return WAIT_WRITABLE if self._out else WAIT_READABLE
            outcome = self._receive(data, starting)
        for stream in starting:
            self.context.submit(stream.run)
        return outcome

    def on_writable(self) -> Outcome:
        with self._lock:
            self._flush()
            self._changed.notify_all()
            if self.state is CLOSING:
                if self._out and not self._is_broken:
                    return WAIT_WRITABLE
                return WAIT_READABLE if self._is_write_shut else self._send_fin()
            return self._outcome()

    def on_timeout(self) -> Outcome:
        with self._lock:
            if self.state is CLOSING:
                return CLOSE
            now = time.monotonic()
            if now >= self._header_deadline:
                _log.debug("HTTP/2 header block from %s timed out", self.transport.remote_addr)
                self._goaway(ErrorCode.PROTOCOL_ERROR)
                self._end_streams(StreamGone("header timeout"))
                return self._shut()
            if now >= self._idle_deadline:
                _log.debug("HTTP/2 connection from %s idle: closing", self.transport.remote_addr)
                self._goaway(ErrorCode.NO_ERROR)
                return self._shut()
            self._set_deadline()
            return self._outcome()

    def _set_deadline(self) -> None:
        if self.state is not CLOSING:
            self.deadline = min(self._idle_deadline, self._header_deadline)

    def start_graceful_close(self, quiet_since: float) -> Outcome | None:
        with self._lock:
            if self.state is CLOSING or self.state is CLOSED:
                return None
            if self._stop_step == 0:
                self._stop_step = 1
                self._stop_started = time.monotonic()
                self._guard(self.core.close, ErrorCode.NO_ERROR, MAX_STREAM_ID)
                self._guard(self.core.ping, _STOP_PING)
            elif self._stop_step == 1 and \
                    time.monotonic() - self._stop_started >= STOP_PING_WAIT_S:
                self._final_goaway()
            if self._stop_step == 2 and not self._streams:
                return self._shut()
            self._send_queued()
        return None

    def shed(self) -> Outcome | None:
        return None  # streams wait their turn on the connection (max_streams_in_app)

    def close(self) -> None:
        with self._lock:
            if self.state is CLOSED:
                return
            self.set_state(CLOSED)
            self._is_broken = True
            self._end_streams(StreamGone("the connection closed"))
            self._changed.notify_all()
        self.transport.close()

    # -- reading (under the lock) -----------------------------------------------------------
    def _receive(self, data: bytes, starting: list[Http2Stream]) -> Outcome:
        """Feed the core what the socket gave (b"": the client closed); new streams go
        to ``starting``."""
        if not data:
            self._end_streams(StreamGone("the client closed the connection"))
            return CLOSE
        try:
            if self._upgrade is not None:
                data = self._start_upgraded(data, starting)
            events = self.core.receive_data(data)
        except Http2ConnectionError as exc:
            _log.debug("HTTP/2 connection error from %s: %s", self.transport.remote_addr, exc)
            if self.context.metrics is not None:
                self.context.metrics.protocol_error(H2, 400)
            self._end_streams(StreamGone(f"connection error: {exc}"))
            return self._shut()
        self._dispatch(events, starting)
        self._send_queued()
        if self.core.has_partial_header_block:
            # Slowloris over HTTP/2: a header block must end within the header timeout.
            if self._header_deadline == _NEVER and self.context.header_timeout_s > 0:
                self._header_deadline = time.monotonic() + self.context.header_timeout_s
                self._set_deadline()
        elif self._header_deadline != _NEVER:
            self._header_deadline = _NEVER
            self._set_deadline()
        return self._outcome()

    def _start_upgraded(self, data: bytes, starting: list[Http2Stream]) -> bytes:
        """After a 101: hold the client's bytes until its preface has come, then give the
        core the upgraded request (``h2c.upgraded_preface``: the core has no call for an
        upgrade) and return what followed the preface. Bytes that are not a preface go
        to the core, which refuses them."""
        held = self._held + data
        if len(held) < len(CLIENT_PREFACE) and CLIENT_PREFACE.startswith(held):
            self._held = held
            return b""
        assert self._upgrade is not None
        settings, request = self._upgrade
        self._upgrade = None
        self._held = b""
        if not held.startswith(CLIENT_PREFACE):
            return held
        events = self.core.receive_data(upgraded_preface(settings, request))
        out = self.core.data_to_send()
        self._out += out[len(SETTINGS_ACK):] if out.startswith(SETTINGS_ACK) else out
        self._dispatch(events, starting)
        return held[len(CLIENT_PREFACE):]

    def _dispatch(self, events: list[Event], starting: list[Http2Stream]) -> None:
        streams = self._streams
        stream: Http2Stream | None
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                assert isinstance(event, RequestReceived)
                stream = Http2Stream(event, self, self.context, self._base_environ)
                streams[event.stream_id] = stream
                if self.state is IDLE:
                    self.set_state(IN_APP)
                    self._idle_deadline = _NEVER
                    self._set_deadline()
                if self._in_app < self._max_in_app:
                    self._in_app += 1
                    self._queued += 1
                    starting.append(stream)
                else:
                    self._waiting.append(stream)
            elif kind is DataReceived:
                assert isinstance(event, DataReceived)
                stream = streams.get(event.stream_id)
                if stream is not None and stream.body is not None:
                    stream.body.feed(event.data)
                elif event.data:
                    # The app's call is over: nobody reads this body, give the window back.
                    self._guard(self.core.acknowledge_received_data, len(event.data),
                                event.stream_id)
            elif kind is StreamEnded:
                assert isinstance(event, StreamEnded)
                stream = streams.get(event.stream_id)
                if stream is not None and stream.body is not None:
                    stream.body.end()
            elif kind is TrailersReceived:
                assert isinstance(event, TrailersReceived)
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.trailers.extend([(name.decode("latin-1"), value.decode("latin-1"))
                                            for name, value in event.headers])
            elif kind is StreamReset:
                assert isinstance(event, StreamReset)
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.on_reset(StreamGone(f"stream reset ({event.error_code})"))
                    if stream in self._waiting:
                        self._waiting.remove(stream)
                        self._forget(stream)
                self._changed.notify_all()
            elif kind is PingAcked:
                assert isinstance(event, PingAcked)
                if event.data == _STOP_PING and self._stop_step == 1:
                    self._final_goaway()
            elif kind is GoAwayReceived:
                self._is_peer_done = True
        if events and self._waiters:
            self._changed.notify_all()  # request bodies grew, windows changed

    def _outcome(self) -> Outcome:
        """After reading or writing: shut the connection when nothing more will happen on
        it, else wait (for writability while output is queued)."""
        if not self._streams and (self._stop_step == 2 or self._is_peer_done) \
                and self.state is not CLOSING:
            return self._shut()
        return WAIT_WRITABLE if self._out else WAIT_READABLE

    def _shut(self) -> Outcome:
        """Send what is queued (a GOAWAY), then our FIN once all of it is sent: a
        response still on its way is not cut (the output waits up to the body timeout
        for the client to take it); then linger for the client's FIN."""
        self._send_queued()
        if self.state is not CLOSING:
            self.set_state(CLOSING)
        if self._out and not self._is_broken:
            self.deadline = time.monotonic() + self.context.body_timeout_s
            return WAIT_WRITABLE  # on_writable sends the FIN after the rest
        return self._send_fin()

    def _send_fin(self) -> Outcome:
        self._is_write_shut = True
        self.deadline = time.monotonic() + LINGER_S
        if not self.transport.shutdown_write():
            return CLOSE
        return CLOSE if self.transport.discard_input() else WAIT_READABLE

    def _goaway(self, code: int) -> None:
        self._guard(self.core.close, code)

    def _final_goaway(self) -> None:
        self._stop_step = 2
        self._guard(self.core.close, ErrorCode.NO_ERROR)

    def _guard(self, method: Any, *args: Any) -> None:
        """Call a core method that fails only once the connection is closed."""
        try:
            method(*args)
        except (ConnectionClosedError, StreamClosedError):
            pass

    def _end_streams(self, error: BaseException) -> None:
        for stream in list(self._streams.values()):
            stream.on_reset(error)
        for stream in self._waiting:
            self._streams.pop(stream.stream_id, None)
        self._waiting.clear()
        self._changed.notify_all()

    # -- writing (under the lock) -----------------------------------------------------------
    def _send_queued(self) -> None:
        data = self.core.data_to_send()
        if data:
            self._out += data
        self._flush()

    def _flush(self) -> None:
        out = self._out
        if self._is_broken:
            out.clear()
            return
        if self._waiters and out:
            # Whoever sends wakes the streams waiting for the socket to take more: with
            # edge-triggered polling, the writable edge may come with a readable one and
            # be handled by on_readable, which flushes too.
            self._changed.notify_all()
        while out:
            try:
                sent = self.transport.send_partial(out)
            except OSError as exc:
                _log.debug("send to %s failed: %s", self.transport.remote_addr, exc)
                self._is_broken = True
                out.clear()
                self._end_streams(StreamGone("the connection failed"))
                return
            if not sent:
                return  # the socket is full: its writable edge calls on_writable
            del out[:sent]

    def _wait(self, deadline: float, what: str) -> None:
        """Wait (once: the caller looks again) for the client or the socket, by reading
        and writing for the connection when no other stream's thread does.

        Called with the lock held, by a stream's thread that cannot go on: it may be the
        only serving thread not in the app, and the loop's reads need one. While it polls
        the socket (the lock released), the loop's reads stand aside (``_has_reader``);
        it reads all the socket holds before it lets go (and it reads once more when the
        loop stood aside after its poll had ended), so nothing is left unread behind an
        edge the loop was told about.

        Raises:
            TimeoutError: ``deadline`` passed.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out waiting for {what}")
        if self._has_reader or self._is_broken or self.state is CLOSING \
                or self.state is CLOSED:
            self._waiters += 1
            try:
                self._changed.wait(min(remaining, READER_POLL_MAX_S))
            finally:
                self._waiters -= 1
            return
        self._has_reader = True
        self._is_event_left = False
        try:
            ready = self._poll(min(remaining, READER_POLL_MAX_S))
            if self._is_event_left:
                # The loop left us an event while the lock was free, perhaps after our
                # poll had ended (timed out, or saw only POLLOUT) but before we took the
                # lock back: act on it both ways. No event comes for those bytes again
                # (edge-triggered), so unread now they could wait for good.
                ready |= select.POLLIN | select.POLLOUT
            if ready and not self._is_broken and self.state is not CLOSED \
                    and self.state is not CLOSING:
                if ready & select.POLLOUT:
                    self._flush()
                if ready & ~select.POLLOUT:
                    self._read_for_streams()
        finally:
            self._has_reader = False
            self._changed.notify_all()

    def _poll(self, timeout_s: float) -> int:
        """Wait for the socket to be readable (or writable, while output waits) with the
        lock released; the events seen."""
        poller = select.poll()
        poller.register(self.transport.fileno,
                        select.POLLIN | select.POLLOUT if self._out else select.POLLIN)
        self._lock.release()
        try:
            ready = poller.poll(timeout_s * 1000)
        finally:
            self._lock.acquire()
        mask = 0
        for _, events in ready:
            mask |= events
        return mask

    def _read_for_streams(self) -> None:
        """Read what the socket holds, as ``on_readable`` does, from a stream's thread.
        When the connection ends here, the loop closes it: its deadline is now."""
        starting: list[Http2Stream] = []
        outcome = WAIT_READABLE
        try:
            while (data := self.transport.recv()) is not None:
                outcome = self._receive(data, starting)
                if outcome is CLOSE or self.state is CLOSING:
                    break
        except OSError as exc:
            _log.debug("receive from %s failed: %s", self.transport.remote_addr, exc)
            self._is_broken = True
            self._end_streams(StreamGone("the connection failed"))
            outcome = CLOSE
        if outcome is CLOSE:
            if self.state is not CLOSING:
                self.set_state(CLOSING)
            self.deadline = time.monotonic()  # the loop's housekeeping closes it
        for stream in starting:
            self.context.submit(stream.run)

    def _check(self, stream_id: int) -> Http2Stream:
        stream = self._streams.get(stream_id)
        if stream is None or stream.is_reset or self._is_broken:
            raise StreamGone("the stream was reset or the connection closed")
        return stream

    # -- StreamOutput: called by the streams' threads ----------------------------------------
    def send_informational(self, stream_id: int, fields: Fields) -> None:
        with self._lock:
            self._check(stream_id)
            try:
                self.core.send_informational(stream_id, fields)
            except (StreamClosedError, ConnectionClosedError) as exc:
                raise StreamGone(str(exc)) from exc
            except Http2UsageError:
                return  # the final head went first: too late for hints
            self._send_queued()

    def send_trailers(self, stream_id: int, fields: Fields) -> None:
        with self._lock:
            self._check(stream_id)
            try:
                self.core.send_trailers(stream_id, fields)
            except (StreamClosedError, ConnectionClosedError) as exc:
                raise StreamGone(str(exc)) from exc
            self._send_soon(True)

    def send(self, stream_id: int, head: Fields | None, data: bytes, *,
             end_stream: bool) -> None:
        core = self.core
        with self._lock:
            stream = self._check(stream_id)
            try:
                if head is not None:
                    if not stream.has_sent:
                        stream.has_sent = True
                        self._queued -= 1
                    core.send_headers(stream_id, head, end_stream=end_stream and not data)
                    if not data:
                        self._send_soon(end_stream)
                        return
                if len(data) <= core.local_flow_control_window(stream_id) \
                        and len(self._out) <= OUTPUT_HIGH_WATER_BYTES:
                    core.send_data(stream_id, data, end_stream=end_stream)
                    self._send_soon(end_stream)
                    return
                self._send_waiting(stream_id, memoryview(data), end_stream)
            except (StreamClosedError, ConnectionClosedError) as exc:
                raise StreamGone(str(exc)) from exc

    def _send_soon(self, is_response_end: bool) -> None:
        """Send what is queued; a finished response whose connection has streams about to
        answer too waits for them (or the housekeeping tick), so they share one write."""
        if is_response_end and self._queued > 0:
            data = self.core.data_to_send()
            if data:
                self._out += data
            self.context.deferred_flushes.add(self._flush_later)
            return
        self._send_queued()

    def _send_waiting(self, stream_id: int, view: memoryview, end_stream: bool) -> None:
        """Send ``view`` as flow-control credit and the socket allow, waiting for both
        with the body timeout; when it passes, the stream is reset (CANCEL)."""
        core = self.core
        deadline = time.monotonic() + self.context.body_timeout_s
        with self._waiting_for_the_client(stream_id):
            try:
                while True:
                    if len(self._out) > OUTPUT_HIGH_WATER_BYTES:
                        self._send_queued()
                        self._wait(deadline, "the client to read the response")
                        self._check(stream_id)
                        continue
                    window = core.local_flow_control_window(stream_id)
                    if len(view) <= window:
                        core.send_data(stream_id, bytes(view), end_stream=end_stream)
                        self._send_queued()
                        return
                    if window:
                        core.send_data(stream_id, bytes(view[:window]))
                        view = view[window:]
                        continue
                    self._send_queued()
                    self._wait(deadline, "flow-control credit from the client")
                    self._check(stream_id)
            except TimeoutError:
                self._guard(core.reset_stream, stream_id, ErrorCode.CANCEL)
                self._send_queued()
                raise

    @contextlib.contextmanager
    def _waiting_for_the_client(self, stream_id: int) -> Iterator[None]:
        """Time a stream waits for its client is not app time: its start in
        ``context.in_app`` (the heartbeat withholds beats for an app running past the
        timeout) moves on by the time waited."""
        stream = self._streams.get(stream_id)
        in_app = self.context.in_app
        started = in_app.pop(stream, None) if stream is not None else None
        since = time.monotonic()
        try:
            yield
        finally:
            if started is not None:
                in_app[stream] = started + (time.monotonic() - since)

    def _flush_deferred(self) -> None:
        with self._lock:
            self._flush()

    def reset(self, stream_id: int, error_code: int) -> None:
        with self._lock:
            if not self._is_broken:
                self._guard(self.core.reset_stream, stream_id, error_code)
                self._send_queued()

    def read_body(self, stream_id: int, body: StreamBody, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            if (piece := body.take()) is None:
                with self._waiting_for_the_client(stream_id):
                    while (piece := body.take()) is None:
                        self._wait(deadline, "the request body")
            if piece and not self._is_broken:
                self._guard(self.core.acknowledge_received_data, len(piece), stream_id)
                self._send_queued()
            return piece

    def stream_done(self, stream: Http2Stream) -> None:
        starting = None
        with self._lock:
            if not stream.has_sent:
                stream.has_sent = True
                self._queued -= 1
            self._forget(stream)
            self._in_app -= 1
            if not self._is_broken and stream.body is not None and not stream.is_reset:
                # RFC 9113 §8.1: the response is complete but the client may still be
                # sending its body: tell it to stop (a stream already closed is left).
                self._guard(self.core.reset_stream, stream.stream_id, ErrorCode.NO_ERROR)
            self._send_soon(True)
            if self._waiting and not self._is_broken:
                # Its turn comes now; it was not waited for above (it may be slow).
                starting = self._waiting.popleft()
                self._in_app += 1
                self._queued += 1
            if self.state is not CLOSED:
                self._outcome()  # the last stream of a closing connection: GOAWAY, FIN
        if starting is not None:
            self.context.submit(starting.run)

    def _forget(self, stream: Http2Stream) -> None:
        self._streams.pop(stream.stream_id, None)
        if not self._streams and self.state is IN_APP:
            self.set_state(IDLE)
            self.idle_since = now = time.monotonic()
            self._idle_deadline = now + self.context.keepalive_s
            self._set_deadline()
