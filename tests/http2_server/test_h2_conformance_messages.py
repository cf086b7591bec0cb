"""RFC 9113 §7-§8 against a running server, h2spec style: error codes, the HTTP message
exchange (§8.1), field rules (§8.2), pseudo-header fields (§8.3), push (§8.4) and
CONNECT (§8.5). A malformed request is a stream error PROTOCOL_ERROR (§8.1.1): the
RST_STREAM goes out and the connection goes on.
"""
from __future__ import annotations

import json
import struct

import pytest
from h2client import (
    END_HEADERS,
    GOAWAY,
    NO_ERROR,
    PING,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    H2Connection,
    goaway_payload,
    request_fields,
    GET_HELLO,
)

pytestmark = pytest.mark.timeout(60)

SERVER_ARGS = ("--threads", "4")
PSEUDO = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1"),
          (b":path", b"/hello")]


def post_open(conn: H2Connection, stream_id: int = 1, path: str = "/echo") -> None:
    conn.send_headers(stream_id, request_fields(path, "POST"), end_stream=False)


# -- §7 error codes -------------------------------------------------------------------------


def test_7_unknown_error_code_in_rst_stream_is_not_special(conn: H2Connection) -> None:
    post_open(conn)
    conn.send_frame(RST_STREAM, 0, 1, struct.pack(">L", 0xFF))
    conn.expect_alive()
    assert conn.get().status == 200


def test_7_unknown_error_code_in_goaway_is_not_special(conn: H2Connection) -> None:
    stream_id = conn.request("/sleep?s=0.2")
    conn.send_frame(GOAWAY, 0, 0, goaway_payload(0, 0xFF))
    # As after any GOAWAY: the stream in flight is answered, then the connection closes.
    assert conn.response(stream_id).status == 200
    conn.expect_closed()
    assert conn.goaway is None or conn.goaway.code() == NO_ERROR


# -- §8.1 HTTP message framing -----------------------------------------------------------


def test_8_1_second_headers_without_end_stream_is_protocol_error(conn: H2Connection) -> None:
    post_open(conn)
    conn.send_headers(1, [(b"x-trailer", b"1")], end_stream=False)
    conn.expect_stream_error(1, PROTOCOL_ERROR)


def test_8_1_trailers_end_the_request(conn: H2Connection) -> None:
    post_open(conn, path="/trailers")
    conn.send_data(1, b"body")
    conn.send_headers(1, [(b"x-checksum", b"abc"), (b"x-count", b"1")])
    response = conn.response(1)
    assert response.status == 200
    assert json.loads(response.body) == {
        "length": 4, "trailers": [["x-checksum", "abc"], ["x-count", "1"]]}


def test_8_1_response_trailers_end_the_response(conn: H2Connection) -> None:
    response = conn.get("/response-trailers")
    assert response.status == 200 and response.body == b"part one,part two"
    assert response.trailers == [("x-checksum", "abc123")]
    last = [f for f in conn.frames if f.stream_id == 1][-1]
    assert last.type == 0x1 and last.flags & 0x1   # HEADERS with END_STREAM


def test_8_1_response_trailers_are_not_sent_for_head(conn: H2Connection) -> None:
    response = conn.get("/response-trailers", "HEAD")
    assert response.status == 200 and response.body == b"" and response.trailers == []


def test_8_1_response_before_the_whole_request_resets_it_with_no_error(
        conn: H2Connection) -> None:
    # The app answers without reading the body: the response ends the stream on our
    # side and RST_STREAM(NO_ERROR) asks the client to stop sending.
    post_open(conn, path="/ignore-body")
    conn.send_data(1, b"part of a body")
    response = conn.response(1)
    assert response.status == 200 and response.body == b"ignored" and response.is_ended
    reset = conn.expect(lambda f: f.type == RST_STREAM and f.stream_id == 1, "RST_STREAM")
    assert reset.code() == NO_ERROR
    conn.expect_alive()


@pytest.mark.parametrize("pieces", [
    pytest.param([b"abc"], id="one-data-frame"),
    pytest.param([b"ab", b"cd", b"ef"], id="several-data-frames"),
])
def test_8_1_1_content_length_not_matching_the_data_is_protocol_error(
        conn: H2Connection, pieces: list[bytes]) -> None:
    conn.send_headers(1, request_fields("/echo", "POST", extra=[("content-length", "4")]),
                      end_stream=False)
    for piece in pieces[:-1]:
        conn.send_data(1, piece)
    conn.send_data(1, pieces[-1], end_stream=True)
    conn.expect_stream_error(1, PROTOCOL_ERROR)


