"""One HTTP/2 connection, either role: bytes in, events out; calls in, bytes out.

``receive_data`` reads frames and returns events (``receiver.FrameReceiver``); the
``send_*`` methods here queue frames that ``data_to_send`` hands over. The connection
answers what the protocol answers by itself (SETTINGS and PING acknowledgements, stream
errors, flow-control credit as the application acknowledges data) and refuses floods
(``flood.FloodGuard``). Its states are ``endpoint.ConnectionState``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from wsgiserve.http2.endpoint import (
    CLOSED_BY_US,
    CLOSED_ENDED,
    CONNECTION_CLOSED,
    DEFAULT_WINDOW,
    NO_CONTENT_STATUSES,
)
from wsgiserve.http2.errors import (
    ConnectionClosedError,
    ErrorCode,
    FlowControlBlocked,
    Http2ConnectionError,
    Http2UsageError,
    TooManyStreamsError,
)
from wsgiserve.http2.fields import MalformedFields, check_request, check_response, check_trailers
from wsgiserve.http2.frames import (
    CLIENT_PREFACE,
    END_STREAM,
    END_HEADERS,
    MAX_STREAM_ID,
    TYPE_DATA,
    TYPE_HEADERS,
    data_frame,
    goaway_frame,
    headers_frames,
    pack_frame_header,
    ping_frame,
    rst_stream_frame,
    settings_frame,
    window_update_frame,
)
from wsgiserve.http2.limits import Http2Limits
from wsgiserve.http2.receiver import FrameReceiver
from wsgiserve.http2.settings import INITIAL_SETTINGS, Setting, check_setting
from wsgiserve.http2.streams import (
    CLOSED,
    SEND_DATA,
    SEND_END_STREAM,
    SEND_HEADERS,
    SEND_RST_STREAM,
    Stream,
    StreamInput,
    StreamState,
    next_state,
    transitions_on,
)

__all__ = ["Connection"]

Fields = Sequence[tuple[bytes, bytes]]
# The state machine's common paths, one lookup each (as the table says: see streams.py).
_ON_SEND_HEADERS: Final = transitions_on(SEND_HEADERS)
_ON_SEND_HEADERS_END: Final = transitions_on(SEND_HEADERS, SEND_END_STREAM)
_ON_SEND_DATA: Final = transitions_on(SEND_DATA)
_ON_SEND_DATA_END: Final = transitions_on(SEND_DATA, SEND_END_STREAM)


class Connection(FrameReceiver):
    """An HTTP/2 connection in the client role (``is_client=True``) or the server role.

    The preface (the client's magic, our SETTINGS, a WINDOW_UPDATE raising the connection
    window) is queued at construction: call ``data_to_send()`` first. Not thread-safe: one
    thread at a time drives a connection.
    """

    __slots__ = ()

    def __init__(self, is_client: bool, limits: Http2Limits | None = None):
        super().__init__(is_client, limits or Http2Limits())
        limits = self.limits
        if is_client:
            self._out.append(CLIENT_PREFACE)
        settings: dict[int, int] = {Setting.MAX_HEADER_LIST_SIZE: limits.max_header_list_size}
        if is_client:
            settings[Setting.ENABLE_PUSH] = 0
        else:
            settings[Setting.MAX_CONCURRENT_STREAMS] = limits.max_concurrent_streams
            if limits.is_connect_protocol_enabled:
                settings[Setting.ENABLE_CONNECT_PROTOCOL] = 1
        for setting, value in ((Setting.HEADER_TABLE_SIZE, limits.header_table_size),
                               (Setting.INITIAL_WINDOW_SIZE, limits.initial_window_size),
                               (Setting.MAX_FRAME_SIZE, limits.max_frame_size)):
            if value != INITIAL_SETTINGS[setting]:
                settings[setting] = value
        self.update_settings(settings)
        if limits.connection_window_size > DEFAULT_WINDOW:
            self._out.append(window_update_frame(
                0, limits.connection_window_size - DEFAULT_WINDOW))
            self._inbound_window = limits.connection_window_size

    def get_next_available_stream_id(self) -> int:
        """The id ``send_headers`` opens a new request stream with (client role)."""
        if not self.is_client:
            raise Http2UsageError("a server does not open streams (push is not supported)")
        if self._next_local_stream > MAX_STREAM_ID:
            raise ConnectionClosedError("stream ids are exhausted: open a new connection")
        return self._next_local_stream

    def _open_local_stream(self, stream_id: int) -> Stream:
        if not self.is_client or stream_id < self._next_local_stream:
            return self._writable_stream(stream_id)     # raises: not a stream we can open
        if self._state is CONNECTION_CLOSED:
            self._check_not_closed()                        # raises
        if self._goaway_received is not None or self._goaway_sent is not None:
            raise ConnectionClosedError("a GOAWAY was exchanged: no new streams")
        if (stream_id != self._next_local_stream or stream_id > MAX_STREAM_ID) and \
                stream_id != self.get_next_available_stream_id():   # it raises past the last
            raise Http2UsageError(f"the next stream id is {self._next_local_stream}, "
                                  f"not {stream_id}")
        if self._open_local_streams >= self._max_outbound_streams:
            raise TooManyStreamsError(f"the peer allows {self._max_outbound_streams} "
                                      "concurrent streams")
        return Stream(stream_id, True, self._outbound_initial_window,
                      self._inbound_initial_window)

    def send_headers(self, stream_id: int, headers: Fields, end_stream: bool = False) -> None:
        """Send a request (client: ``stream_id`` is ``get_next_available_stream_id()``) or
        the final response head (server). Names must be lowercase; pseudo-header fields
        first. Use ``send_informational`` for 1xx and ``send_trailers`` for trailers.

        Raises:
            Http2UsageError: the fields break RFC 9113 §8, or the head was already sent;
                StreamClosedError, TooManyStreamsError, ConnectionClosedError as named.
        """
        stream = self._streams.get(stream_id)
        is_new = stream is None
        try:
            if stream is None:
                stream = self._open_local_stream(stream_id)
                method, _, _, _, _, length = check_request(headers)
                stream.is_head_request = method == b"HEAD"
            else:
                if self._state is CONNECTION_CLOSED:
                    self._check_not_closed()                # raises
                if stream.is_head_sent or stream.is_local:
                    raise Http2UsageError("the head was sent: use send_trailers")
                status, length = check_response(headers)
                if status < 200:
                    raise Http2UsageError("a 1xx head goes through send_informational")
                if status in NO_CONTENT_STATUSES:
                    stream.is_content_allowed = False
        except MalformedFields as exc:
            raise Http2UsageError(str(exc)) from None
        if end_stream and length and stream.is_content_allowed:
            raise Http2UsageError(f"content-length is {length} but the stream ends")
        if is_new:
            self._streams[stream_id] = stream
            self._open_local_streams += 1
            self._next_local_stream = stream_id + 2
        stream.declared_length = length
        stream.is_head_sent = True
        self._send_head(stream, headers, end_stream)

    def send_informational(self, stream_id: int, headers: Fields) -> None:
        """Send a 1xx response head (server role), e.g. 103 Early Hints, before the final
        one. Raises Http2UsageError if it is not a 1xx (or is 101) or the final head went."""
        stream = self._writable_stream(stream_id)
        if self.is_client or stream.is_head_sent:
            raise Http2UsageError("informational responses precede the final response")
        try:
            status, _ = check_response(headers)
        except MalformedFields as exc:
            raise Http2UsageError(str(exc)) from None
        if status >= 200:
            raise Http2UsageError("send_informational takes a 1xx status")
        self._send_head(stream, headers, False)

    def send_trailers(self, stream_id: int, headers: Fields) -> None:
        """Send the trailer section, which ends the stream."""
        stream = self._writable_stream(stream_id)
        if not stream.is_head_sent:
            raise Http2UsageError("trailers before the head")
        try:
            check_trailers(headers)
        except MalformedFields as exc:
            raise Http2UsageError(str(exc)) from None
        self._check_sent_length(stream, 0)
        self._send_head(stream, headers, True)

    def _send_head(self, stream: Stream, headers: Fields, end_stream: bool) -> None:
        stream_id = stream.stream_id
        state = (_ON_SEND_HEADERS_END if end_stream else _ON_SEND_HEADERS).get(stream.state) \
            or self._next_states(stream, SEND_HEADERS, end_stream)
        block = self._encoder.encode(headers)
        if len(block) <= self.max_outbound_frame_size:       # headers_frames, inline
            self._out.append(pack_frame_header(
                len(block) << 8 | TYPE_HEADERS, END_HEADERS | END_STREAM if end_stream
                else END_HEADERS, stream_id) + block)
        else:
            self._out.append(headers_frames(stream_id, block, end_stream,
                                            self.max_outbound_frame_size))
        stream.state = state
        if state is CLOSED:
            self._close_stream(stream, CLOSED_ENDED, None)

    @staticmethod
    def _next_states(stream: Stream, stream_input: StreamInput, end_stream: bool) -> StreamState:
        """``stream_input``, then END_STREAM if ``end_stream``: raises what ``next_state``
        raises (the paths above found no transition)."""
        state = next_state(stream.state, stream_input, stream.stream_id)
        return next_state(state, SEND_END_STREAM, stream.stream_id) if end_stream else state

    def _check_sent_length(self, stream: Stream, size: int) -> None:
        """Raise unless the body, ending after ``size`` more bytes, matches its length."""
        if stream.declared_length is not None and stream.is_content_allowed and \
                stream.sent_bytes + size != stream.declared_length:
            raise Http2UsageError(f"content-length is {stream.declared_length}; the body "
                                  f"ends after {stream.sent_bytes + size} bytes")

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Send body bytes, in as many DATA frames as ``max_outbound_frame_size`` needs.

        Raises:
            FlowControlBlocked: ``data`` is larger than ``local_flow_control_window``;
                nothing was sent.
            StreamClosedError: the stream ended or was reset.
            Http2UsageError: no head was sent, the body would pass its content-length (or
                end short of it), or the response has no content (HEAD, 204, 304).
        """
        stream = self._streams.get(stream_id)
        if stream is None or self._state is CONNECTION_CLOSED:
            stream = self._writable_stream(stream_id)       # raises
        if not stream.is_head_sent:
            raise Http2UsageError("DATA before the head")
        size = len(data)
        declared = stream.declared_length
        if size:
            if not stream.is_content_allowed:
                raise Http2UsageError("this response has no content (HEAD, 204 or 304)")
            window = self._outbound_window
            if stream.outbound_window < window:
                window = stream.outbound_window
            if size > window:
                raise FlowControlBlocked(f"{size} bytes over a window of {window}", stream_id,
                                         window)
            if declared is not None and stream.sent_bytes + size > declared:
                raise Http2UsageError(f"the body passes its content-length {declared}")
        if end_stream and declared is not None and stream.is_content_allowed and \
                stream.sent_bytes + size != declared:
            self._check_sent_length(stream, size)           # raises
        state = (_ON_SEND_DATA_END if end_stream else _ON_SEND_DATA).get(stream.state) \
            or self._next_states(stream, SEND_DATA, end_stream)
        frame_size = self.max_outbound_frame_size
        out = self._out
        if size <= frame_size:
            out.append(pack_frame_header(size << 8 | TYPE_DATA,
                                         END_STREAM if end_stream else 0, stream_id))
            out.append(data)
            self._guard.data_frames_sent += 1
        else:
            view = memoryview(data)
            for start in range(0, size, frame_size):
                is_last = end_stream and start + frame_size >= size
                out.append(data_frame(stream_id, bytes(view[start:start + frame_size]),
                                      is_last))
                self._guard.data_frames_sent += 1
        self._outbound_window -= size
        stream.outbound_window -= size
        stream.sent_bytes += size
        stream.state = state
        if state is CLOSED:
            self._close_stream(stream, CLOSED_ENDED, None)

    def end_stream(self, stream_id: int) -> None:
        """End the stream with an empty DATA frame (when no more body or trailers follow)."""
        self.send_data(stream_id, b"", end_stream=True)

    def local_flow_control_window(self, stream_id: int) -> int:
        """How many body bytes ``send_data`` accepts on ``stream_id`` right now."""
        stream = self._streams.get(stream_id)
        if stream is None or self._state is CONNECTION_CLOSED:
            stream = self._writable_stream(stream_id)       # raises
        window = self._outbound_window
        if stream.outbound_window < window:
            window = stream.outbound_window
        return window if window > 0 else 0

    def reset_stream(self, stream_id: int, error_code: int = ErrorCode.CANCEL) -> None:
        """Send RST_STREAM; a stream already closed is left alone."""
        self._check_not_closed()
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._is_idle(stream_id):
                raise Http2UsageError(f"stream {stream_id} is idle")
            return
        window = self._reset_window(stream)
        stream.state = next_state(stream.state, SEND_RST_STREAM, stream_id)
        self._out.append(rst_stream_frame(stream_id, error_code))
        self._close_stream(stream, CLOSED_BY_US, error_code, window)

    def ping(self, opaque_data: bytes = b"\0" * 8) -> None:
        """Send a PING; its answer is a PingAcked event with the same 8 bytes."""
        if len(opaque_data) != 8:
            raise ValueError("PING data is 8 bytes")
        self._check_not_closed()
        self._pings.add(opaque_data)
        self._out.append(ping_frame(opaque_data))

    def close(self, error_code: int = ErrorCode.NO_ERROR, last_stream_id: int | None = None,
              debug_data: bytes = b"") -> None:
        """Send GOAWAY. With NO_ERROR, streams up to ``last_stream_id`` (by default the last
        request reported) go on and later ones are refused; any other code CLOSES the
        connection. For a graceful two-step close (RFC 9113 §6.8), call
        ``close(last_stream_id=MAX_STREAM_ID)``, then ``ping()``, then ``close()`` once the
        PING is acknowledged. The last stream id can only go down."""
        self._check_not_closed()
        last = self._highest_announced if last_stream_id is None else last_stream_id
        if self._goaway_sent is not None and last > self._goaway_sent:
            raise Http2UsageError("a GOAWAY cannot raise the last stream id")
        self._goaway_sent = last
        self._out.append(goaway_frame(last, error_code, debug_data))
        if error_code != ErrorCode.NO_ERROR:
            self._set_state(CONNECTION_CLOSED)

    def update_settings(self, changes: dict[int, int]) -> None:
        """Send a SETTINGS frame; a ``SettingsAcknowledged`` event reports its ACK. Limits
        that grow apply at once, those that shrink once acknowledged."""
        self._check_not_closed()
        try:
            for identifier, value in changes.items():
                check_setting(identifier, value)
        except Http2ConnectionError as exc:
            raise Http2UsageError(str(exc)) from None
        for identifier, value in changes.items():
            if identifier == Setting.INITIAL_WINDOW_SIZE and value > self._inbound_initial_window:
                self._set_inbound_initial_window(value)
            elif identifier == Setting.HEADER_TABLE_SIZE and \
                    value > self._decoder.max_allowed_table_size:
                self._decoder.set_max_allowed_table_size(value)
            elif identifier == Setting.MAX_FRAME_SIZE and value > self._max_inbound_frame_size:
                self._max_inbound_frame_size = value
            elif identifier == Setting.MAX_HEADER_LIST_SIZE:
                self._decoder.max_header_list_size = value
            elif identifier == Setting.MAX_CONCURRENT_STREAMS:
                self._max_inbound_streams = value
        self._pending_settings.append(dict(changes))
        self._out.append(settings_frame(changes))
