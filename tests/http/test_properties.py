"""Hypothesis properties of the parsers and the writer.

- parse(write(messages)) gives back the messages, for requests and responses;
- any split of valid input gives the same events;
- any bytes either parse or raise RemoteProtocolError, never another exception, and the
  bytes the parser holds while reading a head, chunk line or trailers stay under limits;
- every state change the parsers make is in ``TRANSITIONS``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from http_replay import Item, Parser, drain, merge_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsgiserve.http import (
    NEED_DATA,
    PAUSED,
    BodyKind,
    BodyWriter,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Framing,
    Headers,
    HttpLimits,
    RemoteProtocolError,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    encode_request_head,
    encode_response_head,
)
from wsgiserve.http.reader import TRANSITIONS, ParserState

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])
FUZZ_SETTINGS = settings(max_examples=400, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])
# Generating a valid stream costs more than parsing it: fewer examples keep tests/http
# under a minute (benchmarks/fuzz_http.py runs a million).
MUTATED_SETTINGS = settings(max_examples=200, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VALUE_CHARS = "".join(chr(c) for c in [*range(0x21, 0x7f), *range(0x80, 0x100)]) + " \t"
RESERVED = {"host", "content-length", "transfer-encoding", "connection", "expect", "te",
            "trailer", "upgrade"}

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
names = tokens.filter(lambda name: name.lower() not in RESERVED)
values = st.text(VALUE_CHARS, max_size=30).map(lambda value: value.strip(" \t"))
fields = st.lists(st.tuples(names, values), max_size=8)
hosts = st.from_regex(r"[a-z0-9.\-]{0,20}(:[0-9]{1,5})?", fullmatch=True)
targets = st.text("abcXYZ019-._~!$&'()*+,;=:@/?%", max_size=30).map(lambda path: "/" + path)
methods = tokens.filter(lambda method: method != "CONNECT")
bodies = st.lists(st.binary(max_size=40), max_size=4)


@dataclass
class Message:
    """One generated message: what is written, and the events it must parse back to."""

    wire: bytes
    events: list[Item] = field(default_factory=list)


def _body(writer: BodyWriter, pieces: list[bytes], trailers: list[tuple[str, str]]) -> bytes:
    return b"".join([writer.write(piece) for piece in pieces]) + writer.end(trailers)


def _latin1(pairs: list[tuple[str, str]]) -> Headers:
    return Headers([(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs])


@st.composite
def requests(draw: st.DrawFn, last: bool = False) -> Message:
    method, target = draw(methods), draw(targets)
    headers = [("Host", draw(hosts)), *draw(fields)]
    pieces = draw(bodies)
    body = b"".join(pieces)
    kind = draw(st.sampled_from(["length", "chunked"] if body else ["none", "length", "chunked"]))
    trailers: list[tuple[str, str]] = []
    if kind == "length":
        framing = Framing(BodyKind.LENGTH, len(body))
        headers.append(("Content-Length", str(len(body))))
    elif kind == "chunked":
        framing = Framing(BodyKind.CHUNKED)
        headers.append(("Transfer-Encoding", "chunked"))
        trailers = draw(fields)
    else:
        framing = Framing(BodyKind.NONE)
    keep_alive = not (last and draw(st.booleans()))
    if not keep_alive:
        headers.append(("Connection", "close"))
    wire = encode_request_head(method, target, headers) + _body(BodyWriter(framing), pieces,
                                                                trailers)
    # A received Content-Length: 0 is no body at all on the request side.
    parsed_framing = framing if framing.has_body or kind == "chunked" else Framing(BodyKind.NONE)
    head = Request(method.encode(), target.encode(), b"1.1", _latin1(headers), parsed_framing,
                   keep_alive)
    events: list[Item] = [head]
    if body:
        events.append(Data(body))
    events.append(EndOfMessage(_latin1(trailers)))
    return Message(wire, events)


@st.composite
def request_streams(draw: st.DrawFn) -> Message:
    count = draw(st.integers(1, 3))
    messages = [draw(requests(last=i == count - 1)) for i in range(count)]
    final: Item = PAUSED if not messages[-1].events[0].keep_alive else NEED_DATA  # type: ignore[union-attr]  # a Request
    return Message(b"".join(m.wire for m in messages),
                   [event for m in messages for event in m.events] + [final])


@st.composite
def responses(draw: st.DrawFn) -> tuple[list[bytes], Message]:
    count = draw(st.integers(1, 3))
    wire, sent = b"", []
    events: list[Item] = []
    for _ in range(count):
        method = draw(st.sampled_from([b"GET", b"POST", b"HEAD"]))
        status = draw(st.sampled_from([200, 201, 204, 304, 404, 500, 599]))
        reason = draw(st.text("abcdef XYZ", max_size=12))
        headers = draw(fields)
        pieces = draw(bodies)
        kind = draw(st.sampled_from(["length", "chunked"]))
        trailers: list[tuple[str, str]] = []
        has_body = method != b"HEAD" and status not in (204, 304)
        if kind == "length":
            framing = Framing(BodyKind.LENGTH, len(b"".join(pieces)))
            headers.append(("Content-Length", str(framing.length)))
        else:
            framing = Framing(BodyKind.CHUNKED)
            headers.append(("Transfer-Encoding", "chunked"))
            trailers = draw(fields)
        sent.append(method)
        wire += encode_response_head(f"{status} {reason}", headers)
        parsed_framing = framing if has_body else Framing(BodyKind.NONE)
        events.append(Response(status, reason.encode(), b"1.1", _latin1(headers),
                               parsed_framing, True))
        if has_body:
            wire += _body(BodyWriter(framing), pieces, trailers)
            if b"".join(pieces):
                events.append(Data(b"".join(pieces)))
            events.append(EndOfMessage(_latin1(trailers)))
        else:
            events.append(EndOfMessage())
    events.append(PAUSED)
    return sent, Message(wire, events)


def _parse_in_pieces(make: Callable[[], Parser], wire: bytes, cuts: list[int]) -> list[Item]:
    parser = make()
    events: list[Item] = []
    bounds = [0, *sorted({cut % (len(wire) + 1) for cut in cuts}), len(wire)]
    for start, end in zip(bounds, bounds[1:]):
        if start == end:
            continue
        parser.feed(wire[start:end])
        got = drain(parser)
        events.extend(got[:-1] if got[-1] is NEED_DATA or got[-1] is PAUSED else got)
    events.extend(drain(parser))
    return merge_data(events)


@PROPERTY_SETTINGS
@given(request_streams())
def test_request_round_trip(message: Message) -> None:
    parser = RequestParser()
    parser.feed(message.wire)
    assert merge_data(drain(parser)) == message.events
    assert parser.trailing_data == b""


@PROPERTY_SETTINGS
@given(request_streams(), st.lists(st.integers(0, 10_000), max_size=8))
def test_request_any_split_same_events(message: Message, cuts: list[int]) -> None:
    assert _parse_in_pieces(RequestParser, message.wire, cuts) == message.events


@PROPERTY_SETTINGS
@given(responses(), st.lists(st.integers(0, 10_000), max_size=8))
def test_response_round_trip_any_split(generated: tuple[list[bytes], Message],
                                       cuts: list[int]) -> None:
    sent, message = generated

    def make() -> ResponseParser:
        parser = ResponseParser()
        for method in sent:
            parser.expect_response(method)
        return parser
    assert _parse_in_pieces(make, message.wire, []) == message.events
    assert _parse_in_pieces(make, message.wire, cuts) == message.events


# -- any bytes: parse or RemoteProtocolError, bounded buffers, table transitions ---------

SMALL = HttpLimits(max_request_line_bytes=64, max_fields=6, max_field_bytes=48,
                   max_head_bytes=160, max_chunk_line_bytes=24, max_trailer_bytes=64,
                   max_body_bytes=200)
_BOUND = {
    ParserState.HEAD: SMALL.max_head_bytes,
    ParserState.CHUNK_SIZE: SMALL.max_chunk_line_bytes,
    ParserState.TRAILERS: SMALL.max_trailer_bytes,
}


class _Recording:
    """Mixin: record every state change that goes through the checked ``_set_state``."""

    seen: list[tuple[ParserState, ParserState]]

    def _set_state(self, new: ParserState) -> None:
        self.seen.append((self._state, new))  # type: ignore[attr-defined]  # parser slot
        super()._set_state(new)  # type: ignore[misc]  # the parser's method


class RecordingRequestParser(_Recording, RequestParser):
    pass


class RecordingResponseParser(_Recording, ResponseParser):
    pass


def _reachable(start: ParserState, end: ParserState) -> bool:
    todo, seen = [start], {start}
    while todo:
        state = todo.pop()
        if state is end:
            return True
        for nxt in TRANSITIONS[state] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return False


def _fuzz(parser: RequestParser | ResponseParser, chunks: list[bytes], close: bool) -> None:
    parser.seen = []  # type: ignore[union-attr]  # a Recording subclass
    try:
        for chunk in [*chunks, *([b""] if close else [])]:
            parser.feed(chunk)
            for _ in range(10_000):
                before = parser.state
                event = parser.next_event()
                after = parser.state
                assert before is after or _reachable(before, after), (before, after)
                if event is NEED_DATA or event is PAUSED or isinstance(event, ConnectionClosed):
                    break
            bound = _BOUND.get(parser.state)
            if bound is not None:
                assert parser.buffered_bytes <= bound, (parser.state, parser.buffered_bytes)
    except RemoteProtocolError:
        assert parser.state is ParserState.ERROR
    for old, new in parser.seen:  # type: ignore[union-attr]  # a Recording subclass
        assert new in TRANSITIONS[old]


def _mutate(wire: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    data = bytearray(wire)
    for where, what in edits:
        at = where % (len(data) + 1)
        data[at:at + (len(what) & 1)] = what
    return bytes(data)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({cut % (len(data) + 1) for cut in cuts}), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if a != b]


interesting = st.sampled_from([b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b"0", b"9",
                               b"f", b";", b'"', b",", b"\xff", b"\r\n\r\n", b"-", b"+"])
edits = st.lists(st.tuples(st.integers(0, 10_000), interesting | st.binary(max_size=3)),
                 max_size=6)


@FUZZ_SETTINGS
@given(st.lists(st.binary(max_size=200), max_size=6), st.booleans())
def test_request_parser_any_bytes(chunks: list[bytes], close: bool) -> None:
    _fuzz(RecordingRequestParser(SMALL), chunks, close)


@MUTATED_SETTINGS
@given(request_streams(), edits, st.lists(st.integers(0, 10_000), max_size=6), st.booleans())
def test_request_parser_mutated(message: Message, changes: list[tuple[int, bytes]],
                                cuts: list[int], close: bool) -> None:
    _fuzz(RecordingRequestParser(SMALL), _chunks(_mutate(message.wire, changes), cuts), close)


@MUTATED_SETTINGS
@given(responses(), edits, st.lists(st.integers(0, 10_000), max_size=6), st.booleans())
def test_response_parser_mutated(generated: tuple[list[bytes], Message],
                                 changes: list[tuple[int, bytes]], cuts: list[int],
                                 close: bool) -> None:
    sent, message = generated
    parser = RecordingResponseParser(SMALL)
    for method in [*sent, b"CONNECT"]:
        parser.expect_response(method)
    _fuzz(parser, _chunks(_mutate(message.wire, changes), cuts), close)


@FUZZ_SETTINGS
@given(st.lists(st.binary(max_size=200), max_size=6), st.booleans(),
       st.sampled_from([b"GET", b"HEAD", b"CONNECT"]))
def test_response_parser_any_bytes(chunks: list[bytes], close: bool, method: bytes) -> None:
    parser = RecordingResponseParser(SMALL)
    parser.expect_response(method)
    parser.expect_response(b"GET")
    _fuzz(parser, [b"HTTP/1.1 ", *chunks], close)
