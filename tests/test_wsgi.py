"""PEP 3333 pieces without sockets: the environ built from parsed request bytes, wsgi.input
(never past the body), the error stream, the file wrapper and the start_response checks."""
from __future__ import annotations

import io
import logging
from typing import Any

import pytest

from wsgiserve.http import (
    NEED_DATA,
    Data,
    EndOfMessage,
    LocalProtocolError,
    Request,
    RequestParser,
)
from wsgiserve.server.worker.connection import make_base_environ
from wsgiserve.wsgi import (
    EmptyInput,
    ErrorStream,
    FileWrapper,
    InputStream,
    EnvironBuilder,
    build_environ,
    check_response_headers,
    split_target,
)


def parse(raw: bytes) -> tuple[Request, RequestParser]:
    parser = RequestParser()
    parser.feed(raw)
    event = parser.next_event()
    assert type(event) is Request
    return event, parser


def environ_for(raw: bytes, script_name: str = "") -> dict[str, Any]:
    request, _ = parse(raw)
    base = make_base_environ("127.0.0.1", "8000", "http", multithread=False,
                             multiprocess=True)
    base["REMOTE_ADDR"], base["REMOTE_PORT"] = "127.0.0.1", "5555"
    return build_environ(request, base, script_name)


def body_of(raw: bytes) -> InputStream:
    """A InputStream reading through the parser, as the connection does (no socket)."""
    _, parser = parse(raw)

    def read_body() -> bytes:
        event = parser.next_event()
        if type(event) is Data:
            return event.data
        assert type(event) is EndOfMessage or event is NEED_DATA, event
        return b""
    return InputStream(read_body)


# --- environ ------------------------------------------------------------------------------


def test_environ_has_every_pep_3333_key() -> None:
    environ = environ_for(b"POST /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\n"
                          b"Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc")
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == "" and environ["PATH_INFO"] == "/a/b"
    assert environ["QUERY_STRING"] == "x=1&y=%20"
    assert environ["CONTENT_TYPE"] == "text/plain" and environ["CONTENT_LENGTH"] == "3"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("127.0.0.1", "5555")
    assert environ["HTTP_HOST"] == "h"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert environ["wsgi.version"] == (1, 0) and environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multithread"] is False and environ["wsgi.multiprocess"] is True
    assert environ["wsgi.run_once"] is False and environ["wsgi.input_terminated"] is True
    assert environ["wsgi.file_wrapper"] is FileWrapper
    assert hasattr(environ["wsgi.errors"], "write")
    assert all(type(v) is str for k, v in environ.items() if "." not in k)


@pytest.mark.parametrize(("script_name", "target", "expected"), [
    pytest.param("", "/x/y", ("", "/x/y"), id="no-prefix"),
    pytest.param("/app", "/app/x", ("/app", "/x"), id="under-prefix"),
    pytest.param("/app", "/app", ("/app", ""), id="the-prefix-itself"),
    pytest.param("/app", "/application", ("/app", "/application"), id="not-a-segment"),
    pytest.param("", "/a%20b/%2F", ("", "/a b//"), id="percent-decoded"),
    pytest.param("", "/caf%C3%A9", ("", "/caf\u00c3\u00a9"), id="utf8-as-latin1"),
    pytest.param("", "http://example.org/p?q", ("", "/p"), id="absolute-form"),
])
def test_script_name_and_path_info(script_name: str, target: str,
                                   expected: tuple[str, str]) -> None:
    environ = environ_for(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode(), script_name)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == expected


def test_absolute_form_target_gives_the_host_and_host_is_ignored() -> None:
    # RFC 9112 §3.2.2: an origin server uses the target's authority and ignores Host.
    environ = environ_for(b"GET http://a.example:8080/foo?x=1 HTTP/1.1\r\n"
                          b"Host: b.example\r\n\r\n")
    assert environ["HTTP_HOST"] == "a.example:8080"
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/foo", "x=1")


def test_repeated_fields_are_joined_and_cookies_with_semicolons() -> None:
    environ = environ_for(b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\n"
                          b"Cookie: x=1\r\nCookie: y=2\r\n\r\n")
    assert environ["HTTP_ACCEPT"] == "a, b"
    assert environ["HTTP_COOKIE"] == "x=1; y=2"


def test_header_names_with_underscores_are_dropped() -> None:
    environ = environ_for(b"GET / HTTP/1.1\r\nHost: h\r\nX-Auth_User: evil\r\n"
                          b"X-Auth-User: alice\r\n\r\n")
    assert environ["HTTP_X_AUTH_USER"] == "alice"
    environ = environ_for(b"GET / HTTP/1.1\r\nHost: h\r\nX-Auth_User: evil\r\n\r\n")
    assert "HTTP_X_AUTH_USER" not in environ


