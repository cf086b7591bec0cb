"""Incremental HTTP/1.1 parsers: ``RequestParser`` (server role), ``ResponseParser`` (client).

Feed bytes with ``feed(data)`` (``feed(b"")`` means the peer closed), then call
``next_event()`` until it returns ``NEED_DATA`` or ``PAUSED``. Any split of the input
gives the same events. The parsers never do I/O and keep at most the limits' worth of
bytes beyond what the driver has not yet asked events for.

State machine (``ParserState``); a transition not in ``_TRANSITIONS`` raises::

    HEAD ──> BODY_LENGTH ───────────────┐
      │ ───> CHUNK_SIZE <─> CHUNK_DATA   │  (CHUNK_DATA -> CHUNK_END -> CHUNK_SIZE)
      │        └──> TRAILERS ────────────┤
      │ ───> BODY_UNTIL_CLOSE ───────────┼──> HEAD (keep-alive) / DONE / CLOSED
      │ ───> SWITCHED (tunnel, 101)      │
      └───────────── (no body) ──────────┘
    any state ──> ERROR once a RemoteProtocolError is raised (it stays there).

Fast path for a head: one ``bytes.find`` for the blank line, one compiled regex over the
request line, and the field block validated and split by ``fields.parse_field_block`` with
whole-block bytes operations; no per-byte Python loops.
"""
from __future__ import annotations

import re
from collections import deque
from enum import Enum
from typing import Final

from wsgiserve.http.errors import (
    BodyTooLarge,
    ExpectationFailed,
    HeadTooLarge,
    IncompleteMessage,
    RemoteProtocolError,
    RequestLineTooLong,
    UnsupportedVersion,
)
from wsgiserve.http.events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    Request,
    Response,
    Sentinel,
)
from wsgiserve.http.framing import (
    NO_BODY,
    BodyKind,
    Framing,
    request_framing,
    response_framing,
    wants_keep_alive,
)
from wsgiserve.http.fields import VALUE_CHARS, parse_field_block
from wsgiserve.http.headers import TCHAR
from wsgiserve.http.limits import HttpLimits

ParserEvent = Request | Response | InformationalResponse | Data | EndOfMessage | ConnectionClosed | Sentinel


class ParserState(Enum):
    # Members are singletons: identity hashing keeps table lookups at C speed (Enum's
    # own __hash__ is Python code, and the state table is consulted on every message).
    __hash__ = object.__hash__

    HEAD = "head"
    BODY_LENGTH = "body-length"
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_END = "chunk-end"
    TRAILERS = "trailers"
    BODY_UNTIL_CLOSE = "body-until-close"
    DONE = "done"            # a message that ends the connection is complete
    SWITCHED = "switched"    # the connection left HTTP (CONNECT tunnel, 101)
    CLOSED = "closed"        # the peer closed between messages
    ERROR = "error"


_S = ParserState
_END_OF_MESSAGE: Final = frozenset({_S.HEAD, _S.DONE, _S.SWITCHED})
_TRANSITIONS: Final[dict[ParserState, frozenset[ParserState]]] = {
    _S.HEAD: frozenset({_S.HEAD, _S.BODY_LENGTH, _S.CHUNK_SIZE, _S.BODY_UNTIL_CLOSE,
                        _S.DONE, _S.SWITCHED, _S.CLOSED}),
    _S.BODY_LENGTH: _END_OF_MESSAGE,
    _S.CHUNK_SIZE: frozenset({_S.CHUNK_DATA, _S.TRAILERS}),
    _S.CHUNK_DATA: frozenset({_S.CHUNK_END}),
    _S.CHUNK_END: frozenset({_S.CHUNK_SIZE}),
    _S.TRAILERS: _END_OF_MESSAGE,
    _S.BODY_UNTIL_CLOSE: frozenset({_S.DONE}),
    _S.DONE: frozenset({_S.CLOSED}),
    _S.SWITCHED: frozenset(),
    _S.CLOSED: frozenset(),
    _S.ERROR: frozenset(),
}

# RFC 9112 §3: request-line = method SP request-target SP HTTP-version, single spaces.
_REQUEST_LINE_RE: Final = re.compile(
    rb"([" + TCHAR + rb"]+) ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])")
# RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]. A missing
# SP after the code is tolerated (old servers send it); it cannot change the framing.
_STATUS_LINE_RE: Final = re.compile(
    rb"HTTP/([0-9])\.([0-9]) ([1-9][0-9][0-9])(?: (" + VALUE_CHARS + rb"*))?")
_ABSOLUTE_FORM_RE: Final = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*(?:[/?#].*)?", re.S)
_AUTHORITY_FORM_RE: Final = re.compile(rb"[^/?#@\s]+:[0-9]+")
# RFC 9110 §7.2 Host = uri-host [ ":" port ]; uri-host is an IP literal or a reg-name
# (RFC 3986 §3.2.2). An empty Host is allowed for targets without an authority.
_HOST_RE: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")
_QUOTED: Final = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# RFC 9112 §7.1: chunk-size [ chunk-ext ] CRLF, with chunk-ext = *( BWS ";" BWS name
# [ BWS "=" BWS value ] ). At most 16 hex digits (64 bits): longer sizes are an overflow
# attempt and refused rather than truncated (a classic smuggling vector).
_CHUNK_LINE_RE: Final = re.compile(
    rb"0*([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*[" + TCHAR + rb"]+(?:[ \t]*=[ \t]*(?:[" + TCHAR
    + rb"]+|" + _QUOTED + rb"))?)*\r\n")
_SUPPORTED_VERSIONS: Final = {b"1.0", b"1.1"}
_DEFAULT_LIMITS: Final = HttpLimits()
# A Host made only of these bytes is a valid reg-name with an optional port... unless it
# has colons, which the regex then checks (IPv6 literals, several ports).
_HOST_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


class _Parser:
    """Buffering, body reading and trailers: what both roles share."""

    __slots__ = ("limits", "_buffer", "_pos", "_scan", "_peer_closed", "_state", "_remaining",
                 "_body_bytes", "_keep_alive")

    def __init__(self, limits: HttpLimits | None = None) -> None:
        self.limits = limits or _DEFAULT_LIMITS
        self._buffer: bytes | bytearray = b""
        self._pos = 0               # start of the unconsumed bytes in _buffer
        self._scan = 0              # where the next search for the end of a head starts
        self._peer_closed = False
        self._state = ParserState.HEAD
        self._remaining = 0         # bytes left in the Content-Length body or current chunk
        self._body_bytes = 0        # chunked bytes so far (max_body_bytes)
        self._keep_alive = True

    # -- driver interface ---------------------------------------------------------------
    @property
    def state(self) -> ParserState:
        return self._state

    @property
    def trailing_data(self) -> bytes:
        """Bytes received but not consumed (after DONE or SWITCHED: the tunnel's first bytes)."""
        return bytes(self._buffer[self._pos:])

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer) - self._pos

    def feed(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._peer_closed = True
            return
        buf = self._buffer
        if self._pos == len(buf):
            # Everything before was consumed (the usual case: one recv, one message):
            # keep the bytes object itself, so slicing a head or body copies once.
            self._buffer = data
            self._scan = self._pos = 0
            return
        if isinstance(buf, bytes):
            buf = bytearray(buf)  # appends to bytes would copy it all, every time
        if self._pos > 65536 and self._pos * 2 > len(buf):
            del buf[:self._pos]
            self._scan = max(0, self._scan - self._pos)
            self._pos = 0
        buf += data
        self._buffer = buf

    def next_event(self) -> ParserEvent:
        """Return the next event, ``NEED_DATA`` or ``PAUSED``.

        Raises:
            RemoteProtocolError: the bytes are invalid; the parser is left in ERROR and
                raises the same kind of error on every later call.
        """
        state = self._state
        try:
            if state is _S.HEAD:
                return self._next_head()
            if state is _S.BODY_LENGTH:
                return self._next_length_data()
            if state is _S.CHUNK_SIZE or state is _S.CHUNK_DATA or state is _S.CHUNK_END:
                return self._next_chunk_event()
            if state is _S.TRAILERS:
                return self._next_trailers()
            if state is _S.BODY_UNTIL_CLOSE:
                return self._next_until_close_data()
            if state is _S.DONE or state is _S.SWITCHED:
                if state is _S.DONE and self._peer_closed:
                    self._set_state(_S.CLOSED)
                    return ConnectionClosed()
                return PAUSED
            if state is _S.CLOSED:
                return ConnectionClosed()
            raise RemoteProtocolError("the parser already failed")
        except RemoteProtocolError:
            self._state = _S.ERROR
            raise

    # -- internals ----------------------------------------------------------------------
    def _set_state(self, new: ParserState) -> None:
        if new not in _TRANSITIONS[self._state]:
            raise AssertionError(f"parser transition {self._state} -> {new} is not in the table")
        self._state = new

    def _next_head(self) -> ParserEvent:
        raise NotImplementedError

    def _find_head(self) -> bytes | None:
        """Return the next head (through the CRLF of its last line), or None to wait."""
        buf = self._buffer
        pos = self._pos
        # RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the
        # request-line; we ignore any number (they cost no memory: they are dropped).
        while buf.startswith(b"\r\n", pos):
            pos += 2
        self._pos = pos
        if self._scan < pos:
            self._scan = pos
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            self._check_incomplete_head(buf, pos)
            self._scan = max(pos, len(buf) - 3)
            return None
        self._pos = end + 4
        self._scan = end + 4
        if end + 4 - pos > self.limits.max_head_bytes:
            self._check_line_length(buf, pos)
            raise HeadTooLarge("the request head is larger than the limit")
        return bytes(buf[pos:end + 2])

    def _check_incomplete_head(self, buf: bytes | bytearray, pos: int) -> None:
        if self._peer_closed and len(buf) == pos:
            raise _Closed
        self._check_line_length(buf, pos)
        if len(buf) - pos > self.limits.max_head_bytes:
            raise HeadTooLarge("the message head is larger than the limit")
        # A bare LF line ending (RFC 9112 §2.2 lets us refuse it) would otherwise make us
        # wait forever for a CRLF CRLF that never comes: answer at once instead.
        lf = buf.find(b"\n", max(pos, self._scan - 3))
        while lf >= 0:
            if lf == pos or buf[lf - 1] != 13:
                raise RemoteProtocolError("bare LF in the message head")
            lf = buf.find(b"\n", lf + 1)
        if self._peer_closed:
            raise IncompleteMessage("the peer closed the connection inside a message head")

    def _check_line_length(self, buf: bytes | bytearray, pos: int) -> None:
        # The first line is checked before the head size so that the answer (414 or 431)
        # does not depend on how the bytes were split: fed slowly, a long line is seen
        # before the head grows past its limit. A lone CR at the end may start the CRLF.
        limit = self.limits.max_request_line_bytes
        line_end = buf.find(b"\r\n", pos, pos + limit + 2)
        if line_end < 0:
            size = min(len(buf), pos + limit + 2) - pos
            if size > limit + 1 or (size == limit + 1 and buf[pos + limit] != 13):
                raise RequestLineTooLong("the request line is longer than the limit")

    def _start_body(self, framing: Framing) -> None:
        kind = framing.kind
        if kind is BodyKind.LENGTH:
            self._remaining = framing.length
            self._set_state(_S.BODY_LENGTH)
        elif kind is BodyKind.CHUNKED:
            self._body_bytes = 0
            self._set_state(_S.CHUNK_SIZE)
        elif kind is BodyKind.UNTIL_CLOSE:
            self._set_state(_S.BODY_UNTIL_CLOSE)
        elif kind is BodyKind.TUNNEL:
            self._set_state(_S.SWITCHED)

    def _message_done(self) -> None:
        # Only BODY_LENGTH and TRAILERS end here; both may go to HEAD and DONE (_TRANSITIONS).
        self._state = _S.HEAD if self._keep_alive else _S.DONE

    def _next_length_data(self) -> ParserEvent:
        if self._remaining == 0:
            self._message_done()
            return EndOfMessage()
        available = len(self._buffer) - self._pos
        if available == 0:
            if self._peer_closed:
                raise IncompleteMessage(f"the peer closed with {self._remaining} body bytes missing")
            return NEED_DATA
        take = min(available, self._remaining)
        start = self._pos
        self._pos = start + take
        self._remaining -= take
        return Data(bytes(self._buffer[start:start + take]))

    def _next_until_close_data(self) -> ParserEvent:
        available = len(self._buffer) - self._pos
        if available:
            start = self._pos
            self._pos = len(self._buffer)
            return Data(bytes(self._buffer[start:]))
        if self._peer_closed:
            self._keep_alive = False
            self._set_state(_S.DONE)
            return EndOfMessage()
        return NEED_DATA

    def _read_line(self, max_bytes: int, what: str) -> tuple[int, int] | None:
        """Return (start, end) of the next CRLF-terminated line, end past the CRLF."""
        buf = self._buffer
        start = self._pos
        lf = buf.find(b"\n", start)
        if lf < 0:
            if len(buf) - start > max_bytes:
                raise RemoteProtocolError(f"{what} is longer than the limit")
            if self._peer_closed:
                raise IncompleteMessage(f"the peer closed inside the {what}")
            return None
        if lf == start or buf[lf - 1] != 13:
            raise RemoteProtocolError(f"bare LF in the {what}")
        if lf + 1 - start > max_bytes:
            raise RemoteProtocolError(f"{what} is longer than the limit")
        return start, lf + 1

    def _next_chunk_event(self) -> ParserEvent:
        state = self._state
        if state is _S.CHUNK_DATA:
            available = len(self._buffer) - self._pos
            if available == 0:
                if self._peer_closed:
                    raise IncompleteMessage("the peer closed inside a chunk")
                return NEED_DATA
            take = min(available, self._remaining)
            start = self._pos
            self._pos = start + take
            self._remaining -= take
            if self._remaining == 0:
                self._set_state(_S.CHUNK_END)
            return Data(bytes(self._buffer[start:start + take]))
        if state is _S.CHUNK_END:
            if len(self._buffer) - self._pos < 2:
                if self._peer_closed:
                    raise IncompleteMessage("the peer closed inside a chunk")
                if bytes(self._buffer[self._pos:self._pos + 1]) not in (b"", b"\r"):
                    raise RemoteProtocolError("chunk data is not followed by CRLF")
                return NEED_DATA
            if not self._buffer.startswith(b"\r\n", self._pos):
                raise RemoteProtocolError("chunk data is not followed by CRLF")
            self._pos += 2
            self._set_state(_S.CHUNK_SIZE)
        line = self._read_line(self.limits.max_chunk_line_bytes, "chunk-size line")
        if line is None:
            return NEED_DATA
        start, end = line
        match = _CHUNK_LINE_RE.fullmatch(self._buffer, start, end)
        if match is None:
            raise RemoteProtocolError("invalid chunk-size line")
        size = int(match.group(1), 16)
        self._pos = end
        if size == 0:
            self._set_state(_S.TRAILERS)
            return self._next_trailers()
        self._body_bytes += size
        max_body = self.limits.max_body_bytes
        if max_body and self._body_bytes > max_body:
            raise BodyTooLarge(f"the chunked body is over the limit of {max_body} bytes")
        self._remaining = size
        self._set_state(_S.CHUNK_DATA)
        return self._next_chunk_event()

    def _next_trailers(self) -> ParserEvent:
        buf = self._buffer
        pos = self._pos
        if buf.startswith(b"\r\n", pos):
            self._pos = pos + 2
            self._message_done()
            return EndOfMessage()
        if len(buf) - pos < 2 and bytes(buf[pos:pos + 1]) in (b"", b"\r"):
            if self._peer_closed:
                raise IncompleteMessage("the peer closed before the end of the chunked body")
            return NEED_DATA
        end = buf.find(b"\r\n\r\n", pos)
        limit = self.limits.max_trailer_bytes
        if end < 0:
            if len(buf) - pos > limit:
                raise HeadTooLarge("the trailer section is larger than the limit")
            lf = buf.find(b"\n", pos)
            while lf >= 0:
                if buf[lf - 1] != 13:
                    raise RemoteProtocolError("bare LF in the trailer section")
                lf = buf.find(b"\n", lf + 1)
            if self._peer_closed:
                raise IncompleteMessage("the peer closed inside the trailer section")
            return NEED_DATA
        if end + 4 - pos > limit:
            raise HeadTooLarge("the trailer section is larger than the limit")
        trailers = parse_field_block(bytes(buf[pos:end + 2]), self.limits)[0]
        self._pos = end + 4
        self._message_done()
        return EndOfMessage(trailers)


class _Closed(Exception):
    """Internal: the peer closed cleanly between messages."""


class RequestParser(_Parser):
    """Parses requests (the server role), one after another on a persistent connection.

    After a request that ends the connection (``Connection: close``, HTTP/1.0 without
    keep-alive) the parser is DONE: later bytes are never parsed (a request smuggled
    behind it is not answered) and ``next_event`` returns ``PAUSED``.
    """

    __slots__ = ()

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
        else:
            try:
                found = self._find_head()
            except _Closed:
                self._set_state(_S.CLOSED)
                return ConnectionClosed()
            if found is None:
                return NEED_DATA
            buf, pos, end = found, 0, len(found) - 2
        line_end = buf.find(b"\r\n", pos)
        if line_end - pos > limits.max_request_line_bytes:
            raise RequestLineTooLong("the request line is longer than the limit")
        match = _REQUEST_LINE_RE.fullmatch(buf, pos, line_end)
        if match is None:
            raise self._request_line_error(bytes(buf[pos:line_end]))
        method, target, major, minor = match.groups()
        if major != b"1":
            # RFC 9110 §6.2 / RFC 9112 §2.3: we implement HTTP/1.x only.
            raise UnsupportedVersion(f"HTTP/{major.decode()}.{minor.decode()} is not supported")
        # RFC 9110 §6.2: a 1.x version above 1.1 is handled as 1.1.
        version = b"1.0" if minor == b"0" else b"1.1"
        # Whitespace before the first field line (RFC 9112 §2.2) or obs-fold (§5.2) make a
        # field name that is not a token: both are rejected below.
        headers, (host_at, has_framing_fields, connection_at, has_expect) = \
            parse_field_block(bytes(buf[line_end + 2:end + 2]), limits)
        if target[0] != 47 or method == b"CONNECT":  # b"/"; CONNECT takes authority-form only
            self._check_target_form(method, target)
        if host_at < 0:
            # RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any request
            # with more than one Host field line.
            if host_at == -2 or version == b"1.1":
                raise RemoteProtocolError("missing or repeated Host header")
        else:
            host = headers.fields[host_at][1]
            if host.translate(None, _HOST_BYTES) and _HOST_RE.fullmatch(host) is None:
                raise RemoteProtocolError("invalid Host header")
        framing = NO_BODY
        if has_framing_fields:
            framing = request_framing(version, headers, limits.max_body_bytes)
        keep_alive = version == b"1.1"
        if connection_at != -1:
            value = headers.fields[connection_at][1] if connection_at >= 0 else b""
            # The two values nearly every client sends, decided without splitting a list.
            if value == b"keep-alive":
                keep_alive = True
            elif value == b"close":
                keep_alive = False
            else:
                keep_alive = wants_keep_alive(version, headers)
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
        if framing is NO_BODY:
            self._state = _S.BODY_LENGTH  # HEAD -> BODY_LENGTH is in the table
            self._remaining = 0
        else:
            self._start_body(framing)
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


class ResponseParser(_Parser):
    """Parses responses (the client role).

    Before each response, ``expect_response(method)`` names the request method it answers
    (HEAD and CONNECT change the framing); requests may be queued for pipelining. With none
    queued, ``next_event`` returns ``PAUSED``. Interim 1xx responses come as
    ``InformationalResponse`` before the final ``Response``.
    """

    __slots__ = ("_methods",)

    def __init__(self, limits: HttpLimits | None = None) -> None:
        super().__init__(limits)
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
        try:
            head = self._find_head()
        except _Closed:
            self._set_state(_S.CLOSED)
            return ConnectionClosed()
        if head is None:
            return NEED_DATA
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
        headers = parse_field_block(head[line_end + 2:], self.limits)[0]
        status = int(code)
        method = self._methods[0]
        if 100 <= status < 200 and status != 101:
            return InformationalResponse(status, reason or b"", version, headers, NO_BODY,
                                         True)
        framing = response_framing(method, status, headers)
        keep_alive = wants_keep_alive(version, headers) and framing.kind is not BodyKind.UNTIL_CLOSE
        self._methods.popleft()
        self._keep_alive = keep_alive
        response = Response(status, reason or b"", version, headers, framing, keep_alive)
        if framing.kind is BodyKind.TUNNEL:
            self._set_state(_S.SWITCHED)
        elif framing is NO_BODY:
            self._set_state(_S.BODY_LENGTH)
            self._remaining = 0
        else:
            self._start_body(framing)
        return response
