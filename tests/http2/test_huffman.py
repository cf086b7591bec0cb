"""The HPACK Huffman code: the RFC 7541 Appendix B table, round trips, and invalid strings."""
from __future__ import annotations

import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hypothesis import given
from hypothesis import strategies as st

from wsgiserve.http2 import huffman

THEIRS = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def test_the_canonical_table_is_the_rfc_table() -> None:
    assert huffman._CODES == list(REQUEST_CODES)
    assert list(huffman._LENGTHS) == list(REQUEST_CODES_LENGTH)


# RFC 7541 Appendix C.4.1 and C.6.1 strings.
@pytest.mark.parametrize("plain, coded", [
    (b"www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"),
    (b"no-cache", "a8eb10649cbf"),
    (b"custom-key", "25a849e95ba97d7f"),
    (b"302", "6402"),
    (b"private", "aec3771a4b"),
    (b"Mon, 21 Oct 2013 20:13:21 GMT", "d07abe941054d444a8200595040b8166e082a62d1bff"),
    (b"https://www.example.com", "9d29ad171863c78f0b97c8e9ae82ae43d3"),
    (b"", ""),
])
def test_rfc_examples(plain: bytes, coded: str) -> None:
    assert huffman.encode(plain) == bytes.fromhex(coded)
    assert huffman.decode(bytes.fromhex(coded)) == plain
    assert huffman.encoded_length(plain) == len(coded) // 2


@given(st.binary(max_size=400))
def test_round_trip_and_agreement_with_hpack(data: bytes) -> None:
    coded = huffman.encode(data)
    assert coded == THEIRS.encode(data)
    assert huffman.decode(coded) == data
    assert huffman.encoded_length(data) == len(coded)


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_huffman_decode_error(data: bytes) -> None:
    try:
        plain = huffman.decode(data)
    except huffman.HuffmanDecodeError:
        return
    assert huffman.encode(plain) == data    # a valid string has exactly one encoding


def test_padding_of_up_to_seven_one_bits_is_valid() -> None:
    assert huffman.decode(bytes([0b00011111])) == b"a"          # 'a' is 00011
    coded = huffman.encode(b"aaaaa")                              # 25 bits + 7 of padding
    assert coded[-1] & 0x7F == 0x7F and huffman.decode(coded) == b"aaaaa"


@pytest.mark.parametrize("coded, match", [
    ("ff", "padding"),                  # 8 one-bits of padding
    ("fe", "padding"),                  # 7 bits that are not all ones (a code cut short)
    ("fffffffc", "EOS"),                # 30 one-bits: EOS itself
    ("fffffffc00", "EOS"),
], ids=["eight-one-bits", "zero-in-padding", "eos-last", "eos-inside"])
def test_invalid_strings(coded: str, match: str) -> None:
    with pytest.raises(huffman.HuffmanDecodeError, match=match):
        huffman.decode(bytes.fromhex(coded))
