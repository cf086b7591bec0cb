"""Frames on raw bytes: RFC 6455 §5 rules for both roles, close codes, limits.

Each case is replayed whole, one byte at a time, and followed by extra bytes
(``ws_replay.check_replays``).
"""
from __future__ import annotations

import os

import pytest
from ws_replay import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    RSV1,
    RSV2,
    RSV3,
    TEXT,
    Err,
    Item,
    check_replays,
    close_payload,
    closed,
    frame,
    read_frames,
    sent,
    sent_close,
    server_frame,
    xor,
)

from wsgiserve.websocket import (
    NEED_DATA,
    BytesMessage,
    CloseReceived,
    ConnectionClosed,
    InvalidPayload,
    MessageTooBig,
    Ping,
    Pong,
    ProtocolViolation,
    Role,
    TextMessage,
    WebSocketConnection,
)
from wsgiserve.websocket.frames import FrameHeader, apply_mask, encode_header, parse_header

BAD = Err(ProtocolViolation)
BAD_UTF8 = Err(InvalidPayload)
TOO_BIG = Err(MessageTooBig)
HELLO = frame(TEXT, b"Hello")
# RFC 3629 examples: a 2-, 3- and 4-byte sequence, and the UTF-8 of kosme from Autobahn 6.4.
KOSME = "κόσμε".encode()
MULTI = "é€😀".encode()


def server(max_message_bytes: int = 1 << 20, max_frame_bytes: int | None = None) -> WebSocketConnection:
    return WebSocketConnection(Role.SERVER, max_message_bytes=max_message_bytes,
                               max_frame_bytes=max_frame_bytes)


