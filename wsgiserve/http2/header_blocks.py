"""Reading header blocks: HEADERS and CONTINUATION frames, new streams, and the request,
response and trailer heads they carry.

Every block is decoded, whatever becomes of its stream, so that the decoder's table
follows the peer's encoder (RFC 9113 §4.3); a block is bounded in bytes and in frames
(CONTINUATION floods), and its decoded list by ``max_header_list_size`` (answered 431 on a
request). A head that breaks RFC 9113 §8 is a stream error.
"""
from __future__ import annotations

from typing import Final

from wsgiserve.http2.endpoint import (
    CLOSED_BY_US,
    NO_CONTENT_STATUSES,
    Endpoint,
    stream_error,
)
from wsgiserve.http2.errors import ErrorCode, Http2ConnectionError, Http2StreamError
from wsgiserve.http2.events import (
    Event,
    InformationalResponseReceived,
    RequestReceived,
    ResponseReceived,
    TrailersReceived,
)
from wsgiserve.http2.fields import MalformedFields, check_request, check_response, check_trailers
from wsgiserve.http2.frames import (
    END_HEADERS,
    END_STREAM,
    PADDED,
    PRIORITY,
    TYPE_HEADERS,
    headers_frames,
    parse_priority,
    rst_stream_frame,
    strip_padding,
)
from wsgiserve.http2.hpack import HeaderListTooLarge
from wsgiserve.http2.streams import (
    CLOSED,
    RECV_END_STREAM,
    RECV_HEADERS,
    SEND_END_STREAM,
    Stream,
    next_state,
    transitions_on,
)

__all__ = ["HeaderBlockReceiver"]

_ON_RECV_HEADERS: Final = transitions_on(RECV_HEADERS)


