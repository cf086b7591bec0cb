"""Obsolete line folding (RFC 9112 §5.2), one table for both roles.

A user agent that receives obs-fold in a response MUST replace each one with SP before
interpreting the field value: ``ResponseParser`` unfolds, in the head and in the trailers.
A server may reject it in a request, and ours does: ``RequestParser`` raises. Each case
is replayed whole, one byte at a time, and followed by extra bytes.
"""
from __future__ import annotations

import pytest
from http_replay import CHUNKED, EOM, Err, check_replays, length, req, resp

from wsgiserve.http import (
    PAUSED,
    BodyKind,
    Data,
    EndOfMessage,
    FieldTooLarge,
    Framing,
    Headers,
    HttpLimits,
    RemoteProtocolError,
    RequestParser,
    Response,
    ResponseParser,
)

Fields = list[tuple[bytes, bytes]]

# (a field block with obs-fold, the fields a response's parser must make of it)
FOLDED = [
    pytest.param(b"X-A: 1\r\n 2\r\n", [(b"X-A", b"1 2")], id="space"),
    pytest.param(b"X-A: 1\r\n\t2\r\n", [(b"X-A", b"1 2")], id="tab"),
    pytest.param(b"X-A: 1\r\n 2\r\n \t 3\r\nX-B: 4\r\n", [(b"X-A", b"1 2 3"), (b"X-B", b"4")],
                 id="two-folds-then-a-field"),
    pytest.param(b"X-A: 1 \t\r\n  2\r\n", [(b"X-A", b"1 2")], id="ows-before-the-crlf"),
    pytest.param(b"X-A:\r\n 1\r\n", [(b"X-A", b"1")], id="value-only-on-the-next-line"),
    pytest.param(b"X-A: 1\r\n b: c\r\n", [(b"X-A", b"1 b: c")], id="colon-in-the-fold"),
    pytest.param(b"X-A: 1\r\n \r\nX-B: 2\r\n", [(b"X-A", b"1"), (b"X-B", b"2")],
                 id="whitespace-only-line"),
    pytest.param(b"X-A: 1\r\nX-B: 2\r\n 3\r\n", [(b"X-A", b"1"), (b"X-B", b"2 3")],
                 id="fold-in-a-later-field"),
]
# Still invalid once unfolded, or with nothing to fold into: both roles refuse them.
STILL_INVALID = [
    pytest.param(b"X-A: 1\r\n 2\x00\r\n", id="nul-in-the-fold"),
    pytest.param(b"X-A: 1\r\n 2\r\nX B: 3\r\n", id="another-bad-line"),
    pytest.param(b"X-A: 1\r\n 2\rx\r\n", id="bare-cr-in-the-fold"),
]


def _request_head(fields: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n"


def _response_head(fields: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + fields + b"\r\n"


def _response_parser() -> ResponseParser:
    parser = ResponseParser()
    parser.expect_response(b"GET")
    return parser


def _chunked_request(trailers: bytes) -> bytes:
    return (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nhi\r\n0\r\n" + trailers + b"\r\n")


def _chunked_response(trailers: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nhi\r\n0\r\n" + trailers + b"\r\n")


@pytest.mark.parametrize(("block", "fields"), FOLDED)
def test_response_head_is_unfolded(block: bytes, fields: Fields) -> None:
    # A received "Content-Length: 0" keeps its LENGTH framing on the response side.
    head = resp(headers=[(b"Content-Length", b"0"), *fields], framing=Framing(BodyKind.LENGTH, 0))
    check_replays(_response_parser, _response_head(block), [head, EOM, PAUSED])


@pytest.mark.parametrize(("block", "fields"), FOLDED)
def test_response_trailers_are_unfolded(block: bytes, fields: Fields) -> None:
    head = resp(headers=[(b"Transfer-Encoding", b"chunked")], framing=CHUNKED)
    check_replays(_response_parser, _chunked_response(block),
                  [head, Data(b"hi"), EndOfMessage(Headers(fields)), PAUSED])


@pytest.mark.parametrize("block", [p.values[0] for p in FOLDED], ids=[p.id for p in FOLDED])
def test_request_head_with_obs_fold_is_refused(block: bytes) -> None:
    check_replays(RequestParser, _request_head(block), [Err(RemoteProtocolError, "obs-fold")])


@pytest.mark.parametrize("block", [p.values[0] for p in FOLDED], ids=[p.id for p in FOLDED])
def test_request_trailers_with_obs_fold_are_refused(block: bytes) -> None:
    head = req(b"POST", headers=[(b"Host", b"a"), (b"Transfer-Encoding", b"chunked")],
               framing=CHUNKED)
    check_replays(RequestParser, _chunked_request(block),
                  [head, Data(b"hi"), Err(RemoteProtocolError, "obs-fold")])


@pytest.mark.parametrize("block", STILL_INVALID)
def test_invalid_after_unfolding_is_refused_by_both_roles(block: bytes) -> None:
    check_replays(_response_parser, _response_head(block), [Err(RemoteProtocolError)])
    check_replays(RequestParser, _request_head(block), [Err(RemoteProtocolError)])


def test_whitespace_before_the_first_field_is_not_a_fold() -> None:
    # RFC 9112 §2.2: no field line to continue; a response's first line is refused as before.
    raw = b"HTTP/1.1 200 OK\r\n X-A: 1\r\nContent-Length: 0\r\n\r\n"
    check_replays(_response_parser, raw, [Err(RemoteProtocolError, "whitespace")])
    trailers = _chunked_response(b" X-A: 1\r\n")
    head = resp(headers=[(b"Transfer-Encoding", b"chunked")], framing=CHUNKED)
    check_replays(_response_parser, trailers, [head, Data(b"hi"), Err(RemoteProtocolError)])


def test_framing_fields_are_read_unfolded() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length:\r\n 5\r\n\r\nhello"
    head = resp(headers=[(b"Content-Length", b"5")], framing=length(5))
    check_replays(_response_parser, raw, [head, Data(b"hello"), EOM, PAUSED])


def test_the_field_size_limit_applies_to_the_unfolded_line() -> None:
    limits = HttpLimits(max_field_bytes=100)
    parser = ResponseParser(limits)
    parser.expect_response(b"GET")
    # Each physical line is under the limit; the field they make is not.
    parser.feed(_response_head(b"X-A: " + b"a" * 60 + b"\r\n " + b"b" * 60 + b"\r\n"))
    with pytest.raises(FieldTooLarge):
        parser.next_event()


def test_unfolding_leaves_a_later_response_alone() -> None:
    parser = ResponseParser()
    parser.expect_response(b"GET")
    parser.expect_response(b"GET")
    parser.feed(_response_head(b"X-A: 1\r\n 2\r\n") + _response_head(b"X-A: 3\r\n"))
    first = parser.next_event()
    assert parser.next_event() == EOM
    second = parser.next_event()
    assert isinstance(first, Response) and isinstance(second, Response)
    assert (first.headers.get(b"x-a"), second.headers.get(b"x-a")) == (b"1 2", b"3")
    assert parser.next_event() == EOM
    assert parser.next_event() is PAUSED