SERVER_CASES = [
    # --- data frames ---------------------------------------------------------------------
    pytest.param(HELLO, [TextMessage("Hello"), NEED_DATA], id="text"),
    pytest.param(frame(BINARY, b"\x00\xff\x80"), [BytesMessage(b"\x00\xff\x80"), NEED_DATA],
                 id="binary"),
    pytest.param(frame(TEXT), [TextMessage(""), NEED_DATA], id="empty-text"),
    pytest.param(frame(BINARY), [BytesMessage(b""), NEED_DATA], id="empty-binary"),
    pytest.param(frame(TEXT, KOSME + MULTI), [TextMessage("κόσμε" + "é€😀"), NEED_DATA],
                 id="text-multibyte"),
    pytest.param(frame(BINARY, b"a" * 126), [BytesMessage(b"a" * 126), NEED_DATA],
                 id="16-bit-length"),
    pytest.param(frame(BINARY, b"b" * 65536), [BytesMessage(b"b" * 65536), NEED_DATA],
                 id="64-bit-length"),
    pytest.param(frame(TEXT, b"Hello", length_form=2) + frame(TEXT, b"Hi", length_form=8),
                 [TextMessage("Hello"), TextMessage("Hi"), NEED_DATA],
                 id="non-minimal-lengths-accepted"),
    pytest.param(HELLO * 3, [TextMessage("Hello")] * 3 + [NEED_DATA], id="three-messages"),
    # --- fragmentation (RFC 6455 §5.4) ----------------------------------------------------
    pytest.param(frame(TEXT, b"Hel", fin=False) + frame(CONT, b"l", fin=False) + frame(CONT, b"o"),
                 [TextMessage("Hello"), NEED_DATA], id="fragmented-text"),
    pytest.param(frame(BINARY, b"", fin=False) + frame(CONT, b""),
                 [BytesMessage(b""), NEED_DATA], id="fragmented-empty"),
    pytest.param(frame(TEXT, MULTI[:1], fin=False) + frame(CONT, MULTI[1:4], fin=False)
                 + frame(CONT, MULTI[4:]), [TextMessage("é€😀"), NEED_DATA],
                 id="utf8-sequence-split-across-fragments"),
    pytest.param(frame(TEXT, b"Hel", fin=False) + frame(PING, b"p") + frame(CONT, b"lo"),
                 [Ping(b"p"), TextMessage("Hello"), NEED_DATA, sent((PONG, b"p"))],
                 id="ping-inside-fragmented-message"),
    pytest.param(frame(TEXT, b"Hel", fin=False),
                 [NEED_DATA], id="unfinished-message-waits"),
    pytest.param(frame(CONT, b"lo"), [BAD, sent(sent_close(1002))],
                 id="continuation-without-message"),
    pytest.param(frame(TEXT, b"Hel", fin=False) + frame(TEXT, b"lo"),
                 [BAD, sent(sent_close(1002))], id="new-message-inside-fragmented"),
    pytest.param(frame(BINARY, b"a", fin=False) + frame(CONT, b"b") + frame(CONT, b"c"),
                 [BytesMessage(b"ab"), BAD, sent(sent_close(1002))],
                 id="continuation-after-finished-message"),
    # --- control frames (RFC 6455 §5.5) -----------------------------------------------------
    pytest.param(frame(PING, b"payload"), [Ping(b"payload"), NEED_DATA, sent((PONG, b"payload"))],
                 id="ping-answered"),
    pytest.param(frame(PING), [Ping(b""), NEED_DATA, sent((PONG, b""))], id="empty-ping"),
    pytest.param(frame(PING, b"x" * 125), [Ping(b"x" * 125), NEED_DATA, sent((PONG, b"x" * 125))],
                 id="ping-of-125-bytes"),
    pytest.param(frame(PONG, b"unsolicited"), [Pong(b"unsolicited"), NEED_DATA], id="pong"),
    pytest.param(frame(PING, b"x" * 126), [BAD, sent(sent_close(1002))], id="ping-of-126-bytes"),
    pytest.param(frame(PING, b"p", fin=False), [BAD, sent(sent_close(1002))],
                 id="fragmented-ping"),
    pytest.param(frame(CLOSE, close_payload(1000, b"bye")),
                 [CloseReceived(1000, "bye"), NEED_DATA, sent(sent_close(1000))], id="close"),
    pytest.param(frame(CLOSE), [CloseReceived(1005), NEED_DATA, sent(sent_close(None))],
                 id="close-without-code-answered-without-code"),
    pytest.param(frame(CLOSE, close_payload(1000)) + HELLO,
                 [CloseReceived(1000), NEED_DATA, sent(sent_close(1000))],
                 id="data-after-close-dropped"),
    pytest.param(frame(CLOSE, close_payload(1000, "κόσμε".encode())),
                 [CloseReceived(1000, "κόσμε"), NEED_DATA, sent(sent_close(1000))],
                 id="close-reason-utf8"),
    pytest.param(frame(CLOSE, b"\x03"), [BAD, sent(sent_close(1002))], id="close-of-1-byte"),
    pytest.param(frame(CLOSE, close_payload(1000, b"r" * 124)), [BAD, sent(sent_close(1002))],
                 id="close-reason-of-124-bytes"),
    pytest.param(frame(CLOSE, close_payload(1000)) + frame(PING, b"p") + frame(CLOSE),
                 [CloseReceived(1000), NEED_DATA, sent(sent_close(1000))],
                 id="ping-and-close-after-close-dropped"),
    pytest.param(frame(TEXT, b"frag", fin=False) + frame(CLOSE, close_payload(1000))
                 + frame(CONT, b"ment"), [CloseReceived(1000), NEED_DATA, sent(sent_close(1000))],
                 id="close-inside-fragmented-message"),
    pytest.param(frame(CLOSE, close_payload(1000, b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80")),
                 [BAD_UTF8, sent(sent_close(1007))], id="close-reason-not-utf8"),
    pytest.param(frame(CLOSE, close_payload(1000, b"r" * 123)),
                 [CloseReceived(1000, "r" * 123), NEED_DATA, sent(sent_close(1000))],
                 id="close-reason-of-123-bytes"),
    # --- reserved bits and opcodes (RFC 6455 §5.2) -----------------------------------------
    *[pytest.param(frame(TEXT, b"Hello", rsv=rsv), [BAD, sent(sent_close(1002))],
                   id=f"rsv-{rsv:#x}-without-extension") for rsv in (RSV1, RSV2, RSV3)],
    pytest.param(frame(PING, b"", rsv=RSV1), [BAD, sent(sent_close(1002))], id="rsv1-on-ping"),
    *[pytest.param(frame(opcode, b"x"), [BAD, sent(sent_close(1002))],
                   id=f"reserved-opcode-{opcode:#x}") for opcode in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)],
    pytest.param(HELLO + frame(5, b""), [TextMessage("Hello"), BAD, sent(sent_close(1002))],
                 id="reserved-opcode-after-a-message"),
    pytest.param(bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + b"\x00" * 4,
                 [BAD, sent(sent_close(1002))], id="64-bit-length-top-bit"),
    # --- masking (RFC 6455 §5.1) --------------------------------------------------------
    pytest.param(server_frame(TEXT, b"Hello"), [BAD, sent(sent_close(1002))],
                 id="unmasked-client-frame"),
    # --- UTF-8 (RFC 6455 §8.1) ------------------------------------------------------------
    pytest.param(frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
                 [BAD_UTF8, sent(sent_close(1007))], id="surrogate-in-text"),
    pytest.param(frame(TEXT, b"\xff"), [BAD_UTF8, sent(sent_close(1007))], id="invalid-byte"),
    pytest.param(frame(TEXT, MULTI[:-1]), [BAD_UTF8, sent(sent_close(1007))],
                 id="truncated-sequence-at-end"),
    pytest.param(frame(TEXT, MULTI[:-1], fin=False) + frame(CONT, b""),
                 [BAD_UTF8, sent(sent_close(1007))], id="truncated-sequence-at-end-of-fragments"),
    # Autobahn 6.4.2: the byte making the payload invalid fails the connection at once,
    # though the message (and here its frame) has not ended.
    pytest.param(frame(TEXT, KOSME + b"\xf4", fin=False) + frame(CONT, b"\x90", fin=False),
                 [BAD_UTF8, sent(sent_close(1007))], id="fail-fast-in-middle-fragment"),
    pytest.param(frame(TEXT, KOSME + b"\xf4\x90\x80\x80" + b"edited")[:2 + 4 + 11 + 2],
                 [BAD_UTF8, sent(sent_close(1007))], id="fail-fast-inside-one-frame"),
    pytest.param(frame(BINARY, b"\xff\xfe"), [BytesMessage(b"\xff\xfe"), NEED_DATA],
                 id="binary-not-checked"),
    # --- the transport closing (RFC 6455 §7.1.5) ---------------------------------------------
    pytest.param(closed(b""), [ConnectionClosed(1006)], id="closed-before-anything"),
    pytest.param(closed(HELLO[:4]), [ConnectionClosed(1006)], id="closed-inside-a-header"),
    pytest.param(closed(HELLO[:-1]), [ConnectionClosed(1006)], id="closed-inside-a-payload"),
    pytest.param(closed(frame(TEXT, b"a", fin=False)), [ConnectionClosed(1006)],
                 id="closed-inside-a-fragmented-message"),
    pytest.param(closed(HELLO + frame(CLOSE, close_payload(1001, b"away"))),
                 [TextMessage("Hello"), CloseReceived(1001, "away"), ConnectionClosed(1001, "away"),
                  sent(sent_close(1001))], id="closed-after-the-close-handshake"),
]

VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                     3000, 3999, 4000, 4999]
INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
CLOSE_CODE_CASES = [
    *[pytest.param(frame(CLOSE, close_payload(code)),
                   [CloseReceived(code), NEED_DATA, sent(sent_close(code))], id=f"close-{code}-echoed")
      for code in VALID_CLOSE_CODES],
    *[pytest.param(frame(CLOSE, close_payload(code)), [BAD, sent(sent_close(1002))],
                   id=f"close-{code}-refused") for code in INVALID_CLOSE_CODES],
]

