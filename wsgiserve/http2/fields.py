"""RFC 9113 §8 rules for header lists, on receipt and on send: names, values, pseudo-header
fields, connection-specific fields, Content-Length.

A list that breaks them raises ``MalformedFields``; the connection turns that into a
stream error (PROTOCOL_ERROR, RFC 9113 §8.1.1) for what it receives and a usage error for
what it is asked to send. Fields seen valid once, and with no special meaning, are kept in
a bounded set: clients repeat most of their fields on every request. Whole request and
response lists seen valid are kept too, with what they were read as: a client repeats its
request heads, a server its response heads (whose Date changes once a second).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import chain
from typing import Final

from wsgiserve.http.fields import VALUE_CHARS
from wsgiserve.http.headers import TCHAR, TCHAR_BYTES, char_class

__all__ = ["CONNECTION_SPECIFIC_FIELDS", "MalformedFields", "RequestHead", "check_request",
           "check_response", "check_trailers"]

Field = tuple[bytes, bytes]
# (method, scheme, authority or Host, path, :protocol, Content-Length)
RequestHead = tuple[bytes, bytes | None, bytes | None, bytes | None, bytes | None, int | None]


class MalformedFields(ValueError):
    """The header list breaks a rule of RFC 9113 §8 (the message says which)."""


# RFC 9113 §8.2.2: fields that only make sense hop by hop on an HTTP/1.1 connection.
CONNECTION_SPECIFIC_FIELDS: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_SPECIAL: Final = CONNECTION_SPECIFIC_FIELDS | {b"host", b"te"}
# RFC 9113 §8.2.1: names are lowercase (and RFC 9110 §5.1: tokens).
_NAME_RE: Final = re.compile(
    b"[" + char_class(bytes(c for c in TCHAR_BYTES if not 0x41 <= c <= 0x5a)) + b"]+")
# RFC 9113 §8.2.1: no NUL, CR or LF; RFC 9110 §5.5: no other control either.
_VALUE_RE: Final = re.compile(VALUE_CHARS + b"*")
_WHITESPACE: Final = b" \t"
_PSEUDO_VALUE_RES: Final = {
    b":method": re.compile(b"[" + TCHAR + b"]+"),
    b":scheme": re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*"),
    # RFC 3986 §3.2: host (reg-name, IP literal) and port; no userinfo (RFC 9113 §8.3.1).
    b":authority": re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]+"),
    # RFC 9113 §8.3.1, RFC 3986: a request target is visible ASCII, with no fragment
    # ('#' ends the target in a URI; HTTP/1.1's parser answers it 400 too).
    b":path": re.compile(rb"[\x21\x22\x24-\x7e]+"),
}
# RFC 9110 §15: three digits; RFC 9113 §8.6: no 101 in HTTP/2.
_STATUSES: Final = {b"%d" % code: code for code in range(100, 600) if code != 101}
_PLAIN_FIELDS: Final[set[Field]] = set()
_PSEUDO_FIELDS: Final[set[Field]] = set()      # pseudo-header fields seen valid
_PLAIN_FIELDS_MAX: Final = 4096
_PLAIN_VALUE_MAX_BYTES: Final = 1024
# Checked lists (per process, like the sets above): up to this many, each of at most this
# size, counted as RFC 9113 §6.5.2 does (32 bytes per field on top of name and value; a
# browser's request is about 1 KiB): at most 1 MiB kept. A larger list is checked every time.
_CHECKED_LISTS_MAX: Final = 256
_CHECKED_LIST_MAX_BYTES: Final = 4096
# Keyed by the list as a tuple of (name, value) pairs; requests by whether :protocol is
# allowed, too.
_CHECKED_REQUESTS: Final[tuple[dict[tuple[Field, ...], RequestHead], ...]] = ({}, {})
_CHECKED_RESPONSES: Final[dict[tuple[Field, ...], tuple[int, int | None]]] = {}


def _check_value(name: bytes, value: bytes) -> None:
    if _VALUE_RE.fullmatch(value) is None:
        raise MalformedFields(f"invalid character in the value of {name!r}")
    if value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
        raise MalformedFields(f"whitespace around the value of {name!r}")


def _check_regular(fields: Sequence[Field], start: int) -> tuple[int | None, bytes | None]:
    """Check the regular fields from ``start``; return their Content-Length and Host."""
    content_length: int | None = None
    host: bytes | None = None
    plain = _PLAIN_FIELDS
    for index in range(start, len(fields)):
        field = fields[index]
        if field in plain:
            continue
        name, value = field
        if name == b"content-length":          # the one special field of most messages
            if not value.isdigit() or len(value) > 18 or (
                    content_length is not None and int(value) != content_length):
                raise MalformedFields(f"invalid content-length {value[:40]!r}")
            content_length = int(value)
            continue
        if _NAME_RE.fullmatch(name) is None:
            if name[:1] == b":":
                raise MalformedFields(f"pseudo-header field {name!r} after a regular field "
                                      "or in a trailer section")
            raise MalformedFields(f"invalid field name {name!r} (names are lowercase tokens)")
        _check_value(name, value)
        if name in _SPECIAL:
            if name in CONNECTION_SPECIFIC_FIELDS:
                raise MalformedFields(f"connection-specific field {name!r}")
            if name == b"host":
                if host is not None:
                    raise MalformedFields("more than one host field")
                host = value
            elif value.lower() != b"trailers":
                raise MalformedFields("te other than 'trailers'")
        elif len(value) <= _PLAIN_VALUE_MAX_BYTES:
            if len(plain) >= _PLAIN_FIELDS_MAX:
                plain.clear()
            plain.add(field)
    return content_length, host


def _check_pseudo(name: bytes, value: bytes) -> None:
    _check_value(name, value)
    pattern = _PSEUDO_VALUE_RES.get(name)
    if pattern is not None and pattern.fullmatch(value) is None:
        raise MalformedFields(f"invalid {name.decode()} {value[:80]!r}")


def check_request(fields: Sequence[Field], is_protocol_allowed: bool = False) -> RequestHead:
    """Check a request header list (RFC 9113 §8.3.1, RFC 8441 §4 for :protocol).

    Returns: (method, scheme, authority or Host, path, protocol, Content-Length).
    Raises: MalformedFields.
    """
    key = tuple(fields)
    checked = _CHECKED_REQUESTS[is_protocol_allowed]
    head = checked.get(key)
    if head is None:
        head = _check_request(key, is_protocol_allowed)
        if _list_size(key) <= _CHECKED_LIST_MAX_BYTES:
            if len(checked) >= _CHECKED_LISTS_MAX:
                checked.clear()
            checked[key] = head
    return head


def _list_size(fields: tuple[Field, ...]) -> int:
    return sum(map(len, chain.from_iterable(fields))) + 32 * len(fields)


def _check_request(fields: Sequence[Field], is_protocol_allowed: bool) -> RequestHead:
    method = scheme = authority = path = protocol = None
    start = 0
    seen = _PSEUDO_FIELDS
    for field in fields:
        name, value = field
        if name[:1] != b":":
            break
        if field not in seen:
            _check_pseudo(name, value)
            if len(seen) >= _PLAIN_FIELDS_MAX:
                seen.clear()
            seen.add(field)
        if name == b":method" and method is None:
            method = value
        elif name == b":path" and path is None:
            path = value
        elif name == b":scheme" and scheme is None:
            scheme = value
        elif name == b":authority" and authority is None:
            authority = value
        elif name == b":protocol" and protocol is None and is_protocol_allowed:
            protocol = value
        else:
            raise MalformedFields(f"unknown or repeated pseudo-header field {name!r}")
        start += 1
    content_length, host = _check_regular(fields, start)
    if method is None:
        raise MalformedFields("no :method")
    if method == b"CONNECT" and protocol is None:
        # RFC 9113 §8.5: :authority only.
        if scheme is not None or path is not None or authority is None:
            raise MalformedFields("a CONNECT request has :authority and no :scheme or :path")
    else:
        if protocol is not None and method != b"CONNECT":
            raise MalformedFields(":protocol on a request other than CONNECT")
        if scheme is None or path is None:
            raise MalformedFields("a request without :scheme or :path")
        if scheme in (b"http", b"https") and path[0] != 0x2F and not (
                path == b"*" and method == b"OPTIONS"):
            raise MalformedFields(f":path {path[:80]!r} is not absolute")
        if authority is None and host is None:
            raise MalformedFields("a request with neither :authority nor host")
    if host is not None:
        if authority is None:
            authority = host
        elif host != authority:
            raise MalformedFields("host differs from :authority")
    return method, scheme, authority, path, protocol, content_length


def check_response(fields: Sequence[Field]) -> tuple[int, int | None]:
    """Check a response header list (RFC 9113 §8.3.2); return (status, Content-Length).

    Raises: MalformedFields (also for 101: RFC 9113 §8.6 has no Switching Protocols).
    """
    key = tuple(fields)
    result = _CHECKED_RESPONSES.get(key)
    if result is None:
        result = _check_response(key)
        if _list_size(key) <= _CHECKED_LIST_MAX_BYTES:
            if len(_CHECKED_RESPONSES) >= _CHECKED_LISTS_MAX:
                _CHECKED_RESPONSES.clear()
            _CHECKED_RESPONSES[key] = result
    return result


def _check_response(fields: Sequence[Field]) -> tuple[int, int | None]:
    if not fields or fields[0][0] != b":status":
        raise MalformedFields("a response does not start with :status")
    status = _STATUSES.get(fields[0][1])
    if status is None:
        raise MalformedFields(f"invalid :status {fields[0][1][:20]!r}")
    content_length, _ = _check_regular(fields, 1)
    return status, content_length


def check_trailers(fields: Sequence[Field]) -> None:
    """Check a trailer section: regular fields only (RFC 9113 §8.1). Raises MalformedFields."""
    _check_regular(fields, 0)
