"""What both parsers share: the buffer, the state machine, and reading bodies.

``BaseParser`` buffers what ``feed`` gives (``feed(b"")`` means the peer closed), finds the
end of each head, and reads bodies by their framing: Content-Length, chunked with its
trailers, until close, or a tunnel. ``parser.RequestParser`` and ``parser.ResponseParser``
add the head of their role. Any split of the input gives the same events, and no buffer
grows past the limits.

State machine (``ParserState``); a transition not in ``TRANSITIONS`` raises::

    HEAD ──> BODY_LENGTH ───────────────┐
      │ ───> CHUNK_SIZE <─> CHUNK_DATA   │  (CHUNK_DATA -> CHUNK_END -> CHUNK_SIZE)
      │        └──> TRAILERS ────────────┤
      │ ───> BODY_UNTIL_CLOSE ───────────┼──> HEAD (keep-alive) / DONE / CLOSED
      │ ───> SWITCHED (tunnel, 101)      │
      └───────────── (no body) ──────────┘
    any state ──> ERROR once a RemoteProtocolError is raised (it stays there).
"""
from __future__ import annotations

import re
from enum import Enum
from typing import ClassVar, Final

from wsgiserve.http.caches import FieldNameCache
from wsgiserve.http.errors import (
    BodyTooLarge,
    HeadTooLarge,
    IncompleteMessage,
    RemoteProtocolError,
    RequestLineTooLong,
)
from wsgiserve.http.events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Sentinel,
)
from wsgiserve.http.fields import parse_field_block, unfold_obs_fold
from wsgiserve.http.framing import BodyKind, Framing
from wsgiserve.http.headers import QUOTED_STRING, TCHAR, Headers
from wsgiserve.http.limits import HttpLimits

__all__ = ["TRANSITIONS", "BaseParser", "ParserEvent", "ParserState"]

ParserEvent = Event | Sentinel


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
# The members as module names for the hot paths: on Python 3.11 an attribute of an Enum
# class goes through EnumType.__getattr__'s slow lookup hook (~150 ns each).
(_HEAD, _BODY_LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _BODY_UNTIL_CLOSE,
 _DONE, _SWITCHED, _CLOSED, _ERROR) = ParserState
