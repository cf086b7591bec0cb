"""ResponseParser on raw bytes: status lines, interim responses, body framing, pipelining.

Each case names the methods of the requests sent (queued with ``expect_response``) and is
replayed whole, one byte at a time, and followed by extra bytes.
"""
from __future__ import annotations

from collections.abc import Sequence

import pytest
from http_replay import (
    CHUNKED,
    EOM,
    TUNNEL,
    UNTIL_CLOSE,
    Err,
    Item,
    Trailing,
    check_replays,
    closed,
    info,
    length,
    resp,
)

from wsgiserve.http import (
    NEED_DATA,
    PAUSED,
    BodyKind,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Framing,
    Headers,
    IncompleteMessage,
    RemoteProtocolError,
    Response,
    ResponseParser,
    UnsupportedTransferCoding,
)
from wsgiserve.http.parser import ParserState

CL0 = b"Content-Length: 0\r\n"
OK = b"HTTP/1.1 200 OK\r\n" + CL0 + b"\r\n"
# A received "Content-Length: 0" keeps its LENGTH framing on the response side.
LEN0 = Framing(BodyKind.LENGTH, 0)
OK_EVENT = resp(headers=[(b"Content-Length", b"0")], framing=LEN0)
BAD = Err(RemoteProtocolError)


def ok_with(fields: bytes, body: bytes = b"", status: bytes = b"200 OK",
            version: bytes = b"1.1") -> bytes:
    return b"HTTP/" + version + b" " + status + b"\r\n" + fields + b"\r\n" + body


