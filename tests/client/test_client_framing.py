"""Every framing and syntax rule of the protocol core, exercised from the client side.

Each case is raw response bytes played by a scripted peer, replayed three ways: whole,
one byte per send, and followed by extra bytes (which must never be taken as part of the
response, nor let the connection be reused).
"""
from __future__ import annotations

import pytest
from client_peers import answer, chunked, Peer, PeerFactory

from wsgiserve.client import (
    IncompleteResponse,
    Pool,
    ProtocolError,
    ServerDisconnected,
)
from wsgiserve.http.errors import RemoteProtocolError

TE = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

VALID = [
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "GET", b"hello", [],
                 id="content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", b"", [],
                 id="content-length-zero"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 0005\r\n\r\nhello", "GET", b"hello", [],
                 id="content-length-leading-zeros"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", "GET", b"hello", [],
                 id="rfc9112-6.3-identical-list"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
                 "GET", b"hello", [], id="rfc9112-6.3-identical-repeated"),
    pytest.param(TE + chunked(b"Hello, ", b"chunked", b"!"), "GET", b"Hello, chunked!", [],
                 id="chunked"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n" + chunked(b"x"), "GET",
                 b"x", [], id="chunked-coding-name-case"),
    pytest.param(TE + b"000A\r\n0123456789\r\n1f\r\n" + b"a" * 31 + b"\r\n0000\r\n\r\n", "GET",
                 b"0123456789" + b"a" * 31, [], id="chunk-size-hex-forms"),
    pytest.param(TE + b'3;foo=bar\r\nabc\r\n2;name="a;b=c"\r\nde\r\n0;end\r\n\r\n', "GET",
                 b"abcde", [], id="rfc9112-7.1.1-chunk-extensions-ignored"),
    pytest.param(TE + chunked(b"data", trailers=b"X-Checksum: abc\r\nX-Other: 1\r\n"), "GET",
                 b"data", [(b"X-Checksum", b"abc"), (b"X-Other", b"1")], id="rfc9112-7.1.2-trailers"),
    pytest.param(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", "GET", b"", [], id="204-no-body"),
    pytest.param(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 500\r\n\r\n", "GET", b"", [],
                 id="rfc9112-6.3-304-ignores-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", "HEAD", b"", [],
                 id="rfc9112-6.3-head-ignores-length"),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                 b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", b"ok", [],
                 id="interim-100-103"),
    pytest.param(b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok", "GET", b"ok", [],
                 id="empty-reason"),
    pytest.param(b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", "GET", b"ok", [],
                 id="missing-reason"),
    # RFC 9112 §5.2: a user agent MUST replace each obs-fold in a response with SP.
    pytest.param(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\nok", "GET",
                 b"ok", [], id="rfc9112-5.2-obs-fold-unfolded"),
    pytest.param(TE + chunked(b"x", trailers=b"X-A: 1\r\n folded\r\n"), "GET", b"x",
                 [(b"X-A", b"1 folded")], id="rfc9112-5.2-trailer-obs-fold-unfolded"),
]

# Responses whose end is the end of the connection: played, then the peer closes.
UNTIL_CLOSE = [
    pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", b"until the end",
                 id="rfc9112-6.3-8-close-delimited"),
    pytest.param(b"HTTP/1.0 200 OK\r\n\r\nold school", b"old school", id="http10-close-delimited"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw", b"raw",
                 id="rfc9112-6.3-4-final-coding-not-chunked"),
]

