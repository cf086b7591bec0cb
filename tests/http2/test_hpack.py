"""HPACK (RFC 7541): the Appendix C examples, the hpack-test-case stories, the python-hyper
``hpack`` package as an independent second implementation, and bounded work on bombs.

The stories are read from ``shared/hpack-test-case`` next to the repository (MIT; not
copied here); set HPACK_TEST_CASE_DIR to read them from elsewhere.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgiserve.http2 import ErrorCode, Http2ConnectionError
from wsgiserve.http2.hpack import (
    STATIC_TABLE,
    Decoder,
    Encoder,
    HeaderListTooLarge,
    decode_integer,
    encode_integer,
)

Fields = list[tuple[bytes, bytes]]
TEST_CASES = Path(os.environ.get("HPACK_TEST_CASE_DIR") or
                  Path(__file__).resolve().parents[2] / ".." / "shared" / "hpack-test-case")


def _fields(text: str) -> Fields:
    """'name: value' lines (the RFC's header lists) as (bytes, bytes) pairs."""
    out = []
    for line in text.strip().splitlines():
        name, _, value = line.strip().partition(": ")
        out.append((name.encode(), value.encode()))
    return out


# RFC 7541 Appendix C.1: (value, prefix bits, encoding).
@pytest.mark.parametrize("value, prefix, encoded", [
    (10, 5, bytes([0b01010])),
    (1337, 5, bytes([0b11111, 0b10011010, 0b00001010])),
    (42, 8, bytes([42])),
])
def test_integer_representation(value: int, prefix: int, encoded: bytes) -> None:
    assert encode_integer(value, prefix) == encoded
    assert decode_integer(encoded, 0, prefix) == (value, len(encoded))


@given(st.integers(0, 2**28), st.integers(1, 8))
def test_integer_round_trip(value: int, prefix: int) -> None:
    encoded = encode_integer(value, prefix)
    assert decode_integer(encoded, 0, prefix) == (value, len(encoded))


# RFC 7541 Appendix C.2: one representation each, decoded on an empty table.
@pytest.mark.parametrize("wire, fields, table_size", [
    ("400a637573746f6d2d6b65790d637573746f6d2d686561646572",
     [(b"custom-key", b"custom-header")], 55),
    ("040c2f73616d706c652f70617468", [(b":path", b"/sample/path")], 0),
    ("100870617373776f726406736563726574", [(b"password", b"secret")], 0),
    ("82", [(b":method", b"GET")], 0),
], ids=["C.2.1-indexed", "C.2.2-not-indexed", "C.2.3-never-indexed", "C.2.4-static"])
def test_field_representations(wire: str, fields: Fields, table_size: int) -> None:
    decoder = Decoder()
    assert decoder.decode(bytes.fromhex(wire)) == fields
    assert decoder.table_size == table_size


REQUESTS = [
    _fields(":method: GET\n:scheme: http\n:path: /\n:authority: www.example.com"),
    _fields(":method: GET\n:scheme: http\n:path: /\n:authority: www.example.com\n"
            "cache-control: no-cache"),
    _fields(":method: GET\n:scheme: https\n:path: /index.html\n:authority: www.example.com\n"
            "custom-key: custom-value"),
]
RESPONSES = [
    _fields(":status: 302\ncache-control: private\ndate: Mon, 21 Oct 2013 20:13:21 GMT\n"
            "location: https://www.example.com"),
    _fields(":status: 307\ncache-control: private\ndate: Mon, 21 Oct 2013 20:13:21 GMT\n"
            "location: https://www.example.com"),
    _fields(":status: 200\ncache-control: private\ndate: Mon, 21 Oct 2013 20:13:22 GMT\n"
            "location: https://www.example.com\ncontent-encoding: gzip\n"
            "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
]
# RFC 7541 Appendix C.3-C.6: (wire, table size after), each list on one shared table;
# C.5 and C.6 run with SETTINGS_HEADER_TABLE_SIZE = 256, so entries get evicted.
SEQUENCES = {
    "C.3-requests": (4096, REQUESTS, [
        ("828684410f7777772e6578616d706c652e636f6d", 57),
        ("828684be58086e6f2d6361636865", 110),
        ("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565", 164)]),
    "C.4-requests-huffman": (4096, REQUESTS, [
        ("828684418cf1e3c2e5f23a6ba0ab90f4ff", 57),
        ("828684be5886a8eb10649cbf", 110),
        ("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf", 164)]),
    "C.5-responses": (256, RESPONSES, [
        ("4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a"
         "323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d", 222),
        ("4803333037c1c0bf", 222),
        ("88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69"
         "707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d6178"
         "2d6167653d333630303b2076657273696f6e3d31", 215)]),
    "C.6-responses-huffman": (256, RESPONSES, [
        ("488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29"
         "ad171863c78f0b97c8e9ae82ae43d3", 222),
        ("4883640effc1c0bf", 222),
        ("88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7"
         "f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d50"
         "07", 215)]),
}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_appendix_c_sequences(name: str) -> None:
    table_size, lists, steps = SEQUENCES[name]
    decoder = Decoder(max_allowed_table_size=table_size)
    for fields, (wire, size_after) in zip(lists, steps, strict=True):
        assert decoder.decode(bytes.fromhex(wire)) == fields
        assert decoder.table_size == size_after


def test_static_table_matches_the_hpack_package() -> None:
    assert list(STATIC_TABLE[1:]) == list(hpack.table.HeaderTable.STATIC_TABLE)


def _stories(folder: str) -> list[Path]:
    directory = TEST_CASES / folder
    if not directory.is_dir():
        pytest.skip(f"hpack-test-case not found at {TEST_CASES} (set HPACK_TEST_CASE_DIR)")
    return sorted(directory.glob("story_*.json"))


def _case_fields(case: dict[str, object]) -> Fields:
    headers = case["headers"]
    assert isinstance(headers, list)
    return [(name.encode(), value.encode()) for item in headers for name, value in item.items()]


ENCODED_FOLDERS = ["go-hpack", "haskell-http2-linear-huffman", "nghttp2", "nghttp2-16384-4096",
                   "nghttp2-change-table-size", "python-hpack"]


@pytest.mark.parametrize("folder", ENCODED_FOLDERS)
def test_every_story_decodes_to_its_headers(folder: str) -> None:
    stories = _stories(folder)
    assert stories
    blocks = 0
    for path in stories:
        decoder = Decoder(max_header_list_size=1 << 20)
        for case in json.loads(path.read_text())["cases"]:
            if case.get("header_table_size") is not None:
                decoder.set_max_allowed_table_size(case["header_table_size"])
            assert decoder.decode(bytes.fromhex(case["wire"])) == _case_fields(case), \
                f"{path.name} case {case['seqno']}"
            blocks += 1
    assert blocks > 100


def test_our_encoder_output_decodes_with_hpack_and_ours() -> None:
    for path in _stories("raw-data"):
        encoder, ours, theirs = Encoder(), Decoder(1 << 20), hpack.Decoder()
        theirs.max_header_list_size = 1 << 20
        for case in json.loads(path.read_text())["cases"]:
            fields = _case_fields(case)
            block = encoder.encode(fields)
            assert [(n, v) for n, v in theirs.decode(block, raw=True)] == fields, path.name
            assert ours.decode(block) == fields, path.name


def test_hpack_encoder_output_decodes_with_ours() -> None:
    for path in _stories("raw-data"):
        theirs, ours = hpack.Encoder(), Decoder(1 << 20)
        for case in json.loads(path.read_text())["cases"]:
            fields = _case_fields(case)
            for huffman in (True, False):
                assert ours.decode(theirs.encode(fields, huffman=huffman)) == fields, path.name


def test_encoder_follows_table_size_changes() -> None:
    encoder, decoder = Encoder(), Decoder()
    fields = [(b"x-a", b"1" * 100), (b"x-b", b"2" * 100)]
    decoder.decode(encoder.encode(fields))
    # The peer shrinks its table to 0 and grows it again before our next block: the
    # block starts with two size updates, the smallest first (RFC 7541 §4.2).
    encoder.set_max_table_size(0)
    encoder.set_max_table_size(4096)
    decoder.set_max_allowed_table_size(0)
    decoder.set_max_allowed_table_size(4096)
    block = encoder.encode(fields)
    assert block[:2] == bytes([0x20, 0x3F])
    assert decoder.decode(block) == fields
    assert encoder.encode(fields) == bytes([0xBF, 0xBE])      # now both indexed


def test_encoder_never_indexes_credentials_and_short_cookies() -> None:
    encoder = Encoder()
    fields = [(b"authorization", b"Basic dXNlcjpwYXNz"), (b"cookie", b"id=1"),
              (b"cookie", b"a-much-longer-session-cookie=0123456789")]
    first = encoder.encode(fields)
    decoder = hpack.Decoder()
    decoded = decoder.decode(first, raw=True)
    assert [type(field).__name__ for field in decoded] == [
        "NeverIndexedHeaderTuple", "NeverIndexedHeaderTuple", "HeaderTuple"]
    assert len(decoder.header_table.dynamic_entries) == 1      # only the long cookie


def test_repeated_lists_are_indexed_and_give_the_same_block() -> None:
    encoder, decoder = Encoder(), Decoder()
    fields = [(b":status", b"200"), (b"content-type", b"text/html"), (b"x-id", b"abc")]
    first = encoder.encode(fields)
    second = encoder.encode(fields)
    assert len(second) == 3 < len(first)        # three one-byte indexed fields
    assert encoder.encode(fields) == second
    for block in (first, second, second):
        assert decoder.decode(block) == fields


@pytest.mark.parametrize("wire, match", [
    ("80", "index 0"),
    ("be", "out-of-range"),                       # dynamic index on an empty table
    ("3fe21f", "over the 4096 allowed"),          # size update to 4096 + 1
    ("202020", "more than two"),
    ("8220", "after a field"),
    ("41", "truncated"),                          # literal without its value
    ("4185ffffffffff", "EOS"),                    # Huffman string holding EOS
    ("0081ff0181", "padding"),                    # a padding of 8 one-bits
    ("ff80808080808001", "too large"),            # an integer past 28 bits
    ("000a616263", "past the end"),
], ids=lambda value: value if len(value) < 12 else None)
def test_compression_errors(wire: str, match: str) -> None:
    with pytest.raises(Http2ConnectionError, match=match) as info:
        Decoder().decode(bytes.fromhex(wire))
    assert info.value.code == ErrorCode.COMPRESSION_ERROR


def test_a_size_update_is_required_after_the_limit_shrinks() -> None:
    decoder = Decoder()
    decoder.decode(bytes.fromhex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"))
    decoder.set_max_allowed_table_size(0)
    with pytest.raises(Http2ConnectionError, match="was due"):
        decoder.decode(b"\x82")
    decoder = Decoder()
    decoder.set_max_allowed_table_size(0)
    assert decoder.decode(b"\x20\x82") == [(b":method", b"GET")]


def test_header_list_bomb_stops_at_the_cap_and_keeps_the_table() -> None:
    # One 4 KiB entry, then 20,000 one-byte references to it: 80 MiB if decoded. The
    # decoder keeps nothing past the cap, walks the block once, and stays usable.
    big = b"x" * 4000
    entry = b"\x40\x03x-a" + encode_integer(len(big), 7) + big
    block = entry + b"\xbe" * 20000 + b"\x40\x03x-b\x01b"
    decoder = Decoder(max_header_list_size=65536)
    with pytest.raises(HeaderListTooLarge):
        decoder.decode(block)
    # The table followed the whole block: x-b is entry 62, x-a entry 63.
    assert decoder.decode(b"\xbe") == [(b"x-b", b"b")]
    assert decoder.decode(b"\xbf")[0][0] == b"x-a"


def test_header_list_size_counts_32_bytes_per_field() -> None:
    fields = [(b"a", b"")] * 10                         # 10 x (1 + 0 + 32) = 330 bytes
    block = Encoder().encode(fields)
    assert Decoder(max_header_list_size=330).decode(block) == fields
    with pytest.raises(HeaderListTooLarge):
        Decoder(max_header_list_size=329).decode(block)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from([b"x-a", b"cookie", b":path", b"accept",
                                                      b"authorization", b"x-" + b"b" * 40]),
                                   st.binary(max_size=300)), max_size=12), max_size=6),
       st.integers(0, 4096))
def test_encoder_and_decoders_agree(lists: list[Fields], table_size: int) -> None:
    encoder, ours, theirs = Encoder(), Decoder(1 << 20), hpack.Decoder()
    theirs.max_header_list_size = 1 << 20
    encoder.set_max_table_size(table_size)
    ours.set_max_allowed_table_size(table_size)
    theirs.max_allowed_table_size = table_size
    for fields in lists:
        block = encoder.encode(fields)
        assert ours.decode(block) == fields
        assert [(n, v) for n, v in theirs.decode(block, raw=True)] == fields
