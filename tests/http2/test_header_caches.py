"""The header caches give what the work they save would give.

- the decoder's block cache: any interleaving of blocks that change the table and blocks
  seen before decodes as the ``hpack`` package decodes it (a block's bytes mean something
  else once the table has changed), size updates due and list limits apply to kept blocks,
  and the cache stays bounded;
- the caches of checked request and response lists: a list checked again gives what the
  uncached check gives, a malformed list is refused every time, and :protocol is checked
  against the mode it is asked in;
- through a server connection: requests whose blocks repeat, with table changes between
  them, give the events the ``hpack`` package's lists and the uncached checks give.
"""
from __future__ import annotations

import tracemalloc

import hpack
import pytest
from h2_wire import Wire, server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsgiserve.http2 import Http2ConnectionError, RequestReceived, StreamReset
from wsgiserve.http2 import frames as fr
from wsgiserve.http2.fields import (
    MalformedFields,
    _check_request,
    _check_response,
    check_request,
    check_response,
)
from wsgiserve.http2.hpack import Decoder, Encoder, HeaderListTooLarge

Fields = list[tuple[bytes, bytes]]
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])

# A few lists drawn again and again: repeats are the point. Short values, so that a
# repeated list is indexed whole and its block repeats byte for byte.
POOL: list[Fields] = [
    [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.example"),
     (b":path", b"/")],
    [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"b.example"),
     (b":path", b"/x"), (b"accept", b"*/*")],
    [(b"x-a", b"1")],
    [(b"x-a", b"2")],
    [(b"x-b", b"1"), (b"x-a", b"1")],
    [(b"x-long", b"v" * 900)],             # evicts a quarter of a 4 KiB table
    [(b"cookie", b"id=0123456789abcdef0123456789")],
]


def _size(fields: Fields) -> int:
    return sum(len(name) + len(value) + 32 for name, value in fields)


def _decode_or_too_large(decoder: Decoder, block: bytes) -> Fields | None:
    try:
        return decoder.decode(block)
    except HeaderListTooLarge:
        return None


# Each list is sent 1-3 times in a row (a repeat after the first is the same bytes, every
# field indexed), after maybe a new table size (the hpack package's encoder sends it at the
# start of the next block; one change between blocks, as it mishandles several) and maybe a
# new list limit for our decoder.
steps = st.lists(st.tuples(st.integers(0, len(POOL) - 1), st.integers(1, 3), st.booleans(),
                           st.booleans(), st.none() | st.sampled_from([0, 64, 1000, 4096]),
                           st.none() | st.sampled_from([100, 200, 1000, 65536])),
                 max_size=20)


@PROPERTY_SETTINGS
@given(steps)
def test_kept_blocks_decode_as_the_hpack_package_decodes(
        steps: list[tuple[int, int, bool, bool, int | None, int | None]]) -> None:
    # Blocks from the hpack package's encoder, which indexes every field but the sensitive
    # ones (never indexed: such a block refers to the table without changing it).
    encoder, ours, theirs = hpack.Encoder(), Decoder(), hpack.Decoder()
    theirs.max_header_list_size = 1 << 20
    for index, repeat, is_sensitive, is_huffman, table_size, limit in steps:
        if table_size is not None and table_size != encoder.header_table_size:
            encoder.header_table_size = table_size
        if limit is not None:
            ours.max_header_list_size = limit
        fields = POOL[index]
        for _ in range(repeat):
            block = bytes(encoder.encode([(n, v, is_sensitive) for n, v in fields],
                                         huffman=is_huffman))
            expected = [(n, v) for n, v in theirs.decode(block, raw=True)]
            assert expected == fields
            got = _decode_or_too_large(ours, block)
            assert got == (None if _size(expected) > ours.max_header_list_size else expected)


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(POOL) - 1), st.sampled_from([0, 100, 4096])),
                max_size=30))