MALFORMED = [
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 10\r\n\r\nhelloworld",
                 id="rfc9112-6.3-5-conflicting-lengths"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 10\r\n\r\nhelloworld",
                 id="rfc9112-6.3-5-conflicting-list"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello", id="length-negative"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", id="length-plus-sign"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello", id="length-not-a-number"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello", id="length-hex"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\nhello", id="length-inner-space"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nhello", id="length-empty"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1" + b"0" * 19 + b"\r\n\r\nhello",
                 id="length-overflow"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + chunked(b"hello"), id="rfc9112-6.3-3-length-and-chunked"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
                 + chunked(b"x"), id="chunked-twice"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunked(b"x"),
                 id="coding-not-implemented"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n" + chunked(b"x"),
                 id="empty-transfer-coding"),
    pytest.param(TE + b"zz\r\nhello\r\n0\r\n\r\n", id="rfc9112-7.1-chunk-size-not-hex"),
    pytest.param(TE + b"-5\r\nhello\r\n0\r\n\r\n", id="chunk-size-negative"),
    pytest.param(TE + b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n", id="chunk-size-overflow"),
    pytest.param(TE + b"5\r\nhelloXX0\r\n\r\n", id="chunk-data-without-crlf"),
    pytest.param(TE + b"5\nhello\r\n0\r\n\r\n", id="chunk-size-bare-lf"),
    pytest.param(TE + b"5;\r\nhello\r\n0\r\n\r\n", id="chunk-extension-empty"),
    pytest.param(TE + b"5 ;a=\"x\r\nhello\r\n0\r\n\r\n", id="chunk-extension-unclosed-quote"),
    pytest.param(TE + chunked(b"x", trailers=b"X-Bad: a\x00b\r\n"), id="trailer-nul"),
    pytest.param(TE + b"1\r\nx\r\n0\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
                 id="trailer-too-large"),
    pytest.param(b"HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello", id="status-four-digits"),
    pytest.param(b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", id="status-below-100"),
    pytest.param(b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", id="version-2"),
    pytest.param(b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n", id="status-missing"),
    pytest.param(b"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", id="status-double-space"),
    pytest.param(b"hello world\r\n\r\n", id="not-http"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 5\r\n\r\nhello",
                 id="rfc9110-5.5-nul-in-value"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nContent-Length: 5\r\n\r\nhello",
                 id="bare-cr-in-value"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello",
                 id="rfc9112-5.1-space-before-colon"),
    pytest.param(b"HTTP/1.1 200 OK\r\n X-A: 1\r\nContent-Length: 0\r\n\r\n",
                 id="rfc9112-2.2-space-before-first-field"),
    pytest.param(b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 0\r\n\r\n", id="no-colon"),
    pytest.param(b"HTTP/1.1 200 OK\r\n: empty\r\nContent-Length: 0\r\n\r\n", id="empty-name"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX(Y): 1\r\nContent-Length: 0\r\n\r\n", id="name-not-token"),
    pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", id="rfc9112-2.2-bare-lf"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", id="head-too-large"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\nContent-Length: 0\r\n\r\n",
                 id="field-too-large"),
    pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"Content-Length: 0\r\n\r\n",
                 id="too-many-fields"),
]

# The peer closes in the middle: an incomplete response is an error, never a success.
TRUNCATED = [
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 50, IncompleteResponse,
                 id="rfc9112-8-length-short"),
    pytest.param(TE + b"5\r\nhello\r\n5\r\nwor", IncompleteResponse, id="chunked-in-data"),
    pytest.param(TE + b"5\r\nhello\r\n", IncompleteResponse, id="chunked-before-last-chunk"),
    pytest.param(TE + b"5\r\nhello\r\n0\r\n", IncompleteResponse, id="chunked-in-trailers"),
    pytest.param(TE + b"5\r\nhello", IncompleteResponse, id="chunked-before-crlf"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", IncompleteResponse, id="in-head"),
    pytest.param(b"", ServerDisconnected, id="empty-reply"),
]

def _exchange(pool: Pool, server: Peer, method: str = "GET") -> tuple[bytes, list[tuple[bytes, bytes]]]:
    with pool.request(method, server.url("/")) as response:
        body = response.read()
        assert response.trailers is not None
        return body, list(response.trailers)


@pytest.mark.parametrize("mode", ["whole", "bytewise", "extra"])
@pytest.mark.parametrize(("raw", "method", "body", "trailers"), VALID)
def test_valid_response(peer: PeerFactory, pool: Pool, raw: bytes, method: str, body: bytes,
                        trailers: list[tuple[bytes, bytes]], mode: str) -> None:
    if mode == "extra":
        server = peer(answer(raw + b"EXTRA"), answer(raw))
    else:
        server = peer(answer(raw, raw, bytewise=mode == "bytewise"))
    assert _exchange(pool, server, method) == (body, trailers)
    # A second exchange works: on the same connection, or after extra bytes a new one.
    assert _exchange(pool, server, method) == (body, trailers)
    assert server.connection_count == (2 if mode == "extra" else 1)


def test_obs_fold_in_a_response_is_read_as_one_space(peer: PeerFactory, pool: Pool) -> None:
    server = peer(answer(b"HTTP/1.1 200 OK\r\nX-A: 1 \r\n\t2\r\n  3\r\nX-B: 4\r\n"
                         b"Content-Length:\r\n 2\r\n\r\nok"))
    with pool.get(server.url()) as response:
        assert response.read() == b"ok"
        assert response.header_items() == [("X-A", "1 2 3"), ("X-B", "4"), ("Content-Length", "2")]


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(("raw", "body"), UNTIL_CLOSE)
def test_close_delimited_body(peer: PeerFactory, pool: Pool, raw: bytes, body: bytes,
                              bytewise: bool) -> None:
    server = peer(answer(raw, after="close", bytewise=bytewise))
    assert _exchange(pool, server) == (body, [])
    assert pool.idle_count == 0


@pytest.mark.parametrize("mode", ["whole", "bytewise", "extra"])
@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_response_is_a_protocol_error(peer: PeerFactory, pool: Pool, raw: bytes,
                                                mode: str) -> None:
    extra = b"HTTP/1.1 200 OK\r\n\r\n" if mode == "extra" else b""
    server = peer(answer(raw + extra, bytewise=mode == "bytewise"))
    with pytest.raises(ProtocolError) as caught:
        _exchange(pool, server)
    assert not isinstance(caught.value, IncompleteResponse)
    assert isinstance(caught.value.__cause__, RemoteProtocolError)
    assert pool.idle_count == 0


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(("raw", "error"), TRUNCATED)
def test_truncated_response_is_an_error(peer: PeerFactory, pool: Pool, raw: bytes,
                                        error: type[Exception], bytewise: bool) -> None:
    server = peer(answer(raw, after="close", bytewise=bytewise))
    with pytest.raises(error):
        _exchange(pool, server)
    assert pool.idle_count == 0
