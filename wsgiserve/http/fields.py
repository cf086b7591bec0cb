"""Field blocks (RFC 9112 §5): the header section of a head, or a chunked body's trailers.

``parse_field_block`` validates a whole block and splits it into ``Headers`` with a few
C-speed bytes operations; a block that fails is examined line by line only to say what is
wrong. It also returns the ``FieldShape`` a request head needs (where Host and Connection
are, whether the framing fields and Expect are present), computed once per sequence of
field names: clients repeat their names, in the same order, on every request.
"""
from __future__ import annotations

import re
from typing import Final, NoReturn

from wsgiserve.http.caches import FieldNameCache
from wsgiserve.http.errors import FieldTooLarge, RemoteProtocolError, TooManyFields
from wsgiserve.http.headers import (
    NOT_FIELD_VALUE,
    NOT_FIELD_VALUE_BYTES,
    TCHAR,
    TCHAR_BYTES,
    FIELD_ABSENT,
    FieldShape,
    Headers,
)
from wsgiserve.http.limits import HttpLimits

__all__ = ["VALUE_CHARS", "FieldShape", "parse_field_block", "unfold_obs_fold"]

# RFC 9110 §5.5: a field value's bytes (CR and LF end the line).
VALUE_CHARS: Final = b"[^" + NOT_FIELD_VALUE + b"]"
# RFC 9112 §5: field-line = field-name ":" OWS field-value OWS, and nothing else: no
# whitespace before the colon (§5.1 MUST reject), no obs-fold (§5.2: a server may reject it;
# a user agent unfolds it first, with unfold_obs_fold), no bare CR or LF, no NUL or other
# controls in values.
_FIELD_LINE_RE: Final = re.compile(rb"[" + TCHAR + rb"]+:[ \t]*" + VALUE_CHARS + rb"*\r\n")
_TOKEN_RE: Final = re.compile(rb"[" + TCHAR + rb"]+")
# RFC 9112 §5.2: obs-fold = OWS CRLF RWS. A line that starts with SP or HTAB continues
# the field line before it.
_OBS_FOLD_RE: Final = re.compile(rb"[ \t]*\r\n[ \t]+")
# Bytes allowed in no field line: the controls but HTAB, and DEL. CR and LF are among them:
# a block is valid only if deleting these removes exactly one CRLF per line. (Deleting the
# few bad bytes is cheaper than deleting the many good ones: translate's cost grows with
# the deletion set.)
_CTL_BYTES: Final = NOT_FIELD_VALUE_BYTES
_LF: Final = b"\n"


def parse_field_block(block: bytes, limits: HttpLimits,
                      names: FieldNameCache) -> tuple[Headers, FieldShape]:
    """Parse a field block (each line ending in CRLF, or empty) into Headers.

    ``names`` remembers sequences of field names already checked (see ``caches``).

    Validation is done with C-speed bytes operations over the whole block: deleting every
    control byte (CR and LF included) must remove exactly one CRLF per line (so there is no
    NUL, control, DEL, bare CR or bare LF anywhere), and deleting every token byte from the
    names must leave only their separators (so no whitespace before a colon, no obs-fold,
    no empty or invalid name). (``bytes.find`` rather than ``in`` throughout: ``in`` first
    tries its operand as an integer, and that failure costs more than the search.)

    Raises:
        RemoteProtocolError: the block is invalid (TooManyFields, FieldTooLarge: over a limit).
    """
    split = block.split(b"\r\n")
    split.pop()  # the block ends with CRLF: the last piece is empty
    lines = len(split)
    if len(block.translate(None, _CTL_BYTES)) != len(block) - 2 * lines:
        _diagnose(block)
    if lines > limits.max_fields:
        raise TooManyFields(f"more than {limits.max_fields} header fields")
    # Whitespace to strip: before a CRLF, or a second one after ": ". HTAB is rare in
    # fields and a one-byte find is a memchr, so any HTAB sends the block the general way
    # and two searches cover the rest.
    if block.find(b"\t") >= 0 or block.find(b" \r\n") >= 0 or block.find(b":  ") >= 0:
        fields = _split_general(split, block)
    else:
        # Nearly every client writes "Name: value" with one space and no trailing
        # whitespace: partition on ": " and skip stripping. A line that is not of that
        # shape leaves a colon in its "name", which fails the token check below, and the
        # block is then split the general way. A line with no ": " at all is dropped here,
        # so the count no longer matches and the general way reports it.
        fields = [(name, value) for name, sep, value in [line.partition(b": ") for line in split]
                  if sep]
    joined = b"\n".join([name for name, _ in fields])
    seen = names.get(joined)
    if seen is None or len(fields) != lines:
        if len(fields) != lines or not _are_tokens(joined, lines):
            fields = _split_general(split, block)
            joined = b"\n".join([name for name, _ in fields])
            if not _are_tokens(joined, lines):
                _diagnose(block)
        lowered = tuple(joined.lower().split(b"\n")) if lines else ()
        seen = (lowered, _shape_of(lowered))
        names.put(joined, seen)
    if len(block) > limits.max_field_bytes:
        limit = limits.max_field_bytes
        for line in split:
            if len(line) > limit:
                raise FieldTooLarge("a header field is longer than the limit")
    return Headers(fields, seen[0]), seen[1]