def test_8_1_1_content_length_on_a_request_without_content_is_protocol_error(
        conn: H2Connection) -> None:
    conn.send_headers(1, request_fields("/echo", "POST", extra=[("content-length", "4")]))
    conn.expect_stream_error(1, PROTOCOL_ERROR)


def test_8_1_1_content_length_matching_the_data_is_accepted(conn: H2Connection) -> None:
    response = conn.get("/echo", "POST", body=b"12345", extra=[("content-length", "5")])
    echoed = json.loads(response.body)
    assert echoed["body_length"] == 5 and echoed["content_length"] == "5"


# -- §8.2 HTTP fields ----------------------------------------------------------------------


@pytest.mark.parametrize("field", [
    pytest.param((b"X-Upper", b"1"), id="uppercase-name"),
    pytest.param((b"x na", b"1"), id="space-in-name"),
    pytest.param((b"x:colon", b"1"), id="colon-in-name"),
    pytest.param((b"", b"1"), id="empty-name"),
    pytest.param((b"x-value", b"a\r\nb: c"), id="crlf-in-value"),
    pytest.param((b"x-value", b"a\x00b"), id="nul-in-value"),
    pytest.param((b"x-value", b"a\nb"), id="lf-in-value"),
    pytest.param((b"x-value", b" leading"), id="leading-whitespace"),
    pytest.param((b"x-value", b"trailing\t"), id="trailing-whitespace"),
])
def test_8_2_1_invalid_field_is_protocol_error(conn: H2Connection,
                                               field: tuple[bytes, bytes]) -> None:
    conn.send_headers(1, GET_HELLO + [field])
    conn.expect_stream_error(1, PROTOCOL_ERROR)
    assert conn.get().status == 200


@pytest.mark.parametrize("field", [
    pytest.param((b"connection", b"keep-alive"), id="connection"),
    pytest.param((b"keep-alive", b"timeout=5"), id="keep-alive"),
    pytest.param((b"proxy-connection", b"keep-alive"), id="proxy-connection"),
    pytest.param((b"transfer-encoding", b"chunked"), id="transfer-encoding"),
    pytest.param((b"upgrade", b"websocket"), id="upgrade"),
    pytest.param((b"te", b"gzip"), id="te-other-than-trailers"),
])
def test_8_2_2_connection_specific_field_is_protocol_error(conn: H2Connection,
                                                           field: tuple[bytes, bytes]) -> None:
    conn.send_headers(1, GET_HELLO + [field])
    conn.expect_stream_error(1, PROTOCOL_ERROR)


def test_8_2_2_te_trailers_is_accepted(conn: H2Connection) -> None:
    response = conn.get("/echo", extra=[("te", "trailers")])
    assert json.loads(response.body)["headers"]["HTTP_TE"] == "trailers"


def test_8_2_3_cookie_crumbs_are_joined_with_semicolons(conn: H2Connection) -> None:
    response = conn.get("/cookie-echo", extra=[("cookie", "a=1"), ("cookie", "b=2"),
                                               ("cookie", "c=3")])
    assert json.loads(response.body) == {"cookie": "a=1; b=2; c=3"}


# -- §8.3 pseudo-header fields -------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    pytest.param(PSEUDO + [(b":unknown", b"x")], id="unknown-pseudo-header"),
    pytest.param(PSEUDO + [(b":status", b"200")], id="response-pseudo-header"),
    pytest.param(PSEUDO[:3] + [(b"x-regular", b"1"), PSEUDO[3]], id="pseudo-after-regular"),
    pytest.param(PSEUDO[:3] + [(b":path", b"")], id="empty-path"),
    pytest.param(PSEUDO[1:], id="no-method"),
    pytest.param([PSEUDO[0]] + PSEUDO[2:], id="no-scheme"),
    pytest.param(PSEUDO[:3], id="no-path"),
    pytest.param(PSEUDO + [(b":method", b"POST")], id="two-methods"),
    pytest.param(PSEUDO + [(b":scheme", b"https")], id="two-schemes"),
    pytest.param(PSEUDO + [(b":path", b"/other")], id="two-paths"),
    pytest.param(PSEUDO + [(b":authority", b"other")], id="two-authorities"),
    pytest.param(PSEUDO[:3] + [(b":path", b"hello")], id="relative-path"),
    pytest.param(PSEUDO[:3] + [(b":path", b"*")], id="asterisk-path-not-options"),
    pytest.param(PSEUDO[:2] + [(b":path", b"/hello")], id="no-authority-no-host"),
    pytest.param(PSEUDO + [(b"host", b"other.example")], id="host-not-authority"),
    pytest.param(PSEUDO[:2] + [(b":authority", b"user@127.0.0.1"), PSEUDO[3]],
                 id="userinfo-in-authority"),
])
def test_8_3_1_malformed_request_pseudo_header_fields_are_protocol_error(
        conn: H2Connection, fields: list[tuple[bytes, bytes]]) -> None:
    conn.send_headers(1, fields)
    conn.expect_stream_error(1, PROTOCOL_ERROR)


