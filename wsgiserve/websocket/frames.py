"""RFC 6455 §5.2 frame headers, read and written, and payload masking (§5.3).

``parse_header`` reads one header from a buffer at an offset and checks what does not
depend on the connection (reserved opcodes, control frame size and fragmentation, the
64-bit length's top bit); ``encode_frame`` writes a whole frame. Close payloads (code and
reason, §5.5.1, §7.4) are read and written here too. Masking runs in C (an
integer XOR, or translation tables), never as a Python loop over bytes.
"""
from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final, NamedTuple

from wsgiserve.websocket.errors import InvalidPayload, LocalProtocolError, ProtocolViolation

__all__ = ["ABNORMAL_CLOSURE_CODE", "MAX_CLOSE_REASON_BYTES", "MAX_CONTROL_PAYLOAD_BYTES",
           "NO_STATUS_CODE", "FrameHeader", "Opcode", "apply_mask", "encode_close_payload",
           "encode_frame", "encode_header", "is_valid_close_code", "parse_close_payload",
           "parse_header"]


class Opcode(IntEnum):
    # RFC 6455 §5.2; 3-7 and 0xB-0xF are reserved.
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


# RFC 6455 §5.5: all control frames MUST have a payload length of 125 bytes or less.
MAX_CONTROL_PAYLOAD_BYTES: Final = 125
# A Close payload is a 2-byte code and a reason, 125 bytes in all (RFC 6455 §5.5.1).
MAX_CLOSE_REASON_BYTES: Final = MAX_CONTROL_PAYLOAD_BYTES - 2
# RFC 6455 §7.4.1: 1005 (no status) and 1006 (abnormal closure) are what an endpoint
# reports, never what it sends.
NO_STATUS_CODE: Final = 1005
ABNORMAL_CLOSURE_CODE: Final = 1006
RSV1: Final = 0x40          # in the first header byte; permessage-deflate's bit (RFC 7692)
_KNOWN_OPCODES: Final = frozenset(int(opcode) for opcode in Opcode)
_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")
# Masking: below this size one integer XOR is fastest; from it on, byte lanes through
# translation tables (_XOR_TABLES[k] maps each byte b to b ^ k), in pieces of at most
# _MASK_PIECE_BYTES so that big payloads stay in the CPU cache.
_LANES_MIN_BYTES: Final = 1024
_MASK_PIECE_BYTES: Final = 65536
_IDENTITY: Final = int.from_bytes(bytes(range(256)), "big")
_XOR_TABLES: Final = [(_IDENTITY ^ int.from_bytes(bytes((key,)) * 256, "big")).to_bytes(256, "big")
                      for key in range(256)]


class FrameHeader(NamedTuple):
    """One frame header. ``rsv`` holds the RSV1-3 bits in place (``RSV1`` is 0x40)."""

    fin: bool
    rsv: int
    opcode: int
    length: int
    mask: bytes | None
    size: int                # bytes the header takes on the wire

    @property
    def is_control(self) -> bool:
        return self.opcode >= 8


def parse_header(buffer: bytes | bytearray, pos: int) -> FrameHeader | None:
    """Read the frame header starting at ``buffer[pos]``.

    A peer need not use the shortest length encoding (RFC 6455 §5.2 says "minimal number
    of bytes" for senders; we accept longer ones, as most implementations do).

    Returns:
        The header, or None when the buffer does not hold all of it yet.
    Raises:
        ProtocolViolation: a reserved opcode, a control frame that is fragmented or over
            125 bytes, or a 64-bit length with its most significant bit set.
    """
    available = len(buffer) - pos
    if available < 2:
        return None
    first = buffer[pos]
    second = buffer[pos + 1]
    opcode = first & 0x0F
    length = second & 0x7F
    size = 2
    if length == 126:
        size = 4
        if available < 4:
            return None
        length = _U16.unpack_from(buffer, pos + 2)[0]
    elif length == 127:
        size = 10
        if available < 10:
            return None
        length = _U64.unpack_from(buffer, pos + 2)[0]
        if length >> 63:
            raise ProtocolViolation("the frame length has its most significant bit set")
    if opcode not in _KNOWN_OPCODES:
        raise ProtocolViolation(f"reserved opcode {opcode:#x}")
    fin = first >= 0x80
    if opcode >= 8:
        if not fin:
            raise ProtocolViolation("a fragmented control frame")
        if length > MAX_CONTROL_PAYLOAD_BYTES:
            raise ProtocolViolation(f"a control frame of {length} bytes (over 125)")
    mask = None
    if second & 0x80:
        if available < size + 4:
            return None
        mask = bytes(buffer[pos + size:pos + size + 4])
        size += 4
    return FrameHeader(fin, first & 0x70, opcode, length, mask, size)


