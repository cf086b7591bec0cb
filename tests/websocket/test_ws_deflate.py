"""permessage-deflate (RFC 7692): negotiation for both roles, RFC vectors, the codec in a
connection, and the decompression cap (a bomb is refused with 1009 in bounded memory)."""
from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Sequence

import pytest
from ws_replay import (
    BINARY,
    CONT,
    PING,
    RSV1,
    RSV2,
    TEXT,
    Err,
    Item,
    check_replays,
    frame,
    read_frames,
    sent,
    sent_close,
    server_frame,
)

from wsgiserve.websocket import (
    NEED_DATA,
    BytesMessage,
    DeflateOptions,
    DeflateParameters,
    InvalidHandshakeResponse,
    InvalidPayload,
    MessageTooBig,
    ProtocolViolation,
    Role,
    TextMessage,
    WebSocketConnection,
)
from wsgiserve.websocket.deflate import accept_response, negotiate_offers, offer_header

TAIL = b"\x00\x00\xff\xff"
DEFLATE = DeflateParameters()
BAD = Err(ProtocolViolation)


def deflated(*messages: bytes, wbits: int = 15) -> list[bytes]:
    """Each message compressed by plain zlib with context takeover, tail removed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    out = []
    for message in messages:
        data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(TAIL)
        out.append(data[:-4])
    return out


def fragmented(payload: bytes, size: int, opcode: int = BINARY) -> bytes:
    """A compressed message cut into frames of ``size`` bytes (client frames)."""
    pieces = [payload[i:i + size] for i in range(0, len(payload), size)]
    return b"".join(frame(opcode if i == 0 else CONT, piece, rsv=RSV1 if i == 0 else 0,
                          fin=i == len(pieces) - 1) for i, piece in enumerate(pieces))


def deflating_server(params: DeflateParameters = DEFLATE, max_message_bytes: int = 1 << 20
                     ) -> WebSocketConnection:
    return WebSocketConnection(Role.SERVER, deflate=params, max_message_bytes=max_message_bytes)


# --- negotiation ----------------------------------------------------------------------------
P = Sequence[tuple[str, str | None]]
NO_VALUE = None

SERVER_NEGOTIATION = [
    pytest.param([[]], DeflateOptions(), DeflateParameters(), id="plain-offer"),
    pytest.param([[("client_max_window_bits", NO_VALUE)]], DeflateOptions(), DeflateParameters(),
                 id="client-window-offered-not-wanted"),
    pytest.param([[("client_max_window_bits", NO_VALUE)]], DeflateOptions(client_max_window_bits=10),
                 DeflateParameters(client_max_window_bits=10), id="client-window-asked"),
    pytest.param([[("client_max_window_bits", "9")]], DeflateOptions(client_max_window_bits=12),
                 DeflateParameters(client_max_window_bits=9), id="client-window-at-most-offer"),
    pytest.param([[]], DeflateOptions(client_max_window_bits=10), DeflateParameters(),
                 id="client-window-not-offered-not-answered"),
    pytest.param([[("server_max_window_bits", "10")]], DeflateOptions(),
                 DeflateParameters(server_max_window_bits=10), id="server-window-requested"),
    pytest.param([[("server_max_window_bits", "12")]], DeflateOptions(server_max_window_bits=10),
                 DeflateParameters(server_max_window_bits=10), id="server-window-ours-smaller"),
    pytest.param([[]], DeflateOptions(server_max_window_bits=11),
                 DeflateParameters(server_max_window_bits=11), id="server-window-unrequested"),
    pytest.param([[("server_no_context_takeover", NO_VALUE)]], DeflateOptions(),
                 DeflateParameters(server_no_context_takeover=True), id="server-no-context-asked"),
    pytest.param([[("client_no_context_takeover", NO_VALUE)]], DeflateOptions(),
                 DeflateParameters(client_no_context_takeover=True), id="client-no-context-echoed"),
    pytest.param([[]], DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True),
                 DeflateParameters(server_no_context_takeover=True, client_no_context_takeover=True),
                 id="no-context-imposed"),
    # RFC 7692 §7.1: an offer that is invalid or that we cannot honour is declined, and the
    # next one considered.
    pytest.param([[("server_max_window_bits", "8")], []], DeflateOptions(), DeflateParameters(),
                 id="8-bit-server-window-declined"),
    pytest.param([[("server_max_window_bits", "8")]], DeflateOptions(), None,
                 id="only-offer-declined"),
    pytest.param([[("bogus", NO_VALUE)], [("server_max_window_bits", "9")]], DeflateOptions(),
                 DeflateParameters(server_max_window_bits=9), id="unknown-parameter-declined"),
    pytest.param([[("server_no_context_takeover", NO_VALUE)] * 2, []], DeflateOptions(),
                 DeflateParameters(), id="repeated-parameter-declined"),
    pytest.param([[("server_no_context_takeover", "1")]], DeflateOptions(), None,
                 id="flag-with-value-declined"),
    pytest.param([[("server_max_window_bits", NO_VALUE)]], DeflateOptions(), None,
                 id="server-window-without-value-declined"),
    *[pytest.param([[("client_max_window_bits", value)]], DeflateOptions(), None,
                   id=f"client-window-{value}-declined") for value in ("7", "16", "09", "x", "")],
    # Autobahn 13.7: three offers, the first acceptable is taken.
    pytest.param([[("server_no_context_takeover", NO_VALUE), ("client_no_context_takeover", NO_VALUE),
                   ("server_max_window_bits", "9"), ("client_max_window_bits", NO_VALUE)],
                  [("client_no_context_takeover", NO_VALUE)], []], DeflateOptions(),
                 DeflateParameters(server_no_context_takeover=True, client_no_context_takeover=True,
                                   server_max_window_bits=9), id="autobahn-13.7-offers"),
    pytest.param([], DeflateOptions(), None, id="no-offer"),
]


@pytest.mark.parametrize("offers, options, expected", SERVER_NEGOTIATION)
def test_server_negotiation(offers: list[P], options: DeflateOptions,
                            expected: DeflateParameters | None) -> None:
    assert negotiate_offers(offers, options) == expected


CLIENT_NEGOTIATION = [
    pytest.param(DeflateOptions(), [], DeflateParameters(), id="plain"),
    pytest.param(DeflateOptions(), [("server_no_context_takeover", None)],
                 DeflateParameters(server_no_context_takeover=True), id="server-chose-no-context"),
    pytest.param(DeflateOptions(), [("client_no_context_takeover", None)],
                 DeflateParameters(client_no_context_takeover=True), id="server-imposed-no-context"),
    pytest.param(DeflateOptions(client_no_context_takeover=True), [],
                 DeflateParameters(client_no_context_takeover=True), id="our-hint-binds-us"),
    pytest.param(DeflateOptions(), [("server_max_window_bits", "8")],
                 DeflateParameters(server_max_window_bits=8), id="server-8-bit-window-accepted"),
    pytest.param(DeflateOptions(), [("client_max_window_bits", "9")],
                 DeflateParameters(client_max_window_bits=9), id="client-window-limited"),
    pytest.param(DeflateOptions(client_max_window_bits=12), [],
                 DeflateParameters(client_max_window_bits=12), id="client-window-our-limit"),
    pytest.param(DeflateOptions(server_max_window_bits=10), [("server_max_window_bits", "10")],
                 DeflateParameters(server_max_window_bits=10), id="server-window-granted"),
    pytest.param(DeflateOptions(server_max_window_bits=10), [("server_max_window_bits", "9")],
                 DeflateParameters(server_max_window_bits=9), id="server-window-smaller"),
    pytest.param(DeflateOptions(server_max_window_bits=10), [], None,
                 id="server-window-requested-not-granted"),
    pytest.param(DeflateOptions(server_max_window_bits=10), [("server_max_window_bits", "11")], None,
                 id="server-window-larger-than-asked"),
    pytest.param(DeflateOptions(server_no_context_takeover=True), [], None,
                 id="server-no-context-requested-not-granted"),
    pytest.param(DeflateOptions(), [("client_max_window_bits", "8")], None,
                 id="client-8-bit-window-refused"),
    pytest.param(DeflateOptions(client_max_window_bits=10), [("client_max_window_bits", "11")], None,
                 id="client-window-larger-than-offered"),
    pytest.param(DeflateOptions(), [("client_max_window_bits", None)], None,
                 id="client-window-without-value"),
    pytest.param(DeflateOptions(), [("x", None)], None, id="unknown-parameter"),
    pytest.param(DeflateOptions(), [("server_no_context_takeover", None)] * 2, None,
                 id="repeated-parameter"),
]


@pytest.mark.parametrize("options, response, expected", CLIENT_NEGOTIATION)
def test_client_negotiation(options: DeflateOptions, response: P,
                            expected: DeflateParameters | None) -> None:
    if expected is None:
        with pytest.raises(InvalidHandshakeResponse):
            accept_response(response, options)
    else:
        assert accept_response(response, options) == expected


@pytest.mark.parametrize("options, header", [
    (DeflateOptions(), b"permessage-deflate; client_max_window_bits"),
    (DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True,
                    server_max_window_bits=10, client_max_window_bits=9),
     b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     b"server_max_window_bits=10; client_max_window_bits=9"),
])
def test_offer_header(options: DeflateOptions, header: bytes) -> None:
    assert offer_header(options) == header


@pytest.mark.parametrize("bad", [
    {"server_max_window_bits": 8}, {"client_max_window_bits": 16}, {"compression_level": 10},
    {"memory_level": 0},
])
def test_options_are_checked(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DeflateOptions(**bad)  # type: ignore[arg-type]


# --- RFC 7692 §7.2.3 examples through a connection --------------------------------------------
HELLO = bytes.fromhex("f248cdc9c90700")
RFC_CASES = [
    pytest.param(frame(TEXT, HELLO, rsv=RSV1), [TextMessage("Hello"), NEED_DATA],
                 id="7.2.3.1-one-block"),
    pytest.param(frame(TEXT, HELLO[:3], rsv=RSV1, fin=False) + frame(CONT, HELLO[3:]),
                 [TextMessage("Hello"), NEED_DATA], id="7.2.3.1-fragmented"),
    pytest.param(frame(TEXT, HELLO, rsv=RSV1) + frame(TEXT, bytes.fromhex("f200110000"), rsv=RSV1),
                 [TextMessage("Hello"), TextMessage("Hello"), NEED_DATA], id="7.2.3.2-shared-window"),
    pytest.param(frame(TEXT, bytes.fromhex("000500faff48656c6c6f00"), rsv=RSV1),
                 [TextMessage("Hello"), NEED_DATA], id="7.2.3.3-stored-block"),
    pytest.param(frame(TEXT, bytes.fromhex("f348cdc9c9070000"), rsv=RSV1) + frame(TEXT, HELLO, rsv=RSV1),
                 [TextMessage("Hello"), TextMessage("Hello"), NEED_DATA], id="7.2.3.4-bfinal"),
    pytest.param(frame(TEXT, bytes.fromhex("f24805000000ffffcac9c90700"), rsv=RSV1),
                 [TextMessage("Hello"), NEED_DATA], id="7.2.3.5-two-blocks"),
    pytest.param(frame(BINARY, b"\x00", rsv=RSV1), [BytesMessage(b""), NEED_DATA],
                 id="7.2.3.6-empty-message"),
    pytest.param(frame(TEXT, b"Hello") + frame(TEXT, HELLO, rsv=RSV1),
                 [TextMessage("Hello"), TextMessage("Hello"), NEED_DATA],
                 id="uncompressed-message-too"),
    # --- errors ------------------------------------------------------------------------------
    pytest.param(frame(TEXT, HELLO[:3], rsv=RSV1, fin=False) + frame(CONT, HELLO[3:], rsv=RSV1),
                 [BAD, sent(sent_close(1002))], id="rsv1-on-continuation"),
    pytest.param(frame(PING, b"", rsv=RSV1), [BAD, sent(sent_close(1002))], id="rsv1-on-control"),
    pytest.param(frame(TEXT, HELLO, rsv=RSV1 | RSV2), [BAD, sent(sent_close(1002))],
                 id="rsv2-with-deflate"),
    pytest.param(frame(TEXT, b"\xff\xff\xff\xff", rsv=RSV1), [BAD, sent(sent_close(1002))],
                 id="invalid-deflate-data"),
    pytest.param(frame(TEXT, deflated(b"\xce\xba\xff" + b"x" * 100)[0], rsv=RSV1),
                 [Err(InvalidPayload), sent(sent_close(1007))], id="compressed-text-not-utf8"),
    # Fail fast on compressed text too: the first fragment's bad byte fails the message.
    pytest.param(frame(TEXT, deflated(b"ok \xc0 and more")[0], rsv=RSV1, fin=False),
                 [Err(InvalidPayload), sent(sent_close(1007))], id="compressed-fail-fast"),
]


@pytest.mark.parametrize("raw, expected", RFC_CASES)
def test_compressed_frames(raw: bytes, expected: list[Item]) -> None:
    check_replays(deflating_server, raw, expected)


def test_rsv1_refused_when_deflate_was_not_agreed() -> None:
    check_replays(lambda: WebSocketConnection(Role.SERVER), frame(TEXT, HELLO, rsv=RSV1),
                  [BAD, sent(sent_close(1002))])


@pytest.mark.parametrize("raw, expected", [
    pytest.param(frame(BINARY, deflated(b"a" * 100)[0], rsv=RSV1),
                 [BytesMessage(b"a" * 100), NEED_DATA], id="inflates-to-limit"),
    pytest.param(frame(BINARY, deflated(b"a" * 101)[0], rsv=RSV1),
                 [Err(MessageTooBig), sent(sent_close(1009))], id="inflates-past-limit"),
    pytest.param(fragmented(deflated(b"a" * 50 + b"b" * 40 + b"c" * 11)[0], 3),
                 [Err(MessageTooBig), sent(sent_close(1009))], id="fragments-inflate-past-limit"),
    pytest.param(fragmented(deflated(b"a" * 50 + b"b" * 40 + b"c" * 10)[0], 3),
                 [BytesMessage(b"a" * 50 + b"b" * 40 + b"c" * 10), NEED_DATA],
                 id="fragments-inflate-to-limit"),
])
def test_decompressed_size_limit(raw: bytes, expected: list[Item]) -> None:
    check_replays(lambda: deflating_server(max_message_bytes=100), raw, expected)


def test_context_is_taken_over_unless_agreed_otherwise() -> None:
    message = b"the same message, twice " * 4
    for no_context, expect_shorter in ((False, True), (True, False)):
        params = DeflateParameters(server_no_context_takeover=no_context)
        server = deflating_server(params)
        server.send_bytes(message)
        server.send_bytes(message)
        first, second = [payload for _, _, _, payload in read_frames(server.data_to_send())]
        assert (len(second) < len(first)) is expect_shorter
        client = WebSocketConnection(Role.CLIENT, deflate=params)
        client.receive_data(server_frame(BINARY, first, rsv=RSV1) + server_frame(BINARY, second, rsv=RSV1))
        assert list(client.events()) == [BytesMessage(message)] * 2


@pytest.mark.parametrize("params", [
    DeflateParameters(),
    DeflateParameters(server_no_context_takeover=True, client_no_context_takeover=True),
    DeflateParameters(server_max_window_bits=9, client_max_window_bits=9),
    DeflateParameters(client_no_context_takeover=True, client_max_window_bits=12,
                      compression_level=1, memory_level=1),
])
@pytest.mark.parametrize("max_send_frame_bytes", [0, 7])
def test_round_trip_between_our_roles(params: DeflateParameters, max_send_frame_bytes: int) -> None:
    client = WebSocketConnection(Role.CLIENT, deflate=params, max_send_frame_bytes=max_send_frame_bytes)
    server = WebSocketConnection(Role.SERVER, deflate=params, max_send_frame_bytes=max_send_frame_bytes)
    messages = ["Hello", "", "é€😀" * 50, "Hello" * 300]
    for text in messages:
        client.send_text(text)
        client.send_bytes(text.encode(), compress=False)
    server.receive_data(client.data_to_send())
    received = list(server.events())
    assert received == [m for text in messages for m in (TextMessage(text), BytesMessage(text.encode()))]
    for event in received:
        assert isinstance(event, (TextMessage, BytesMessage))
        if isinstance(event, TextMessage):
            server.send_text(event.text)
    client.receive_data(server.data_to_send())
    assert list(client.events()) == [TextMessage(text) for text in messages]


# --- a deflate bomb ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bomb() -> bytes:
    """~100 KiB of raw deflate that inflates to 100 MiB of zeros (deflate's ratio is at most
    ~1:1030, so 100 MiB cannot come from less)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    data = b"".join([compressor.compress(zeros) for _ in range(100)]) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(data) < 110_000
    return data[:-4]


