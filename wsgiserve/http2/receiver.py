"""Reading frames: ``FrameReceiver.receive_data`` turns the peer's bytes into events.

Each frame type has a handler that checks it against RFC 9113 and the state it applies
to (HEADERS and CONTINUATION: ``header_blocks``); a stream error a handler raises is
answered with RST_STREAM here, and a connection error queues the GOAWAY and propagates.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Final

from wsgiserve.http2.endpoint import (
    CLOSED_BY_PEER,
    CLOSED_BY_US,
    CONNECTION_CLOSED,
    CONNECTION_OPEN,
    CONNECTION_PREFACE,
    CONNECTION_SETTINGS,
    stream_error,
)
from wsgiserve.http2.errors import ErrorCode, Http2ConnectionError, Http2StreamError, error_code
from wsgiserve.http2.events import (
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcked,
    PingReceived,
    SettingsAcknowledged,
    SettingsChanged,
    StreamReset,
    WindowUpdated,
)
from wsgiserve.http2.frames import (
    ACK,
    CLIENT_PREFACE,
    END_STREAM,
    MAX_WINDOW,
    PADDED,
    TYPE_CONTINUATION,
    TYPE_DATA,
    TYPE_RST_STREAM,
    TYPE_SETTINGS,
    TYPE_WINDOW_UPDATE,
    parse_goaway,
    parse_priority,
    parse_settings,
    parse_uint32,
    parse_window_update,
    ping_frame,
    read_frames,
    rst_stream_frame,
    settings_frame,
    strip_padding,
)
from wsgiserve.http2.header_blocks import HeaderBlockReceiver
from wsgiserve.http2.limits import MAX_SETTINGS_ENTRIES
from wsgiserve.http2.settings import Setting, check_setting
from wsgiserve.http2.streams import (
    RECV_DATA,
    RECV_RST_STREAM,
    RECV_WINDOW_UPDATE,
    SEND_RST_STREAM,
    next_state,
    transitions_on,
)

__all__ = ["FrameReceiver"]

_KNOWN_SETTINGS: Final = frozenset(Setting)
# RFC 9218 §7.1: browsers send PRIORITY_UPDATE frames; ignored, and counted as PRIORITY.
_PRIORITY_UPDATE: Final = 0x10
_ON_RECV_DATA: Final = transitions_on(RECV_DATA)


class FrameReceiver(HeaderBlockReceiver):
    """The receiving half of a connection (header blocks: ``HeaderBlockReceiver``)."""

    __slots__ = ()

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Read ``data`` from the peer; return what it did, in order.

        Stream errors are answered here (RST_STREAM, and a ``StreamReset`` event with
        ``remote=False`` for a stream the application knows). After a CLOSED connection,
        data is ignored.

        Raises:
            Http2ConnectionError: the peer broke the protocol or flooded us; its GOAWAY is
                queued and the connection is CLOSED. Send ``data_to_send()`` and close.
        """
        if self._state is CONNECTION_CLOSED:
            return []
        if type(data) is not bytes:
            data = bytes(data)       # a bytearray or memoryview from a recv_into buffer
        buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        try:
            pos = 0
            if self._state is CONNECTION_PREFACE:
                pos = self._read_preface(buffer)
                if not pos:
                    self._buffer = buffer
                    return events
            handlers = _HANDLERS
            guard = self._guard
            window_frames = self.limits.flood_window_frames
            while True:
                frames, pos = read_frames(buffer, pos, self._max_inbound_frame_size)
                if not frames:
                    break
                for frame_type, flags, stream_id, payload in frames:
                    guard.frames += 1                   # guard.count_frame(), inline
                    if guard.frames > window_frames:
                        guard.new_window()
                    if self._header_stream:
                        if frame_type != TYPE_CONTINUATION or \
                                stream_id != self._header_stream:
                            raise Http2ConnectionError(
                                "a header block interrupted by another frame")
                    elif self._state is not CONNECTION_OPEN and (
                            frame_type != TYPE_SETTINGS or flags & ACK):
                        raise Http2ConnectionError("the first frame is not SETTINGS")
                    if frame_type > TYPE_CONTINUATION:    # RFC 9113 §4.1: ignored
                        if frame_type == _PRIORITY_UPDATE:
                            guard.count_priority()
                        else:
                            guard.count_glitch("unknown frame")
                        continue
                    try:
                        handlers[frame_type](self, flags, stream_id, payload, events)
                    except Http2StreamError as exc:
                        self._reset_for_error(exc, events)
            self._buffer = buffer[pos:]
        except Http2ConnectionError as exc:
            self._fail(exc)
            raise
        return events

    def _read_preface(self, buffer: bytes) -> int:
        if len(buffer) < len(CLIENT_PREFACE):
            if not CLIENT_PREFACE.startswith(buffer):
                raise Http2ConnectionError("invalid connection preface")
            return 0
        if not buffer.startswith(CLIENT_PREFACE):
            raise Http2ConnectionError("invalid connection preface")
        self._set_state(CONNECTION_SETTINGS)
        return len(CLIENT_PREFACE)

    def _reset_for_error(self, exc: Http2StreamError, events: list[Event]) -> None:
        stream_id = exc.stream_id
        self._out.append(rst_stream_frame(stream_id, exc.code))
        stream = self._streams.get(stream_id)
        if stream is not None:
            window = self._reset_window(stream)
            stream.state = next_state(stream.state, SEND_RST_STREAM, stream_id)
            self._close_stream(stream, CLOSED_BY_US, exc.code, window)
            if stream.is_announced:
                events.append(StreamReset(stream_id, exc.code, False))
        else:
            self._remember_closed(stream_id, CLOSED_BY_US, exc.code)
        self._guard.count_reset()    # MadeYouReset (CVE-2025-8671): resets the peer causes

    def _on_data(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if not stream_id:
            raise Http2ConnectionError("DATA on stream 0")
        length = len(payload)
        # RFC 9113 §6.9: every DATA frame counts against the connection window, even on
        # a closed stream; the whole payload counts, padding included.
        self._inbound_window -= length
        if self._inbound_window < 0:
            raise Http2ConnectionError("DATA beyond the connection window",
                                       ErrorCode.FLOW_CONTROL_ERROR)
        data = strip_padding(flags, payload) if flags & PADDED else payload
        stream = self._streams.get(stream_id)
        if stream is None:
            self._credit_connection(length)       # nobody will read it
            self._on_unknown_stream(stream_id, TYPE_DATA, flags, length)
            return
        stream.unacknowledged_bytes += length     # returned to the connection on close
        stream.state = _ON_RECV_DATA.get(stream.state) or next_state(stream.state, RECV_DATA,
                                                                     stream_id)
        stream.inbound_window -= length
        if stream.inbound_window < 0:
            raise stream_error("DATA beyond the stream window", stream_id,
                               ErrorCode.FLOW_CONTROL_ERROR)
        if not stream.is_head_received:
            raise stream_error("DATA before the head", stream_id)
        stream.received_bytes += len(data)
        end_stream = flags & END_STREAM
        if stream.expected_length is not None and (
                stream.received_bytes > stream.expected_length
                or end_stream and stream.received_bytes != stream.expected_length):
            # RFC 9113 §8.1.1: malformed.
            raise stream_error("DATA does not match content-length", stream_id)
        if length != len(data):
            stream.unacknowledged_bytes -= length - len(data)
            self._acknowledge(stream, length - len(data))      # padding: nobody reads it
        if not data and not end_stream:
            self._guard.count_glitch("empty DATA")
        events.append(DataReceived(stream_id, data, length, bool(end_stream)))
        if end_stream:
            self._end_remote(stream, events)

    def _on_window_update(self, flags: int, stream_id: int, payload: bytes,
                          events: list[Event]) -> None:
        increment = parse_window_update(payload)
        self._guard.count_window_update()
        if not stream_id:
            if not increment:
                raise Http2ConnectionError("WINDOW_UPDATE of 0 on the connection")
            self._outbound_window += increment
            if self._outbound_window > MAX_WINDOW:
                raise Http2ConnectionError("connection window over 2^31-1",
                                           ErrorCode.FLOW_CONTROL_ERROR)
            events.append(WindowUpdated(0, increment))
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            self._on_unknown_stream(stream_id, TYPE_WINDOW_UPDATE)
            return
        if not increment:
            raise stream_error("WINDOW_UPDATE of 0", stream_id)       # RFC 9113 §6.9
        stream.state = next_state(stream.state, RECV_WINDOW_UPDATE, stream_id)
        stream.outbound_window += increment
        if stream.outbound_window > MAX_WINDOW:
            raise stream_error("stream window over 2^31-1", stream_id,
                               ErrorCode.FLOW_CONTROL_ERROR)
        events.append(WindowUpdated(stream_id, increment))

    def _on_priority(self, flags: int, stream_id: int, payload: bytes,
                     events: list[Event]) -> None:
        if not stream_id:
            raise Http2ConnectionError("PRIORITY on stream 0")
        self._guard.count_priority()
        is_open = stream_id in self._streams
        if len(payload) != 5:
            if is_open:
                raise stream_error("PRIORITY length is not 5", stream_id,
                                   ErrorCode.FRAME_SIZE_ERROR)
            raise Http2ConnectionError("PRIORITY length is not 5", ErrorCode.FRAME_SIZE_ERROR)
        try:
            parse_priority(payload, stream_id)      # RFC 9113 §5.3.2: otherwise ignored
        except Http2StreamError:
            if is_open:
                raise
            # No RST_STREAM on an idle stream (RFC 9113 §6.4): the connection goes.
            raise Http2ConnectionError(f"stream {stream_id} depends on itself") from None

    def _on_rst_stream(self, flags: int, stream_id: int, payload: bytes,
                       events: list[Event]) -> None:
        if not stream_id:
            raise Http2ConnectionError("RST_STREAM on stream 0")
        if len(payload) != 4:
            raise Http2ConnectionError("RST_STREAM length is not 4", ErrorCode.FRAME_SIZE_ERROR)
        self._guard.count_reset()       # rapid reset (CVE-2023-44487)
        stream = self._streams.get(stream_id)
        if stream is None:
            self._on_unknown_stream(stream_id, TYPE_RST_STREAM)
            return
        code = error_code(parse_uint32(payload))
        stream.state = next_state(stream.state, RECV_RST_STREAM, stream_id)
        self._close_stream(stream, CLOSED_BY_PEER, code)
        if stream.is_announced:
            events.append(StreamReset(stream_id, code, True))

    def _on_settings(self, flags: int, stream_id: int, payload: bytes,
                     events: list[Event]) -> None:
        if stream_id:
            raise Http2ConnectionError("SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise Http2ConnectionError("SETTINGS ACK with a payload",
                                           ErrorCode.FRAME_SIZE_ERROR)
            self._on_settings_acknowledged(events)
            return
        self._guard.count_settings()
        pairs = parse_settings(payload)
        if len(pairs) > MAX_SETTINGS_ENTRIES:
            raise Http2ConnectionError("too many settings in one frame",
                                       ErrorCode.ENHANCE_YOUR_CALM)
        changed: dict[int, int] = {}
        for identifier, value in pairs:       # RFC 9113 §6.5.3: in order
            check_setting(identifier, value)
            if identifier not in _KNOWN_SETTINGS:
                continue                      # RFC 9113 §6.5.2: unknown ones are ignored
            self._apply_remote_setting(Setting(identifier), value)
            changed[identifier] = value
        self._out.append(settings_frame({}, ack=True))
        if self._state is CONNECTION_SETTINGS:
            self._set_state(CONNECTION_OPEN)
        events.append(SettingsChanged(changed))

    def _apply_remote_setting(self, setting: Setting, value: int) -> None:
        if setting is Setting.INITIAL_WINDOW_SIZE:
            # RFC 9113 §6.9.2: the change applies to every open stream's window.
            delta = value - self._outbound_initial_window
            self._outbound_initial_window = value
            for stream in self._streams.values():
                stream.outbound_window += delta
                if stream.outbound_window > MAX_WINDOW:
                    raise Http2ConnectionError("a stream window over 2^31-1",
                                               ErrorCode.FLOW_CONTROL_ERROR)
        elif setting is Setting.HEADER_TABLE_SIZE:
            self._encoder.set_max_table_size(value)
        elif setting is Setting.MAX_FRAME_SIZE:
            self.max_outbound_frame_size = value
        elif setting is Setting.MAX_CONCURRENT_STREAMS:
            self._max_outbound_streams = value
        elif setting is Setting.ENABLE_PUSH and value and self.is_client:
            raise Http2ConnectionError("a server enabled push")        # RFC 9113 §6.5.2
        elif setting is Setting.ENABLE_CONNECT_PROTOCOL and not value and \
                self.remote_settings[setting]:
            raise Http2ConnectionError("ENABLE_CONNECT_PROTOCOL went back to 0")  # RFC 8441
        self.remote_settings[setting] = value

    def _on_settings_acknowledged(self, events: list[Event]) -> None:
        if not self._pending_settings:
            self._guard.count_glitch("unsolicited SETTINGS ACK")
            return
        changed = self._pending_settings.popleft()
        for identifier, value in changed.items():
            # Increases applied when sent; decreases apply now (RFC 9113 §6.5.3).
            if identifier == Setting.INITIAL_WINDOW_SIZE and value < self._inbound_initial_window:
                self._set_inbound_initial_window(value)
            elif identifier == Setting.HEADER_TABLE_SIZE:
                self._decoder.set_max_allowed_table_size(value)
            elif identifier == Setting.MAX_FRAME_SIZE:
                self._max_inbound_frame_size = value
            self.local_settings[identifier] = value
        events.append(SettingsAcknowledged(changed))

    def _on_push_promise(self, flags: int, stream_id: int, payload: bytes,
                         events: list[Event]) -> None:
        # RFC 9113 §8.4: a client cannot push; our clients send SETTINGS_ENABLE_PUSH=0.
        raise Http2ConnectionError("PUSH_PROMISE received (push is disabled)")

    def _on_ping(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if stream_id:
            raise Http2ConnectionError("PING on a stream")
        if len(payload) != 8:
            raise Http2ConnectionError("PING length is not 8", ErrorCode.FRAME_SIZE_ERROR)
        if flags & ACK:
            if payload in self._pings:
                self._pings.discard(payload)
            else:
                self._guard.count_glitch("unsolicited PING ACK")
            events.append(PingAcked(payload))
            return
        self._guard.count_ping()
        self._out.append(ping_frame(payload, ack=True))
        events.append(PingReceived(payload))

    def _on_goaway(self, flags: int, stream_id: int, payload: bytes,
                   events: list[Event]) -> None:
        if stream_id:
            raise Http2ConnectionError("GOAWAY on a stream")
        last_stream_id, code, debug_data = parse_goaway(payload)
        if self._goaway_received is not None:
            last_stream_id = min(last_stream_id, self._goaway_received)
        self._goaway_received = last_stream_id
        for stream in [s for s in self._streams.values()
                       if s.is_local and s.stream_id > last_stream_id]:
            # RFC 9113 §6.8: not processed; the application may retry them elsewhere.
            stream.state = next_state(stream.state, RECV_RST_STREAM, stream.stream_id)
            self._close_stream(stream, CLOSED_BY_PEER, ErrorCode.REFUSED_STREAM)
            events.append(StreamReset(stream.stream_id, ErrorCode.REFUSED_STREAM, True))
        events.append(GoAwayReceived(last_stream_id, error_code(code), debug_data))


_Handler = Callable[[FrameReceiver, int, int, bytes, list[Event]], None]
# Indexed by frame type (RFC 9113 §6).
_HANDLERS: Final[tuple[_Handler, ...]] = (
    FrameReceiver._on_data, FrameReceiver._on_headers, FrameReceiver._on_priority,
    FrameReceiver._on_rst_stream, FrameReceiver._on_settings, FrameReceiver._on_push_promise,
    FrameReceiver._on_ping, FrameReceiver._on_goaway, FrameReceiver._on_window_update,
    FrameReceiver._on_continuation)