class HeaderBlockReceiver(Endpoint):
    """The HEADERS and CONTINUATION handlers of a connection."""

    __slots__ = ()

    @property
    def has_partial_header_block(self) -> bool:
        """A HEADERS frame came whose CONTINUATION frames have not all come yet (a server
        bounds how long that may last: the HTTP/2 meaning of a header timeout)."""
        return bool(self._header_stream)

    def _on_headers(self, flags: int, stream_id: int, payload: bytes,
                    events: list[Event]) -> None:
        if not stream_id:
            raise Http2ConnectionError("HEADERS on stream 0")
        if flags & PADDED:
            payload = strip_padding(flags, payload)
        error = None
        if flags & PRIORITY:
            try:
                parse_priority(payload, stream_id)
            except Http2StreamError as exc:
                error = exc        # raised once the block has updated the decoder
            payload = payload[5:]
        if flags & END_HEADERS:
            self._on_header_block(stream_id, flags, payload, error, events)
            return
        if len(payload) > self.limits.max_header_block_bytes:
            raise Http2ConnectionError("header block too large", ErrorCode.ENHANCE_YOUR_CALM)
        self._header_stream = stream_id
        self._header_flags = flags
        self._header_parts = [payload]
        self._header_bytes = len(payload)
        self._header_error = error
        self._continuations = 0

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes,
                         events: list[Event]) -> None:
        if not self._header_stream:
            raise Http2ConnectionError("CONTINUATION without a header block")
        # CVE-2024-27316 class: bound the bytes and the frames (empty ones add no bytes).
        self._continuations += 1
        self._header_bytes += len(payload)
        if self._continuations > self.limits.max_continuation_frames or \
                self._header_bytes > self.limits.max_header_block_bytes:
            raise Http2ConnectionError("CONTINUATION flood", ErrorCode.ENHANCE_YOUR_CALM)
        self._header_parts.append(payload)
        if flags & END_HEADERS:
            block = b"".join(self._header_parts)
            self._header_stream = 0
            self._header_parts = []
            self._on_header_block(stream_id, self._header_flags, block, self._header_error,
                                  events)

    def _on_header_block(self, stream_id: int, flags: int, block: bytes,
                         error: Http2StreamError | None, events: list[Event]) -> None:
        # RFC 9113 §4.3: every block is decoded, whatever becomes of its stream.
        try:
            headers: list[tuple[bytes, bytes]] | None = self._decoder.decode(block)
        except HeaderListTooLarge:
            headers = None
        end_stream = bool(flags & END_STREAM)
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._accept_stream(stream_id, flags, len(block))
            if stream is None:
                return
        stream.state = _ON_RECV_HEADERS.get(stream.state) or next_state(
            stream.state, RECV_HEADERS, stream_id)
        if error is not None:
            raise error
        if headers is None:
            self._on_header_list_too_large(stream, end_stream)
            return
        try:
            if stream.is_head_received:
                if not end_stream:
                    raise MalformedFields("a second header section does not end the stream")
                check_trailers(headers)
                self._check_received_length(stream)
                events.append(TrailersReceived(stream_id, headers))
            elif self.is_client:
                if not self._on_response_head(stream, headers, end_stream, events):
                    return
            else:
                self._on_request_head(stream, headers, end_stream, events)
        except MalformedFields as exc:
            raise stream_error(str(exc), stream_id) from None
        if end_stream:
            self._end_remote(stream, events)

    def _accept_stream(self, stream_id: int, flags: int, length: int) -> Stream | None:
        """Open the peer's new stream; None if it is refused or the frame ignored."""
        if (stream_id & 1) == self.is_client or stream_id <= self._highest_peer_stream:
            self._on_unknown_stream(stream_id, TYPE_HEADERS, flags, length)
            return None
        if self.is_client:
            raise Http2ConnectionError("the server opened a stream (push is disabled)")
        self._highest_peer_stream = stream_id
        if self._goaway_sent is not None and stream_id > self._goaway_sent or \
                self._open_peer_streams >= self._max_inbound_streams:
            self._refuse(stream_id, flags)
            return None
        stream = Stream(stream_id, False, self._outbound_initial_window,
                        self._inbound_initial_window)
        self._streams[stream_id] = stream
        self._open_peer_streams += 1
        return stream

    def _refuse(self, stream_id: int, flags: int) -> None:
        # RFC 9113 §8.7: REFUSED_STREAM says the request was not processed (safe to retry).
        self._out.append(rst_stream_frame(stream_id, ErrorCode.REFUSED_STREAM))
        window = -1 if flags & END_STREAM else self._inbound_initial_window
        self._remember_closed(stream_id, CLOSED_BY_US, ErrorCode.REFUSED_STREAM, window)
        self._guard.count_reset()

    def _on_request_head(self, stream: Stream, headers: list[tuple[bytes, bytes]],
                         end_stream: bool, events: list[Event]) -> None:
        method, scheme, authority, path, protocol, length = check_request(
            headers, self.limits.is_connect_protocol_enabled)
        if end_stream and length:
            raise MalformedFields("content-length on a request without content")
        stream.is_head_received = True
        stream.expected_length = length
        if method == b"HEAD":
            stream.is_head_request = True
            stream.is_content_allowed = False
        stream.is_announced = True
        self._highest_announced = stream.stream_id
        events.append(RequestReceived(stream.stream_id, headers, method, scheme, authority,
                                      path, protocol, length, end_stream))

    def _on_response_head(self, stream: Stream, headers: list[tuple[bytes, bytes]],
                          end_stream: bool, events: list[Event]) -> bool:
        """Report a response head; False for a 1xx one (the stream still awaits its head)."""
        status, length = check_response(headers)
        if status < 200:
            if end_stream:
                raise MalformedFields("an informational response ends the stream")
            events.append(InformationalResponseReceived(stream.stream_id, headers, status))
            return False
        stream.is_head_received = True
        # RFC 9113 §8.1.1: a response with no content may declare a nonzero length.
        stream.expected_length = 0 if stream.is_head_request or \
            status in NO_CONTENT_STATUSES else length
        if end_stream:
            self._check_received_length(stream)
        events.append(ResponseReceived(stream.stream_id, headers, status, length, end_stream))
        return True

    def _on_header_list_too_large(self, stream: Stream, end_stream: bool) -> None:
        if self.is_client or stream.is_head_received:
            raise stream_error("header list too large", stream.stream_id, ErrorCode.CANCEL)
        # RFC 9113 §10.5.1: answer 431; then ask the client to stop sending (§8.1).
        stream_id = stream.stream_id
        if end_stream:
            stream.state = next_state(stream.state, RECV_END_STREAM, stream_id)
        window = self._reset_window(stream)
        block = self._encoder.encode([(b":status", b"431")])
        self._out.append(headers_frames(stream_id, block, True, self.max_outbound_frame_size))
        stream.state = next_state(stream.state, SEND_END_STREAM, stream_id)
        if stream.state is not CLOSED:
            self._out.append(rst_stream_frame(stream_id, ErrorCode.NO_ERROR))
        self._close_stream(stream, CLOSED_BY_US, ErrorCode.NO_ERROR, window)
        self._guard.count_reset()

    def _check_received_length(self, stream: Stream) -> None:
        if stream.expected_length is not None and \
                stream.received_bytes != stream.expected_length:
            raise MalformedFields("the body is shorter than its content-length")
