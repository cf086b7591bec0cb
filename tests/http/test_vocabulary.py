"""One field vocabulary (http/headers.py): the parser and the writer agree on every byte,
and the caches built on top of the parser change nothing: a cold and a warm cache give the
same events and the same environs."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgiserve.http import LocalProtocolError, RemoteProtocolError, Request, RequestParser
from wsgiserve.http.caches import FieldNameCache, RequestHeadCache
from wsgiserve.http.headers import FIELD_VALUE_BYTES, TCHAR_BYTES
from wsgiserve.http.writer import encode_request_head, encode_response_head
from wsgiserve.server.worker.connection import make_base_environ
from wsgiserve.wsgi import EnvironBuilder


def _parses(raw: bytes) -> bool:
    parser = RequestParser()
    parser.feed(raw)
    try:
        return type(parser.next_event()) is Request
    except RemoteProtocolError:
        return False


def _writes(status: str, headers: list[tuple[str, str]]) -> bool:
    try:
        encode_response_head(status, headers)
        encode_request_head("GET", "/", headers)
    except LocalProtocolError:
        return False
    return True


@pytest.mark.parametrize("byte", range(256))
def test_parser_and_writer_agree_on_each_byte_in_a_field_value(byte: int) -> None:
    value = b"a" + bytes([byte]) + b"b"
    accepted = _parses(b"GET / HTTP/1.1\r\nHost: h\r\nX-V: " + value + b"\r\n\r\n")
    assert accepted == _writes("200 OK", [("X-V", value.decode("latin-1"))])
    assert accepted == (byte in FIELD_VALUE_BYTES)


@pytest.mark.parametrize("byte", range(256))
def test_parser_and_writer_agree_on_each_byte_as_a_field_name(byte: int) -> None:
    name = bytes([byte])
    accepted = _parses(b"GET / HTTP/1.1\r\nHost: h\r\n" + name + b": v\r\n\r\n")
    assert accepted == _writes("200 OK", [(name.decode("latin-1"), "v")])
    assert accepted == (byte in TCHAR_BYTES)


_NAMES = st.sampled_from(["Host", "X-A", "x-a", "Cookie", "Accept", "X_Under", "Content-Type",
                          "Connection", "User-Agent", "Content-Length"])
_VALUES = st.sampled_from(["a", "b=1", "close", "keep-alive", "text/html", "0", " x ", "é"])
_TARGETS = st.sampled_from(["/", "/p?q=1", "/a%20b", "*", "http://h.example/x?y", "/é"])


def _raw(method: str, target: str, fields: list[tuple[str, str]]) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields)
    return f"{method} {target} HTTP/1.1\r\n{lines}\r\n".encode("latin-1")


def _parse(raw: bytes, heads: RequestHeadCache | None,
           names: FieldNameCache | None) -> Request | str:
    parser = RequestParser(head_cache=heads, name_cache=names)
    parser.feed(raw)
    try:
        event = parser.next_event()
    except RemoteProtocolError as exc:
        return f"{type(exc).__name__}: {exc}"
    assert type(event) is Request
    return event


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["GET", "OPTIONS", "POST"]), _TARGETS,
                          st.lists(st.tuples(_NAMES, _VALUES), max_size=6)),
                min_size=1, max_size=8))
def test_cold_and_warm_caches_give_the_same_events_and_environs(
        requests: list[tuple[str, str, list[tuple[str, str]]]]) -> None:
    heads, names, builder = RequestHeadCache(), FieldNameCache(), EnvironBuilder()
    base = make_base_environ("h", "80", "http", multithread=False, multiprocess=False)
    for _ in range(2):  # the second round finds every cache warm
        for method, target, fields in requests:
            raw = _raw(method, target, fields)
            cold = _parse(raw, None, None)
            warm = _parse(raw, heads, names)
            assert cold == warm
            if isinstance(cold, Request) and isinstance(warm, Request):
                assert EnvironBuilder().build(cold, base, "/app") == \
                    builder.build(warm, base, "/app")
