"""HTTP/2 on a connection, the loop's side: the loop reads the frames into the sans-IO
``wsgiserve.http2.Connection`` (the *core*), hands its events to the streams and starts
each new stream's WSGI call on the worker's pool; the connection's states, timeouts and
graceful stop, and the start of an ``Upgrade: h2c``. What the streams' threads call
(sending, waiting, reading a body) is ``Http2Output``'s, under the same lock.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Final

from wsgiserve.http2 import (
    MAX_STREAM_ID,
    DataReceived,
    ErrorCode,
    GoAwayReceived,
    Http2ConnectionError,
    Http2Limits,
    PingAcked,
    RequestReceived,
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
from wsgiserve.server.worker.http2_output import Http2Output
from wsgiserve.server.worker.protocol import Protocol
from wsgiserve.server.worker.states import (
    CLOSE,
    CLOSED,
    CLOSING,
    IDLE,
    IN_APP,
    StateMachine,
    WAIT_READABLE,
    WAIT_WRITABLE,
    Outcome,
)
from wsgiserve.server.worker.stream import SERVER_FIELD, Http2Stream, StreamGone
from wsgiserve.server.worker.transport import Transport

__all__ = ["Http2", "http2_limits"]

_log = logging.getLogger(__name__)

# The PING of the graceful stop's first GOAWAY; the second GOAWAY goes when it returns or
# after this long.
_STOP_PING: Final = b"wsgistop"
STOP_PING_WAIT_S: Final = 1.0
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


class Http2(Http2Output, StateMachine):
    """An HTTP/2 connection (server role), its streams and their shared output.

    The loop's thread reads: it feeds the core, hands request bodies to their streams
    and starts each new stream's ``Http2Stream.run`` with ``context.submit`` (at most
    ``max_streams_in_app`` of one connection at once; the others wait their turn, so one
    connection cannot take every thread), so the streams of one connection are served at
    the same time. Streams write from their own threads (``Http2Output``).

    A cleartext connection may also arrive by HTTP/1.1's ``Upgrade: h2c`` (RFC 7540
    §3.2, a bodiless request only, see ``h2c``): the 101 goes out with our preface, and
    once the client's preface has come, the upgraded request is stream 1
    (``_start_upgraded``).

    The connection's states (``ConnState``): IDLE (no stream open: the keep-alive timeout
    runs), IN_APP (streams open), CLOSING (our GOAWAY went; the rest of the output, then
    our FIN, then lingering), CLOSED. A stopping worker sends GOAWAY twice (RFC 9113
    §6.8: first with the highest stream id, then with the last one it took, once a PING
    has made the round trip) and lets the streams in flight finish.
    """

    protocol_name = "h2"  # the connection gauges' label (server.counters)

    __slots__ = ("state", "deadline", "idle_since", "_idle_deadline", "_header_deadline",
                 "next_protocol", "_in_app", "_max_in_app", "_initial", "_base_environ",
                 "_stop_step", "_stop_started", "_is_peer_done", "_is_write_shut",
                 "_upgrade", "_held", "_is_shedding")

    def __init__(self, transport: Transport, context: ServerContext,
                 base_environ: dict[str, Any], initial: bytes = b"",
                 upgrade: tuple[bytes, Request] | None = None) -> None:
        """``initial``: bytes already read from the client. ``upgrade``: the decoded
        HTTP2-Settings and the request of an ``Upgrade: h2c`` (its 101 is sent here)."""
        super().__init__(transport, context)  # the core, the lock, the output, the streams
        self.state = IDLE
        self.idle_since = now = time.monotonic()
        # The deadline is the earlier of two: while IDLE, the keep-alive timeout (at first
        # the header timeout, for the client's preface and SETTINGS); while a header block
        # is unfinished, the header timeout from its HEADERS frame.
        self._idle_deadline = now + (context.header_timeout_s or context.keepalive_s)
        self._header_deadline = _NEVER
        self.deadline = self._idle_deadline
        self.next_protocol: Protocol | None = None
        if upgrade is not None:
            self._out[:0] = SWITCHING_PROTOCOLS
        self._upgrade = upgrade
        self._held = b""  # the start of the client's preface, after a 101
        self._in_app = 0
        self._max_in_app = context.http2_max_streams_in_app
        self._initial = initial  # bytes read before the switch (HTTP/1.1's preface check)
        self._base_environ = base_environ
        self._stop_step = 0  # 1: first GOAWAY and PING sent; 2: final GOAWAY sent
        self._stop_started = 0.0
        self._is_peer_done = False  # the client sent GOAWAY
        self._is_write_shut = False  # our FIN went
        self._is_shedding = False  # shed(): new streams get 503 (load shedding)

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
            if now >= self._idle_deadline and not self._has_reader \
                    and self.transport.has_input():
                # Frames came but wait for a thread (every one in the app: the event is
                # queued): not idle. Load shedding bounds that wait, when it is on.
                self._idle_deadline = now + (self.context.keepalive_s or 1.0)
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
        """Load shedding (see ``Worker``), on the housekeeping thread while every serving
        thread is in the app: read what waits as ``on_readable`` does (PINGs, resets and
        window updates are acted on), but answer each new stream 503 with Retry-After at
        once instead of queueing it for a thread. Streams already started go on."""
        if self.state is CLOSING:
            return None
        self._is_shedding = True
        try:
            return self.on_readable()
        finally:
            self._is_shedding = False

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
                if self._is_shedding:
                    self._shed_stream(event)
                    continue
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

    def _shed_stream(self, event: RequestReceived) -> None:
        """Answer a new stream 503 with Retry-After, without the app: a head alone (HEADERS
        are not flow-controlled, so nothing waits), and RST_STREAM NO_ERROR when the
        client has a body still to send (RFC 9113 §8.1)."""
        stream_id = event.stream_id
        _log.debug("stream %d from %s shed: every thread busy", stream_id,
                   self.transport.remote_addr)
        self._guard(self.core.send_headers, stream_id, [
            (b":status", b"503"), (b"date", self.context.dates.now().encode("ascii")),
            SERVER_FIELD, (b"retry-after", b"1"), (b"content-length", b"0")], True)
        if not event.end_stream:
            self._guard(self.core.reset_stream, stream_id, ErrorCode.NO_ERROR)
        metrics = self.context.metrics
        if metrics is not None:
            metrics.request_shed()
            metrics.request_done(H2, event.method, 0.0, 503, 0, 0)

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

    # -- a stream's thread: reading for the connection, the end of a stream's call ------------
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