_KIND_NONE, _KIND_LENGTH, _KIND_CHUNKED, _KIND_UNTIL_CLOSE, _KIND_TUNNEL = BodyKind
_END_OF_MESSAGE: Final = frozenset({_S.HEAD, _S.DONE, _S.SWITCHED})
TRANSITIONS: Final[dict[ParserState, frozenset[ParserState]]] = {
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


# RFC 9112 §7.1: chunk-size [ chunk-ext ] CRLF, with chunk-ext = *( BWS ";" BWS name
# [ BWS "=" BWS value ] ). At most 16 hex digits (64 bits): longer sizes are an overflow
# attempt and refused rather than truncated (a classic smuggling vector).
_CHUNK_LINE_RE: Final = re.compile(
    rb"0*([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*[" + TCHAR + rb"]+(?:[ \t]*=[ \t]*(?:[" + TCHAR
    + rb"]+|" + QUOTED_STRING + rb"))?)*\r\n")
_DEFAULT_LIMITS: Final = HttpLimits()


class BaseParser:
    """Buffering, body reading and trailers: what both roles share."""

    __slots__ = ("limits", "_buffer", "_pos", "_scan", "_peer_closed", "_state", "_remaining",
                 "_body_bytes", "_keep_alive", "_names")

    # RFC 9112 §5.2: whether this role replaces obs-fold in field lines by SP (a user agent
    # MUST, in a response) instead of refusing it (what a server may do, and ours does).
    unfolds_obs_fold: ClassVar[bool] = False

    def __init__(self, limits: HttpLimits | None = None,
                 name_cache: FieldNameCache | None = None) -> None:
        """``name_cache``: shared by the parsers of one owner (a server worker), else one
        of this parser's own."""
        self.limits = limits or _DEFAULT_LIMITS
        self._names = name_cache if name_cache is not None else FieldNameCache()
        self._buffer: bytes | bytearray = b""
        self._pos = 0               # start of the unconsumed bytes in _buffer
        self._scan = 0              # where the next search for the end of a head starts
        self._peer_closed = False
        self._state = _HEAD
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

    def body_bytes_received(self, framing: Framing) -> int:
        """How much of the current message's body (framed by ``framing``) has arrived:
        returned as ``Data``, or buffered behind what was (chunk data: of the current
        chunk only). For a count, once the message has been answered."""
        available = len(self._buffer) - self._pos
        if framing.kind is BodyKind.LENGTH:
            return framing.length - self._remaining + min(self._remaining, available)
        if framing.kind is BodyKind.CHUNKED:
            buffered = min(self._remaining, available) if self._state is _S.CHUNK_DATA else 0
            return self._body_bytes - self._remaining + buffered
        return 0

    @property
    def is_peer_closed(self) -> bool:
        """``feed(b"")`` was called: nothing more will come."""
        return self._peer_closed

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
            if state is _HEAD:
                return self._next_head()
            if state is _BODY_LENGTH:
                return self._next_length_data()
            if state is _CHUNK_SIZE or state is _CHUNK_DATA or state is _CHUNK_END:
                return self._next_chunk_event()
            if state is _TRAILERS:
                return self._next_trailers()
            if state is _BODY_UNTIL_CLOSE:
                return self._next_until_close_data()
            if state is _DONE or state is _SWITCHED:
                if state is _DONE and self._peer_closed:
                    self._set_state(_CLOSED)
                    return ConnectionClosed()
                return PAUSED
            if state is _CLOSED:
                return ConnectionClosed()
            raise RemoteProtocolError("the parser already failed")
        except RemoteProtocolError:
            # The documented exception to the table (as h11's ERROR): any state goes to
            # ERROR once the bytes are found invalid, and stays there.
            self._state = _ERROR
            raise

    def skip_empty_body(self) -> None:
        """Consume the ``EndOfMessage`` of a message whose framing says it has no body, as
        ``next_event()`` would return it, without building the event.

        Raises:
            AssertionError: the current message is not a bodiless one at its body.
        """
        if self._state is not _BODY_LENGTH or self._remaining:
            raise AssertionError(f"no empty body to skip in state {self._state}")
        self._message_done()

    # -- internals ----------------------------------------------------------------------
    def _set_state(self, new: ParserState) -> None:
        if new not in TRANSITIONS[self._state]:
            raise AssertionError(f"parser transition {self._state} -> {new} is not in the table")
        self._state = new

    def _next_head(self) -> ParserEvent:
        raise NotImplementedError

    def _find_head(self) -> bytes | ParserEvent:
        """Return the next head (through the CRLF of its last line), or the event to return
        instead: ``NEED_DATA``, or ``ConnectionClosed`` for a clean close between messages."""
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
            if self._peer_closed and len(buf) == pos:
                self._set_state(_CLOSED)  # a clean close between messages
                return ConnectionClosed()
            self._check_incomplete_head(buf, pos)
            self._scan = max(pos, len(buf) - 3)
            return NEED_DATA
        self._pos = end + 4
        self._scan = end + 4
        if end + 4 - pos > self.limits.max_head_bytes:
            self._check_line_length(buf, pos)
            raise HeadTooLarge("the request head is larger than the limit")
        return bytes(buf[pos:end + 2])

    def _check_incomplete_head(self, buf: bytes | bytearray, pos: int) -> None:
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

    def _parse_folded_fields(self, block: bytes, error: RemoteProtocolError) -> Headers:
        """``parse_field_block`` refused ``block`` with ``error``: parse it again unfolded
        if this role unfolds obs-fold and the block has one, else raise ``error``."""
        unfolded = unfold_obs_fold(block) if self.unfolds_obs_fold else None
        if unfolded is None:
            raise error
        return parse_field_block(unfolded, self.limits, self._names)[0]

    def _start_body(self, framing: Framing) -> None:
        kind = framing.kind
        if kind is _KIND_LENGTH or kind is _KIND_NONE:  # NO_BODY: a length of 0
            self._remaining = framing.length
            self._set_state(_BODY_LENGTH)
        elif kind is _KIND_CHUNKED:
            self._body_bytes = 0
            self._set_state(_CHUNK_SIZE)
        elif kind is _KIND_UNTIL_CLOSE:
            self._set_state(_BODY_UNTIL_CLOSE)
        elif kind is _KIND_TUNNEL:
            self._set_state(_SWITCHED)

    def _message_done(self) -> None:
        # Written directly, on every message's hot path: only BODY_LENGTH and TRAILERS end
        # here, and TRANSITIONS lets both go to HEAD and to DONE.
        self._state = _HEAD if self._keep_alive else _DONE

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
            self._set_state(_DONE)
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
        if state is _CHUNK_DATA:
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
                self._set_state(_CHUNK_END)
            return Data(bytes(self._buffer[start:start + take]))
        if state is _CHUNK_END:
            if len(self._buffer) - self._pos < 2:
                if self._peer_closed:
                    raise IncompleteMessage("the peer closed inside a chunk")
                if bytes(self._buffer[self._pos:self._pos + 1]) not in (b"", b"\r"):
                    raise RemoteProtocolError("chunk data is not followed by CRLF")
                return NEED_DATA
            if not self._buffer.startswith(b"\r\n", self._pos):
                raise RemoteProtocolError("chunk data is not followed by CRLF")
            self._pos += 2
            self._set_state(_CHUNK_SIZE)
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
            self._set_state(_TRAILERS)
            return self._next_trailers()
        self._body_bytes += size
        max_body = self.limits.max_body_bytes
        if max_body and self._body_bytes > max_body:
            raise BodyTooLarge(f"the chunked body is over the limit of {max_body} bytes")
        self._remaining = size
        self._set_state(_CHUNK_DATA)
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
        block = bytes(buf[pos:end + 2])
        try:
            trailers = parse_field_block(block, self.limits, self._names)[0]
        except RemoteProtocolError as exc:  # costs nothing unless raised
            trailers = self._parse_folded_fields(block, exc)
        self._pos = end + 4
        self._message_done()
        return EndOfMessage(trailers)
