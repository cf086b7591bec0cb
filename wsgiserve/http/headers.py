"""Header fields as received or to be sent: raw names and values kept, lookups lowercased.

Also the field vocabulary (RFC 9110 §5.1, §5.5, §5.6): the token, field-value and
quoted-string character sets every parser and writer builds its checks from.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Final, NamedTuple

# The field vocabulary, spelled once; every regular expression and translate table of the
# HTTP layer (parser, writer, chunk lines, the HTTP/2 and WebSocket cores) is built from it.
#
# RFC 9110 §5.6.2: token = 1*tchar; tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+"
# / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA.
TCHAR_BYTES: Final = (b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      b"abcdefghijklmnopqrstuvwxyz")
# RFC 9110 §5.5: field-value = *( VCHAR / obs-text / SP / HTAB ): every byte but the
# controls (HTAB aside) and DEL. Anything else (NUL, CR, LF, other controls, DEL) is refused
# on both sides: on input it would allow smuggling or response splitting, on output it
# would be header injection.
NOT_FIELD_VALUE_BYTES: Final = bytes(b for b in range(256) if b < 0x20 and b != 9 or b == 0x7f)
FIELD_VALUE_BYTES: Final = bytes(b for b in range(256) if b not in NOT_FIELD_VALUE_BYTES)


def char_class(chars: bytes) -> bytes:
    """A regex character class body matching exactly ``chars``."""
    return b"".join(b"\\x%02x" % char for char in chars)


# Regex class bodies (bytes): put them in [] or [^].
TCHAR: Final = char_class(TCHAR_BYTES)
NOT_FIELD_VALUE: Final = char_class(NOT_FIELD_VALUE_BYTES)
# RFC 9110 §5.6.4: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE, with
# qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text and quoted-pair = "\" ( HTAB /
# SP / VCHAR / obs-text ): both are field-value bytes, less DQUOTE and "\" for qdtext.
QUOTED_STRING: Final = (rb'"(?:[^"\\' + NOT_FIELD_VALUE + rb']|\\[^' + NOT_FIELD_VALUE
                        + rb'])*"')
# The same sets for str values as WSGI hands them over (latin-1 text).
TOKEN_STR_RE: Final = re.compile("[" + TCHAR.decode("ascii") + "]+")
BAD_VALUE_STR_RE: Final = re.compile("[" + NOT_FIELD_VALUE.decode("ascii") + "]|[^\x00-\xff]")


class FieldShape(NamedTuple):
    """What a request head needs to know of its field names, found once per sequence.

    ``host_at`` and ``connection_at`` are the index of the only such field,
    ``FIELD_ABSENT`` when there is none, ``FIELD_REPEATED`` when there are several.
    """

    host_at: int
    has_framing_fields: bool  # Transfer-Encoding or Content-Length is present
    connection_at: int
    has_expect: bool


FIELD_ABSENT: Final = -1
FIELD_REPEATED: Final = -2


class Headers:
    """An ordered list of fields; ``names`` holds each name lowercased, in the same order.

    Values keep their bytes (obs-text included); optional whitespace around them is
    already stripped. Lookups take lowercase bytes names.
    """

    __slots__ = ("fields", "names")

    def __init__(self, fields: list[tuple[bytes, bytes]], names: Sequence[bytes] | None = None):
        self.fields = fields
        # A tuple when it came from the parser (shared between requests: never mutate).
        self.names: Sequence[bytes] = \
            names if names is not None else [name.lower() for name, _ in fields]

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __contains__(self, name: bytes) -> bool:
        return name in self.names

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self.lowered() == other.lowered()

    def __repr__(self) -> str:
        return f"Headers({self.fields!r})"

    def lowered(self) -> list[tuple[bytes, bytes]]:
        """Return ``(lowercase name, value)`` pairs in order."""
        return [(name, value) for name, (_, value) in zip(self.names, self.fields)]

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """Return the first value of ``name`` (lowercase), or ``default``."""
        try:
            return self.fields[self.names.index(name)][1]
        except ValueError:
            return default

    def get_all(self, name: bytes) -> list[bytes]:
        """Return every value of ``name`` (lowercase), in order."""
        return [field[1] for n, field in zip(self.names, self.fields) if n == name]

    def combined(self, name: bytes) -> bytes | None:
        """Return the values of ``name`` joined by ``", "`` (RFC 9110 §5.3), or None."""
        count = self.names.count(name)
        if count == 0:
            return None
        if count == 1:
            return self.fields[self.names.index(name)][1]
        return b", ".join(self.get_all(name))

    def tokens(self, name: bytes) -> list[bytes]:
        """Return the lowercased comma-separated list members of ``name`` (RFC 9110 §5.6.1)."""
        value = self.combined(name)
        if value is None:
            return []
        return [item for item in (part.strip(b" \t").lower() for part in value.split(b",")) if item]
