"""Incremental HTTP/1.1 parsers: ``RequestParser`` (server role), ``ResponseParser`` (client).

Feed bytes with ``feed(data)`` (``feed(b"")`` means the peer closed), then call
``next_event()`` until it returns ``NEED_DATA`` or ``PAUSED``. Any split of the input
gives the same events. The parsers never do I/O and keep at most the limits' worth of
bytes beyond what the driver has not yet asked events for. What both roles share (the
buffer, the ``ParserState`` machine, bodies and trailers) is ``reader.BaseParser``; this
module parses each role's head.

Fast path for a head: one ``bytes.find`` for the blank line, one compiled regex over the
request line, and the field block validated and split by ``fields.parse_field_block`` with
whole-block bytes operations; no per-byte Python loops.
"""
from __future__ import annotations

import re
from collections import deque
from typing import Final

from wsgiserve.http.errors import (
    ExpectationFailed,
    RemoteProtocolError,
    RequestLineTooLong,
    UnsupportedVersion,
)
from wsgiserve.http.events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    InformationalResponse,
    Request,
    Response,
)
from wsgiserve.http.caches import FieldNameCache, RequestHeadCache
from wsgiserve.http.fields import VALUE_CHARS, parse_field_block
from wsgiserve.http.framing import (
    NO_BODY,
    BodyKind,
    request_framing,
    response_framing,
    wants_keep_alive,
)
from wsgiserve.http.headers import FIELD_ABSENT, FIELD_REPEATED, TCHAR
from wsgiserve.http.limits import HttpLimits
from wsgiserve.http.reader import BaseParser, ParserEvent, ParserState

__all__ = ["ParserEvent", "ParserState", "RequestParser", "ResponseParser"]

_S = ParserState
# RFC 9112 §3: request-line = method SP request-target SP HTTP-version, single spaces. A
# target never holds "#" (§3.2: a fragment is not part of any request-target form).
_REQUEST_LINE_RE: Final = re.compile(
    rb"([" + TCHAR + rb"]+) ([^\x00-\x20\x7f#]+) HTTP/([0-9])\.([0-9])")
# RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]. A missing
# SP after the code is tolerated (old servers send it); it cannot change the framing.
_STATUS_LINE_RE: Final = re.compile(
    rb"HTTP/([0-9])\.([0-9]) ([1-9][0-9][0-9])(?: (" + VALUE_CHARS + rb"*))?")
# RFC 9112 §3.2.2 absolute-form: an http(s) URI whose authority is host[:port] (RFC 3986
# §3.2.2: a reg-name or an IP literal; no userinfo, which RFC 9110 §4.2.4 makes an error).
_ABSOLUTE_FORM_RE: Final = re.compile(
    rb"[Hh][Tt][Tt][Pp][Ss]?://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)"
    rb"(?::[0-9]*)?(?:[/?].*)?", re.S)
_AUTHORITY_FORM_RE: Final = re.compile(rb"[^/?#@\s]+:[0-9]+")
# RFC 9110 §7.2 Host = uri-host [ ":" port ]; uri-host is an IP literal or a reg-name
# (RFC 3986 §3.2.2). An empty Host is allowed for targets without an authority.
_HOST_RE: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")
# A Host made only of these bytes is a valid reg-name with an optional port... unless it
# has colons, which the regex then checks (IPv6 literals, several ports).
_HOST_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"

