"""Response heads from what a WSGI app passed to ``start_response``.

``head_template()`` checks the app's status and headers, drops hop-by-hop fields, decides
the framing (``http.framing``) and encodes the validated part of the head once; identical
(status, headers, method kind, version) combinations reuse that work from a bounded cache,
since most apps answer most requests with the same header set. ``HeadTemplate.render()``
adds the per-response fields (Date, Server, Connection). Used by ``server.exchange``.
"""
from __future__ import annotations

from typing import Final

from wsgiserve.http import BodyKind, Framing, LocalProtocolError
from wsgiserve.http.framing import choose_response_framing
from wsgiserve.http.writer import encode_response_head
from wsgiserve.server.context import SERVER_HEADER
from wsgiserve.wsgi import HOP_BY_HOP

# Entries kept before the cache is emptied and refilled: an app whose headers change on
# every response (cookies, varying lengths) then costs one dict insert per response.
_CACHE_MAX_ENTRIES: Final = 512
_SERVER_LINE: Final = f"Server: {SERVER_HEADER}\r\n".encode("latin-1")
_CLOSE_LINE: Final = b"Connection: close\r\n"
_KEEP_ALIVE_LINE: Final = b"Connection: keep-alive\r\n"

HeadKey = tuple[str, tuple[tuple[str, str], ...], bool, bytes]


class HeadTemplate:
    """The validated, encoded part of a response head and what it implies."""

    __slots__ = ("status_code", "framing", "prefix", "has_date", "has_server",
                 "forces_close", "fields")

    def __init__(self, status_code: int, framing: Framing, prefix: bytes, has_date: bool,
                 has_server: bool, forces_close: bool, fields: list[tuple[str, str]]) -> None:
        self.status_code = status_code
        self.framing = framing
        self.prefix = prefix            # status line and fields, without the final CRLF
        self.has_date = has_date
        self.has_server = has_server
        self.forces_close = forces_close  # the app asked to close, or the body needs it
        self.fields = fields            # the fields as sent (for the access log)

    def render(self, date_line: bytes, should_close: bool, is_http10: bool) -> bytes:
        """The whole head for one response."""
        parts = [self.prefix]
        if not self.has_date:
            parts.append(date_line)
        if not self.has_server:
            parts.append(_SERVER_LINE)
        if should_close:
            parts.append(_CLOSE_LINE)
        elif is_http10:
            parts.append(_KEEP_ALIVE_LINE)
        parts.append(b"\r\n")
        return b"".join(parts)


_cache: dict[HeadKey, HeadTemplate] = {}


def head_template(status: str, headers: list[tuple[str, str]], method: bytes,
                  http_version: bytes) -> HeadTemplate:
    """Return the template for these app headers, from the cache when seen before.

    Raises:
        LocalProtocolError: an invalid status, Content-Length or field (an app bug).
    """
    is_head = method == b"HEAD"
    key = (status, tuple(headers), is_head, http_version)
    template = _cache.get(key)
    if template is None:
        template = _build(status, headers, method, http_version)
        if len(_cache) >= _CACHE_MAX_ENTRIES:
            _cache.clear()
        _cache[key] = template
    return template


def _build(status: str, headers: list[tuple[str, str]], method: bytes,
           http_version: bytes) -> HeadTemplate:
    try:
        code = int(status[:3])
    except ValueError:
        raise LocalProtocolError(f"invalid status {status[:40]!r}") from None
    if not 200 <= code <= 599:
        # A WSGI app answers with a final response; a 1xx (or 101, which would hand the
        # connection to a protocol we do not run) would leave the client waiting.
        raise LocalProtocolError(f"status {code} is not a final response status")
    content_length = None
    forces_close = False
    out: list[tuple[str, str]] = []
    has_server = has_date = False
    for name, value in headers:
        lower = name.lower()
        if lower == "content-length":
            value = value.strip()
            if not value.isdigit() or not value.isascii():
                raise LocalProtocolError(f"invalid Content-Length {value[:40]!r}")
            if content_length is not None:
                if int(value) != content_length:
                    raise LocalProtocolError("conflicting Content-Length headers")
                continue
            content_length = int(value)
        elif lower in HOP_BY_HOP:
            # PEP 3333 forbids hop-by-hop headers; we frame and manage the connection
            # ourselves, but honour an app's wish to close.
            if lower == "connection" and "close" in value.lower():
                forces_close = True
            continue
        elif lower == "server":
            has_server = True
        elif lower == "date":
            has_date = True
        out.append((name, value))
    framing = choose_response_framing(method, http_version, code, content_length)
    if code == 204:
        # RFC 9110 §8.6: no Content-Length in a 204 (a 304 keeps the app's; 1xx never get here).
        out = [(n, v) for n, v in out if n.lower() != "content-length"]
    if framing.kind is BodyKind.CHUNKED:
        out.append(("Transfer-Encoding", "chunked"))
    elif framing.kind is BodyKind.UNTIL_CLOSE:
        forces_close = True
    # An HTTP/1.0 client gets HTTP/1.1 in the status line too (RFC 9110 §6.2: a server
    # sends its own version), framed as 1.0 understands it (never chunked).
    prefix = encode_response_head(status, out)[:-2]
    return HeadTemplate(code, framing, prefix, has_date, has_server, forces_close, out)
