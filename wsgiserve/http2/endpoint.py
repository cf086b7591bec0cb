"""The state of one HTTP/2 connection that both directions share: streams, windows, the
connection state machine, and the bookkeeping of closing streams and returning credit.

Connection states (``ConnectionState``; a transition not in ``TRANSITIONS`` raises)::

    PREFACE (server: the client's 24-byte preface) ──> SETTINGS (the peer's first frame
    must be SETTINGS) ──> OPEN;  any state ──> CLOSED once we send a GOAWAY with an error.

A GOAWAY with NO_ERROR (``close()``) keeps the connection OPEN for the streams it covers.
"""
from __future__ import annotations

from collections import deque
from enum import Enum
from typing import Final

from wsgiserve.http2.errors import (
    ConnectionClosedError,
    ErrorCode,
    Http2ConnectionError,
    Http2StreamError,
    StreamClosedError,
)
from wsgiserve.http2.events import Event, StreamEnded
from wsgiserve.http2.flood import FloodGuard
from wsgiserve.http2.frames import (
    END_STREAM,
    TYPE_DATA,
    TYPE_HEADERS,
    FrameType,
    goaway_frame,
    window_update_frame,
)
from wsgiserve.http2.hpack import Decoder, Encoder
from wsgiserve.http2.limits import Http2Limits
from wsgiserve.http2.settings import INITIAL_SETTINGS, Setting
from wsgiserve.http2.streams import (
    CLOSED,
    HALF_CLOSED_LOCAL,
    HALF_CLOSED_REMOTE,
    OPEN,
    RECV_END_STREAM,
    SEND_WINDOW_UPDATE,
    Stream,
    next_state,
    transitions_on,
)

__all__ = ["DEFAULT_WINDOW", "NO_CONTENT_STATUSES", "TRANSITIONS", "ClosedBy", "ClosedStream",
           "ConnectionState", "Endpoint", "stream_error"]  # and the members, as module names


class ConnectionState(Enum):
    __hash__ = object.__hash__

    PREFACE = "preface"
    SETTINGS = "settings"
    OPEN = "open"
    CLOSED = "closed"


# The members as module names, for the hot paths (an attribute of an Enum class costs
# ~150 ns on Python 3.11: see streams.py).
CONNECTION_PREFACE, CONNECTION_SETTINGS, CONNECTION_OPEN, CONNECTION_CLOSED = ConnectionState
_C = ConnectionState
TRANSITIONS: Final[dict[ConnectionState, frozenset[ConnectionState]]] = {
    _C.PREFACE: frozenset({_C.SETTINGS, _C.CLOSED}),
    _C.SETTINGS: frozenset({_C.OPEN, _C.CLOSED}),
    _C.OPEN: frozenset({_C.CLOSED}),
    _C.CLOSED: frozenset(),
}


class ClosedBy(Enum):
    ENDED = "ended"     # END_STREAM both ways
    PEER = "peer"       # RST_STREAM from the peer, or above the last id of its GOAWAY
    US = "us"           # RST_STREAM from us: the peer's frames in flight are ignored


CLOSED_ENDED, CLOSED_BY_PEER, CLOSED_BY_US = ClosedBy


class ClosedStream:
    """What is remembered of a closed stream: who closed it, with what code, and for a
    stream we reset, how many more bytes the peer may have sent before it saw the reset
    (the window it had; -1 once its END_STREAM arrived). Frames within that are in flight
    and ignored quietly; more than that is counted as a glitch."""

    __slots__ = ("closed_by", "code", "window")

    def __init__(self, closed_by: ClosedBy, code: int | None, window: int):
        self.closed_by = closed_by
        self.code = code
        self.window = window