LIMIT_CASES = [
    pytest.param(frame(BINARY, b"a" * 100), [BytesMessage(b"a" * 100), NEED_DATA],
                 id="message-at-limit"),
    pytest.param(frame(BINARY, b"a" * 101), [TOO_BIG, sent(sent_close(1009))],
                 id="message-over-limit"),
    pytest.param(frame(TEXT, b"a" * 60, fin=False) + frame(CONT, b"a" * 40),
                 [TextMessage("a" * 100), NEED_DATA], id="fragments-at-limit"),
    pytest.param(frame(TEXT, b"a" * 60, fin=False) + frame(CONT, b"a" * 41),
                 [TOO_BIG, sent(sent_close(1009))], id="fragments-over-limit"),
    # The header alone is enough: the payload is never waited for.
    pytest.param(frame(BINARY, b"a" * 70000)[:14], [TOO_BIG, sent(sent_close(1009))],
                 id="refused-on-the-header"),
    pytest.param(frame(PING, b"p" * 125), [Ping(b"p" * 125), NEED_DATA, sent((PONG, b"p" * 125))],
                 id="control-frames-not-counted"),
]


@pytest.mark.parametrize("raw, expected", SERVER_CASES + CLOSE_CODE_CASES)
def test_server_role(raw: bytes, expected: list[Item]) -> None:
    check_replays(server, raw, expected)