class RequestParser(BaseParser):
    """Parses requests (the server role), one after another on a persistent connection.

    After a request that ends the connection (``Connection: close``, HTTP/1.0 without
    keep-alive) the parser is DONE: later bytes are never parsed (a request smuggled
    behind it is not answered) and ``next_event`` returns ``PAUSED``.
    """

    __slots__ = ("_head_cache",)

    def __init__(self, limits: HttpLimits | None = None, *,
                 head_cache: RequestHeadCache | None = None,
                 name_cache: FieldNameCache | None = None) -> None:
        """``head_cache`` and ``name_cache``: shared by parsers with the same limits (see
        ``caches``); without them, no head is cached and the names are this parser's."""
        super().__init__(limits, name_cache)
        self._head_cache = head_cache

    def _next_head(self) -> ParserEvent:
        buf = self._buffer
        pos = self._pos
        if pos == len(buf) and not self._peer_closed:
            return NEED_DATA  # the keep-alive case: nothing buffered after a response
        end = buf.find(b"\r\n\r\n", self._scan if self._scan > pos else pos)
        limits = self.limits
        if end > pos and buf[pos] != 13 and end + 4 - pos <= limits.max_head_bytes:
            # The fast path: a whole head, no leading empty lines (RFC 9112 §2.2: those
            # are skipped by _find_head), within the limit.
            # The head is buf[pos:end + 2]: read in place, only the field block is copied.
            self._pos = self._scan = end + 4
            cache = self._head_cache
            if cache is not None:
                head = buf[pos:end + 2] if isinstance(buf, bytes) else bytes(buf[pos:end + 2])
                cached = cache.get(head)
                if cached is not None:
                    self._keep_alive = cached.keep_alive
                    self._start_body(cached.framing)
                    return cached
                request = self._parse_head(buf, pos, end, limits)
                cache.put(head, request)
                return request
        else:
            found = self._find_head()
            if not isinstance(found, bytes):
                return found
            buf, pos, end = found, 0, len(found) - 2
        return self._parse_head(buf, pos, end, limits)

    def _parse_head(self, buf: bytes | bytearray, pos: int, end: int,
                    limits: HttpLimits) -> Request:
        """Parse the head at ``buf[pos:end + 2]`` (its last CRLF included) and start its
        body; the parser has consumed it already."""
        line_end = buf.find(b"\r\n", pos)
        if line_end - pos > limits.max_request_line_bytes:
            raise RequestLineTooLong("the request line is longer than the limit")
        match = _REQUEST_LINE_RE.fullmatch(buf, pos, line_end)
        if match is None:
            raise self._request_line_error(bytes(buf[pos:line_end]))
        method, target, major, minor = match.groups()
        try:
            if major != b"1":
                # RFC 9110 §6.2 / RFC 9112 §2.3: we implement HTTP/1.x only.
                raise UnsupportedVersion(f"HTTP/{major.decode()}.{minor.decode()} is not supported")
            # RFC 9110 §6.2: a 1.x version above 1.1 is handled as 1.1.
            version = b"1.0" if minor == b"0" else b"1.1"
            # Whitespace before the first field line (RFC 9112 §2.2) or obs-fold (§5.2) make a
            # field name that is not a token: both are rejected below.
            headers, (host_at, has_framing_fields, connection_at, has_expect) = \
                parse_field_block(bytes(buf[line_end + 2:end + 2]), limits, self._names)
            if target[0] != 47 or method == b"CONNECT":  # b"/"; CONNECT takes authority-form only
                self._check_target_form(method, target)
            if host_at < 0:
                # RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any request
                # with more than one Host field line.
                if host_at == FIELD_REPEATED or version == b"1.1":
                    raise RemoteProtocolError("missing or repeated Host header")
            else:
                host = headers.fields[host_at][1]
                if host.translate(None, _HOST_BYTES) and _HOST_RE.fullmatch(host) is None:
                    raise RemoteProtocolError("invalid Host header")
            framing = NO_BODY
            if has_framing_fields:
                framing = request_framing(version, headers, limits.max_body_bytes)
            keep_alive = version == b"1.1" if connection_at == FIELD_ABSENT else \
                wants_keep_alive(version, headers, connection_at)
            expects_continue = False
            if has_expect and version == b"1.1":
                # RFC 9110 §10.1.1: 100-continue is the only expectation defined; a server MAY
                # answer 417 to any other, and does here rather than ignore it. HTTP/1.0
                # requests' expectations MUST be ignored.
                expectation = headers.combined(b"expect")
                if expectation is not None and expectation.lower() == b"100-continue":
                    expects_continue = framing.has_body
                elif expectation:
                    raise ExpectationFailed("only 100-continue is a supported expectation")
            self._keep_alive = keep_alive
            self._start_body(framing)
        except RemoteProtocolError as exc:
            exc.method = method  # the server answers a HEAD request without a body
            raise
        return Request(method, target, version, headers, framing, keep_alive, expects_continue)

    @staticmethod
    def _check_target_form(method: bytes, target: bytes) -> None:
        # RFC 9112 §3.2: origin-form ("/..."), absolute-form (any method), authority-form
        # (CONNECT only) and asterisk-form (OPTIONS only); anything else is a 400.
        if target == b"*":
            if method == b"OPTIONS":
                return
        elif method == b"CONNECT":
            if _AUTHORITY_FORM_RE.fullmatch(target) is not None:
                return
        elif _ABSOLUTE_FORM_RE.fullmatch(target) is not None:
            return
        raise RemoteProtocolError("invalid request-target")

    @staticmethod
    def _request_line_error(line: bytes) -> RemoteProtocolError:
        parts = line.split(b" ")
        if len(parts) == 3 and re.fullmatch(rb"HTTP/[0-9]\.[0-9]", parts[2]):
            if parts[2][5:6] != b"1":
                return UnsupportedVersion("unsupported HTTP version")
        return RemoteProtocolError("invalid request line")