def test_chunked_request_has_no_content_length() -> None:
    environ = environ_for(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert "CONTENT_LENGTH" not in environ


def test_http10_protocol_and_latin1_values() -> None:
    environ = environ_for(b"GET / HTTP/1.0\r\nX-Name: caf\xe9\r\n\r\n")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert environ["HTTP_X_NAME"] == "caf\u00e9"


@pytest.mark.parametrize("fields", [
    b"Host: h\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nX-A: 1\r\n",
    b"Host: h\r\nAccept: a\r\naccept: b\r\nCookie: x=1\r\nCOOKIE: y=2\r\n",
    b"Host: h\r\nX-Auth_User: evil\r\nX-Auth-User: alice\r\n",
    b"Host: h\r\nTransfer-Encoding: chunked\r\nX-B: caf\xe9\r\n",
])
def test_environ_is_the_same_through_the_per_name_sequence_keys(fields: bytes) -> None:
    # One builder: the first environ is built cold, the second from its caches; the
    # names as a list (not the parser's tuple) and a new Request take the other paths.
    raw = b"POST / HTTP/1.1\r\n" + fields + b"\r\n"
    request, _ = parse(raw)
    base = make_base_environ("127.0.0.1", "8000", "http", multithread=False,
                             multiprocess=True)
    builder = EnvironBuilder()
    first, second = builder.build(request, base, ""), builder.build(request, base, "")
    again, _ = parse(raw)
    again.headers.names = list(again.headers.names)
    assert first == second == builder.build(again, base, "") == build_environ(again, base, "")
    assert first["HTTP_HOST"] == "h"


def test_split_target() -> None:
    assert split_target(b"/p?a=1?b#f") == (b"/p", b"a=1?b#f")
    assert split_target(b"*") == (b"*", b"")
    assert split_target(b"http://h?q=1") == (b"/", b"q=1")


# --- wsgi.input ---------------------------------------------------------------------------


def test_input_never_reads_past_the_body() -> None:
    body = body_of(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"
                   b"line1\nline2GET /next HTTP/1.1\r\n\r\n")
    assert body.readline() == b"line1\n"
    assert body.read(3) == b"lin"
    assert body.read() == b"e2"
    assert body.read() == b"" and body.read(10) == b"" and body.readline() == b""
    assert body.is_finished


def test_input_chunked_iteration_and_readlines() -> None:
    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4\r\na\nb\n\r\n3\r\nccc\r\n0\r\n\r\n")
    assert list(body_of(raw)) == [b"a\n", b"b\n", b"ccc"]
    assert body_of(raw).readlines() == [b"a\n", b"b\n", b"ccc"]
    assert body_of(raw).readline(1) == b"a"


def test_input_readinto_and_drain() -> None:
    raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabcdef"
    body = body_of(raw)
    buffer = bytearray(4)
    assert body.readinto(buffer) == 4 and buffer == b"abcd"
    assert body.drain(1 << 16) and body.is_finished
    assert not body_of(raw).drain(2)  # more than the bound is left: the caller closes


def test_empty_input() -> None:
    empty = EmptyInput()
    assert empty.read() == b"" and empty.read(5) == b"" and empty.readline() == b""
    assert empty.readlines() == [] and list(empty) == [] and empty.is_finished


# --- the rest -----------------------------------------------------------------------------


def test_error_stream_logs_whole_lines() -> None:
    logger = logging.getLogger("wsgiserve.app.test")
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    # A handler on the logger itself: another test may have configured the "wsgiserve"
    # logger (as the cli does) not to propagate to the root, where caplog listens.
    handler = Collect(logging.ERROR)
    logger.addHandler(handler)
    try:
        stream = ErrorStream(logger)
        stream.write("one\ntw")
        stream.writelines(["o\n", "three"])
        stream.flush()
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["one", "two", "three"]


def test_file_wrapper(tmp_path: Any) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as handle:
        wrapper = FileWrapper(handle, 4)
        assert wrapper.fileno() == handle.fileno()
        assert list(wrapper) == [b"0123", b"4567", b"89"]
        wrapper.close()  # PEP 3333: the file's close
        assert handle.closed
    assert FileWrapper(io.BytesIO(b"x")).fileno() is None


@pytest.mark.parametrize(("status", "headers"), [
    pytest.param(b"200 OK", [], id="bytes-status"),
    pytest.param("200 OK", (("A", "b"),), id="headers-tuple"),
    pytest.param("200 OK", [("A", b"b")], id="bytes-value"),
    pytest.param("200 OK", [("A", "b", "c")], id="three-items"),
])
def test_start_response_type_checks(status: Any, headers: Any) -> None:
    with pytest.raises(LocalProtocolError):
        check_response_headers(status, headers)
    check_response_headers("200 OK", [("A", "b")])
