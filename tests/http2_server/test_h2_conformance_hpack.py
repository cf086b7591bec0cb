"""RFC 7541 (HPACK) against a running server, h2spec style: header blocks written byte by
byte here (indexes, literals, integers, Huffman strings, table size updates) and the
server's answer on the wire. A block that cannot be decoded is a connection error
COMPRESSION_ERROR (RFC 9113 §4.3); the server's own blocks follow our
SETTINGS_HEADER_TABLE_SIZE.
"""
from __future__ import annotations

import json
import struct

import hpack
import pytest
from h2client import (
    COMPRESSION_ERROR,
    END_HEADERS,
    END_STREAM,
    HEADER_TABLE_SIZE,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_WINDOW,
    H2Connection,
    hpack_integer,
    literal,
)
from serving import Server

pytestmark = pytest.mark.timeout(60)

SERVER_ARGS = ("--threads", "4")

# Static table indexes (RFC 7541 Appendix A): :method GET 2, :scheme http 6, :path / 4.
GET = b"\x82\x86"
AUTHORITY = literal(b":authority", b"127.0.0.1")


def path(value: bytes) -> bytes:
    """:path as a literal without indexing with the static table's name (index 4)."""
    return b"\x04" + hpack_integer(len(value), 7) + value


def request_block(target: bytes = b"/echo", *fields: bytes) -> bytes:
    return GET + path(target) + AUTHORITY + b"".join(fields)


def send_block(conn: H2Connection, block: bytes, stream_id: int | None = None) -> int:
    stream_id = conn.next_stream_id if stream_id is None else stream_id
    conn.send_frame(HEADERS, END_STREAM | END_HEADERS, stream_id, block)
    return stream_id


def echoed_headers(conn: H2Connection, block: bytes) -> dict[str, str]:
    response = conn.response(send_block(conn, block))
    assert response.status == 200, response
    headers: dict[str, str] = json.loads(response.body)["headers"]
    return headers


# -- §2.3 / §6.1 indexes ----------------------------------------------------------------


@pytest.mark.parametrize("block", [
    pytest.param(b"\x80", id="index-0"),
    pytest.param(b"\xbe", id="index-62-with-an-empty-dynamic-table"),
    pytest.param(b"\xff\x80\x01", id="index-255"),
])
def test_2_3_3_indexed_field_out_of_range_is_compression_error(conn: H2Connection,
                                                              block: bytes) -> None:
    send_block(conn, GET + block)
    conn.expect_connection_error(COMPRESSION_ERROR)


def test_2_3_3_literal_with_an_indexed_name_out_of_range_is_compression_error(
        conn: H2Connection) -> None:
    send_block(conn, request_block(b"/echo", b"\x7e\x01x"))   # incremental, name index 62
    conn.expect_connection_error(COMPRESSION_ERROR)


# -- §2.3.2 / §3.2 / §4 the dynamic table -------------------------------------------------


def test_3_2_dynamic_table_entries_are_referred_to_by_later_blocks(conn: H2Connection) -> None:
    first = echoed_headers(conn, request_block(b"/echo", literal(b"x-one", b"1", first_byte=0x40)))
    assert first["HTTP_X_ONE"] == "1"
    # Index 62 is the newest entry: x-one: 1, now used in a second request by index.
    assert echoed_headers(conn, request_block(b"/echo", b"\xbe"))["HTTP_X_ONE"] == "1"


def test_4_4_entries_are_evicted_in_order(conn: H2Connection) -> None:
    # Table of 100 bytes: x-a (32 + 3 + 40 = 75) fits; adding x-b evicts it; x-b is 62.
    block = hpack_integer(100, 5, 0x20) + request_block(
        b"/echo", literal(b"x-a", b"a" * 40, first_byte=0x40),
        literal(b"x-b", b"b" * 40, first_byte=0x40))
    assert echoed_headers(conn, block)["HTTP_X_B"] == "b" * 40
    assert echoed_headers(conn, request_block(b"/echo", b"\xbe"))["HTTP_X_B"] == "b" * 40
    send_block(conn, request_block(b"/echo", b"\xbf"))            # 63: evicted
    conn.expect_connection_error(COMPRESSION_ERROR)


def test_4_4_entry_larger_than_the_table_empties_it(conn: H2Connection) -> None:
    block = hpack_integer(100, 5, 0x20) + request_block(
        b"/echo", literal(b"x-a", b"a", first_byte=0x40),
        literal(b"x-big", b"b" * 200, first_byte=0x40))
    assert echoed_headers(conn, block)["HTTP_X_BIG"] == "b" * 200
    send_block(conn, request_block(b"/echo", b"\xbe"))
    conn.expect_connection_error(COMPRESSION_ERROR)


# -- §4.2 / §6.3 table size updates ---------------------------------------------------------


def test_4_2_table_size_update_above_settings_is_compression_error(conn: H2Connection) -> None:
    send_block(conn, hpack_integer(4097, 5, 0x20) + request_block())
    conn.expect_connection_error(COMPRESSION_ERROR)


def test_4_2_table_size_update_after_a_field_is_compression_error(conn: H2Connection) -> None:
    send_block(conn, request_block() + hpack_integer(100, 5, 0x20))
    conn.expect_connection_error(COMPRESSION_ERROR)


def test_4_2_two_table_size_updates_at_the_start_are_accepted(conn: H2Connection) -> None:
    block = hpack_integer(0, 5, 0x20) + hpack_integer(4096, 5, 0x20) + request_block()
    assert conn.response(send_block(conn, block)).status == 200