@pytest.mark.parametrize("raw, expected", LIMIT_CASES)
def test_message_limit(raw: bytes, expected: list[Item]) -> None:
    check_replays(lambda: server(max_message_bytes=100), raw, expected)


@pytest.mark.parametrize("raw, expected", [
    pytest.param(frame(BINARY, b"a" * 50), [BytesMessage(b"a" * 50), NEED_DATA], id="at-limit"),
    pytest.param(frame(BINARY, b"a" * 51), [TOO_BIG, sent(sent_close(1009))], id="over-limit"),
    pytest.param(frame(BINARY, b"a" * 50, fin=False) + frame(CONT, b"a" * 50),
                 [BytesMessage(b"a" * 100), NEED_DATA], id="fragments-each-at-limit"),
])
def test_frame_limit(raw: bytes, expected: list[Item]) -> None:
    check_replays(lambda: server(max_message_bytes=100, max_frame_bytes=50), raw, expected)


CLIENT_CASES = [
    pytest.param(server_frame(TEXT, b"Hello"), [TextMessage("Hello"), NEED_DATA], id="text"),
    pytest.param(server_frame(BINARY, b"x" * 70000), [BytesMessage(b"x" * 70000), NEED_DATA],
                 id="binary-64-bit-length"),
    pytest.param(server_frame(TEXT, b"He", fin=False) + server_frame(CONT, b"llo"),
                 [TextMessage("Hello"), NEED_DATA], id="fragmented"),
    pytest.param(frame(TEXT, b"Hello"), [BAD, sent(sent_close(1002))], id="masked-server-frame"),
    pytest.param(server_frame(PING, b"p"), [Ping(b"p"), NEED_DATA, sent((PONG, b"p"))], id="ping"),
    pytest.param(server_frame(CLOSE, close_payload(1000)),
                 [CloseReceived(1000), NEED_DATA, sent(sent_close(1000))], id="close"),
    pytest.param(server_frame(TEXT, b"\xc0\xaf"), [BAD_UTF8, sent(sent_close(1007))],
                 id="overlong-utf8"),
    pytest.param(closed(server_frame(CLOSE, close_payload(1000))),
                 [CloseReceived(1000), ConnectionClosed(1000), sent(sent_close(1000))],
                 id="close-then-eof"),
]


