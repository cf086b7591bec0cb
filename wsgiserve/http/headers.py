"""Header fields as received or to be sent: raw names and values kept, lookups lowercased.

Also the field-syntax regular expressions (RFC 9110 §5.1, §5.5) that the parser and the
writer share. Imported by the parser, writer, framing and by the WSGI and client layers.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Final

# RFC 9110 §5.6.2: token = 1*tchar.
TCHAR: Final = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
TOKEN_STR_RE: Final = re.compile("[" + TCHAR.decode("ascii") + "]+")
# RFC 9110 §5.5: field-value = *( VCHAR / obs-text / SP / HTAB ). Anything else (NUL, CR,
# LF, other controls, DEL) is refused on both sides: on input it would allow smuggling or
# response splitting, on output it would be header injection.
BAD_VALUE_STR_RE: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")


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