def test_our_encoders_blocks_decode_the_same_through_the_cache(
        steps: list[tuple[int, int]]) -> None:
    # Our encoder sends :path and a few others as literals without indexing, and repeats
    # whole blocks while its table is unchanged.
    encoder, ours, theirs = Encoder(), Decoder(1 << 20), hpack.Decoder()
    theirs.max_header_list_size = 1 << 20
    for index, table_size in steps:
        if table_size != 100:
            encoder.set_max_table_size(table_size)
        block = encoder.encode(POOL[index])
        assert [(n, v) for n, v in theirs.decode(block, raw=True)] == POOL[index]
        assert ours.decode(block) == POOL[index]


def test_the_same_bytes_mean_another_field_after_an_insertion() -> None:
    decoder = Decoder()
    decoder.decode(b"\x40\x03x-a\x011")            # x-a: 1 is entry 62
    assert decoder.decode(b"\xbe") == [(b"x-a", b"1")]
    assert decoder.decode(b"\xbe") == [(b"x-a", b"1")]       # kept
    decoder.decode(b"\x40\x03x-b\x012")            # now x-b: 2 is 62, x-a: 1 is 63
    assert decoder.decode(b"\xbe") == [(b"x-b", b"2")]
    assert decoder.decode(b"\xbf") == [(b"x-a", b"1")]


def test_a_kept_block_that_inserts_inserts_each_time() -> None:
    decoder = Decoder()
    block = b"\x40\x03x-a\x011\xbe"             # insert x-a: 1, then refer to entry 62
    assert decoder.decode(block) == [(b"x-a", b"1")] * 2
    assert decoder.decode(block) == [(b"x-a", b"1")] * 2
    assert decoder.table_size == 2 * (3 + 1 + 32)


def test_a_block_with_a_size_update_applies_it_each_time() -> None:
    decoder = Decoder()
    to_zero, to_full = b"\x20\x82", b"\x3f\xe1\x1f\x82"      # size 0 / 4096, then GET
    for block in (to_zero, to_full, to_zero):
        assert decoder.decode(block) == [(b":method", b"GET")]
    decoder.decode(b"\x40\x03x-a\x011")      # over a table of 0: not added (RFC 7541 §4.4)
    assert decoder.table_size == 0


def test_a_kept_block_is_refused_once_a_size_update_is_due() -> None:
    decoder = Decoder()
    decoder.decode(b"\x40\x03x-a\x011")
    assert decoder.decode(b"\xbe\x82") == [(b"x-a", b"1"), (b":method", b"GET")]
    decoder.set_max_allowed_table_size(0)
    with pytest.raises(Http2ConnectionError, match="was due"):
        decoder.decode(b"\xbe\x82")


def test_a_kept_list_over_a_lowered_limit_is_too_large() -> None:
    decoder = Decoder()
    block = b"\x82\x84"                          # :method GET, :path /
    assert decoder.decode(block) == [(b":method", b"GET"), (b":path", b"/")]
    decoder.max_header_list_size = 50           # 2 x 32 + 17 bytes of names and values
    with pytest.raises(HeaderListTooLarge):
        decoder.decode(block)


def test_a_returned_list_belongs_to_the_caller() -> None:
    decoder = Decoder()
    first = decoder.decode(b"\x82\x84")
    first.append((b"x-added", b"by the caller"))
    assert decoder.decode(b"\x82\x84") == [(b":method", b"GET"), (b":path", b"/")]


def test_the_block_cache_is_bounded() -> None:
    decoder = Decoder()
    blocks = [b"\x82\x04\x06/" + b"%05d" % i for i in range(20_000)]   # distinct :path
    for block in blocks[:100]:
        decoder.decode(block)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for block in blocks:
            decoder.decode(block)
        grown = sum(stat.size_diff for stat in
                    tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert grown < 100_000          # 20,000 lists kept would be several megabytes


GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.example"),
       (b":path", b"/")]
