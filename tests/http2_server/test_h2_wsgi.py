"""How an HTTP/2 stream maps to WSGI (PEP 3333) on a running server: the environ
(SERVER_PROTOCOL, :authority as HTTP_HOST, dropped names, forwarding headers from a
trusted proxy), response heads (connection-specific fields dropped, HEAD, 204, 304,
Content-Length kept to), bodies (iterables, write(), wsgi.file_wrapper), errors, early
hints and the access log.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from h2client import (
    DATA,
    END_STREAM,
    HEADERS,
    INTERNAL_ERROR,
    H2Connection,
    Response,
)
from h2servers import wait_for_line
from serving import Server

pytestmark = pytest.mark.timeout(60)

SERVER_ARGS = ("--threads", "4")


def environ_of(conn: H2Connection, path: str = "/environ-h2", method: str = "GET", *,
               body: bytes | None = None, extra: list[tuple[str, str]] | None = None,
               authority: str = "127.0.0.1") -> dict[str, object]:
    stream_id = conn.request(path, method, body=body, extra=extra or [], authority=authority)
    response = conn.response(stream_id)
    assert response.status == 200, response
    environ: dict[str, object] = json.loads(response.body)
    return environ


def frames_of(conn: H2Connection, stream_id: int) -> list[tuple[int, int, int]]:
    """(type, flags, payload length) of the HEADERS and DATA frames of a stream."""
    return [(f.type, f.flags, len(f.payload)) for f in conn.frames
            if f.stream_id == stream_id and f.type in (HEADERS, DATA)]


# -- the environ -------------------------------------------------------------------------------


def test_environ_of_an_http2_request(conn: H2Connection) -> None:
    environ = environ_of(conn, "/environ-h2?a=1&b=%20two", authority="example.test:8443")
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == "/environ-h2"
    assert environ["QUERY_STRING"] == "a=1&b=%20two"
    assert environ["HTTP_HOST"] == "example.test:8443"   # :authority (RFC 9113 §8.3.1)
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.input_terminated"] is True
    assert environ["wsgi.multithread"] is True
    assert environ["has_early_hints"] is True and environ["has_file_wrapper"] is True
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and str(environ["REMOTE_PORT"]).isdigit()


def test_percent_encoded_path(conn: H2Connection) -> None:
    response = conn.get("/echo/a%20b/%C3%A9")
    assert json.loads(response.body)["path_info"] == "/echo/a b/\xc3\xa9"


def test_field_names_with_underscores_are_dropped(conn: H2Connection) -> None:
    environ = environ_of(conn, extra=[("x-auth-user", "dash"), ("x_auth_user", "underscore")])
    assert environ["HTTP_X_AUTH_USER"] == "dash"


def test_repeated_fields_are_joined(conn: H2Connection) -> None:
    environ = environ_of(conn, extra=[("x-list", "a"), ("x-list", "b"), ("cookie", "k=1"),
                                      ("cookie", "l=2")])
    assert environ["HTTP_X_LIST"] == "a, b"
    assert environ["HTTP_COOKIE"] == "k=1; l=2"   # RFC 9113 §8.2.3


def test_content_type_and_length(conn: H2Connection) -> None:
    environ = environ_of(conn, method="POST", body=b"abc",
                         extra=[("content-type", "text/plain"), ("content-length", "3")])
    assert environ["CONTENT_TYPE"] == "text/plain" and environ["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ


def test_forwarding_headers_from_a_trusted_proxy(conn: H2Connection) -> None:
    # 127.0.0.1 is trusted by default (forwarded_allow_ips), as for HTTP/1.1.
    environ = environ_of(conn, extra=[("x-forwarded-for", "203.0.113.9"),
                                      ("x-forwarded-proto", "https")])
    assert environ["REMOTE_ADDR"] == "203.0.113.9"
    assert environ["wsgi.url_scheme"] == "https"


def test_request_body_read_in_pieces(conn: H2Connection) -> None:
    body = b"0123456789" * 10000
    response = conn.get("/slow-read?delay=0&piece=777", "POST", body=body)
    assert json.loads(response.body)["length"] == len(body)


def test_bodiless_request_reads_empty(conn: H2Connection) -> None:
    assert json.loads(conn.get("/echo", "POST").body)["body_length"] == 0


# -- response heads ---------------------------------------------------------------------


def test_connection_specific_response_headers_are_dropped(conn: H2Connection) -> None:
    response = conn.get("/connection-headers")
    names = [name for name, _ in response.headers]
    for name in ("connection", "keep-alive", "transfer-encoding", "upgrade",
                 "proxy-connection"):
        assert name not in names
    assert response.header("x-kept") == "yes" and response.body == b"ok"
    assert response.header("content-length") == "2"
    assert all(name == name.lower() for name in names)
    assert names[0] == ":status" and response.header("date") and response.header("server")


def test_head_has_the_fields_and_no_content(conn: H2Connection) -> None:
    response = conn.get("/hello", "HEAD")
    assert response.status == 200 and response.header("content-length") == "13"
    assert response.body == b"" and response.is_ended
    assert [size for kind, _, size in frames_of(conn, 1) if kind == DATA and size] == []


@pytest.mark.parametrize("code", [204, 304])
def test_no_content_statuses_have_no_body(conn: H2Connection, code: int) -> None:
    response = conn.get(f"/status?code={code}")
    assert response.status == code and response.body == b""
    assert response.header("content-length") is None
    assert [kind for kind, _, size in frames_of(conn, 1) if size and kind == DATA] == []


def test_streaming_iterable_without_content_length(conn: H2Connection) -> None:
    response = conn.get("/stream?n=5&size=1000")
    assert response.body == b"a" * 1000 + b"b" * 1000 + b"c" * 1000 + b"d" * 1000 + \
        b"e" * 1000
    assert response.header("content-length") is None


def test_legacy_write(conn: H2Connection) -> None:
    assert conn.get("/write").body == b"first,second,tail"


def test_file_wrapper(conn: H2Connection, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    path = tmp_path / "served.bin"
    path.write_bytes(data)
    response = conn.get(f"/file?path={path}")
    assert response.body == data and response.header("content-length") == str(len(data))
    assert conn.get("/file-bytesio?size=100000").body == \
        bytes(range(256)) * 390 + b"z" * 160


def test_file_wrapper_head(conn: H2Connection) -> None:
    response = conn.get("/file-bytesio?size=100000", "HEAD")
    assert response.body == b"" and response.header("content-length") == "100000"


# -- errors ----------------------------------------------------------------------------


def test_error_before_the_head_is_a_500(conn: H2Connection) -> None:
    response = conn.get("/error-before")
    assert response.status == 500 and b"SECRET" not in response.body


def expect_reset_after_a_partial_body(response: Response, body: bytes) -> None:
    assert response.status == 200 and response.body == body
    assert response.reset_code == INTERNAL_ERROR and not response.is_ended


def test_error_after_the_head_resets_the_stream(conn: H2Connection) -> None:
    expect_reset_after_a_partial_body(conn.get("/error-after"), b"partial")
    assert conn.get().status == 200


def test_body_short_of_its_content_length_resets_the_stream(conn: H2Connection) -> None:
    expect_reset_after_a_partial_body(conn.get("/short"), b"12345")


def test_body_past_its_content_length_is_cut(conn: H2Connection) -> None:
    response = conn.get("/big?size=10&block=7")   # declares 10, yields 7 + 7
    assert response.body == b"x" * 10 and response.is_ended


# -- early hints, the access log --------------------------------------------------------


def test_early_hints_come_before_the_response(conn: H2Connection) -> None:
    response = conn.get("/early-hints")
    assert [dict(hints).get(":status") for hints in response.informational] == ["103", "103"]
    assert ("link", "</style.css>; rel=preload; as=style") in response.informational[0]
    assert all(name != "connection" for name, _ in response.informational[1])
    assert response.status == 200 and response.body == b"page"
    heads = [f for f in conn.frames if f.type == HEADERS and f.stream_id == 1]
    assert [f.flags & END_STREAM for f in heads] == [0, 0, 0]


def test_access_log_says_http_2(conn: H2Connection, server: Server) -> None:
    conn.get("/echo?logged=1", "POST", body=b"abc")
    wait_for_line(server, '"POST /echo?logged=1 HTTP/2.0" 200')