RESPONSE_CASES = [
    # --- status line (RFC 9112 §4) ------------------------------------------------------
    pytest.param([b"GET"], OK, [OK_EVENT, EOM, PAUSED], id="status-line"),
    pytest.param([b"GET"], b"HTTP/1.1 404 Not  Found \r\n" + CL0 + b"\r\n",
                 [resp(404, b"Not  Found ", headers=[(b"Content-Length", b"0")], framing=LEN0), EOM, PAUSED],
                 id="reason-kept-verbatim"),
    pytest.param([b"GET"], b"HTTP/1.1 204 \r\n\r\n", [resp(204, b""), EOM, PAUSED],
                 id="empty-reason"),
    pytest.param([b"GET"], b"HTTP/1.1 204\r\n\r\n", [resp(204, b""), EOM, PAUSED],
                 id="no-reason-no-space"),
    pytest.param([b"GET"], b"HTTP/1.1 20 OK\r\n\r\n", [BAD], id="two-digit-status"),
    pytest.param([b"GET"], b"HTTP/1.1 2000 OK\r\n\r\n", [BAD], id="four-digit-status"),
    pytest.param([b"GET"], b"HTTP/1.1 099 OK\r\n\r\n", [BAD], id="status-below-100"),
    pytest.param([b"GET"], b"HTTP/2.0 200 OK\r\n\r\n", [BAD], id="http2-status-line"),
    pytest.param([b"GET"], b"http/1.1 200 OK\r\n\r\n", [BAD], id="lowercase-version"),
    pytest.param([b"GET"], b"HTTP/1.1 200 O\x00K\r\n\r\n", [BAD], id="nul-in-reason"),
    pytest.param([b"GET"], b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
                 [Err(RemoteProtocolError, "bare LF")], id="bare-lf-head"),
    pytest.param([b"GET"], b"HTTP/1.1 200 OK\r\nX : y\r\n" + CL0 + b"\r\n",
                 [Err(RemoteProtocolError, "whitespace")], id="space-before-colon"),
    pytest.param([b"GET"], b"HTTP/1.1 200 OK\r\n X: y\r\n" + CL0 + b"\r\n",
                 [Err(RemoteProtocolError, "whitespace")], id="space-before-first-field"),
    pytest.param([b"GET"], b"HTTP/1.1 200 OK\r\nX: y\r\n z\r\n" + CL0 + b"\r\n",
                 [resp(headers=[(b"X", b"y z"), (b"Content-Length", b"0")], framing=LEN0), EOM,
                  PAUSED], id="rfc9112-5.2-obs-fold-unfolded"),
    pytest.param([b"GET"], b"HTTP/1.1 200 OK\r\nX-A\r\n" + CL0 + b"\r\n",
                 [Err(RemoteProtocolError, "no colon")], id="field-without-colon"),
    # --- interim responses (RFC 9110 §15.2) ---------------------------------------------
    pytest.param([b"POST"], b"HTTP/1.1 100 Continue\r\n\r\n" + OK,
                 [info(100, b"Continue"), OK_EVENT, EOM, PAUSED], id="100-then-final"),
    pytest.param([b"GET"], b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                 b"HTTP/1.1 103 Early Hints\r\nLink: </t.js>\r\n\r\n" + OK,
                 [info(103, b"Early Hints", headers=[(b"Link", b"</s.css>")]),
                  info(103, b"Early Hints", headers=[(b"Link", b"</t.js>")]), OK_EVENT, EOM,
                  PAUSED], id="103-twice-then-final"),
    pytest.param([b"GET"], b"HTTP/1.1 100 Continue\r\n\r\n",
                 [info(100, b"Continue"), NEED_DATA], id="100-waits-for-final"),
    # --- switching protocols and CONNECT (RFC 9112 §6.3 rule 2) -------------------------
    pytest.param([b"GET"], b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\n\r\n\x81\x05hello",
                 [resp(101, b"Switching Protocols", headers=[(b"Upgrade", b"websocket"),
                                                             (b"Connection", b"Upgrade")],
                       framing=TUNNEL), PAUSED, Trailing(b"\x81\x05hello")], id="101-switched"),
    pytest.param([b"CONNECT"], b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01",
                 [resp(200, b"Connection Established", framing=TUNNEL), PAUSED,
                  Trailing(b"\x16\x03\x01")], id="connect-2xx-switched"),
    pytest.param([b"CONNECT"], b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno",
                 [resp(407, b"Proxy Auth", headers=[(b"Content-Length", b"2")],
                       framing=length(2)), Data(b"no"), EOM, PAUSED],
                 id="connect-non-2xx-has-body"),
    # --- no body (RFC 9112 §6.3 rule 1) -------------------------------------------------
    pytest.param([b"HEAD"], b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
                 [resp(headers=[(b"Content-Length", b"99")]), EOM, PAUSED],
                 id="head-response-no-body"),
    pytest.param([b"HEAD"], b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                 [resp(headers=[(b"Transfer-Encoding", b"chunked")]), EOM, PAUSED],
                 id="head-response-chunked-no-body"),
    pytest.param([b"GET"], b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                 [resp(204, b"No Content", headers=[(b"Content-Length", b"5")]), EOM, PAUSED],
                 id="204-no-body"),
    pytest.param([b"GET"], b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                 [resp(304, b"Not Modified", headers=[(b"Content-Length", b"5")]), EOM, PAUSED],
                 id="304-no-body"),
    # --- body framing (RFC 9112 §6.3) ---------------------------------------------------
    pytest.param([b"GET"], ok_with(b"Content-Length: 5\r\n", b"hello"),
                 [resp(headers=[(b"Content-Length", b"5")], framing=length(5)), Data(b"hello"),
                  EOM, PAUSED], id="content-length-body"),
    pytest.param([b"GET"], ok_with(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
                 [resp(headers=[(b"Content-Length", b"5"), (b"Content-Length", b"5")],
                       framing=length(5)), Data(b"hello"), EOM, PAUSED],
                 id="content-length-duplicate-equal"),
    pytest.param([b"GET"], ok_with(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
                 [Err(RemoteProtocolError, "conflicting")], id="content-length-conflict"),
    pytest.param([b"GET"], ok_with(b"Content-Length: -1\r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="content-length-invalid"),
    pytest.param([b"GET"], ok_with(b"Content-Length: 0x5\r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="content-length-hex"),
    pytest.param([b"GET"], ok_with(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                                   b"0\r\n\r\n"),
                 [Err(RemoteProtocolError, "both")], id="cl-and-te-rejected"),
    pytest.param([b"GET"], ok_with(b"Transfer-Encoding: chunked\r\n",
                                   b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
                 [resp(headers=[(b"Transfer-Encoding", b"chunked")], framing=CHUNKED),
                  Data(b"hello"), EndOfMessage(Headers([(b"X-T", b"1")])), PAUSED],
                 id="chunked-with-trailers"),
    pytest.param([b"GET"], ok_with(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
                 [Err(UnsupportedTransferCoding)], id="gzip-chunked-unsupported"),
    pytest.param([b"GET"], ok_with(b"Transfer-Encoding: chunked\r\n", b"g\r\n"),
                 [resp(headers=[(b"Transfer-Encoding", b"chunked")], framing=CHUNKED),
                  Err(RemoteProtocolError, "chunk-size")], id="chunked-junk-size"),
    pytest.param([b"GET"], closed(ok_with(b"Transfer-Encoding: gzip\r\n", b"\x1f\x8b..")),
                 [resp(headers=[(b"Transfer-Encoding", b"gzip")], framing=UNTIL_CLOSE,
                       keep_alive=False), Data(b"\x1f\x8b.."), EOM, ConnectionClosed()],
                 id="te-not-chunked-reads-until-close"),
    pytest.param([b"GET"], closed(ok_with(b"", b"all of it", version=b"1.0")),
                 [resp(version=b"1.0", framing=UNTIL_CLOSE, keep_alive=False),
                  Data(b"all of it"), EOM, ConnectionClosed()], id="http10-close-delimited"),
    pytest.param([b"GET"], closed(ok_with(b"", b"all of it")),
                 [resp(framing=UNTIL_CLOSE, keep_alive=False), Data(b"all of it"), EOM,
                  ConnectionClosed()], id="http11-no-length-close-delimited"),
    pytest.param([b"GET"], ok_with(b"", b"partial"),
                 [resp(framing=UNTIL_CLOSE, keep_alive=False), Data(b"partial"), NEED_DATA],
                 id="close-delimited-waits-for-close"),
    pytest.param([b"GET"], closed(ok_with(b"Content-Length: 5\r\n", b"hel")),
                 [resp(headers=[(b"Content-Length", b"5")], framing=length(5)), Data(b"hel"),
                  Err(IncompleteMessage)], id="peer-close-mid-body"),
    pytest.param([b"GET"], closed(b"HTTP/1.1 200 OK\r\nContent-Le"),
                 [Err(IncompleteMessage)], id="peer-close-mid-head"),
    pytest.param([b"GET"], closed(b""), [ConnectionClosed()], id="peer-close-before-response"),
    # --- keep-alive (RFC 9112 §9.3) and pipelining --------------------------------------
    pytest.param([b"GET"], ok_with(b"Connection: close\r\n" + CL0) + b"HTTP/1.1 200",
                 [resp(headers=[(b"Connection", b"close"), (b"Content-Length", b"0")],
                       framing=LEN0, keep_alive=False), EOM, PAUSED, Trailing(b"HTTP/1.1 200")],
                 id="connection-close-done"),
    pytest.param([b"GET"], ok_with(CL0, version=b"1.0"),
                 [resp(headers=[(b"Content-Length", b"0")], version=b"1.0", framing=LEN0,
                       keep_alive=False),
                  EOM, PAUSED], id="http10-closes"),
    pytest.param([b"GET"], ok_with(b"Connection: keep-alive\r\n" + CL0, version=b"1.0"),
                 [resp(headers=[(b"Connection", b"keep-alive"), (b"Content-Length", b"0")],
                       version=b"1.0", framing=LEN0), EOM, PAUSED], id="http10-keep-alive"),
    pytest.param([b"GET", b"HEAD", b"GET"],
                 ok_with(b"Content-Length: 2\r\n", b"hi")
                 + ok_with(b"Content-Length: 7\r\n")
                 + ok_with(b"Transfer-Encoding: chunked\r\n", b"2\r\nyo\r\n0\r\n\r\n"),
                 [resp(headers=[(b"Content-Length", b"2")], framing=length(2)), Data(b"hi"), EOM,
                  resp(headers=[(b"Content-Length", b"7")]), EOM,
                  resp(headers=[(b"Transfer-Encoding", b"chunked")], framing=CHUNKED),
                  Data(b"yo"), EOM, PAUSED], id="pipelined-queue-get-head-get"),
    pytest.param([], OK, [PAUSED, Trailing(OK)], id="nothing-expected-paused"),
]


@pytest.mark.parametrize(("methods", "raw", "expected"), RESPONSE_CASES)
def test_response_cases(methods: list[bytes], raw: bytes, expected: Sequence[Item]) -> None:
    def make() -> ResponseParser:
        parser = ResponseParser()
        for method in methods:
            parser.expect_response(method)
        return parser
    check_replays(make, raw, expected)


def test_expect_response_later_unpauses() -> None:
    parser = ResponseParser()
    parser.feed(OK + OK)
    assert parser.next_event() is PAUSED
    parser.expect_response(b"GET")
    assert parser.next_event() == OK_EVENT
    assert parser.next_event() == EndOfMessage()
    assert parser.next_event() is PAUSED
    assert parser.trailing_data == OK
    parser.expect_response(b"GET")
    assert isinstance(parser.next_event(), Response)
    assert parser.next_event() == EndOfMessage()
    assert parser.state is ParserState.HEAD


def test_switched_parser_stays_switched() -> None:
    parser = ResponseParser()
    parser.expect_response(b"GET")
    parser.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nraw")
    assert isinstance(parser.next_event(), Response)
    parser.feed(b"more")
    parser.feed(b"")
    assert parser.next_event() is PAUSED
    assert parser.state is ParserState.SWITCHED
    assert parser.trailing_data == b"rawmore"