def test_4_2_server_signals_our_smaller_table_size_and_keeps_to_it(server: Server) -> None:
    with H2Connection(server.port) as conn:
        conn.decoder = hpack.Decoder(max_header_list_size=2**32)
        conn.decoder.max_allowed_table_size = 0
        conn.decoder.header_table_size = 0
        conn.handshake({INITIAL_WINDOW_SIZE: MAX_WINDOW, HEADER_TABLE_SIZE: 0})
        for _ in range(3):   # repeated heads would come from the table if it were used
            response = conn.get("/hello")
            assert response.status == 200 and response.header("server") is not None
        first = next(f for f in conn.frames if f.type == HEADERS)
        assert first.payload[:1] == b"\x20"   # RFC 7541 §4.2: an update to 0 comes first


def test_4_2_server_follows_a_table_size_change_mid_connection(server: Server) -> None:
    with H2Connection(server.port) as conn:
        conn.handshake()
        assert conn.get("/hello").status == 200
        conn.decoder.max_allowed_table_size = 100
        conn.send_frame(0x4, 0, 0, struct.pack(">HL", HEADER_TABLE_SIZE, 100))
        conn.expect(lambda f: f.type == 0x4 and f.flags & 1, "SETTINGS ACK")
        start = len(conn.frames)
        for _ in range(3):
            assert conn.get("/hello").status == 200
        first = next(f for f in conn.frames[start:] if f.type == HEADERS)
        assert first.payload[0] & 0xE0 == 0x20   # a size update first (RFC 7541 §4.2)
        value, shift, pos = first.payload[0] & 0x1F, 0, 1
        if value == 0x1F:   # §5.1: the prefix is full, 7-bit groups follow
            while True:
                value += (first.payload[pos] & 0x7F) << shift
                shift += 7
                pos += 1
                if not first.payload[pos - 1] & 0x80:
                    break
        assert value <= 100


# -- §5.1 integers ----------------------------------------------------------------------------


def test_5_1_integer_too_large_is_compression_error(conn: H2Connection) -> None:
    send_block(conn, GET + b"\xff" + b"\xff" * 10 + b"\x01")
    conn.expect_connection_error(COMPRESSION_ERROR)


def test_5_1_truncated_integer_is_compression_error(conn: H2Connection) -> None:
    send_block(conn, GET + b"\xff\x80")
    conn.expect_connection_error(COMPRESSION_ERROR)


# -- §5.2 string literals ---------------------------------------------------------------------


def huffman_literal(name_code: bytes) -> bytes:
    """A literal field without indexing whose name is Huffman coded as given."""
    return b"\x00" + hpack_integer(len(name_code), 7, 0x80) + name_code + b"\x01v"


@pytest.mark.parametrize("code", [
    pytest.param(b"\xff\xff\xff\xff", id="eos-symbol"),
    pytest.param(b"\x1f\xff", id="padding-longer-than-7-bits"),
    pytest.param(b"\x18", id="padding-not-an-eos-prefix"),
])
def test_5_2_invalid_huffman_string_is_compression_error(conn: H2Connection,
                                                         code: bytes) -> None:
    send_block(conn, request_block(b"/echo", huffman_literal(code)))
    conn.expect_connection_error(COMPRESSION_ERROR)


def test_5_2_huffman_string_is_decoded(conn: H2Connection) -> None:
    # "a" is 00011, padded with 111 (the EOS prefix).
    assert echoed_headers(conn, request_block(b"/echo", huffman_literal(b"\x1f")))["HTTP_A"] \
        == "v"


def test_5_2_string_longer_than_the_block_is_compression_error(conn: H2Connection) -> None:
    send_block(conn, request_block(b"/echo", b"\x00\x05x-a\x01v"))
    conn.expect_connection_error(COMPRESSION_ERROR)


# -- §6.2 literal representations ---------------------------------------------------------------


def test_6_2_literal_without_indexing_is_not_added_to_the_table(conn: H2Connection) -> None:
    assert echoed_headers(conn, request_block(b"/echo", literal(b"x-plain", b"1")))[
        "HTTP_X_PLAIN"] == "1"
    send_block(conn, request_block(b"/echo", b"\xbe"))
    conn.expect_connection_error(COMPRESSION_ERROR)


def test_6_2_3_never_indexed_literal_reaches_the_app(conn: H2Connection) -> None:
    block = request_block(b"/echo", literal(b"authorization", b"secret", first_byte=0x10))
    assert echoed_headers(conn, block)["HTTP_AUTHORIZATION"] == "secret"


def test_6_2_literal_with_a_static_name_reaches_the_app(conn: H2Connection) -> None:
    # Name index 19 (accept), without indexing: 0x0f 0x04.
    assert echoed_headers(conn, request_block(b"/echo", b"\x0f\x04\x03a/b"))[
        "HTTP_ACCEPT"] == "a/b"


# -- RFC 9113 §10.5.1 header list size --------------------------------------------------------


def test_header_list_over_the_limit_is_answered_431_and_the_table_kept(
        conn: H2Connection) -> None:
    entry = literal(b"x-big", b"b" * 4000, first_byte=0x40)
    assert echoed_headers(conn, request_block(b"/echo", entry))["HTTP_X_BIG"] == "b" * 4000
    # 17 references to the 4 KiB entry: 69 KiB decoded from a 17-byte tail.
    response = conn.response(send_block(conn, request_block(b"/echo", b"\xbe" * 17)))
    assert response.status == 431 and response.is_ended
    assert echoed_headers(conn, request_block(b"/echo", b"\xbe"))["HTTP_X_BIG"] == "b" * 4000