@pytest.mark.parametrize("fragment_bytes", [0, 1000])
def test_deflate_bomb_refused_in_bounded_memory(bomb: bytes, fragment_bytes: int) -> None:
    limit = 1 << 20
    raw = fragmented(bomb, fragment_bytes) if fragment_bytes else frame(BINARY, bomb, rsv=RSV1)
    server = deflating_server(max_message_bytes=limit)
    tracemalloc.start()
    try:
        server.receive_data(raw)
        with pytest.raises(MessageTooBig):
            list(server.events())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read_frames(server.data_to_send())[0][3][:2] == (1009).to_bytes(2, "big")
    # ~2x the limit (zlib's output blocks, then the bytes they are joined into): far from
    # the 100 MiB an uncapped inflate would take.
    assert peak < 3 * limit, peak


def test_8_bit_windows() -> None:
    # We never compress with 8 bits (zlib cannot): a connection is not even built so.
    with pytest.raises(ValueError):
        WebSocketConnection(Role.SERVER, deflate=DeflateParameters(server_max_window_bits=8))
    with pytest.raises(ValueError):
        WebSocketConnection(Role.CLIENT, deflate=DeflateParameters(client_max_window_bits=8))
    # But a client reads a server that said 8 (inflating with 9 bits also reads the 9-bit
    # streams that older zlibs wrote when asked for 8).
    server = WebSocketConnection(Role.SERVER, deflate=DeflateParameters(server_max_window_bits=9))
    client = WebSocketConnection(Role.CLIENT, deflate=DeflateParameters(server_max_window_bits=8))
    text = "".join(chr(0x41 + (i * 7919) % 50) for i in range(5000))
    server.send_text(text)
    client.receive_data(server.data_to_send())
    assert list(client.events()) == [TextMessage(text)]
