"""Replay raw bytes through a WebSocketConnection three ways and compare with the expected.

Shared by the table-driven WebSocket tests. A case is raw bytes and the list of what
``next_event`` must return: events, then ``NEED_DATA``, a ``ConnectionClosed`` or an
``Err`` (the error raised). A ``Sent(...)`` entry, if present, is last and gives the
frames the connection queued in reply (Pongs, Close echoes, the Close of a failure).

Frames are built and read here by a deliberately naive encoder and decoder (a byte loop
for masking), independent of ``wsgiserve.websocket.frames``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wsgiserve.websocket import (
    NEED_DATA,
    CloseReceived,
    ConnectionClosed,
    ProtocolViolation,
    WebSocketConnection,
)
from wsgiserve.websocket.events import Event, Sentinel

MASK = b"\x37\xfa\x21\x3d"
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10


def xor(data: bytes, mask: bytes) -> bytes:
    return bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
          mask: bytes | None = MASK, length_form: int | None = None) -> bytes:
    """A frame as a client sends it (masked); ``mask=None`` for a server's.

    ``length_form`` forces the length encoding: 0 (7-bit), 2 (16-bit) or 8 (64-bit).
    """
    n = len(payload)
    form = length_form if length_form is not None else (0 if n < 126 else 2 if n < 65536 else 8)
    mask_bit = 0x80 if mask is not None else 0
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    if form == 0:
        head += bytes([mask_bit | n])
    elif form == 2:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + xor(payload, mask)


def server_frame(opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    return frame(opcode, payload, mask=None, **kwargs)  # type: ignore[arg-type]


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def read_frames(data: bytes) -> list[tuple[int, bool, int, bytes]]:
    """Decode whole frames: (opcode, fin, rsv bits, unmasked payload)."""
    frames = []
    pos = 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        n = second & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos:pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos:pos + 8], "big")
            pos += 8
        mask = None
        if second & 0x80:
            mask = data[pos:pos + 4]
            pos += 4
        payload = data[pos:pos + n]
        assert len(payload) == n, "a truncated frame"
        pos += n
        frames.append((first & 0x0F, bool(first & 0x80), first & 0x70,
                       xor(payload, mask) if mask else payload))
    return frames


@dataclass(frozen=True)
class Err:
    """``next_event`` must raise exactly ``cls`` (whose ``close_code`` is the code sent)."""

    cls: type[ProtocolViolation]

    @property
    def code(self) -> int:
        return self.cls.close_code


@dataclass(frozen=True)
class Sent:
    """The frames queued by the connection, as (opcode, payload). A Close is matched on
    its 2-byte code only, unless the expected payload has a reason too."""

    frames: tuple[tuple[int, bytes], ...] = ()


def sent(*frames: tuple[int, bytes]) -> Sent:
    return Sent(tuple(frames))


def sent_close(code: int | None) -> tuple[int, bytes]:
    return (CLOSE, b"" if code is None else close_payload(code))


Item = Event | Sentinel | Err | Sent


class Closing(bytes):
    """Raw bytes after which the peer closes the transport (``receive_data(b"")``)."""


def closed(raw: bytes) -> Closing:
    return Closing(raw)


def drain(connection: WebSocketConnection) -> list[Item]:
    """Call next_event until NEED_DATA, ConnectionClosed or an error; record everything."""
    out: list[Item] = []
    for _ in range(100_000):
        try:
            event = connection.next_event()
        except ProtocolViolation as exc:
            out.append(Err(type(exc)))
            return out
        out.append(event)
        if event is NEED_DATA or isinstance(event, ConnectionClosed):
            return out
    raise AssertionError("the connection returned events forever")


def sent_frames(connection: WebSocketConnection) -> Sent:
    return Sent(tuple((opcode, payload) for opcode, _, _, payload
                      in read_frames(connection.data_to_send())))


def _sent_matches(got: Sent, want: Sent) -> bool:
    if len(got.frames) != len(want.frames):
        return False
    for (got_opcode, got_payload), (want_opcode, want_payload) in zip(got.frames, want.frames):
        if got_opcode != want_opcode:
            return False
        if want_opcode == CLOSE and len(want_payload) == 2:
            if got_payload[:2] != want_payload:
                return False
        elif got_payload != want_payload:
            return False
    return True


def _split_expected(expected: Sequence[Item]) -> tuple[list[Item], Sent]:
    items = list(expected)
    want_sent = Sent()
    if items and isinstance(items[-1], Sent):
        last = items.pop()
        assert isinstance(last, Sent)
        want_sent = last
    return items, want_sent


def replay_whole(make: Callable[[], WebSocketConnection], raw: bytes) -> tuple[list[Item], Sent]:
    connection = make()
    connection.receive_data(bytes(raw))
    if isinstance(raw, Closing):
        connection.receive_data(b"")
    return drain(connection), sent_frames(connection)


def replay_bytewise(make: Callable[[], WebSocketConnection],
                    raw: bytes) -> tuple[list[Item], Sent, int]:
    """Feed one byte at a time; return the events, what was sent, and how many bytes were
    fed when the last event (other than NEED_DATA) appeared."""
    connection = make()
    events: list[Item] = []
    last_at = 0
    data = bytes(raw)
    for i in range(len(data)):
        connection.receive_data(data[i:i + 1])
        got = drain(connection)
        if got[-1] is NEED_DATA:
            got.pop()
        if got:
            last_at = i + 1
        events.extend(got)
        if events and isinstance(events[-1], Err):
            return events, sent_frames(connection), last_at
    if isinstance(raw, Closing):
        connection.receive_data(b"")
    final = drain(connection)
    if len(final) > 1 or final[-1] is not NEED_DATA:
        last_at = len(data) + 1
    events.extend(final)
    return events, sent_frames(connection), last_at


# The start of another masked text frame: never consumed into an event of the case.
EXTRA = b"\x81\x85\x37\xfa"


def check_replays(make: Callable[[], WebSocketConnection], raw: bytes,
                  expected: Sequence[Item]) -> None:
    """Assert the three replays of ``raw`` give ``expected``."""
    want, want_sent = _split_expected(expected)
    assert want, "a case must expect something"

    got, got_sent = replay_whole(make, raw)
    assert got == want, f"whole:\n got  {got}\n want {want}"
    assert _sent_matches(got_sent, want_sent), f"whole: sent {got_sent}, want {want_sent}"

    got, got_sent, last_at = replay_bytewise(make, raw)
    if isinstance(want[-1], Err):
        # Invalid bytes may be noticed before the last one arrives: same error, and only
        # events the whole replay also returned before it.
        assert got[-1] == want[-1], f"bytewise: got {got}, want {want}"
        assert got[:-1] == want[:len(got) - 1], f"bytewise: {got}"
    else:
        assert got == want, f"bytewise:\n got  {got}\n want {want}"
        # The last byte is what completes the last event: nothing is returned early
        # (bytes after a Close are dropped unread, so they complete nothing).
        if len(want) > 1 and not any(isinstance(item, CloseReceived) for item in want):
            assert last_at >= len(raw), f"bytewise: last event after {last_at} of {len(raw)} bytes"
    assert _sent_matches(got_sent, want_sent), f"bytewise: sent {got_sent}, want {want_sent}"

    if isinstance(raw, Closing) or not (isinstance(want[-1], Err) or want[-1] is NEED_DATA):
        return
    connection = make()
    connection.receive_data(bytes(raw) + EXTRA)
    got = drain(connection)
    assert got == want, f"with extra bytes:\n got  {got}\n want {want}"
    assert _sent_matches(sent_frames(connection), want_sent), "with extra bytes: sent"
