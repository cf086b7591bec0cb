"""Replay raw bytes through a parser three ways and compare with the expected events.

Shared by the table-driven parser tests and the corpus test. A case is raw bytes and the
list of what ``next_event`` must return: events, then either a final sentinel
(``NEED_DATA`` or ``PAUSED``), ``ConnectionClosed()``, or an ``Err`` (the error raised).
A ``Trailing(b"...")`` entry, if present, is last and gives ``parser.trailing_data``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wsgiserve.http import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Headers,
    InformationalResponse,
    ProtocolError,
    RemoteProtocolError,
    Request,
    RequestParser,
    Response,
    ResponseParser,
)
from wsgiserve.http.events import Event, Sentinel
from wsgiserve.http.framing import NO_BODY, BodyKind, Framing

Parser = RequestParser | ResponseParser


@dataclass(frozen=True)
class Err:
    """The parser must raise exactly ``cls`` (not a subclass), whose message contains ``match``."""

    cls: type[RemoteProtocolError]
    match: str = ""

    @property
    def status(self) -> int:
        return self.cls.status


@dataclass(frozen=True)
class Trailing:
    """What ``parser.trailing_data`` must be once the events are read."""

    data: bytes


Item = Event | Sentinel | Err | Trailing


class Closing(bytes):
    """Raw bytes after which the peer closes its side (``feed(b"")``)."""


def closed(raw: bytes) -> Closing:
    return Closing(raw)


def length(n: int) -> Framing:
    return Framing(BodyKind.LENGTH, n) if n else NO_BODY


CHUNKED = Framing(BodyKind.CHUNKED)
UNTIL_CLOSE = Framing(BodyKind.UNTIL_CLOSE)
TUNNEL = Framing(BodyKind.TUNNEL)
HOST = [(b"Host", b"a")]


def req(method: bytes = b"GET", target: bytes = b"/", *,
        headers: Sequence[tuple[bytes, bytes]] = HOST, version: bytes = b"1.1",
        framing: Framing = NO_BODY, keep_alive: bool | None = None,
        expects_continue: bool = False) -> Request:
    if keep_alive is None:
        keep_alive = version == b"1.1"
    return Request(method, target, version, Headers(list(headers)), framing, keep_alive,
                   expects_continue)


def resp(status: int = 200, reason: bytes = b"OK", *,
         headers: Sequence[tuple[bytes, bytes]] = (), version: bytes = b"1.1",
         framing: Framing = NO_BODY, keep_alive: bool = True) -> Response:
    return Response(status, reason, version, Headers(list(headers)), framing, keep_alive)


def info(status: int, reason: bytes = b"", *,
         headers: Sequence[tuple[bytes, bytes]] = (), version: bytes = b"1.1") -> InformationalResponse:
    return InformationalResponse(status, reason, version, Headers(list(headers)), NO_BODY, True)


EOM = EndOfMessage()


def drain(parser: Parser) -> list[Item]:
    """Call next_event until a sentinel, ConnectionClosed or an error; record everything."""
    out: list[Item] = []
    for _ in range(100_000):
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            assert isinstance(exc, RemoteProtocolError), f"not a RemoteProtocolError: {exc!r}"
            out.append(Err(type(exc), str(exc)))
            return out
        out.append(event)
        if event is NEED_DATA or event is PAUSED or isinstance(event, ConnectionClosed):
            return out
    raise AssertionError("the parser returned events forever")


def merge_data(items: Sequence[Item]) -> list[Item]:
    """Join adjacent Data events: how a body is cut into Data depends on the split."""
    out: list[Item] = []
    for item in items:
        if isinstance(item, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + item.data)
        else:
            out.append(item)
    return out


def _matches(got: Sequence[Item], want: Sequence[Item]) -> bool:
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if isinstance(w, Err):
            if not (isinstance(g, Err) and g.cls is w.cls and w.match in g.match):
                return False
        elif isinstance(w, Sentinel) or isinstance(g, Sentinel):
            if g is not w:
                return False
        elif g != w:
            return False
    return True


def _split_expected(expected: Sequence[Item]) -> tuple[list[Item], bytes | None]:
    items = list(expected)
    trailing = None
    if items and isinstance(items[-1], Trailing):
        trailing = items.pop().data  # type: ignore[union-attr]  # checked just above
    return items, trailing


def replay_whole(make: Callable[[], Parser], raw: bytes) -> tuple[list[Item], bytes]:
    parser = make()
    parser.feed(bytes(raw))
    if isinstance(raw, Closing):
        parser.feed(b"")
    return drain(parser), parser.trailing_data


def replay_bytewise(make: Callable[[], Parser], raw: bytes) -> tuple[list[Item], bytes, int]:
    """Feed one byte at a time; return the events, trailing data and how many bytes were fed
    when the last event (other than NEED_DATA) appeared."""
    parser = make()
    events: list[Item] = []
    last_at = 0
    data = bytes(raw)
    for i in range(len(data)):
        parser.feed(data[i:i + 1])
        got = drain(parser)
        if got[-1] is NEED_DATA:
            got.pop()
        if got:
            last_at = i + 1
        events.extend(got)
        if events and isinstance(events[-1], Err):
            return events, b"", last_at
        # PAUSED / ConnectionClosed end the drain but more bytes may still be fed.
        while events and (events[-1] is PAUSED):
            events.pop()
    if isinstance(raw, Closing):
        parser.feed(b"")
    final = drain(parser)
    if len(final) > 1 or final[-1] is not NEED_DATA:
        last_at = len(data) + 1
    events.extend(final)
    return events, parser.trailing_data, last_at


EXTRA = b"GET /next HTTP/1.1\r\nHo"


def check_replays(make: Callable[[], Parser], raw: bytes, expected: Sequence[Item]) -> None:
    """Assert the three replays of ``raw`` give ``expected``."""
    want, want_trailing = _split_expected(expected)
    assert want, "a case must expect something"

    got, trailing = replay_whole(make, raw)
    assert _matches(merge_data(got), merge_data(want)), f"whole:\n got  {got}\n want {want}"
    if want_trailing is not None:
        assert trailing == want_trailing, f"whole: trailing {trailing!r}"

    got, trailing, last_at = replay_bytewise(make, raw)
    merged = merge_data(got)
    want_merged = merge_data(want)
    if isinstance(want[-1], Err):
        # Invalid bytes may be noticed before the last one arrives: same error, and only
        # events the whole replay also returned before it.
        assert isinstance(merged[-1], Err) and merged[-1].cls is want[-1].cls, \
            f"bytewise: got {merged}, want {want_merged}"
        assert _matches(merged[:-1], want_merged[:len(merged) - 1]), f"bytewise: {merged}"
    else:
        assert _matches(merged, want_merged), f"bytewise:\n got  {merged}\n want {want_merged}"
        # The last byte is what completes the last event: nothing is returned early.
        if len(want) > 1:
            assert last_at >= len(raw), f"bytewise: last event after {last_at} of {len(raw)} bytes"
        if want_trailing is not None:
            assert trailing == want_trailing, f"bytewise: trailing {trailing!r}"

    if isinstance(raw, Closing):
        return
    ends_message = isinstance(want[-1], Err) or want[-1] is PAUSED or (
        len(want) >= 2 and want[-1] is NEED_DATA and isinstance(want[-2], EndOfMessage))
    if not ends_message:
        return
    # Bytes after the case's end are never consumed (or, after an error, never matter).
    parser = make()
    parser.feed(bytes(raw) + EXTRA)
    got = drain(parser)
    assert _matches(merge_data(got), merge_data(want)), f"with extra bytes:\n got  {got}\n want {want}"
    if not isinstance(want[-1], Err):
        assert parser.trailing_data == (want_trailing or b"") + EXTRA, \
            f"extra bytes consumed: trailing {parser.trailing_data!r}"
