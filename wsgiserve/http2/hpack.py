"""HPACK (RFC 7541): the header compression of HTTP/2, a decoder and an encoder.

Each side keeps a dynamic table; header blocks refer to its entries and to the static
table by index. The decoder bounds its work by the size of the block it is given and the
decoded header list by ``max_header_list_size`` (RFC 9113 §6.5.2 counts 32 bytes per field
on top of name and value): past it the block is still read to its end, to keep the table
in step, but no field is kept, so many references to one large entry cost one step each.
Both sides cache: the decoder the small blocks that left its table as it was (a client
repeats them), the encoder the lists and fields whose encoding the table still gives.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Final

from wsgiserve.http2 import huffman
from wsgiserve.http2.errors import ErrorCode, Http2ConnectionError

__all__ = ["DEFAULT_TABLE_SIZE", "STATIC_TABLE", "Decoder", "Encoder", "HeaderListTooLarge",
           "decode_integer", "encode_integer"]

Field = tuple[bytes, bytes]

# RFC 7541 §4.2 / RFC 9113 §6.5.2: SETTINGS_HEADER_TABLE_SIZE starts at 4,096.
DEFAULT_TABLE_SIZE: Final = 4096
# RFC 7541 §4.1: an entry's size is its name and value lengths plus 32.
ENTRY_OVERHEAD: Final = 32
# RFC 7541 §4.2: a block may shrink the table and grow it again: two updates at most.
MAX_SIZE_UPDATES: Final = 2
# The decoder keeps up to this many blocks of at most this many bytes and fields, with
# what they decoded to (about 10 KiB per connection at most): a client that repeats a request
# sends the same bytes (every field indexed, or literals not indexed), which decode to the
# same list while the table is unchanged. A browser's request has 10-20 fields.
_DECODED_BLOCKS_MAX: Final = 16
_DECODED_BLOCK_MAX_BYTES: Final = 256
_DECODED_BLOCK_MAX_FIELDS: Final = 32
# An HPACK integer longer than this many bits is refused (no field or index needs more;
# without a bound, 0xff 0xff ... would build an arbitrarily large int).
_MAX_INTEGER_SHIFT: Final = 28

# RFC 7541 Appendix A; index 0 is unused.
STATIC_TABLE: Final[tuple[Field, ...]] = ((b"", b""),) + tuple(
    (name.encode("ascii"), value.encode("ascii")) for name, value in (
        (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
        (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"),
        (":status", "200"), (":status", "204"), (":status", "206"), (":status", "304"),
        (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
        ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
        ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
        ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
        ("content-location", ""), ("content-range", ""), ("content-type", ""),
        ("cookie", ""), ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""),
        ("from", ""), ("host", ""), ("if-match", ""), ("if-modified-since", ""),
        ("if-none-match", ""), ("if-range", ""), ("if-unmodified-since", ""),
        ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""),
        ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""),
        ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
        ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
        ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", "")))
_STATIC_LAST: Final = len(STATIC_TABLE) - 1   # 61
_STATIC_EXACT: Final = {field: index for index, field in reversed(list(enumerate(STATIC_TABLE)))
                        if index and field[1]}
_STATIC_NAME: Final = {name: index for index, (name, _) in reversed(list(enumerate(STATIC_TABLE)))
                       if index}


def _compression_error(message: str) -> Http2ConnectionError:
    # RFC 9113 §4.3: a block that cannot be decompressed is a connection error.
    return Http2ConnectionError(message, ErrorCode.COMPRESSION_ERROR)


class HeaderListTooLarge(Exception):
    """The decoded list went past ``max_header_list_size``; the block was read to its end,
    so the compression state is intact and only this header list is lost."""


def encode_integer(value: int, prefix_bits: int, flags: int = 0) -> bytes:
    """RFC 7541 §5.1: ``value`` on a ``prefix_bits`` prefix, high bits of byte 0 = ``flags``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_integer(data: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """RFC 7541 §5.1: the integer at ``data[pos]`` with a ``prefix_bits`` prefix.

    Returns (value, position after it). Raises Http2ConnectionError(COMPRESSION_ERROR) if
    it is truncated or too large.
    """
    limit = (1 << prefix_bits) - 1
    value = data[pos] & limit if pos < len(data) else -1
    if value < 0:
        raise _compression_error("truncated integer")
    if value < limit:
        return value, pos + 1
    return _integer_tail(data, pos + 1, limit)


def _integer_tail(data: bytes, pos: int, value: int) -> tuple[int, int]:
    shift = 0
    while True:
        if pos >= len(data):
            raise _compression_error("truncated integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > _MAX_INTEGER_SHIFT:
            raise _compression_error("integer too large")


def _read_string(data: bytes, pos: int) -> tuple[bytes, int]:
    """RFC 7541 §5.2: the string literal at ``pos`` (Huffman-coded or raw)."""
    first = data[pos]
    length = first & 0x7F
    pos += 1
    if length == 0x7F:
        length, pos = _integer_tail(data, pos, 0x7F)
    stop = pos + length
    if stop > len(data):
        raise _compression_error("string literal runs past the end of the block")
    if first & 0x80:
        try:
            return huffman.decode(data[pos:stop]), stop
        except huffman.HuffmanDecodeError as exc:
            raise _compression_error(str(exc)) from None
    return data[pos:stop], stop


class Decoder:
    """Decodes header blocks from one peer; its table follows that peer's encoder.

    ``max_allowed_table_size`` is our SETTINGS_HEADER_TABLE_SIZE (the bound on the size
    updates the peer may send); set it with ``set_max_allowed_table_size`` once the peer
    has acknowledged it.

    ``generation`` changes whenever the table, its size or ``max_header_list_size`` does:
    the same block at the same generation decodes to the same list. A small block that
    left the generation as it was is kept with its list (a bounded number of them), and
    decoding it again at that generation is a dictionary lookup.
    """

    __slots__ = ("_entries", "_size", "_max_size", "max_allowed_table_size",
                 "_max_header_list_size", "_must_update", "_generation", "_decoded")

    def __init__(self, max_header_list_size: int = 65536,
                 max_allowed_table_size: int = DEFAULT_TABLE_SIZE):
        self._entries: list[Field] = []     # oldest first: index 62 is the last one
        self._size = 0
        self._max_size = max_allowed_table_size
        self.max_allowed_table_size = max_allowed_table_size
        self._max_header_list_size = max_header_list_size
        self._must_update = False
        self._generation = 0
        # block -> (the generation it was decoded at and left unchanged, its list)
        self._decoded: dict[bytes, tuple[int, tuple[Field, ...]]] = {}

    @property
    def table_size(self) -> int:
        return self._size

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def max_header_list_size(self) -> int:
        return self._max_header_list_size

    @max_header_list_size.setter
    def max_header_list_size(self, value: int) -> None:
        self._max_header_list_size = value
        self._generation += 1      # a list kept may be over the new limit

    def set_max_allowed_table_size(self, value: int) -> None:
        """Apply an acknowledged SETTINGS_HEADER_TABLE_SIZE: below the table's current
        maximum, the next block must start with a size update (RFC 7541 §4.2)."""
        self.max_allowed_table_size = value
        if value < self._max_size:
            self._must_update = True
            self._generation += 1      # a block kept without the update is now an error

    def decode(self, block: bytes) -> list[Field]:
        """Decode one complete header block into (name, value) pairs, in order (a new list
        each time, which the caller may keep).

        Raises:
            Http2ConnectionError: COMPRESSION_ERROR; the compression state is lost and the
                connection must end.
            HeaderListTooLarge: the decoded list exceeds ``max_header_list_size``; the
                table is updated as the block says, and the connection can go on.
        """
        generation = self._generation
        decoded = self._decoded.get(block)
        if decoded is not None and decoded[0] == generation:
            return list(decoded[1])
        try:
            headers = self._decode(block)
        except IndexError:
            raise _compression_error("truncated or out-of-range header block") from None
        if self._generation == generation and len(block) <= _DECODED_BLOCK_MAX_BYTES and \
                len(headers) <= _DECODED_BLOCK_MAX_FIELDS:
            if len(self._decoded) >= _DECODED_BLOCKS_MAX:
                self._decoded.clear()
            self._decoded[block] = (generation, tuple(headers))
        return headers

    def _decode(self, block: bytes) -> list[Field]:
        headers: list[Field] = []
        append = headers.append
        entries = self._entries
        static = STATIC_TABLE
        end = len(block)
        pos = 0
        list_size = 0
        limit = self._max_header_list_size
        is_within_limit = True
        if block and block[0] & 0xE0 == 0x20:
            pos = self._read_size_updates(block)
        elif self._must_update:
            raise _compression_error("a table size update was due at the start of the block")
        while pos < end:
            byte = block[pos]
            if byte & 0x80:                                   # §6.1 indexed field
                index = byte & 0x7F
                pos += 1
                if index == 0x7F:
                    index, pos = _integer_tail(block, pos, 0x7F)
                if index > _STATIC_LAST:
                    field = entries[_STATIC_LAST - index]     # 62 is entries[-1]
                elif index:
                    field = static[index]
                else:
                    raise _compression_error("index 0 in an indexed field")
            else:
                if byte & 0x40:                               # §6.2.1 incremental indexing
                    index = byte & 0x3F
                    prefix = 0x3F
                elif byte & 0x20:
                    raise _compression_error("a table size update after a field")
                else:                                         # §6.2.2, §6.2.3 not indexed
                    index = byte & 0x0F
                    prefix = 0x0F
                pos += 1
                if index == prefix:
                    index, pos = _integer_tail(block, pos, prefix)
                if index == 0:
                    name, pos = _read_string(block, pos)
                elif index > _STATIC_LAST:
                    name = entries[_STATIC_LAST - index][0]
                else:
                    name = static[index][0]
                value, pos = _read_string(block, pos)
                field = (name, value)
                if prefix == 0x3F:
                    self._add(field)
            list_size += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
            if list_size > limit:
                is_within_limit = False
            elif is_within_limit:
                append(field)
        if not is_within_limit:
            raise HeaderListTooLarge(f"decoded header list over {limit} bytes")
        return headers

    def _read_size_updates(self, block: bytes) -> int:
        pos = 0
        for _ in range(MAX_SIZE_UPDATES):
            if pos >= len(block) or block[pos] & 0xE0 != 0x20:
                break
            size, pos = decode_integer(block, pos, 5)
            if size > self.max_allowed_table_size:
                raise _compression_error(f"table size update to {size}, over the "
                                         f"{self.max_allowed_table_size} allowed")
            self._max_size = size
            self._evict(size)
            self._generation += 1
        if pos < len(block) and block[pos] & 0xE0 == 0x20:
            raise _compression_error("more than two table size updates in one block")
        if self._must_update and self._max_size > self.max_allowed_table_size:
            raise _compression_error("the table size update due was not made")
        self._must_update = False
        return pos

    def _add(self, field: Field) -> None:
        self._generation += 1
        size = len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
        if size > self._max_size:
            # RFC 7541 §4.4: an entry larger than the table empties it and is not added.
            self._entries.clear()
            self._size = 0
            return
        self._evict(self._max_size - size)
        self._entries.append(field)
        self._size += size

    def _evict(self, room: int) -> None:
        entries = self._entries
        while self._size > room:
            name, value = entries.pop(0)
            self._size -= len(name) + len(value) + ENTRY_OVERHEAD


# Fields never put in the table: credentials (RFC 7541 §7.1.3), and short cookies, which
# a table hit would let an attacker guess by compression ratio (nghttp2 and h2 refuse to
# index cookies under 20 bytes). Sent never-indexed, so intermediaries keep them out too.
NEVER_INDEXED_NAMES: Final = frozenset({b"authorization", b"proxy-authorization"})
_SHORT_COOKIE_BYTES: Final = 20
# Fields whose values rarely repeat: indexing them would only evict useful entries
# (nghttp2's deflater sends these without indexing).
_UNINDEXED_NAMES: Final = frozenset({
    b":path", b"age", b"content-length", b"etag", b"if-modified-since", b"if-none-match",
    b"location", b"set-cookie"})
# The encoder uses at most this much table even if the peer allows more (nghttp2's
# deflater default): memory per connection stays bounded.
MAX_ENCODER_TABLE_SIZE: Final = 4096
# Representations that do not depend on the table (a literal with a static or literal name,
# not indexed), and string literals: computed once per process. Bounded: cleared when full.
_LITERAL_CACHE: dict[Field, bytes] = {}
_STRING_CACHE: dict[bytes, bytes] = {}
_CACHE_MAX: Final = 4096
# Whole header lists whose encoding left the table unchanged: the same list against the
# same table encodes to the same bytes.
_BLOCK_CACHE_MAX: Final = 64


def encode_string(value: bytes) -> bytes:
    """RFC 7541 §5.2: a string literal, Huffman-coded when that is shorter."""
    cached = _STRING_CACHE.get(value)
    if cached is not None:
        return cached
    coded = huffman.encode(value)
    if len(coded) < len(value):
        out = encode_integer(len(coded), 7, 0x80) + coded
    else:
        out = encode_integer(len(value), 7) + value
    if len(value) <= 512:
        if len(_STRING_CACHE) >= _CACHE_MAX:
            _STRING_CACHE.clear()
        _STRING_CACHE[value] = out
    return out


class Encoder:
    """Encodes header lists for one peer; its table follows what that peer's decoder has.

    Call ``set_max_table_size`` when the peer's SETTINGS_HEADER_TABLE_SIZE changes: the
    next block starts with the size update(s) that RFC 7541 §4.2 requires.
    """

    __slots__ = ("_entries", "_size", "_max_size", "_inserted", "_exact", "_names",
                 "_pending_updates", "_version", "_blocks", "_fields")

    def __init__(self) -> None:
        self._entries: deque[Field] = deque()   # oldest first
        self._size = 0
        self._max_size = DEFAULT_TABLE_SIZE
        self._inserted = 0                      # serial number of the next entry
        self._exact: dict[Field, int] = {}      # field -> serial of its newest entry
        self._names: dict[bytes, int] = {}      # name -> serial of its newest entry
        self._pending_updates: list[int] = []
        self._version = 0                       # changes whenever the table does
        self._blocks: dict[tuple[Field, ...], tuple[int, bytes]] = {}
        # Each field's representation against the table as it is now: emptied whenever
        # the table changes (an insertion renumbers every dynamic entry).
        self._fields: dict[Field, bytes] = {}

    def set_max_table_size(self, value: int) -> None:
        """The peer's decoder now allows ``value`` bytes of table."""
        size = min(value, MAX_ENCODER_TABLE_SIZE)
        if size == self._max_size and not self._pending_updates:
            return
        # Signal the smallest size reached, then the final one (RFC 7541 §4.2).
        low = min([size, self._max_size, *self._pending_updates])
        self._pending_updates = [low] if low == size else [low, size]
        self._max_size = size
        self._evict(size)
        self._version += 1
        self._fields = {}

    def encode(self, headers: Sequence[Field]) -> bytes:
        """Return the header block for ``headers`` (lowercase names, already validated)."""
        key = tuple(headers)
        cached = self._blocks.get(key)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        version = self._version
        parts: list[bytes] = []
        if self._pending_updates:
            parts.extend(encode_integer(size, 5, 0x20) for size in self._pending_updates)
            self._pending_updates = []
            version = -1      # a block that carries size updates is not replayed
        cache = self._fields
        for field in key:
            out = cache.get(field)
            if out is None:
                before = self._version
                out = self._encode_field(field)
                if self._version == before:
                    if len(cache) >= _CACHE_MAX:
                        cache.clear()
                    cache[field] = out
                else:
                    cache = self._fields = {}
            parts.append(out)
        block = b"".join(parts)
        if self._version == version:
            if len(self._blocks) >= _BLOCK_CACHE_MAX:
                self._blocks.clear()
            self._blocks[key] = (version, block)
        return block

    def _encode_field(self, field: Field) -> bytes:
        index = _STATIC_EXACT.get(field)
        if index is not None:
            return bytes((0x80 | index,))
        serial = self._exact.get(field)
        if serial is not None:
            return encode_integer(_STATIC_LAST + self._inserted - serial, 7, 0x80)
        cached = _LITERAL_CACHE.get(field)
        if cached is not None:
            return cached
        name, value = field
        size = len(name) + len(value) + ENTRY_OVERHEAD
        if name in NEVER_INDEXED_NAMES or (name == b"cookie"
                                           and len(value) < _SHORT_COOKIE_BYTES):
            flags, prefix, is_indexed = 0x10, 4, False
        elif name in _UNINDEXED_NAMES or size > self._max_size * 3 // 4:
            flags, prefix, is_indexed = 0x00, 4, False
        else:
            flags, prefix, is_indexed = 0x40, 6, True
        name_index = _STATIC_NAME.get(name)
        is_table_free = not is_indexed
        if name_index is None:
            serial = self._names.get(name)
            if serial is not None:
                name_index = _STATIC_LAST + self._inserted - serial
                is_table_free = False
        if name_index is None:
            out = bytes((flags,)) + encode_string(name) + encode_string(value)
        else:
            out = encode_integer(name_index, prefix, flags) + encode_string(value)
        if is_indexed:
            self._add(field, size)
        elif is_table_free and size <= 1024:
            if len(_LITERAL_CACHE) >= _CACHE_MAX:
                _LITERAL_CACHE.clear()
            _LITERAL_CACHE[field] = out
        return out

    def _add(self, field: Field, size: int) -> None:
        self._evict(self._max_size - size)
        serial = self._inserted
        self._inserted += 1
        self._entries.append(field)
        self._size += size
        self._exact[field] = serial
        self._names[field[0]] = serial
        self._version += 1

    def _evict(self, room: int) -> None:
        entries = self._entries
        while self._size > room and entries:
            field = entries.popleft()
            serial = self._inserted - len(entries) - 1
            self._size -= len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
            if self._exact.get(field) == serial:
                del self._exact[field]
            if self._names.get(field[0]) == serial:
                del self._names[field[0]]
            self._version += 1
