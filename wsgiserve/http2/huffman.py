"""The HPACK Huffman code (RFC 7541 §5.2 and Appendix B): encode, and decode a byte at a time.

The code is canonical (codes of one length are consecutive, in symbol order), so the
table is its 257 code lengths. Decoding walks a state table built at import: a state is a
node of the code tree (the bits read since the last symbol), and each (state, input byte)
pair maps to the next state and the zero to two symbols the byte completes. A string is
valid if it ends in a state reached from the root by at most seven 1-bits (RFC 7541
§5.2: padding is the most significant bits of EOS, no longer than 7 bits) and never
completes EOS.
"""
from __future__ import annotations

from typing import Final

__all__ = ["HuffmanDecodeError", "decode", "encode", "encoded_length"]

# RFC 7541 Appendix B: the code length of symbols 0-255 and of EOS (256), in bits.
_LENGTHS: Final = (
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,   # 0-15
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,   # 16-31
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,           # ' ' - '/'
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,                # '0' - '?'
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,                  # '@' - 'O'
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,               # 'P' - '_'
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,                  # '`' - 'o'
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,              # 'p' - 127
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,   # 128-143
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,   # 144-159
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,   # 160-175
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,   # 176-191
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,   # 192-207
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,   # 208-223
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,   # 224-239
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,   # 240-255
    30,                                                               # EOS
)
_EOS: Final = 256


def _canonical_codes(lengths: tuple[int, ...]) -> list[int]:
    codes = [0] * len(lengths)
    code = -1
    previous = 0
    for symbol in sorted(range(len(lengths)), key=lambda s: (lengths[s], s)):
        code = (code + 1) << (lengths[symbol] - previous)
        codes[symbol] = code
        previous = lengths[symbol]
    return codes


_CODES: Final = _canonical_codes(_LENGTHS)
# Each byte's code as a string of '0'/'1': encoding joins them and parses the result once.
_BITS: Final = tuple(format(_CODES[b], f"0{_LENGTHS[b]}b") for b in range(256))
_BIT_LENGTHS: Final = _LENGTHS[:256]


class HuffmanDecodeError(ValueError):
    """The bytes are not a valid Huffman-coded string (EOS, or bad padding)."""


def encoded_length(data: bytes) -> int:
    """Return how many bytes ``encode(data)`` takes."""
    return (sum(map(_BIT_LENGTHS.__getitem__, data)) + 7) >> 3


def encode(data: bytes) -> bytes:
    """Return ``data`` Huffman-coded, padded with 1-bits to a whole byte (RFC 7541 §5.2)."""
    if not data:
        return b""
    bits = "".join(map(_BITS.__getitem__, data))
    pad = -len(bits) & 7
    return ((int(bits, 2) << pad) | ((1 << pad) - 1)).to_bytes((len(bits) + pad) >> 3, "big")


def _build_tree() -> list[list[int]]:
    """Children of each internal node: a node number, or ``~symbol`` for a leaf."""
    children = [[0, 0]]
    for symbol, (code, length) in enumerate(zip(_CODES, _LENGTHS)):
        node = 0
        for shift in range(length - 1, 0, -1):
            bit = (code >> shift) & 1
            if children[node][bit] == 0:
                children.append([0, 0])
                children[node][bit] = len(children) - 1
            node = children[node][bit]
        children[node][code & 1] = ~symbol
    return children


def _build_tables() -> tuple[list[int], list[bytes], frozenset[int]]:
    """The byte-at-a-time tables, composed from a nibble-at-a-time walk of the tree.

    Index ``state + byte`` (a state is its node number times 256): ``next_states`` gives
    the next state, or a value past the table's end after EOS (so that the next lookup
    raises IndexError); ``emitted`` gives the symbols completed.
    """
    children = _build_tree()
    nodes = len(children)
    nibble_error = nodes * 16
    nibble_next = [0] * (nodes * 16)
    nibble_out = [b""] * (nodes * 16)
    for node in range(nodes):
        for nibble in range(16):
            current, out, index = node, bytearray(), node * 16 + nibble
            for shift in (3, 2, 1, 0):
                child = children[current][(nibble >> shift) & 1]
                if child == ~_EOS:
                    nibble_next[index] = nibble_error
                    break
                if child < 0:
                    out.append(~child)
                    current = 0
                else:
                    current = child
            else:
                nibble_next[index] = current * 16
            nibble_out[index] = bytes(out)
    error = nodes * 256 * 2
    next_states = [error] * (nodes * 256)
    emitted = [b""] * (nodes * 256)
    # One int object per state and one bytes object per distinct output, shared by every
    # entry that has it: the tables then take about 1 MiB instead of 4.
    states = [node * 256 for node in range(nodes)]
    outputs: dict[bytes, bytes] = {}
    for node in range(nodes):
        for high in range(16):
            first = node * 16 + high
            middle = nibble_next[first]
            if middle == nibble_error:
                continue
            for low in range(16):
                second = middle + low
                after = nibble_next[second]
                if after != nibble_error:
                    index = node * 256 + high * 16 + low
                    next_states[index] = states[after >> 4]
                    symbols = nibble_out[first] + nibble_out[second]
                    emitted[index] = outputs.setdefault(symbols, symbols)
    accepting, node = {0}, 0
    for _ in range(7):  # up to seven 1-bits of EOS as padding
        node = children[node][1]
        accepting.add(node * 256)
    return next_states, emitted, frozenset(accepting)


_NEXT, _EMITTED, _ACCEPTING = _build_tables()


def decode(data: bytes) -> bytes:
    """Return the string that ``data`` Huffman-codes.

    Raises:
        HuffmanDecodeError: ``data`` contains EOS, or its padding is longer than 7 bits or
            not all 1-bits.
    """
    parts: list[bytes] = []
    append = parts.append
    state = 0
    next_states, emitted = _NEXT, _EMITTED
    try:
        for byte in data:
            index = state + byte
            append(emitted[index])
            state = next_states[index]
    except IndexError:
        raise HuffmanDecodeError("EOS in a Huffman-coded string") from None
    if state not in _ACCEPTING:
        if state >= len(next_states):
            raise HuffmanDecodeError("EOS in a Huffman-coded string")
        raise HuffmanDecodeError("invalid padding at the end of a Huffman-coded string")
    return b"".join(parts)
