"""RequestParser on raw bytes: RFC 9112 rules, limits, keep-alive and pipelining.

Each case is replayed whole, one byte at a time, and followed by extra bytes
(``http_replay.check_replays``).
"""
from __future__ import annotations

from collections.abc import Sequence

import pytest
from http_replay import (
    CHUNKED,
    EOM,
    HOST,
    Err,
    Item,
    Trailing,
    check_replays,
    closed,
    length,
    req,
)

from wsgiserve.http import caches
from wsgiserve.http.caches import FieldNameCache, RequestHeadCache
from wsgiserve.http import (
    NEED_DATA,
    PAUSED,
    BodyTooLarge,
    ConnectionClosed,
    Data,
    EndOfMessage,
    ExpectationFailed,
    FieldTooLarge,
    Headers,
    HeadTooLarge,
    HttpLimits,
    IncompleteMessage,
    RemoteProtocolError,
    Request,
    RequestLineTooLong,
    RequestParser,
    TooManyFields,
    UnsupportedTransferCoding,
    UnsupportedVersion,
)
from wsgiserve.http.parser import ParserState

H = b"Host: a\r\n"
GET = b"GET / HTTP/1.1\r\n" + H + b"\r\n"
BAD = Err(RemoteProtocolError)


def post(body_headers: bytes, body: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\n" + H + body_headers + b"\r\n" + body


def with_host(*fields: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [*HOST, *fields]


CL5 = length(5)

REQUEST_CASES = [
    # --- request line forms (RFC 9112 §3.2) --------------------------------------------
    pytest.param(GET, [req(), EOM, NEED_DATA], id="origin-form"),
    pytest.param(b"GET /a/b?x=1&y=%20 HTTP/1.1\r\n" + H + b"\r\n",
                 [req(target=b"/a/b?x=1&y=%20"), EOM, NEED_DATA], id="origin-form-query"),
    # RFC 9112 §3.2: "#" is in no request-target form (a fragment stays with the client).
    pytest.param(b"GET /a/b?x=1#f HTTP/1.1\r\n" + H + b"\r\n",
                 [Err(RemoteProtocolError, "invalid request line")], id="fragment-rejected"),
    pytest.param(b"GET http://a/x HTTP/1.1\r\n" + H + b"\r\n",
                 [req(target=b"http://a/x"), EOM, NEED_DATA], id="absolute-form"),
    pytest.param(b"GET HTTPS://[::1]:8443?q HTTP/1.1\r\n" + H + b"\r\n",
                 [req(target=b"HTTPS://[::1]:8443?q"), EOM, NEED_DATA],
                 id="absolute-form-ip-literal-no-path"),
    # RFC 9112 §3.2.2: the authority of an absolute-form target is checked like Host.
    pytest.param(b"PUT s://]ufd/: HTTP/1.1\r\n" + H + b"\r\n",
                 [Err(RemoteProtocolError, "target")], id="absolute-form-bad-authority"),
    pytest.param(b"GET http:///x HTTP/1.1\r\n" + H + b"\r\n",
                 [Err(RemoteProtocolError, "target")], id="absolute-form-empty-host"),
    pytest.param(b"GET http://user@a/x HTTP/1.1\r\n" + H + b"\r\n",
                 [Err(RemoteProtocolError, "target")], id="absolute-form-userinfo"),
    pytest.param(b"GET ftp://a/x HTTP/1.1\r\n" + H + b"\r\n",
                 [Err(RemoteProtocolError, "target")], id="absolute-form-not-http"),
    pytest.param(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
                 [req(b"CONNECT", b"a.example:443", headers=[(b"Host", b"a.example:443")]),
                  EOM, NEED_DATA], id="authority-form-connect"),
    pytest.param(b"CONNECT / HTTP/1.1\r\n" + H + b"\r\n", [Err(RemoteProtocolError, "target")],
                 id="connect-origin-form-rejected"),
    pytest.param(b"CONNECT a.example HTTP/1.1\r\n" + H + b"\r\n",
                 [Err(RemoteProtocolError, "target")], id="connect-authority-without-port"),
    pytest.param(b"GET a.example:443 HTTP/1.1\r\n" + H + b"\r\n",
                 [Err(RemoteProtocolError, "target")], id="authority-form-not-connect"),
    pytest.param(b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
                 [req(b"OPTIONS", b"*"), EOM, NEED_DATA], id="asterisk-form-options"),
    pytest.param(b"GET * HTTP/1.1\r\n" + H + b"\r\n", [Err(RemoteProtocolError, "target")],
                 id="asterisk-form-not-options"),
    pytest.param(b"GET foo HTTP/1.1\r\n" + H + b"\r\n", [Err(RemoteProtocolError, "target")],
                 id="relative-target"),
    pytest.param(b"GET  / HTTP/1.1\r\n" + H + b"\r\n", [BAD], id="double-space-request-line"),
    pytest.param(b"GET / HTTP/1.1 \r\n" + H + b"\r\n", [BAD], id="trailing-space-request-line"),
    pytest.param(b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", [BAD], id="tab-in-request-line"),
    pytest.param(b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n", [BAD], id="del-in-target"),
    pytest.param(b"GET /\xff HTTP/1.1\r\n" + H + b"\r\n",
                 [req(target=b"/\xff"), EOM, NEED_DATA], id="obs-text-in-target-kept"),
    pytest.param(b"G@T / HTTP/1.1\r\n" + H + b"\r\n", [BAD], id="non-token-method"),
    pytest.param(b"G\x00T / HTTP/1.1\r\n" + H + b"\r\n", [BAD], id="nul-in-method"),
    pytest.param(b"M-SEARCH * HTTP/1.1\r\n" + H + b"\r\n", [Err(RemoteProtocolError, "target")],
                 id="asterisk-only-options"),
    pytest.param(b"PURGE.x / HTTP/1.1\r\n" + H + b"\r\n",
                 [req(b"PURGE.x"), EOM, NEED_DATA], id="extension-method-token"),
    pytest.param(b"get / HTTP/1.1\r\n" + H + b"\r\n", [req(b"get"), EOM, NEED_DATA],
                 id="method-case-kept"),
    # --- versions (RFC 9112 §2.3, RFC 9110 §6.2) ----------------------------------------
    pytest.param(b"GET / HTTP/1.0\r\n\r\n", [req(headers=[], version=b"1.0"), EOM, PAUSED],
                 id="http10-no-host-closes"),
    pytest.param(b"GET / HTTP/1.2\r\n" + H + b"\r\n", [req(), EOM, NEED_DATA],
                 id="http12-handled-as-11"),
    pytest.param(b"GET / HTTP/2.0\r\n" + H + b"\r\n", [Err(UnsupportedVersion)], id="http20-505"),
    pytest.param(b"GET / HTTP/0.9\r\n" + H + b"\r\n", [Err(UnsupportedVersion)], id="http09-505"),
    pytest.param(b"GET / http/1.1\r\n" + H + b"\r\n", [BAD], id="lowercase-version-400"),
    pytest.param(b"GET / HTTP/1.10\r\n" + H + b"\r\n", [BAD], id="two-digit-minor-400"),
    pytest.param(b"GET / HTTP/1\r\n" + H + b"\r\n", [BAD], id="no-minor-400"),
    pytest.param(b"GET / HTTP/1.1x\r\n" + H + b"\r\n", [BAD], id="junk-after-version-400"),
    pytest.param(b"GET /\r\n" + H + b"\r\n", [BAD], id="http09-style-no-version"),
    # --- line endings (RFC 9112 §2.2) ---------------------------------------------------
    pytest.param(b"\r\n\r\n" + GET, [req(), EOM, NEED_DATA], id="leading-crlfs-ignored"),
    pytest.param(GET + b"\r\n" + GET, [req(), EOM, req(), EOM, NEED_DATA],
                 id="crlf-between-pipelined-requests"),
    pytest.param(b"\n" + GET, [BAD], id="leading-bare-lf"),
    pytest.param(b"GET / HTTP/1.1\nHost: a\n\n", [Err(RemoteProtocolError, "bare LF")],
                 id="bare-lf-head-peer-open-raises"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", [BAD], id="bare-lf-in-fields"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\n", [Err(RemoteProtocolError, "bare LF")],
                 id="bare-lf-final-line"),
    pytest.param(b"GET / HTTP/1.1\rHost: a\r\n\r\n", [BAD], id="bare-cr-request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", [BAD], id="bare-cr-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\nX\r: y\r\n" + H + b"\r\n", [BAD], id="bare-cr-in-name"),
    # --- field lines (RFC 9112 §5, RFC 9110 §5) -----------------------------------------
    pytest.param(b"GET / HTTP/1.1\r\nHost:a\r\nX-A:\t b \t\r\nX-B:\r\n\r\n",
                 [req(headers=[(b"Host", b"a"), (b"X-A", b"b"), (b"X-B", b"")]), EOM, NEED_DATA],
                 id="ows-stripped-empty-value"),
    pytest.param(b"GET / HTTP/1.1\r\nHost:  a\r\nX:  b\r\n\r\n",
                 [req(headers=[(b"Host", b"a"), (b"X", b"b")]), EOM, NEED_DATA],
                 id="double-space-after-colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: a: b : c\r\n\r\n",
                 [req(headers=with_host((b"X", b"a: b : c"))), EOM, NEED_DATA],
                 id="colons-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9 \x80\xff\r\n\r\n",
                 [req(headers=with_host((b"X", b"caf\xc3\xa9 \x80\xff"))), EOM, NEED_DATA],
                 id="obs-text-value"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nx: 2\r\n\r\n",
                 [req(headers=with_host((b"X", b"1"), (b"x", b"2"))), EOM, NEED_DATA],
                 id="repeated-field-kept-in-order"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
                 [Err(RemoteProtocolError, "obs-fold")], id="obs-fold-space"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\tfolded\r\n\r\n",
                 [Err(RemoteProtocolError, "obs-fold")], id="obs-fold-tab"),
    pytest.param(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", [BAD], id="space-before-first-field"),
    pytest.param(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
                 [Err(RemoteProtocolError, "whitespace")], id="space-before-colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
                 [Err(RemoteProtocolError, "whitespace")], id="tab-before-colon"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b": x\r\n\r\n",
                 [Err(RemoteProtocolError, "empty field name")], id="empty-field-name"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A\r\n\r\n",
                 [Err(RemoteProtocolError, "no colon")], id="field-without-colon"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X(A): b\r\n\r\n",
                 [Err(RemoteProtocolError, "field name")], id="non-token-field-name"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X\xe9: b\r\n\r\n",
                 [Err(RemoteProtocolError, "field name")], id="non-ascii-field-name"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n",
                 [Err(RemoteProtocolError, "field value")], id="nul-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n",
                 [Err(RemoteProtocolError, "field value")], id="control-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n",
                 [Err(RemoteProtocolError, "field value")], id="del-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X: a\tb\r\n\r\n",
                 [req(headers=with_host((b"X", b"a\tb"))), EOM, NEED_DATA], id="htab-in-value"),
    # --- Host (RFC 9112 §3.2) -----------------------------------------------------------
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", [Err(RemoteProtocolError, "Host")], id="host-missing"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
                 [Err(RemoteProtocolError, "Host")], id="host-repeated"),
    pytest.param(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
                 [Err(RemoteProtocolError, "Host")], id="host-repeated-http10"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", [Err(RemoteProtocolError, "Host")],
                 id="host-with-space"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", [Err(RemoteProtocolError, "Host")],
                 id="host-with-slash"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", [Err(RemoteProtocolError, "Host")],
                 id="host-with-userinfo"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", [Err(RemoteProtocolError, "Host")],
                 id="host-two-ports"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
                 [req(headers=[(b"Host", b"[::1]:8080")]), EOM, NEED_DATA], id="host-ipv6-port"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: \r\n\r\n", [req(headers=[(b"Host", b"")]), EOM,
                                                       NEED_DATA], id="host-empty-allowed"),
    pytest.param(b"GET / HTTP/1.1\r\nhOsT: Ex-1.a_b~:80\r\n\r\n",
                 [req(headers=[(b"hOsT", b"Ex-1.a_b~:80")]), EOM, NEED_DATA], id="host-any-case"),
    # --- Content-Length (RFC 9112 §6.3 rule 5, §11.2) -----------------------------------
    pytest.param(post(b"Content-Length: 5\r\n", b"hello"),
                 [req(b"POST", headers=with_host((b"Content-Length", b"5")), framing=CL5),
                  Data(b"hello"), EOM, NEED_DATA], id="cl-body"),
    pytest.param(post(b"Content-Length: 0\r\n"),
                 [req(b"POST", headers=with_host((b"Content-Length", b"0"))), EOM, NEED_DATA],
                 id="cl-zero"),
    # RFC 9110 §8.6 lets a recipient take a list of equal values only if it replaces it
    # by the one value; a request's repeated Content-Length is refused instead, whichever
    # the spelling (nginx and gunicorn refuse it too), so the app never sees "5, 5".
    pytest.param(post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
                 [Err(RemoteProtocolError, "repeated Content-Length")],
                 id="cl-duplicate-equal-rejected"),
    pytest.param(post(b"Content-Length: 5, 5\r\n", b"hello"),
                 [Err(RemoteProtocolError, "repeated Content-Length")], id="cl-list-equal-rejected"),
    pytest.param(post(b"Content-Length: 5, 6\r\n", b"hello"),
                 [Err(RemoteProtocolError, "repeated Content-Length")], id="cl-list-conflict"),
    pytest.param(post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello"),
                 [Err(RemoteProtocolError, "repeated Content-Length")], id="cl-conflict"),
    pytest.param(post(b"Content-Length: 005\r\n", b"hello"),
                 [req(b"POST", headers=with_host((b"Content-Length", b"005")), framing=CL5),
                  Data(b"hello"), EOM, NEED_DATA], id="cl-leading-zeros"),
    pytest.param(post(b"Content-Length: +5\r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-plus-sign"),
    pytest.param(post(b"Content-Length: -5\r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-minus-sign"),
    pytest.param(post(b"Content-Length: 1 0\r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-space-inside"),
    pytest.param(post(b"Content-Length: 0x5\r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-hex"),
    pytest.param(post(b"Content-Length: 1_0\r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-underscore"),
    pytest.param(post("Content-Length: \u0665\r\n".encode(), b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-arabic-indic-digit"),
    pytest.param(post(b"Content-Length: \xb2\r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-latin1-superscript"),
    pytest.param(post(b"Content-Length: 5.0\r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-decimal-point"),
    pytest.param(post(b"Content-Length: \r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-empty"),
    pytest.param(post(b"Content-Length: 5,\r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-empty-list-member"),
    pytest.param(post(b"Content-Length: 1" + b"0" * 18 + b"\r\n"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-overflow-19-digits"),
    pytest.param(post(b"Content-Length: 18446744073709551621\r\n", b"hello"),
                 [Err(RemoteProtocolError, "Content-Length")], id="cl-overflow-2-64-plus-5"),
    pytest.param(closed(post(b"Content-Length: 5\r\n", b"hel")),
                 [req(b"POST", headers=with_host((b"Content-Length", b"5")), framing=CL5),
                  Data(b"hel"), Err(IncompleteMessage)], id="cl-peer-close-mid-body"),
    pytest.param(post(b"Content-Length: 5\r\n", b"hel"),
                 [req(b"POST", headers=with_host((b"Content-Length", b"5")), framing=CL5),
                  Data(b"hel"), NEED_DATA], id="cl-body-partial-waits"),
    # --- Transfer-Encoding (RFC 9112 §6.1, §6.3, §7.1) ----------------------------------
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Data(b"hello"), EOM, NEED_DATA], id="te-chunked"),
    pytest.param(post(b"Transfer-Encoding: ChUnKeD\r\n", b"0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"ChUnKeD")),
                      framing=CHUNKED), EOM, NEED_DATA], id="te-chunked-case-insensitive"),
    pytest.param(post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"),
                 [Err(UnsupportedTransferCoding)], id="te-chunked-not-final-gzip-501"),
    pytest.param(post(b"Transfer-Encoding: chunked, foo\r\n", b"0\r\n\r\n"),
                 [Err(RemoteProtocolError, "not chunked")], id="te-chunked-not-final-400"),
    pytest.param(post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
                 [Err(UnsupportedTransferCoding)], id="te-gzip-chunked-501"),
    # RFC 9112 §7: chunked applied twice is malformed (400), not an unknown coding (501).
    pytest.param(post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                      b"0\r\n\r\n"), [Err(RemoteProtocolError, "more than once")],
                 id="te-chunked-twice"),
    pytest.param(post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
                 [Err(RemoteProtocolError, "more than once")], id="te-chunked-twice-list"),
    pytest.param(post(b"Transfer-Encoding: foo\r\n", b"0\r\n\r\n"),
                 [Err(RemoteProtocolError, "not chunked")], id="te-unknown"),
    pytest.param(post(b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n"),
                 [Err(UnsupportedTransferCoding)], id="te-gzip-only-501"),
    pytest.param(post(b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n"),
                 [Err(UnsupportedTransferCoding)], id="te-identity-501"),
    pytest.param(post(b"Transfer-Encoding: \r\n", b"0\r\n\r\n"),
                 [Err(RemoteProtocolError, "empty transfer coding")], id="te-empty"),
    pytest.param(post(b"Transfer-Encoding: chunked,\r\n", b"0\r\n\r\n"),
                 [Err(RemoteProtocolError, "empty transfer coding")], id="te-trailing-comma"),
    pytest.param(post(b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"),
                 [Err(RemoteProtocolError)], id="te-vertical-tab"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"),
                 [Err(RemoteProtocolError, "both")], id="cl-and-te-rejected"),
    pytest.param(post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
                 [Err(RemoteProtocolError, "both")], id="cl-and-te-rejected-cl-first"),
    pytest.param(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 [Err(RemoteProtocolError, "HTTP/1.0")], id="te-in-http10"),
    pytest.param(post(b"Transfer-Encodings: chunked\r\n", b"0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encodings", b"chunked"))), EOM,
                  Err(RemoteProtocolError)], id="te-misspelled-is-no-te"),
    # --- chunked bodies (RFC 9112 §7.1) -------------------------------------------------
    pytest.param(post(b"Transfer-Encoding: chunked\r\n",
                      b"a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Data(b"0123456789" * 2), EOM, NEED_DATA],
                 id="chunk-size-hex-case"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n",
                      b"0000000000000000000005\r\nhello\r\n000\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Data(b"hello"), EOM, NEED_DATA],
                 id="chunk-size-leading-zeros"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"1" + b"0" * 16 + b"\r\nx"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError, "chunk-size")],
                 id="chunk-size-overflow-17-digits"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"5x\r\nhello\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError, "chunk-size")],
                 id="chunk-size-junk"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError, "chunk-size")],
                 id="chunk-size-negative"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError, "chunk-size")],
                 id="chunk-size-0x-prefix"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"\r\nhello\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError, "chunk-size")],
                 id="chunk-size-empty"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b" 5\r\nhello\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError, "chunk-size")],
                 id="chunk-size-leading-space"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n",
                      b"5;a=b;c;d=\"x;\\\"y\" ; e = f\r\nhello\r\n0;z\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Data(b"hello"), EOM, NEED_DATA],
                 id="chunk-extensions-incl-quoted"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"5;a=\"x\r\nhello\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError, "chunk-size")],
                 id="chunk-extension-unterminated-quote"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"5;a\x00\r\nhello\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError, "chunk-size")],
                 id="chunk-extension-nul"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"5\nhello\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError, "bare LF")],
                 id="chunk-size-bare-lf"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"5\rhello\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError)], id="chunk-size-bare-cr"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhelloXX0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Data(b"hello"), Err(RemoteProtocolError, "CRLF")],
                 id="chunk-data-bad-terminator"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Data(b"hello"), Err(RemoteProtocolError, "CRLF")],
                 id="chunk-data-lf-terminator"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\r0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Data(b"hello"), Err(RemoteProtocolError, "CRLF")],
                 id="chunk-data-cr-cr-terminator"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"3\r\nhello\r\n0\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Data(b"hel"), Err(RemoteProtocolError, "CRLF")],
                 id="chunk-longer-than-size"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n",
                      b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-B: 2 \r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Data(b"hello"),
                  EndOfMessage(Headers([(b"X-Sum", b"1"), (b"X-B", b"2")])), NEED_DATA],
                 id="trailers"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"0\r\nX : 1\r\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError, "whitespace")],
                 id="trailer-space-before-colon"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"0\r\nX: 1\n\r\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError)], id="trailer-bare-lf"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n", b"0\r\n\n"),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Err(RemoteProtocolError, "bare LF")],
                 id="last-chunk-bare-lf-end"),
    pytest.param(closed(post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhel")),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Data(b"hel"), Err(IncompleteMessage)],
                 id="chunked-peer-close-mid-chunk"),
    pytest.param(closed(post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n")),
                 [req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                      framing=CHUNKED), Data(b"hello"), Err(IncompleteMessage)],
                 id="chunked-peer-close-before-final-crlf"),
    # --- Expect (RFC 9110 §10.1.1) ------------------------------------------------------
    pytest.param(post(b"Content-Length: 5\r\nExpect: 100-Continue\r\n"),
                 [req(b"POST", headers=with_host((b"Content-Length", b"5"),
                                                 (b"Expect", b"100-Continue")),
                      framing=CL5, expects_continue=True), NEED_DATA], id="expect-100-continue"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
                 [req(headers=with_host((b"Expect", b"100-continue"))), EOM, NEED_DATA],
                 id="expect-100-continue-no-body"),
    pytest.param(post(b"Content-Length: 5\r\nExpect: 200-ok\r\n", b"hello"),
                 [Err(ExpectationFailed)], id="expect-other-417"),
    pytest.param(b"POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 200-ok\r\n\r\nhello",
                 [req(b"POST", headers=[(b"Content-Length", b"5"), (b"Expect", b"200-ok")],
                      version=b"1.0", framing=CL5), Data(b"hello"), EOM, PAUSED],
                 id="expect-ignored-in-http10"),
    # --- keep-alive (RFC 9112 §9.3) and pipelining --------------------------------------
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /smuggled",
                 [req(headers=with_host((b"Connection", b"close")), keep_alive=False), EOM,
                  PAUSED, Trailing(b"GET /smuggled")], id="connection-close-done"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
                 [req(headers=with_host((b"Connection", b"Keep-Alive, CLOSE")),
                      keep_alive=False), EOM, PAUSED], id="connection-list-with-close"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nConnection: close\r\n\r\n",
                 [req(headers=with_host((b"Connection", b"upgrade"), (b"Connection", b"close")),
                      keep_alive=False), EOM, PAUSED], id="connection-close-second-line"),
    pytest.param(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                 [req(headers=[(b"Connection", b"keep-alive")], version=b"1.0",
                      keep_alive=True), EOM, NEED_DATA], id="http10-keep-alive"),
    pytest.param(b"GET / HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n",
                 [req(headers=[(b"Connection", b"foo, Keep-Alive")], version=b"1.0",
                      keep_alive=True), EOM, NEED_DATA], id="http10-keep-alive-in-list"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
                 [req(headers=with_host((b"Connection", b"closed"))), EOM, NEED_DATA],
                 id="connection-closed-is-not-close"),
    pytest.param(GET + post(b"Content-Length: 5\r\n", b"hello") + GET,
                 [req(), EOM, req(b"POST", headers=with_host((b"Content-Length", b"5")),
                                  framing=CL5), Data(b"hello"), EOM, req(), EOM, NEED_DATA],
                 id="pipelined-three"),
    pytest.param(closed(GET), [req(), EOM, ConnectionClosed()], id="peer-close-between-messages"),
    pytest.param(closed(b""), [ConnectionClosed()], id="peer-close-before-anything"),
    pytest.param(closed(b"\r\n"), [ConnectionClosed()], id="peer-close-after-empty-line"),
    pytest.param(closed(GET + b"GET / HT"), [req(), EOM, Err(IncompleteMessage)],
                 id="peer-close-mid-head"),
    pytest.param(closed(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
                 [req(headers=with_host((b"Connection", b"close")), keep_alive=False), EOM,
                  ConnectionClosed()], id="peer-close-after-done"),
]


@pytest.mark.parametrize(("raw", "expected"), REQUEST_CASES)
def test_request_cases(raw: bytes, expected: Sequence[Item]) -> None:
    check_replays(RequestParser, raw, expected)


@pytest.mark.parametrize(("raw", "expected"), REQUEST_CASES)
def test_request_cases_with_a_head_cache_cold_and_warm(raw: bytes,
                                                       expected: Sequence[Item]) -> None:
    # Parsers sharing a RequestHeadCache give exactly the events of a parser without one,
    # the first time a head is seen (cold) and after (warm: the cached event is handed out).
    cache = RequestHeadCache()
    for _ in range(3):
        check_replays(lambda: RequestParser(head_cache=cache), raw, expected)


def test_a_head_cache_hands_out_the_same_event_and_stays_bounded() -> None:
    cache = RequestHeadCache()
    events = []
    for _ in range(2):
        parser = RequestParser(head_cache=cache)
        parser.feed(GET)
        events.append(parser.next_event())
    assert events[0] is events[1]
    parser = RequestParser(head_cache=cache)
    for index in range(3 * caches.MAX_ENTRIES):
        parser.feed(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % index)
        request = parser.next_event()
        assert type(request) is Request and request.target == b"/%d" % index
        assert parser.next_event() == EndOfMessage()
        assert len(cache) <= caches.MAX_ENTRIES


SMALL = HttpLimits(max_request_line_bytes=100, max_fields=3, max_field_bytes=40,
                   max_head_bytes=120, max_chunk_line_bytes=20, max_trailer_bytes=30,
                   max_body_bytes=10)


def chunked_post(body: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body


CHUNKED_REQ = req(b"POST", headers=with_host((b"Transfer-Encoding", b"chunked")),
                  framing=CHUNKED)

LIMIT_CASES = [
    pytest.param(HttpLimits(), b"GET /" + b"a" * 7983 + b" HTTP/1.1\r\n" + H + b"\r\n",
                 [req(target=b"/" + b"a" * 7983), EOM, NEED_DATA], id="request-line-8000-ok"),
    pytest.param(HttpLimits(), b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n" + H + b"\r\n",
                 [Err(RequestLineTooLong)], id="request-line-over-default-414"),
    pytest.param(SMALL, b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n" + H + b"\r\n",
                 [Err(RequestLineTooLong)], id="request-line-414"),
    pytest.param(SMALL, b"GET /" + b"a" * 80 + b" HTTP/1.1\r\n" + H + b"\r\n",
                 [req(target=b"/" + b"a" * 80), EOM, NEED_DATA], id="request-line-at-limit"),
    pytest.param(SMALL, b"GET / HTTP/1.1\r\n" + H + b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n",
                 [Err(TooManyFields)], id="field-count-431"),
    pytest.param(SMALL, b"GET / HTTP/1.1\r\n" + H + b"A: 1\r\nB: 2\r\n\r\n",
                 [req(headers=with_host((b"A", b"1"), (b"B", b"2"))), EOM, NEED_DATA],
                 id="field-count-at-limit"),
    pytest.param(SMALL, b"GET / HTTP/1.1\r\n" + H + b"A: " + b"x" * 40 + b"\r\n\r\n",
                 [Err(FieldTooLarge)], id="field-size-431"),
    pytest.param(SMALL, b"GET / HTTP/1.1\r\n" + H + b"A: " + b"x" * 37 + b"\r\n\r\n",
                 [req(headers=with_host((b"A", b"x" * 37))), EOM, NEED_DATA],
                 id="field-size-at-limit"),
    pytest.param(SMALL, b"GET /" + b"a" * 71 + b" HTTP/1.1\r\n" + H
                 + b"A: 1234567890\r\nB: 1234567890\r\n\r\n", [Err(HeadTooLarge)], id="head-size-431"),
    pytest.param(SMALL, b"GET /" + b"a" * 86 + b" HTTP/1.1\r\n" + H + b"\r\n",
                 [req(target=b"/" + b"a" * 86), EOM, NEED_DATA], id="request-line-exactly-limit"),
    pytest.param(SMALL, b"GET /" + b"a" * 87 + b" HTTP/1.1\r\n" + H + b"\r\n",
                 [Err(RequestLineTooLong)], id="request-line-one-over-limit"),
    pytest.param(SMALL, b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n" + H,
                 [Err(RequestLineTooLong)], id="request-line-414-head-incomplete"),
    pytest.param(SMALL, b"GET / HTTP/1.1\r\n" + H + b"A: " + b"x" * 200,
                 [Err(HeadTooLarge)], id="head-size-431-incomplete"),
    pytest.param(SMALL, b"GET /" + b"a" * 200, [Err(RequestLineTooLong)],
                 id="request-line-414-incomplete"),
    pytest.param(SMALL, chunked_post(b"5;" + b"x" * 30 + b"\r\nhello\r\n0\r\n\r\n"),
                 [CHUNKED_REQ, Err(RemoteProtocolError, "chunk-size line")],
                 id="chunk-line-over-limit"),
    pytest.param(SMALL, chunked_post(b"5;" + b"x" * 30),
                 [CHUNKED_REQ, Err(RemoteProtocolError, "chunk-size line")],
                 id="chunk-line-over-limit-incomplete"),
    pytest.param(SMALL, chunked_post(b"0\r\nX: " + b"y" * 30 + b"\r\n\r\n"),
                 [CHUNKED_REQ, Err(HeadTooLarge, "trailer")], id="trailer-size-431"),
    pytest.param(SMALL, chunked_post(b"0\r\nX: " + b"y" * 30),
                 [CHUNKED_REQ, Err(HeadTooLarge, "trailer")], id="trailer-size-431-incomplete"),
    pytest.param(SMALL, post(b"Content-Length: 11\r\n", b"x" * 11), [Err(BodyTooLarge)],
                 id="content-length-over-max-body-413"),
    pytest.param(SMALL, post(b"Content-Length: 10\r\n", b"x" * 10),
                 [req(b"POST", headers=with_host((b"Content-Length", b"10")),
                      framing=length(10)), Data(b"x" * 10), EOM, NEED_DATA],
                 id="content-length-at-max-body"),
    pytest.param(SMALL, chunked_post(b"6\r\nxxxxxx\r\n5\r\nxxxxx\r\n0\r\n\r\n"),
                 [CHUNKED_REQ, Data(b"xxxxxx"), Err(BodyTooLarge)], id="chunked-over-max-body-413"),
]


@pytest.mark.parametrize(("limits", "raw", "expected"), LIMIT_CASES)
def test_limit_cases(limits: HttpLimits, raw: bytes, expected: Sequence[Item]) -> None:
    check_replays(lambda: RequestParser(limits), raw, expected)


def test_error_status_codes() -> None:
    assert (RemoteProtocolError.status, RequestLineTooLong.status, HeadTooLarge.status,
            TooManyFields.status, FieldTooLarge.status, BodyTooLarge.status,
            ExpectationFailed.status, UnsupportedTransferCoding.status,
            UnsupportedVersion.status, IncompleteMessage.status) == (
        400, 414, 431, 431, 431, 413, 417, 501, 505, 400)


def test_parser_stays_in_error() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        parser.next_event()
    assert parser.state is ParserState.ERROR
    parser.feed(GET)
    with pytest.raises(RemoteProtocolError):
        parser.next_event()
    assert parser.state is ParserState.ERROR


def test_done_never_parses_later_bytes() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert isinstance(parser.next_event(), Request)
    assert isinstance(parser.next_event(), EndOfMessage)
    for _ in range(3):
        parser.feed(b"GET /evil HTTP/1.1\r\nHost: a\r\n\r\n")
        assert parser.next_event() is PAUSED
    assert parser.state is ParserState.DONE
    assert parser.trailing_data == b"GET /evil HTTP/1.1\r\nHost: a\r\n\r\n" * 3


def test_head_buffer_bounded_while_waiting() -> None:
    # Slowloris: bytes without an end of head never grow the buffer past the limit.
    limits = HttpLimits(max_head_bytes=1000, max_field_bytes=1000, max_request_line_bytes=500)
    parser = RequestParser(limits)
    parser.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HeadTooLarge):
        for _ in range(200):
            parser.feed(b"X-Long: aaaa\r\n")
            assert parser.next_event() is NEED_DATA
            assert parser.buffered_bytes <= limits.max_head_bytes + 14
    assert parser.state is ParserState.ERROR


def test_body_is_streamed_not_buffered() -> None:
    parser = RequestParser()
    parser.feed(post(b"Content-Length: 100000\r\n"))
    assert isinstance(parser.next_event(), Request)
    total = 0
    for _ in range(100):
        parser.feed(b"x" * 1000)
        event = parser.next_event()
        assert isinstance(event, Data)
        total += len(event.data)
        assert parser.buffered_bytes == 0
    assert total == 100000
    assert isinstance(parser.next_event(), EndOfMessage)


# --- the cache of validated field-name sequences ------------------------------------------


# Shared by the parsers of _head and _refused, as a worker shares one among its connections.
NAMES = FieldNameCache()


def _head(fields: bytes, version: bytes = b"1.1") -> Request:
    parser = RequestParser(name_cache=NAMES)
    parser.feed(b"GET / HTTP/" + version + b"\r\n" + fields + b"\r\n")
    event = parser.next_event()
    assert isinstance(event, Request)
    return event


def _refused(fields: bytes) -> None:
    parser = RequestParser(name_cache=NAMES)
    parser.feed(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        parser.next_event()


def test_a_cached_name_sequence_does_not_excuse_a_malformed_line() -> None:
    # The same names are first seen well formed (and cached), then in lines that only the
    # general path may judge: each must still be parsed, stripped or refused as if new.
    _head(b"Host: a\r\nX-A: 1\r\n")
    assert _head(b"Host: a\r\nX-A:1\r\n").headers.fields == [(b"Host", b"a"), (b"X-A", b"1")]
    assert _head(b"Host: a\r\nX-A:  1 \r\n").headers.fields == [(b"Host", b"a"), (b"X-A", b"1")]
    assert _head(b"Host: a\r\nX-A: 1: 2\r\n").headers.fields == [(b"Host", b"a"),
                                                                  (b"X-A", b"1: 2")]
    _refused(b"Host: a\r\nX-A 1\r\n")        # no colon
    _refused(b"Host: a\r\nX-A : 1\r\n")      # whitespace before the colon
    _refused(b"Host: a\r\n X-A: 1\r\n")      # obs-fold
    _refused(b"Host: a\r\nX-A: 1\x00\r\n")  # NUL in the value


def test_host_and_connection_are_judged_per_request_with_cached_names() -> None:
    for _ in range(2):  # the second round hits the cache
        assert _head(b"Host: a\r\nConnection: close\r\n").keep_alive is False
        assert _head(b"Host: a\r\nConnection: keep-alive\r\n", b"1.0").keep_alive is True
        assert _head(b"Host: a\r\nConnection: Keep-Alive\r\n", b"1.0").keep_alive is True
        assert _head(b"Host: a\r\nConnection: upgrade, close\r\n").keep_alive is False
        assert _head(b"Host: a\r\nConnection: te\r\nConnection: close\r\n").keep_alive is False
        assert _head(b"Host: a\r\nConnection: te\r\n", b"1.0").keep_alive is False
        _refused(b"Host: a\r\nHost: b\r\n")
        _refused(b"X-A: 1\r\n")
        _refused(b"Host: a b\r\n")
        assert _head(b"X-A: 1\r\n", b"1.0").headers.get(b"x-a") == b"1"


def test_names_are_shared_read_only_and_the_cache_is_bounded() -> None:
    first = _head(b"Host: a\r\nUser-Agent: x\r\n").headers
    second = _head(b"Host: b\r\nUser-Agent: y\r\n").headers
    assert first.names == (b"host", b"user-agent") and isinstance(first.names, tuple)
    assert first.names is second.names  # one tuple for the sequence, from the cache
    assert (first.get(b"host"), second.get(b"host")) == (b"a", b"b")
    for index in range(3 * caches.MAX_ENTRIES):
        _head(b"Host: a\r\nX-%d: 1\r\n" % index)
        assert len(NAMES) <= caches.MAX_ENTRIES