# Every stream that ended both ways is remembered alike (only a stream we reset has a
# window that changes).
_ENDED: Final = ClosedStream(CLOSED_ENDED, None, -1)
# RFC 9113 §5.1: frames the peer sent before it saw our RST_STREAM are ignored; a stream
# closed long ago is handled as any closed stream. How many closed streams are remembered:
# the last 256 at least, 512 at most (two generations of 256, the older one dropped whole).
_CLOSED_STREAMS_REMEMBERED: Final = 256
DEFAULT_WINDOW: Final = INITIAL_SETTINGS[Setting.INITIAL_WINDOW_SIZE]
# Statuses whose responses have no content (RFC 9110 §6.4.1); the head of a HEAD request's
# response has no content either.
NO_CONTENT_STATUSES: Final = frozenset({204, 304})
_DEBUG_DATA_MAX_BYTES: Final = 128

_ON_RECV_END_STREAM: Final = transitions_on(RECV_END_STREAM)


def stream_error(message: str, stream_id: int,
                 code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> Http2StreamError:
    return Http2StreamError(message, stream_id, code)


class Endpoint:
    """What a connection knows of itself and its streams; ``Connection`` adds the rest."""

    __slots__ = ("is_client", "limits", "_state", "_buffer", "_out", "_encoder", "_decoder",
                 "_streams", "_closed", "_closed_before", "_highest_peer_stream",
                 "_highest_announced", "_next_local_stream", "_open_peer_streams", "_open_local_streams",
                 "_outbound_window", "_inbound_window", "_connection_credit",
                 "_outbound_initial_window", "_inbound_initial_window", "max_outbound_frame_size",
                 "_max_inbound_frame_size", "_max_outbound_streams", "_max_inbound_streams",
                 "remote_settings", "local_settings", "_pending_settings", "_goaway_sent",
                 "_goaway_received", "_header_stream", "_header_flags", "_header_parts",
                 "_header_bytes", "_header_error", "_continuations", "_guard", "_pings")

    def __init__(self, is_client: bool, limits: Http2Limits):
        self.is_client = is_client
        self.limits = limits
        self._state = CONNECTION_SETTINGS if is_client else CONNECTION_PREFACE
        self._buffer = b""
        self._out: list[bytes] = []
        self._encoder = Encoder()
        self._decoder = Decoder(limits.max_header_list_size)
        self._streams: dict[int, Stream] = {}
        self._closed: dict[int, ClosedStream] = {}
        self._closed_before: dict[int, ClosedStream] = {}    # the previous generation
        self._highest_peer_stream = 0
        self._highest_announced = 0          # the last stream id our GOAWAY would name
        self._next_local_stream = 1 if is_client else 2
        self._open_peer_streams = 0
        self._open_local_streams = 0
        self._outbound_window = DEFAULT_WINDOW
        self._inbound_window = DEFAULT_WINDOW
        self._connection_credit = 0
        self._outbound_initial_window = DEFAULT_WINDOW
        self._inbound_initial_window = DEFAULT_WINDOW
        self.max_outbound_frame_size = INITIAL_SETTINGS[Setting.MAX_FRAME_SIZE]
        self._max_inbound_frame_size = INITIAL_SETTINGS[Setting.MAX_FRAME_SIZE]
        self._max_outbound_streams = INITIAL_SETTINGS[Setting.MAX_CONCURRENT_STREAMS]
        self._max_inbound_streams = limits.max_concurrent_streams
        self.remote_settings: dict[int, int] = dict(INITIAL_SETTINGS)
        self.local_settings: dict[int, int] = dict(INITIAL_SETTINGS)
        self._pending_settings: deque[dict[int, int]] = deque()
        self._goaway_sent: int | None = None
        self._goaway_received: int | None = None
        self._header_stream = 0              # a header block is being continued on it
        self._header_flags = 0
        self._header_parts: list[bytes] = []
        self._header_bytes = 0
        self._header_error: Http2StreamError | None = None
        self._continuations = 0
        self._guard = FloodGuard(limits)
        self._pings: set[bytes] = set()

    @property
    def state(self) -> ConnectionState:
        return self._state

    def _set_state(self, state: ConnectionState) -> None:
        if state not in TRANSITIONS[self._state]:
            raise RuntimeError(f"connection state {self._state.value} -> {state.value}")
        self._state = state

    @property
    def open_inbound_streams(self) -> int:
        """Streams the peer opened that are not closed yet."""
        return self._open_peer_streams

    @property
    def open_outbound_streams(self) -> int:
        """Streams we opened that are not closed yet."""
        return self._open_local_streams

    @property
    def max_outbound_streams(self) -> int:
        """The peer's SETTINGS_MAX_CONCURRENT_STREAMS (2^32-1 until it sets one)."""
        return self._max_outbound_streams

    @property
    def goaway_sent(self) -> int | None:
        """The last stream id of the GOAWAY we sent (the lowest, if several), or None."""
        return self._goaway_sent

    @property
    def goaway_received(self) -> int | None:
        """The last stream id of the peer's GOAWAY, or None if it sent none."""
        return self._goaway_received

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet handled: never more than one frame (9 bytes of
        header and our SETTINGS_MAX_FRAME_SIZE)."""
        return len(self._buffer)

    @property
    def has_unacknowledged_settings(self) -> bool:
        """Whether a SETTINGS frame of ours awaits its ACK (RFC 9113 §6.5.3: a driver may
        close with SETTINGS_TIMEOUT if it takes too long)."""
        return bool(self._pending_settings)

    def data_to_send(self) -> bytes:
        """Return (and forget) every byte queued for the peer."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def _check_not_closed(self) -> None:
        if self._state is CONNECTION_CLOSED:
            raise ConnectionClosedError("the connection is closed")

    def _writable_stream(self, stream_id: int) -> Stream:
        self._check_not_closed()
        stream = self._streams.get(stream_id)
        if stream is None:
            closed = self._closed_stream(stream_id)
            code = None if closed is None else closed.code
            raise StreamClosedError(f"stream {stream_id} is not open", stream_id, code)
        return stream

    def _fail(self, exc: Http2ConnectionError) -> None:
        if self._state is not CONNECTION_CLOSED:
            debug = str(exc).encode("utf-8", "replace")[:_DEBUG_DATA_MAX_BYTES]
            last = self._highest_announced
            if self._goaway_sent is not None:
                last = min(last, self._goaway_sent)
            self._out.append(goaway_frame(last, exc.code, debug))
            self._goaway_sent = last
            self._set_state(CONNECTION_CLOSED)

    def _is_idle(self, stream_id: int) -> bool:
        if (stream_id & 1) == self.is_client:     # our parity: odd for a client
            return stream_id >= self._next_local_stream
        return stream_id > self._highest_peer_stream

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        """Give back ``acknowledged_size`` bytes of credit once the application has consumed
        them from ``stream_id``'s DataReceived events. WINDOW_UPDATE frames go out when half
        a window is owed. Acknowledging more than was received, or a closed stream (its
        bytes went back to the connection when it closed), is ignored."""
        if acknowledged_size < 0:
            raise ValueError("acknowledged_size must be >= 0")
        stream = self._streams.get(stream_id)
        if stream is None or not stream.unacknowledged_bytes:
            return
        size = min(acknowledged_size, stream.unacknowledged_bytes)
        stream.unacknowledged_bytes -= size
        self._acknowledge(stream, size)

    def _acknowledge(self, stream: Stream, size: int) -> None:
        if stream.state is OPEN or stream.state is HALF_CLOSED_LOCAL:
            stream.credit_bytes += size
            if stream.credit_bytes >= self._inbound_initial_window >> 1:
                stream.state = next_state(stream.state, SEND_WINDOW_UPDATE, stream.stream_id)
                self._out.append(window_update_frame(stream.stream_id, stream.credit_bytes))
                stream.inbound_window += stream.credit_bytes
                stream.credit_bytes = 0
        self._credit_connection(size)

    def _credit_connection(self, size: int) -> None:
        self._connection_credit += size
        if self._connection_credit >= self.limits.connection_window_size >> 1:
            self._out.append(window_update_frame(0, self._connection_credit))
            self._inbound_window += self._connection_credit
            self._connection_credit = 0

    def _set_inbound_initial_window(self, value: int) -> None:
        delta = value - self._inbound_initial_window
        self._inbound_initial_window = value
        for stream in self._streams.values():
            stream.inbound_window += delta

    def _close_stream(self, stream: Stream, closed_by: ClosedBy, code: int | None,
                      window: int = -1) -> None:
        """Forget an open stream: its unread bytes go back to the connection window.
        ``window``: for a stream we reset, what the peer may still send on it (-1 when its
        side had ended)."""
        del self._streams[stream.stream_id]
        if stream.is_local:
            self._open_local_streams -= 1
        else:
            self._open_peer_streams -= 1
        if stream.unacknowledged_bytes:
            self._credit_connection(stream.unacknowledged_bytes)
            stream.unacknowledged_bytes = 0
        remembered = self._closed                 # self._remember_closed(...), inline
        remembered[stream.stream_id] = _ENDED if closed_by is CLOSED_ENDED else \
            ClosedStream(closed_by, code, window)
        if len(remembered) >= _CLOSED_STREAMS_REMEMBERED:
            self._closed_before = remembered
            self._closed = {}

    def _remember_closed(self, stream_id: int, closed_by: ClosedBy, code: int | None,
                         window: int = -1) -> None:
        remembered = self._closed
        remembered[stream_id] = _ENDED if closed_by is CLOSED_ENDED else \
            ClosedStream(closed_by, code, window)
        if len(remembered) >= _CLOSED_STREAMS_REMEMBERED:
            self._closed_before = remembered
            self._closed = {}

    def _closed_stream(self, stream_id: int) -> ClosedStream | None:
        closed = self._closed.get(stream_id)
        return self._closed_before.get(stream_id) if closed is None else closed

    def _reset_window(self, stream: Stream) -> int:
        """What the peer may still send on ``stream`` if we reset it now."""
        return -1 if stream.state is HALF_CLOSED_REMOTE else max(0, stream.inbound_window)

    def _on_unknown_stream(self, stream_id: int, frame_type: FrameType, flags: int = 0,
                           length: int = 0) -> None:
        """A frame for a stream that is not open: ignore it, or raise what §5.1 says."""
        is_message = frame_type == TYPE_DATA or frame_type == TYPE_HEADERS
        closed = self._closed_stream(stream_id)
        if closed is not None:
            if closed.closed_by is CLOSED_BY_US:
                if is_message:
                    # In flight before the peer saw our reset: ignored. Past what it could
                    # have sent (its window, or its END_STREAM): counted.
                    closed.window -= length
                    if closed.window < 0:
                        self._guard.count_glitch("frames on reset streams")
                    if flags & END_STREAM:
                        closed.window = -1
                return
            if is_message:
                raise stream_error(f"{frame_type.name} on closed stream {stream_id}",
                                   stream_id, ErrorCode.STREAM_CLOSED)
            return
        if self._is_idle(stream_id):
            raise Http2ConnectionError(f"{frame_type.name} on idle stream {stream_id}")
        if frame_type == TYPE_HEADERS:
            # RFC 9113 §5.1.1: a new stream's id must be greater than all before it.
            raise Http2ConnectionError(f"HEADERS on stream {stream_id}, not a new stream id")
        if frame_type == TYPE_DATA:
            raise stream_error(f"DATA on closed stream {stream_id}", stream_id,
                               ErrorCode.STREAM_CLOSED)

    def _end_remote(self, stream: Stream, events: list[Event]) -> None:
        state = stream.state = _ON_RECV_END_STREAM.get(stream.state) or next_state(
            stream.state, RECV_END_STREAM, stream.stream_id)
        events.append(StreamEnded(stream.stream_id))
        if state is CLOSED:
            self._close_stream(stream, CLOSED_ENDED, None)