@pytest.mark.parametrize("target", [b"/echo/a#b", b"/echo?x=1#frag"])
def test_8_3_1_path_with_a_fragment_is_protocol_error(conn: H2Connection,
                                                      target: bytes) -> None:
    conn.send_headers(1, PSEUDO[:3] + [(b":path", target)])
    response = conn.response(1)
    assert response.reset_code == PROTOCOL_ERROR and not response.headers


def test_8_3_1_pseudo_header_field_in_trailers_is_protocol_error(conn: H2Connection) -> None:
    post_open(conn)
    conn.send_data(1, b"body")
    conn.send_headers(1, [(b":method", b"GET")])
    conn.expect_stream_error(1, PROTOCOL_ERROR)


def test_8_3_1_host_without_authority_is_accepted(conn: H2Connection) -> None:
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/echo"),
              (b"host", b"example.test:8080")]
    conn.send_headers(1, fields)
    assert json.loads(conn.response(1).body)["headers"]["HTTP_HOST"] == "example.test:8080"


def test_8_3_1_options_asterisk_is_accepted(conn: H2Connection) -> None:
    conn.send_headers(1, PSEUDO[2:3] + [(b":method", b"OPTIONS"), (b":scheme", b"http"),
                                        (b":path", b"*")])
    # tests.apps answers 404 for a path it does not route: what matters is the answer.
    assert conn.response(1).status == 404


# -- §8.4 server push ----------------------------------------------------------------------


def test_8_4_push_promise_from_a_client_is_protocol_error(conn: H2Connection) -> None:
    conn.send_headers(1, request_fields("/sleep?s=0.5"))
    conn.send_frame(PUSH_PROMISE, END_HEADERS, 1,
                    struct.pack(">L", 2) + conn.block(GET_HELLO))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_8_4_server_never_pushes(conn: H2Connection) -> None:
    assert conn.get().status == 200
    assert not [f for f in conn.frames if f.type == PUSH_PROMISE]


# -- §8.5 CONNECT ----------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    pytest.param([(b":method", b"CONNECT"), (b":authority", b"example.test:443"),
                  (b":scheme", b"https")], id="scheme"),
    pytest.param([(b":method", b"CONNECT"), (b":authority", b"example.test:443"),
                  (b":path", b"/")], id="path"),
    pytest.param([(b":method", b"CONNECT")], id="no-authority"),
])
def test_8_5_connect_with_scheme_or_path_or_without_authority_is_protocol_error(
        conn: H2Connection, fields: list[tuple[bytes, bytes]]) -> None:
    conn.send_headers(1, fields, end_stream=False)
    conn.expect_stream_error(1, PROTOCOL_ERROR)


def test_8_5_connect_without_extended_connect_reaches_the_app(conn: H2Connection) -> None:
    # Not a tunnel: the request goes to the app like any other.
    conn.send_headers(1, [(b":method", b"CONNECT"), (b":authority", b"example.test:443")])
    assert conn.response(1).status in (404, 405)


def test_8_ping_between_frames_of_a_request(conn: H2Connection) -> None:
    post_open(conn)
    conn.send_frame(PING, 0, 0, b"in-body!")
    conn.send_data(1, b"x", end_stream=True)
    assert json.loads(conn.response(1).body)["body_length"] == 1
    assert any(f.type == PING and f.payload == b"in-body!" for f in conn.frames)
    assert not any(f.type == GOAWAY for f in conn.frames)