def unfold_obs_fold(block: bytes) -> bytes | None:
    """Return ``block`` with each obs-fold replaced by one SP, or None if it has none.

    RFC 9112 §5.2: a user agent MUST do this to a response's fields before interpreting
    them. Whitespace at the very start of the block continues no line and is left for
    ``parse_field_block`` to refuse.
    """
    unfolded, count = _OBS_FOLD_RE.subn(b" ", block)
    return unfolded if count else None


def _are_tokens(joined: bytes, count: int) -> bool:
    """Whether ``joined`` is ``count`` non-empty tokens separated by LF (field names)."""
    return joined.translate(None, TCHAR_BYTES) == _LF * (count - 1) \
        and joined.find(b"\n\n") < 0 and joined[:1] != b"\n" and joined[-1:] != b"\n"


def _shape_of(names: tuple[bytes, ...]) -> FieldShape:
    host = names.count(b"host")
    connection = names.count(b"connection")
    return FieldShape(
        host_at=names.index(b"host") if host == 1 else FIELD_ABSENT - min(host, 1),
        has_framing_fields=b"transfer-encoding" in names or b"content-length" in names,
        connection_at=(names.index(b"connection") if connection == 1
                       else FIELD_ABSENT - min(connection, 1)),
        has_expect=b"expect" in names)


def _split_general(split: list[bytes], block: bytes) -> list[tuple[bytes, bytes]]:
    """Split at the first colon and strip the optional whitespace around each value."""
    try:
        return [(name, value.strip(b" \t"))
                for line in split for name, value in (line.split(b":", 1),)]
    except ValueError:
        _diagnose(block)


def _diagnose(block: bytes) -> NoReturn:
    """Raise the error that says what is wrong with an invalid block."""
    for line in block.split(b"\r\n")[:-1]:
        if _FIELD_LINE_RE.fullmatch(line + b"\r\n") is not None:
            continue
        if line[:1] in (b" ", b"\t"):
            raise RemoteProtocolError("obsolete line folding (obs-fold) is not accepted")
        name, colon, _ = line.partition(b":")
        if not colon:
            raise RemoteProtocolError("a header line has no colon")
        if name.rstrip(b" \t") != name:
            raise RemoteProtocolError("whitespace between a field name and the colon")
        if not name:
            raise RemoteProtocolError("empty field name")
        if _TOKEN_RE.fullmatch(name) is None:
            raise RemoteProtocolError("invalid character in a field name")
        raise RemoteProtocolError("invalid character in a field value")
    raise RemoteProtocolError("bare CR or LF in the header block")
