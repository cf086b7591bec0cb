"""HTTP/2 frames (RFC 9113 §4, §6): the 9-byte header, each type's payload, and writers.

Frames are read as plain tuples ``(type, flags, stream_id, payload)`` and checked by the
connection, which knows the state they apply to; the helpers here check what a payload
alone decides (sizes, padding) and raise the error RFC 9113 names for it.
"""
from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final

from wsgiserve.http2.errors import ErrorCode, Http2ConnectionError, Http2StreamError

__all__ = ["ACK", "CLIENT_PREFACE", "END_HEADERS", "END_STREAM", "FRAME_HEADER_BYTES",
           "MAX_STREAM_ID", "MAX_WINDOW", "PADDED", "PRIORITY", "FrameType", "RawFrame",
           "continuation_frame", "data_frame", "frame_header", "goaway_frame",
           "headers_frames", "pack_frame_header", "parse_goaway", "parse_priority",
           "parse_settings", "parse_window_update", "ping_frame", "priority_frame", "push_promise_frame",
           "read_frames", "rst_stream_frame", "settings_frame", "strip_padding",
           "window_update_frame"]  # and the frame types, as module names below

# RFC 9113 §3.4: what a client sends before its first frame.
CLIENT_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_BYTES: Final = 9
# RFC 9113 §5.1.1, §6.9.1: stream identifiers and windows are 31-bit.
MAX_STREAM_ID: Final = 2**31 - 1
MAX_WINDOW: Final = 2**31 - 1