class ResponseParser(BaseParser):
    """Parses responses (the client role).

    Before each response, ``expect_response(method)`` names the request method it answers
    (HEAD and CONNECT change the framing); requests may be queued for pipelining. With none
    queued, ``next_event`` returns ``PAUSED``. Interim 1xx responses come as
    ``InformationalResponse`` before the final ``Response``.
    """

    __slots__ = ("_methods",)
    unfolds_obs_fold = True   # RFC 9112 §5.2: a user agent MUST replace obs-fold with SP

    def __init__(self, limits: HttpLimits | None = None,
                 name_cache: FieldNameCache | None = None) -> None:
        super().__init__(limits, name_cache)
        self._methods: deque[bytes] = deque()

    def expect_response(self, method: bytes) -> None:
        """Queue the method of a request sent on this connection."""
        self._methods.append(method)

    def _next_head(self) -> ParserEvent:
        if not self._methods:
            if self._peer_closed and len(self._buffer) == self._pos:
                self._set_state(_S.CLOSED)
                return ConnectionClosed()
            return PAUSED
        head = self._find_head()
        if not isinstance(head, bytes):
            return head
        line_end = head.find(b"\r\n")
        match = _STATUS_LINE_RE.fullmatch(head, 0, line_end)
        if match is None:
            raise RemoteProtocolError(f"invalid status line {head[:min(line_end, 60)]!r}")
        major, minor, code, reason = match.groups()
        if major != b"1":
            raise RemoteProtocolError(f"unsupported HTTP version {major!r}.{minor!r}")
        version = b"1.0" if minor == b"0" else b"1.1"
        if head[line_end + 2:line_end + 3] in (b" ", b"\t"):
            raise RemoteProtocolError("whitespace before the first header field")
        block = head[line_end + 2:]
        try:
            headers = parse_field_block(block, self.limits, self._names)[0]
        except RemoteProtocolError as exc:  # costs nothing unless raised
            headers = self._parse_folded_fields(block, exc)
        status = int(code)
        method = self._methods[0]
        if 100 <= status < 200 and status != 101:
            return InformationalResponse(status, reason or b"", version, headers, NO_BODY,
                                         True)
        framing = response_framing(method, status, headers)
        keep_alive = wants_keep_alive(version, headers) and framing.kind is not BodyKind.UNTIL_CLOSE
        self._methods.popleft()
        self._keep_alive = keep_alive
        self._start_body(framing)
        return Response(status, reason or b"", version, headers, framing, keep_alive)