def encode_header(opcode: int, length: int, *, fin: bool = True, rsv: int = 0,
                  mask: bytes | None = None) -> bytes:
    """Return the header of a frame with a payload of ``length`` bytes (shortest form)."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes((first, mask_bit | length))
    elif length < 65536:
        head = bytes((first, mask_bit | 126)) + _U16.pack(length)
    else:
        head = bytes((first, mask_bit | 127)) + _U64.pack(length)
    return head + mask if mask is not None else head


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
                 mask: bytes | None = None) -> bytes:
    """Return a whole frame; with ``mask`` (4 bytes) the payload is masked (client role)."""
    head = encode_header(opcode, len(payload), fin=fin, rsv=rsv, mask=mask)
    if mask is not None:
        payload = apply_mask(payload, mask)
    return head + payload


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may be sent in a Close frame (RFC 6455 §7.4).

    1000-1003 and 1007-1011 are RFC 6455's, 1012-1014 were registered with IANA since,
    3000-4999 belong to libraries and applications. 1004-1006, 1015 and the rest of
    1000-2999 are reserved or report-only; a peer sending them breaks the protocol.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Return a received Close frame's code (1005 if it has none) and reason.

    Raises:
        ProtocolViolation: a 1-byte payload, or a code that may not be sent.
        InvalidPayload: a reason that is not UTF-8.
    """
    if not payload:
        return NO_STATUS_CODE, ""
    if len(payload) == 1:
        raise ProtocolViolation("a Close payload of 1 byte")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise ProtocolViolation(f"invalid close code {code}")
    try:
        return code, payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload("a close reason that is not UTF-8") from None


def encode_close_payload(code: int | None, reason: str = "") -> bytes:
    """Return the payload of a Close frame we send; None sends no code (and no reason).

    Raises:
        LocalProtocolError: a code that may not be sent, or a reason that is not
            UTF-8-encodable or longer than 123 bytes.
    """
    if code is None:
        if reason:
            raise LocalProtocolError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise LocalProtocolError(f"close code {code} may not be sent")
    try:
        encoded = reason.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"a close reason that cannot be UTF-8: {exc.reason}") from None
    if len(encoded) > MAX_CLOSE_REASON_BYTES:
        raise LocalProtocolError(f"a close reason of {len(encoded)} bytes (over 123)")
    return code.to_bytes(2, "big") + encoded


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes, offset: int = 0) -> bytes:
    """Return ``data`` XORed with the masking key (RFC 6455 §5.3); the same call unmasks.

    Small payloads are XORed as one integer; larger ones byte lane by byte lane, each lane
    (every 4th byte) through a 256-byte translation table: both run in C, and the lanes
    are ~2x faster from about 1 KiB on (benchmarks/bench_websocket_core.py).

    Args:
        data: the payload, or a piece of it.
        mask: the 4-byte masking key.
        offset: where ``data`` starts in the frame's payload (for pieces of a payload).
    """
    n = len(data)
    if n == 0:
        return b""
    shift = offset & 3
    if shift:
        mask = mask[shift:] + mask[:shift]
    if n < _LANES_MIN_BYTES:
        key = (mask * ((n >> 2) + 1))[:n]
        return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    tables = [_XOR_TABLES[byte] for byte in mask]
    if n <= _MASK_PIECE_BYTES:
        return bytes(_mask_lanes(bytearray(data), tables))
    view = memoryview(data)
    # The piece size is a multiple of 4: every piece starts in phase with the key.
    return b"".join([_mask_lanes(bytearray(view[start:start + _MASK_PIECE_BYTES]), tables)
                     for start in range(0, n, _MASK_PIECE_BYTES)])


def _mask_lanes(buffer: bytearray, tables: list[bytes]) -> bytearray:
    for lane in range(4):
        buffer[lane::4] = buffer[lane::4].translate(tables[lane])
    return buffer