CONNECT_WS = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
              (b":authority", b"a.example"), (b":path", b"/chat")]


@pytest.mark.parametrize("fields", [
    GET,
    GET + [(b"content-length", b"12"), (b"accept", b"*/*")],
    GET + [(b"host", b"b.example")],                          # differs from :authority
    GET + [(b"connection", b"close")],
    GET[1:],                                                  # no :method
    [(b":method", b"GET"), (b":scheme", b"https"), (b"host", b"a.example"), (b":path", b"/")],
    GET + [(b"x-a", b" padded ")],
    CONNECT_WS,
], ids=["get", "content-length", "host-differs", "connection", "no-method",
        "pseudo-after-regular", "whitespace", "extended-connect"])
@pytest.mark.parametrize("is_protocol_allowed", [False, True])
def test_a_request_checked_again_gives_the_uncached_result(
        fields: Fields, is_protocol_allowed: bool) -> None:
    try:
        expected: object = _check_request(fields, is_protocol_allowed)
    except MalformedFields as exc:
        expected = str(exc)
    for _ in range(3):
        try:
            got: object = check_request(fields, is_protocol_allowed)
        except MalformedFields as exc:
            got = str(exc)
        assert got == expected


def test_protocol_is_checked_in_the_mode_asked() -> None:
    assert check_request(CONNECT_WS, True)[4] == b"websocket"
    with pytest.raises(MalformedFields):
        check_request(CONNECT_WS)
    assert check_request(CONNECT_WS, True)[4] == b"websocket"


@pytest.mark.parametrize("fields", [
    [(b":status", b"200"), (b"content-length", b"5")],
    [(b":status", b"204"), (b"date", b"Mon, 07 Dec 2026 10:00:00 GMT")],
    [(b":status", b"101")],
    [(b":status", b"200"), (b"te", b"gzip")],
    [(b"content-type", b"text/plain")],
], ids=["ok", "no-content", "101", "te", "no-status"])
def test_a_response_checked_again_gives_the_uncached_result(fields: Fields) -> None:
    try:
        expected: object = _check_response(fields)
    except MalformedFields as exc:
        expected = str(exc)
    for _ in range(3):
        try:
            got: object = check_response(fields)
        except MalformedFields as exc:
            got = str(exc)
        assert got == expected


REQUEST_POOL: list[Fields] = [
    GET,
    GET[:3] + [(b":path", b"/a"), (b"accept", b"*/*")],
    GET + [(b"x-a", b"1")],
    GET + [(b"x-a", b"2")],
    GET + [(b"content-length", b"0")],
    GET + [(b"connection", b"close")],                       # malformed: reset
    GET + [(b"x-long", b"v" * 900)],
]


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(REQUEST_POOL) - 1), st.booleans()),
                min_size=1, max_size=25))
def test_a_server_reads_repeated_blocks_as_the_uncached_checks_do(
        steps: list[tuple[int, bool]]) -> None:
    conn, wire = server(), Wire()
    theirs = hpack.Decoder()
    for number, (index, is_sensitive) in enumerate(steps):
        stream_id = 2 * number + 1
        wire.parts = []
        block = bytes(wire.encoder.encode([(n, v, is_sensitive) for n, v in
                                           REQUEST_POOL[index]]))
        wire.raw(fr.TYPE_HEADERS, fr.END_STREAM | fr.END_HEADERS, stream_id, block)
        fields = [(n, v) for n, v in theirs.decode(block, raw=True)]
        events = conn.receive_data(wire.bytes())
        conn.data_to_send()
        try:
            method, scheme, authority, path, protocol, length = _check_request(fields, False)
        except MalformedFields:
            assert [type(e) for e in events] == []        # reset before it was announced
            continue
        if length:
            assert isinstance(events[0], StreamReset) or events == []
            continue
        assert events[0] == RequestReceived(stream_id, fields, method, scheme, authority,
                                            path, protocol, length, True)
