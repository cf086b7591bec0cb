"""Helpers for the HTTP/2 tests: raw frames built with hyperframe and the hpack package
(independent of our writers and encoder), connections past their preface, and replaying
bytes whole, byte by byte, or followed by the start of another frame.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import hpack
import hyperframe.frame as hf

from wsgiserve.http2 import (
    CLIENT_PREFACE,
    Connection,
    Event,
    Http2ConnectionError,
    Http2Limits,
    SettingsAcknowledged,
    SettingsChanged,
)
from wsgiserve.http2 import frames as fr

Fields = list[tuple[bytes, bytes]]
GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.com"),
       (b":path", b"/")]


def post(length: int | None = None) -> Fields:
    fields = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"example.com"),
              (b":path", b"/upload")]
    return fields + ([(b"content-length", str(length).encode())] if length is not None else [])


class Wire:
    """Raw frames from a peer, header blocks encoded by the ``hpack`` package."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()
        self.parts: list[bytes] = []

    def _add(self, frame: hf.Frame, *flags: str) -> Wire:
        for flag in flags:
            frame.flags.add(flag)
        self.parts.append(bytes(frame.serialize()))
        return self

    def block(self, fields: Fields) -> bytes:
        return bytes(self.encoder.encode(fields))

    def headers(self, stream_id: int, fields: Fields, end_stream: bool = False,
                end_headers: bool = True, pad: int | None = None,
                priority: tuple[int, int] | None = None) -> Wire:
        frame = hf.HeadersFrame(stream_id, data=self.block(fields))
        flags = ["END_STREAM"] * end_stream + ["END_HEADERS"] * end_headers
        if pad is not None:
            frame.pad_length = pad
            flags.append("PADDED")
        if priority is not None:
            frame.depends_on, frame.stream_weight = priority
            flags.append("PRIORITY")
        return self._add(frame, *flags)

    def headers_split(self, stream_id: int, fields: Fields, pieces: int,
                      end_stream: bool = False) -> Wire:
        """HEADERS and CONTINUATION frames carrying one block in ``pieces`` parts."""
        block = self.block(fields)
        size = -(-len(block) // pieces)
        chunks = [block[i:i + size] for i in range(0, len(block), size)] or [b""]
        chunks += [b""] * (pieces - len(chunks))
        self._add(hf.HeadersFrame(stream_id, data=chunks[0]), *["END_STREAM"] * end_stream,
                  *["END_HEADERS"] * (len(chunks) == 1))
        for index, chunk in enumerate(chunks[1:], 2):
            self._add(hf.ContinuationFrame(stream_id, data=chunk),
                      *["END_HEADERS"] * (index == len(chunks)))
        return self

    def data(self, stream_id: int, data: bytes, end_stream: bool = False,
             pad: int | None = None) -> Wire:
        frame = hf.DataFrame(stream_id, data=data)
        flags = ["END_STREAM"] * end_stream
        if pad is not None:
            frame.pad_length = pad
            flags.append("PADDED")
        return self._add(frame, *flags)

    def settings(self, settings: dict[int, int] | None = None, ack: bool = False) -> Wire:
        return self._add(hf.SettingsFrame(0, settings=settings or {}), *["ACK"] * ack)

    def ping(self, data: bytes = b"12345678", ack: bool = False) -> Wire:
        return self._add(hf.PingFrame(0, opaque_data=data), *["ACK"] * ack)

    def rst(self, stream_id: int, code: int = 8) -> Wire:
        return self._add(hf.RstStreamFrame(stream_id, error_code=code))

    def window_update(self, stream_id: int, increment: int) -> Wire:
        self.parts.append(fr.window_update_frame(stream_id, increment))
        return self

    def priority(self, stream_id: int, depends_on: int, weight: int = 16) -> Wire:
        self.parts.append(fr.priority_frame(stream_id, depends_on, weight))
        return self

    def goaway(self, last_stream_id: int, code: int = 0, debug: bytes = b"") -> Wire:
        return self._add(hf.GoAwayFrame(0, last_stream_id=last_stream_id, error_code=code,
                                        additional_data=debug))

    def raw(self, frame_type: int, flags: int, stream_id: int, payload: bytes) -> Wire:
        self.parts.append(fr.frame_header(len(payload), frame_type, flags, stream_id) + payload)
        return self

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def is_settings_event(event: Event) -> bool:
    return isinstance(event, SettingsChanged | SettingsAcknowledged)


def server(limits: Http2Limits | None = None) -> Connection:
    """A server connection that has read a client preface and empty SETTINGS, and sent
    its own (already taken from ``data_to_send``)."""
    conn = Connection(is_client=False, limits=limits)
    conn.data_to_send()
    conn.receive_data(CLIENT_PREFACE + Wire().settings().settings(ack=True).bytes())
    conn.data_to_send()
    return conn


def client(limits: Http2Limits | None = None) -> Connection:
    conn = Connection(is_client=True, limits=limits)
    conn.data_to_send()
    conn.receive_data(Wire().settings().settings(ack=True).bytes())
    conn.data_to_send()
    return conn


def sent_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    frames, end = fr.read_frames(data, 0, fr.MAX_WINDOW)
    assert end == len(data)
    return frames


def control(data: bytes) -> list[tuple[str, int, int]]:
    """The RST_STREAM and GOAWAY frames in ``data``: (type, stream or last id, code)."""
    out = []
    for frame_type, _, stream_id, payload in sent_frames(data):
        if frame_type == fr.FrameType.RST_STREAM:
            out.append(("RST_STREAM", stream_id, fr.parse_uint32(payload)))
        elif frame_type == fr.FrameType.GOAWAY:
            last, code, _ = fr.parse_goaway(payload)
            out.append(("GOAWAY", last, code))
    return out


@dataclass(frozen=True)
class Outcome:
    events: list[Event]
    control: list[tuple[str, int, int]]
    error: int | None          # the connection error code raised, if any


def feed(conn: Connection, chunks: Sequence[bytes]) -> Outcome:
    events: list[Event] = []
    try:
        for chunk in chunks:
            events.extend(e for e in conn.receive_data(chunk) if not is_settings_event(e))
    except Http2ConnectionError as exc:
        return Outcome(events, control(conn.data_to_send()), exc.code)
    return Outcome(events, control(conn.data_to_send()), None)


def replay(make: Callable[[], Connection], raw: bytes) -> Outcome:
    """Feed ``raw`` whole, byte by byte, and followed by 5 bytes of a PING frame (which
    must stay buffered); all three must agree (events up to an error are compared only
    when no error is raised, since an error loses the call's events)."""
    whole = feed(make(), [raw])
    by_byte = feed(make(), [raw[i:i + 1] for i in range(len(raw))])
    extra = feed(make(), [raw + fr.ping_frame(b"\0" * 8)[:5]])
    assert by_byte.error == whole.error == extra.error
    assert by_byte.control == whole.control == extra.control
    if whole.error is None:
        assert by_byte.events == whole.events == extra.events
    return whole