@pytest.mark.parametrize("raw, expected", CLIENT_CASES)
def test_client_role(raw: bytes, expected: list[Item]) -> None:
    check_replays(lambda: WebSocketConnection(Role.CLIENT), raw, expected)


def test_client_role_replies_are_masked_with_fresh_keys() -> None:
    client = WebSocketConnection(Role.CLIENT)
    client.receive_data(server_frame(PING, b"abc") + server_frame(PING, b"abc"))
    assert list(client.events()) == [Ping(b"abc"), Ping(b"abc")]
    wire = client.data_to_send()
    # Both Pongs: masked (bit 0x80 of the second byte) with their own 4-byte keys.
    assert wire[0] == wire[9] == 0x80 | PONG and wire[1] == wire[10] == 0x80 | 3
    assert wire[2:6] != wire[11:15]     # equal keys: a 2**-32 chance
    assert [payload for _, _, _, payload in read_frames(wire)] == [b"abc", b"abc"]
    client.receive_data(server_frame(CLOSE, close_payload(1000)))
    assert list(client.events()) == [CloseReceived(1000)]
    assert read_frames(client.data_to_send()) == [(CLOSE, True, 0, close_payload(1000))]


# --- frames.py on its own -------------------------------------------------------------------
@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 125, 126, 127, 65535, 65536, 70001])
@pytest.mark.parametrize("mask", [None, b"\x01\x02\x03\x04"])
def test_header_round_trip(length: int, mask: bytes | None) -> None:
    head = encode_header(BINARY, length, fin=False, rsv=RSV1, mask=mask)
    assert parse_header(head, 0) == FrameHeader(False, RSV1, BINARY, length, mask, len(head))
    assert parse_header(b"junk" + head, 4) == FrameHeader(False, RSV1, BINARY, length, mask, len(head))
    for cut in range(len(head)):
        assert parse_header(head[:cut], 0) is None
    # The shortest length encoding is the one written (RFC 6455 §5.2).
    assert len(head) == 2 + (0 if length < 126 else 2 if length < 65536 else 8) + (4 if mask else 0)


# Around the integer/lanes threshold (1024) and the piece size (65536).
@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 5, 7, 99, 1023, 1024, 1025, 4096, 65535,
                                    65536, 65537, 2 * 65536 + 3])
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 6])
def test_apply_mask_matches_a_byte_loop(length: int, offset: int) -> None:
    data = os.urandom(length)
    mask = os.urandom(4)
    rotated = mask[offset % 4:] + mask[:offset % 4]
    assert apply_mask(data, mask, offset) == xor(data, rotated)
    assert apply_mask(bytearray(data), mask, offset) == xor(data, rotated)
    assert apply_mask(apply_mask(data, mask, offset), mask, offset) == data


def test_apply_mask_of_pieces_equals_the_whole() -> None:
    data = os.urandom(200_000)
    mask = os.urandom(4)
    cuts = [0, 1, 2, 7, 100, 333, 999, 2047, 70_001, 199_999, 200_000]
    pieces = b"".join(apply_mask(data[a:b], mask, a) for a, b in zip(cuts, cuts[1:]))
    assert pieces == apply_mask(data, mask) == xor(data, mask)


def test_big_message_in_many_small_fragments() -> None:
    # Autobahn 9.3.x: a long text message cut into 64-byte fragments.
    text = ("0123456789abcdef" * 4) * 16384            # 1 MiB
    wire = b"".join(frame(TEXT if i == 0 else CONT, text[i:i + 64].encode(),
                          fin=i + 64 >= len(text)) for i in range(0, len(text), 64))
    connection = server(max_message_bytes=1 << 20)
    for start in range(0, len(wire), 65536):
        connection.receive_data(wire[start:start + 65536])
        if start + 65536 < len(wire):
            assert connection.next_event() is NEED_DATA
    assert connection.next_event() == TextMessage(text)