class FrameType(IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


# The members as module names, for the hot paths (an attribute of an Enum class costs
# ~150 ns on Python 3.11, IntEnums too).
(TYPE_DATA, TYPE_HEADERS, TYPE_PRIORITY, TYPE_RST_STREAM, TYPE_SETTINGS, TYPE_PUSH_PROMISE,
 TYPE_PING, TYPE_GOAWAY, TYPE_WINDOW_UPDATE, TYPE_CONTINUATION) = FrameType

# Flags (RFC 9113 §6). ACK shares END_STREAM's bit, on SETTINGS and PING.
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY: Final = 0x20

# Length (24 bits) and type in one 32-bit word, flags, reserved bit + stream identifier.
_HEADER: Final = struct.Struct(">LBL")
# For a hot path: pack_frame_header(length << 8 | frame_type, flags, stream_id).
pack_frame_header: Final = _HEADER.pack
_UINT32: Final = struct.Struct(">L")
_SETTING: Final = struct.Struct(">HL")
_GOAWAY: Final = struct.Struct(">LL")
_PRIORITY: Final = struct.Struct(">LB")

RawFrame = tuple[int, int, int, bytes]


def frame_header(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    return pack_frame_header(length << 8 | frame_type, flags, stream_id)


def read_frames(buffer: bytes, pos: int, max_frame_size: int) -> tuple[list[RawFrame], int]:
    """The complete frames in ``buffer`` from ``pos``; returns them and where the rest
    starts (a partial frame stays for the next call, so at most ``9 + max_frame_size``
    bytes are ever kept). Stops before a frame over ``max_frame_size``: the next call
    raises for it, once the frames before it have been handled.

    Raises:
        Http2ConnectionError: FRAME_SIZE_ERROR if the first frame is over
            ``max_frame_size`` (RFC 9113 §4.2; a connection error whatever its type).
    """
    frames: list[RawFrame] = []
    append = frames.append
    end = len(buffer)
    unpack = _HEADER.unpack_from
    while end - pos >= FRAME_HEADER_BYTES:
        word, flags, stream_id = unpack(buffer, pos)
        length = word >> 8
        if length > max_frame_size:
            if frames:
                break       # the frames before it are handled first
            raise Http2ConnectionError(f"a frame of {length} bytes, over the "
                                       f"{max_frame_size} allowed", ErrorCode.FRAME_SIZE_ERROR)
        stop = pos + FRAME_HEADER_BYTES + length
        if stop > end:
            break
        # RFC 9113 §4.1: the reserved bit is ignored on receipt.
        append((word & 0xFF, flags, stream_id & MAX_STREAM_ID,
                buffer[pos + FRAME_HEADER_BYTES:stop]))
        pos = stop
    return frames, pos


def strip_padding(flags: int, payload: bytes) -> bytes:
    """The payload of a DATA, HEADERS or PUSH_PROMISE frame without its padding.

    Raises:
        Http2ConnectionError: PROTOCOL_ERROR if the padding is as long as the payload or
            longer (RFC 9113 §6.1, §6.2).
    """
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise Http2ConnectionError("padding as long as the frame payload or longer")
    return payload[1:len(payload) - payload[0]]


def parse_priority(payload: bytes, stream_id: int) -> tuple[bool, int, int]:
    """The priority fields (exclusive, stream dependency, weight 1-256) that start a
    HEADERS payload with the PRIORITY flag, or make a PRIORITY frame's.

    Raises:
        Http2StreamError: PROTOCOL_ERROR if the stream depends on itself (RFC 9113 §5.3.1).
        Http2ConnectionError: FRAME_SIZE_ERROR if the fields do not fit the payload.
    """
    if len(payload) < 5:
        raise Http2ConnectionError("priority fields truncated", ErrorCode.FRAME_SIZE_ERROR)
    dependency, weight = _PRIORITY.unpack_from(payload)
    depends_on = dependency & MAX_STREAM_ID
    if depends_on == stream_id:
        raise Http2StreamError("a stream depends on itself", stream_id)
    return bool(dependency >> 31), depends_on, weight + 1


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    """The (identifier, value) pairs of a SETTINGS frame, in order.

    Raises:
        Http2ConnectionError: FRAME_SIZE_ERROR if the length is not a multiple of 6.
    """
    if len(payload) % 6:
        raise Http2ConnectionError("SETTINGS length not a multiple of 6",
                                   ErrorCode.FRAME_SIZE_ERROR)
    return list(_SETTING.iter_unpack(payload))


def parse_goaway(payload: bytes) -> tuple[int, int, bytes]:
    """(last stream id, error code, debug data) of a GOAWAY frame.

    Raises:
        Http2ConnectionError: FRAME_SIZE_ERROR if shorter than 8 bytes.
    """
    if len(payload) < 8:
        raise Http2ConnectionError("GOAWAY shorter than 8 bytes", ErrorCode.FRAME_SIZE_ERROR)
    last_stream_id, code = _GOAWAY.unpack_from(payload)
    return last_stream_id & MAX_STREAM_ID, code, payload[8:]


def parse_window_update(payload: bytes) -> int:
    """The increment of a WINDOW_UPDATE frame (the reserved bit ignored).

    Raises:
        Http2ConnectionError: FRAME_SIZE_ERROR if the payload is not 4 bytes.
    """
    if len(payload) != 4:
        raise Http2ConnectionError("WINDOW_UPDATE length is not 4",
                                   ErrorCode.FRAME_SIZE_ERROR)
    return int(_UINT32.unpack(payload)[0]) & MAX_WINDOW


def parse_uint32(payload: bytes) -> int:
    """The 32-bit value of a RST_STREAM payload (its error code)."""
    return int(_UINT32.unpack(payload)[0])


def data_frame(stream_id: int, data: bytes, end_stream: bool = False,
               pad_length: int | None = None) -> bytes:
    """One DATA frame; the caller keeps ``data`` within the peer's SETTINGS_MAX_FRAME_SIZE."""
    flags = END_STREAM if end_stream else 0
    if pad_length is None:
        return frame_header(len(data), TYPE_DATA, flags, stream_id) + data
    payload = bytes((pad_length,)) + data + bytes(pad_length)
    return frame_header(len(payload), TYPE_DATA, flags | PADDED, stream_id) + payload


def headers_frames(stream_id: int, block: bytes, end_stream: bool, max_frame_size: int,
                   priority: tuple[bool, int, int] | None = None) -> bytes:
    """A HEADERS frame carrying ``block``, followed by CONTINUATION frames if it does not
    fit one frame of ``max_frame_size``."""
    flags = END_STREAM if end_stream else 0
    if priority is None and len(block) <= max_frame_size:       # the usual case
        return pack_frame_header(len(block) << 8 | TYPE_HEADERS, flags | END_HEADERS,
                                 stream_id) + block
    prefix = b""
    if priority is not None:
        exclusive, depends_on, weight = priority
        prefix = _PRIORITY.pack(depends_on | (exclusive << 31), weight - 1)
        flags |= PRIORITY
    first_room = max_frame_size - len(prefix)
    if len(block) <= first_room:
        payload = prefix + block
        return frame_header(len(payload), TYPE_HEADERS, flags | END_HEADERS,
                            stream_id) + payload
    parts = [frame_header(max_frame_size, TYPE_HEADERS, flags, stream_id), prefix,
             block[:first_room]]
    for start in range(first_room, len(block), max_frame_size):
        chunk = block[start:start + max_frame_size]
        is_last = start + max_frame_size >= len(block)
        parts.append(continuation_frame(stream_id, chunk, is_last))
    return b"".join(parts)


def continuation_frame(stream_id: int, fragment: bytes, end_headers: bool) -> bytes:
    return frame_header(len(fragment), TYPE_CONTINUATION,
                        END_HEADERS if end_headers else 0, stream_id) + fragment


def priority_frame(stream_id: int, depends_on: int, weight: int,
                   exclusive: bool = False) -> bytes:
    return frame_header(5, TYPE_PRIORITY, 0, stream_id) + _PRIORITY.pack(
        depends_on | (exclusive << 31), weight - 1)


def rst_stream_frame(stream_id: int, code: int) -> bytes:
    return frame_header(4, TYPE_RST_STREAM, 0, stream_id) + _UINT32.pack(code)


def settings_frame(settings: dict[int, int] | list[tuple[int, int]],
                   ack: bool = False) -> bytes:
    items = settings.items() if isinstance(settings, dict) else settings
    payload = b"".join([_SETTING.pack(identifier, value) for identifier, value in items])
    return frame_header(len(payload), TYPE_SETTINGS, ACK if ack else 0, 0) + payload


def push_promise_frame(stream_id: int, promised_stream_id: int, block: bytes) -> bytes:
    """One PUSH_PROMISE frame (we never push; this is for tests and for completeness)."""
    payload = _UINT32.pack(promised_stream_id) + block
    return frame_header(len(payload), TYPE_PUSH_PROMISE, END_HEADERS,
                        stream_id) + payload


def ping_frame(opaque_data: bytes, ack: bool = False) -> bytes:
    return frame_header(8, TYPE_PING, ACK if ack else 0, 0) + opaque_data


def goaway_frame(last_stream_id: int, code: int, debug_data: bytes = b"") -> bytes:
    return frame_header(8 + len(debug_data), TYPE_GOAWAY, 0, 0) + _GOAWAY.pack(
        last_stream_id, code) + debug_data


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return frame_header(4, TYPE_WINDOW_UPDATE, 0, stream_id) + _UINT32.pack(increment)
