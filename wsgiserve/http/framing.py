"""How a message body is delimited: RFC 9112 §6.3, decided once for reading and writing.

The parsers call ``request_framing``/``response_framing`` on received heads; the writers
call ``choose_response_framing``/``choose_request_framing`` for heads they send. Both the
server and the client use both directions, so one module keeps them in agreement.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Final

from wsgiserve.http.errors import (
    BodyTooLarge,
    RemoteProtocolError,
    UnsupportedTransferCoding,
)

from wsgiserve.http.headers import FIELD_ABSENT

if TYPE_CHECKING:
    from wsgiserve.http.headers import Headers


class BodyKind(Enum):
    NONE = "none"                 # no body at all
    LENGTH = "length"             # Content-Length bytes
    CHUNKED = "chunked"           # chunked transfer coding, may carry trailers
    UNTIL_CLOSE = "until-close"   # the body ends when the connection closes (responses only)
    TUNNEL = "tunnel"             # 2xx to CONNECT, or 101: HTTP ends, raw bytes follow


@dataclass(frozen=True, slots=True)
class Framing:
    kind: BodyKind
    length: int = 0

    @property
    def has_body(self) -> bool:
        kind = self.kind
        return kind is not _NONE and not (kind is _LENGTH and self.length == 0)


_NONE, _LENGTH = BodyKind.NONE, BodyKind.LENGTH  # Enum members: see reader.py
NO_BODY: Final = Framing(BodyKind.NONE)
CHUNKED: Final = Framing(BodyKind.CHUNKED)
UNTIL_CLOSE: Final = Framing(BodyKind.UNTIL_CLOSE)
TUNNEL: Final = Framing(BodyKind.TUNNEL)

# 18 decimal digits stay below 2**63 (no overflow in any peer's parser); longer values
# are refused rather than compared, closing the integer-overflow smuggling vector.
_CONTENT_LENGTH_RE: Final = re.compile(rb"[0-9]{1,18}")


def parse_content_length(values: list[bytes], *, allow_list: bool = True) -> int:
    """Return the one length that every Content-Length value and list member states.

    RFC 9112 §6.3 rule 5: a list of identical values may be taken as that value; anything
    else (signs, spaces inside, hex, ``_``, non-ASCII digits, overflow, disagreement) is an
    unrecoverable framing error. RFC 9110 §8.6 allows accepting such a list only if it is
    replaced by the single value; without ``allow_list`` a repeated value (two fields, or
    a list in one) is refused instead, as nginx and gunicorn refuse it in requests.

    Raises:
        RemoteProtocolError: the field is invalid.
    """
    if not allow_list and (len(values) > 1 or values[0].find(b",") >= 0):
        raise RemoteProtocolError("repeated Content-Length")
    lengths = set()
    for value in values:
        for member in value.split(b","):
            member = member.strip(b" \t")
            if _CONTENT_LENGTH_RE.fullmatch(member) is None:
                raise RemoteProtocolError(f"invalid Content-Length {value[:40]!r}")
            lengths.add(int(member))
    if len(lengths) != 1:
        raise RemoteProtocolError("conflicting Content-Length values")
    return lengths.pop()


def _transfer_codings(headers: Headers) -> list[bytes]:
    codings = []
    for value in headers.get_all(b"transfer-encoding"):
        for member in value.split(b","):
            member = member.strip(b" \t").lower()
            if not member:
                raise RemoteProtocolError("empty transfer coding")
            codings.append(member.split(b";", 1)[0].rstrip(b" \t"))
    if codings.count(b"chunked") > 1:
        # RFC 9112 §7: a sender MUST NOT apply chunked more than once: a malformed
        # message (400), not a coding we do not know (501).
        raise RemoteProtocolError("the chunked transfer coding is applied more than once")
    return codings


def request_framing(http_version: bytes, headers: Headers, max_body_bytes: int = 0) -> Framing:
    """Decide how a received request's body is delimited (RFC 9112 §6.3 rules 3-7).

    Raises:
        RemoteProtocolError: the framing is ambiguous or invalid (400), a coding is not
            implemented (501), or the declared length is over ``max_body_bytes`` (413).
    """
    names = headers.names
    has_te = b"transfer-encoding" in names
    has_cl = b"content-length" in names
    if has_te:
        # RFC 9112 §6.1: a server MAY reject a request with both; a request that has both
        # is the classic CL.TE / TE.CL smuggling shape, so we refuse it outright (and the
        # caller closes the connection) rather than pick one.
        if has_cl:
            raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
        # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
        if http_version == b"1.0":
            raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        codings = _transfer_codings(headers)
        if codings[-1] != b"chunked":
            # RFC 9112 §6.3 rule 4: a request whose final coding is not chunked cannot be
            # delimited: 400, then close (501 when it is a coding we know but do not do).
            if codings[-1] in (b"gzip", b"deflate", b"compress", b"x-gzip", b"identity"):
                raise UnsupportedTransferCoding(f"transfer coding {codings[-1]!r} is not chunked")
            raise RemoteProtocolError(f"final transfer coding {codings[-1][:40]!r} is not chunked")
        if len(codings) > 1:
            # gzip then chunked: we implement chunked alone (RFC 9112 §6.1: 501 for a
            # coding we do not understand).
            raise UnsupportedTransferCoding("only the chunked transfer coding is implemented")
        return CHUNKED
    if has_cl:
        length = parse_content_length(headers.get_all(b"content-length"), allow_list=False)
        if max_body_bytes and length > max_body_bytes:
            raise BodyTooLarge(f"Content-Length {length} is over the limit of {max_body_bytes}")
        return Framing(BodyKind.LENGTH, length) if length else NO_BODY
    # RFC 9112 §6.3 rule 7: a request with neither has no body.
    return NO_BODY


def response_has_body(request_method: bytes, status: int) -> bool:
    """RFC 9112 §6.3 rules 1-2: HEAD, 1xx, 204 and 304 responses have no body."""
    return not (request_method == b"HEAD" or status < 200 or status == 204 or status == 304)


def response_framing(request_method: bytes, status: int, headers: Headers) -> Framing:
    """Decide how a received response's body is delimited (RFC 9112 §6.3).

    Raises:
        RemoteProtocolError: the framing is ambiguous or invalid.
    """
    if status == 101 or (request_method == b"CONNECT" and 200 <= status < 300):
        return TUNNEL
    if not response_has_body(request_method, status):
        return NO_BODY
    names = headers.names
    if b"transfer-encoding" in names:
        if b"content-length" in names:
            # RFC 9112 §6.3 rule 3 says Transfer-Encoding wins but that the message
            # "ought to be handled as an error": a client that guesses here is the
            # victim of response splitting, so we stop.
            raise RemoteProtocolError("response has both Content-Length and Transfer-Encoding")
        codings = _transfer_codings(headers)
        if codings[-1] == b"chunked":
            if len(codings) > 1:
                raise UnsupportedTransferCoding("only the chunked transfer coding is implemented")
            return CHUNKED
        # RFC 9112 §6.3 rule 4: the body then runs until the connection closes.
        return UNTIL_CLOSE
    if b"content-length" in names:
        return Framing(BodyKind.LENGTH, parse_content_length(headers.get_all(b"content-length")))
    return UNTIL_CLOSE


def choose_response_framing(request_method: bytes, request_version: bytes, status: int,
                            content_length: int | None) -> Framing:
    """Decide how a response we send is delimited.

    Args:
        content_length: the length the application declared, or None.

    Returns the framing; with UNTIL_CLOSE the connection must close after the body.
    """
    if not response_has_body(request_method, status):
        return NO_BODY
    if content_length is not None:
        return Framing(BodyKind.LENGTH, content_length)
    if request_version == b"1.1":
        return CHUNKED
    # RFC 9112 §6.1: chunked MUST NOT be sent to an HTTP/1.0 recipient.
    return UNTIL_CLOSE


def choose_request_framing(content_length: int | None, has_body: bool) -> Framing:
    """Decide how a request we send is delimited: a known length, or chunked."""
    if not has_body:
        return NO_BODY
    if content_length is not None:
        return Framing(BodyKind.LENGTH, content_length)
    return CHUNKED


def wants_keep_alive(http_version: bytes, headers: Headers,
                     connection_at: int | None = None) -> bool:
    """RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".

    ``connection_at``: where the only Connection field is, as ``FieldShape.connection_at``
    says (ABSENT, REPEATED); None to look it up here.
    """
    if connection_at is None:
        count = headers.names.count(b"connection")
        connection_at = headers.names.index(b"connection") if count == 1 else \
            FIELD_ABSENT - min(count, 1)
    if connection_at == FIELD_ABSENT:
        return http_version != b"1.0"
    if connection_at >= 0:
        value = headers.fields[connection_at][1].lower()
        # The two values nearly every client sends, decided without splitting a list.
        if value == b"keep-alive":
            return True
        if value == b"close":
            return False
    options = headers.tokens(b"connection")
    if b"close" in options:
        return False
    return http_version != b"1.0" or b"keep-alive" in options
