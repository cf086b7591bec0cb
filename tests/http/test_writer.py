"""The writer: exact bytes for heads and bodies, and refusal to emit invalid bytes."""
from __future__ import annotations

import pytest

from wsgiserve.http import (
    BodyKind,
    BodyWriter,
    Framing,
    LocalProtocolError,
    encode_request_head,
    encode_response_head,
)
from wsgiserve.http.framing import choose_request_framing, choose_response_framing


def test_response_head_bytes() -> None:
    head = encode_response_head("200 OK", [("Content-Type", "text/plain"), ("X-A", "b c")])
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: b c\r\n\r\n"


def test_response_head_http10_and_latin1() -> None:
    head = encode_response_head("404 Not Found", [("X", "caf\xe9")], http_version="1.0")
    assert head == b"HTTP/1.0 404 Not Found\r\nX: caf\xe9\r\n\r\n"


def test_request_head_bytes() -> None:
    head = encode_request_head("POST", "/p?q=1", [("Host", "a"), ("Content-Length", "3")])
    assert head == b"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"


@pytest.mark.parametrize(("name", "value"), [
    pytest.param("X-A", "a\r\nSet-Cookie: x=1", id="crlf-in-value"),
    pytest.param("X-A", "a\nb", id="lf-in-value"),
    pytest.param("X-A", "a\rb", id="cr-in-value"),
    pytest.param("X-A", "a\x00b", id="nul-in-value"),
    pytest.param("X-A", "a\x1fb", id="control-in-value"),
    pytest.param("X-A", "a\x7fb", id="del-in-value"),
    pytest.param("X-A", "\u20ac", id="non-latin1-value"),
    pytest.param("X\r\nY", "v", id="crlf-in-name"),
    pytest.param("X\nY", "v", id="lf-in-name"),
    pytest.param("X\x00", "v", id="nul-in-name"),
    pytest.param("X Y", "v", id="space-in-name"),
    pytest.param("X:Y", "v", id="colon-in-name"),
    pytest.param("", "v", id="empty-name"),
])
def test_injection_refused(name: str, value: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode_response_head("200 OK", [("A", "ok"), (name, value)])
    with pytest.raises(LocalProtocolError):
        encode_request_head("GET", "/", [(name, value)])


@pytest.mark.parametrize("status", ["200", "20 OK", "2000 OK", "200 O\r\nK", "200 OK\n", "abc"])
def test_invalid_status_refused(status: str) -> None:
    if status == "200":
        assert encode_response_head(status, []) == b"HTTP/1.1 200 \r\n\r\n"
        return
    with pytest.raises(LocalProtocolError):
        encode_response_head(status, [])


@pytest.mark.parametrize(("method", "target"), [
    ("G T", "/"), ("GET\r\n", "/"), ("", "/"), ("GET", "/a b"), ("GET", "/a\r\nX: y"),
    ("GET", ""), ("GET", "/\x7f"),
])
def test_invalid_request_line_refused(method: str, target: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode_request_head(method, target, [("Host", "a")])


def test_length_body_exact() -> None:
    writer = BodyWriter(Framing(BodyKind.LENGTH, 5))
    assert writer.write(b"he") == b"he"
    assert writer.write(b"") == b""
    assert writer.write(b"llo") == b"llo"
    assert writer.remaining == 0
    assert writer.end() == b""
    assert writer.bytes_written == 5


def test_length_body_over_refused_and_nothing_emitted() -> None:
    writer = BodyWriter(Framing(BodyKind.LENGTH, 5))
    assert writer.write(b"hel") == b"hel"
    with pytest.raises(LocalProtocolError):
        writer.write(b"lo!")
    # The refused call changed nothing: the right amount still fits.
    assert writer.remaining == 2
    assert writer.write(b"lo") == b"lo"


def test_length_body_short_refused() -> None:
    writer = BodyWriter(Framing(BodyKind.LENGTH, 5))
    writer.write(b"hel")
    with pytest.raises(LocalProtocolError):
        writer.end()


def test_chunked_body_and_trailers() -> None:
    writer = BodyWriter(Framing(BodyKind.CHUNKED))
    assert writer.write(b"hello") == b"5\r\nhello\r\n"
    assert writer.write(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert writer.write(b"") == b""  # an empty chunk would end the body
    assert writer.end([("X-Sum", "abc"), ("X-B", "1")]) == b"0\r\nX-Sum: abc\r\nX-B: 1\r\n\r\n"


def test_chunked_end_without_trailers() -> None:
    assert BodyWriter(Framing(BodyKind.CHUNKED)).end() == b"0\r\n\r\n"


def test_chunked_trailer_injection_refused() -> None:
    writer = BodyWriter(Framing(BodyKind.CHUNKED))
    with pytest.raises(LocalProtocolError):
        writer.end([("X", "a\r\n\r\nGET / HTTP/1.1")])


def test_none_framing_drops_body() -> None:
    writer = BodyWriter(Framing(BodyKind.NONE))
    assert writer.write(b"dropped") == b""
    assert writer.end() == b""


def test_until_close_passes_bytes() -> None:
    writer = BodyWriter(Framing(BodyKind.UNTIL_CLOSE))
    assert writer.write(b"abc") == b"abc"
    assert writer.end() == b""
    assert writer.bytes_written == 3


@pytest.mark.parametrize(("method", "version", "status", "length", "kind"), [
    (b"GET", b"1.1", 200, None, BodyKind.CHUNKED),
    (b"GET", b"1.0", 200, None, BodyKind.UNTIL_CLOSE),
    (b"GET", b"1.1", 200, 5, BodyKind.LENGTH),
    (b"HEAD", b"1.1", 200, 5, BodyKind.NONE),
    (b"GET", b"1.1", 204, None, BodyKind.NONE),
    (b"GET", b"1.1", 304, 5, BodyKind.NONE),
    (b"GET", b"1.1", 103, None, BodyKind.NONE),
])
def test_choose_response_framing(method: bytes, version: bytes, status: int,
                                  length: int | None, kind: BodyKind) -> None:
    assert choose_response_framing(method, version, status, length).kind is kind


def test_choose_request_framing() -> None:
    assert choose_request_framing(None, False).kind is BodyKind.NONE
    assert choose_request_framing(3, True) == Framing(BodyKind.LENGTH, 3)
    assert choose_request_framing(None, True).kind is BodyKind.CHUNKED
