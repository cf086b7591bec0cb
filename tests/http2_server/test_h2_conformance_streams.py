"""RFC 9113 §3-§5 against a running server, h2spec style: the preface, frame format and
size, header compression state, stream states and identifiers, concurrency, priority,
error handling and extensions. Raw frames over real sockets; each test checks the
server's answer on the wire (GOAWAY and its code, RST_STREAM and its code, the close).
"""
from __future__ import annotations

import struct

import pytest
from h2client import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_HEADER_LIST_SIZE,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    STREAM_CLOSED,
    WINDOW_UPDATE,
    COMPRESSION_ERROR,
    H2Connection,
    frame,
    literal,
    request_fields,
    GET_HELLO,
    open_stream,
)
from serving import Server

pytestmark = pytest.mark.timeout(60)

# Eight threads: the half-closed tests leave three apps sleeping past their connection,
# and the reset test needs a thread free to read its RST_STREAM while its app sleeps
# (with every serving thread in the app, nobody reads: see docs/http2.md).
SERVER_ARGS = ("--threads", "8")


# -- §3.4 HTTP/2 connection preface --------------------------------------------------------


def test_3_4_server_preface_is_settings_with_our_limits(conn: H2Connection) -> None:
    assert conn.frames[0].type == SETTINGS
    assert conn.server_settings[MAX_CONCURRENT_STREAMS] == 100
    assert conn.server_settings[INITIAL_WINDOW_SIZE] == 262144
    assert conn.server_settings[MAX_HEADER_LIST_SIZE] == 65536


def test_3_4_preface_then_a_frame_other_than_settings_is_protocol_error(server: Server) -> None:
    with H2Connection(server.port) as conn:
        conn.send(PREFACE + frame(PING, 0, 0, b"12345678"))
        conn.expect_connection_error(PROTOCOL_ERROR)


def test_3_4_invalid_preface_is_refused_and_closed(server: Server) -> None:
    # On the cleartext port a preface that is not HTTP/2's is read as HTTP/1.1 (and
    # refused); RFC 9113 §3.4 lets the GOAWAY be omitted.
    with H2Connection(server.port) as conn:
        conn.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(SETTINGS, 0, 0))
        conn.expect_closed()
        assert conn.buffer.startswith(b"HTTP/1.1 4") or conn.buffer.startswith(b"HTTP/1.1 5")


def test_3_4_preface_in_pieces_is_accepted(server: Server) -> None:
    with H2Connection(server.port) as conn:
        for index in range(0, len(PREFACE), 5):
            conn.send(PREFACE[index:index + 5])
        conn.send(frame(SETTINGS, 0, 0))
        conn.expect(lambda f: f.type == SETTINGS and f.flags & 1, "SETTINGS ACK")
        assert conn.get().status == 200


# -- §4.1 frame format -------------------------------------------------------------------


def test_4_1_frame_of_unknown_type_is_ignored(conn: H2Connection) -> None:
    conn.send_frame(0x20, 0, 0, b"unknown")
    conn.send_frame(0xFF, 0xFF, 1, b"unknown on an idle stream")
    conn.expect_alive()
    assert conn.get().status == 200


def test_4_1_undefined_flags_are_ignored(conn: H2Connection) -> None:
    conn.send_frame(PING, 0x16, 0, b"flagging")   # 0x16: none of them ACK
    ack = conn.expect(lambda f: f.type == PING, "PING ACK")
    assert ack.flags == 0x1 and ack.payload == b"flagging"
    conn.send_headers(1, GET_HELLO, flags=0x2 | 0x40 | 0x80)
    assert conn.response(1).status == 200


def test_4_1_reserved_bit_of_the_stream_id_is_ignored(conn: H2Connection) -> None:
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 0x80000001, conn.block(GET_HELLO)))
    assert conn.response(1).status == 200


# -- §4.2 frame size ------------------------------------------------------------------------


def test_4_2_data_frame_of_16384_bytes_is_accepted(conn: H2Connection) -> None:
    conn.send_headers(1, request_fields("/echo", "POST"), end_stream=False)
    conn.send_data(1, b"d" * 16384, end_stream=True)
    response = conn.response(1)
    assert response.status == 200 and b'"body_length": 16384' in response.body


def test_4_2_data_frame_over_max_frame_size_is_frame_size_error(conn: H2Connection) -> None:
    open_stream(conn)
    conn.send_data(1, b"d" * 16385)
    conn.expect_connection_error(FRAME_SIZE_ERROR)


def test_4_2_headers_frame_over_max_frame_size_is_frame_size_error(conn: H2Connection) -> None:
    block = conn.block(GET_HELLO) + literal(b"x-large", b"v" * 17000)
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
    conn.expect_connection_error(FRAME_SIZE_ERROR)


def test_4_2_server_frames_never_exceed_our_max_frame_size(conn: H2Connection) -> None:
    response = conn.get("/big?size=100000&block=50000")
    assert response.status == 200 and len(response.body) == 100000
    assert max(response.data_frames) <= 16384


def test_4_2_server_may_send_larger_frames_once_allowed(server: Server) -> None:
    with H2Connection(server.port) as conn:
        conn.handshake({INITIAL_WINDOW_SIZE: 2**31 - 1, 0x5: 65536})
        response = conn.get("/big?size=200000&block=100000")
        assert len(response.body) == 200000
        assert max(response.data_frames) <= 65536


# -- §4.3 header compression and decompression ---------------------------------------------


def test_4_3_invalid_header_block_is_compression_error(conn: H2Connection) -> None:
    # A literal whose name runs past the end of the block.
    conn.send_frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x40\x85abc")
    conn.expect_connection_error(COMPRESSION_ERROR)


def test_4_3_priority_frame_inside_a_header_block_is_protocol_error(conn: H2Connection) -> None:
    conn.send_headers(1, GET_HELLO, end_headers=False)
    conn.send_frame(PRIORITY, 0, 1, struct.pack(">LB", 0, 15))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_4_3_headers_for_another_stream_inside_a_header_block_is_protocol_error(
        conn: H2Connection) -> None:
    conn.send_headers(1, GET_HELLO, end_headers=False)
    conn.send_headers(3, GET_HELLO)
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_4_3_blocks_of_refused_streams_still_update_the_decoder(conn: H2Connection) -> None:
    # Stream 1 is malformed (uppercase name) and reset; its block added x-trace to the
    # dynamic table, which stream 3's block refers to by index.
    conn.send_headers(1, GET_HELLO + [(b"x-trace", b"t-1"), (b"Bad-Name", b"x")])
    conn.expect_stream_error(1, PROTOCOL_ERROR)
    conn.send_headers(3, request_fields("/echo") + [(b"x-trace", b"t-1")])
    response = conn.response(3)
    assert response.status == 200 and b'"HTTP_X_TRACE": "t-1"' in response.body


# -- §5.1 stream states -----------------------------------------------------------------


@pytest.mark.parametrize("frame_type,payload", [
    pytest.param(DATA, b"data", id="data"),
    pytest.param(RST_STREAM, struct.pack(">L", 8), id="rst-stream"),
    pytest.param(WINDOW_UPDATE, struct.pack(">L", 100), id="window-update"),
    pytest.param(CONTINUATION, b"\x82", id="continuation"),
])
def test_5_1_idle_stream_frames_other_than_headers_are_protocol_error(
        conn: H2Connection, frame_type: int, payload: bytes) -> None:
    conn.send_frame(frame_type, END_HEADERS if frame_type == CONTINUATION else 0, 1, payload)
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_5_1_half_closed_remote_data_is_stream_closed(conn: H2Connection) -> None:
    conn.send_headers(1, request_fields("/sleep?s=0.5"))
    conn.send_data(1, b"late")
    conn.expect_stream_error(1, STREAM_CLOSED)


def test_5_1_half_closed_remote_headers_is_stream_closed(conn: H2Connection) -> None:
    conn.send_headers(1, request_fields("/sleep?s=0.5"))
    conn.send_headers(1, [(b"x-trailer", b"late")])
    conn.expect_stream_error(1, STREAM_CLOSED)


def test_5_1_half_closed_remote_continuation_is_an_error(conn: H2Connection) -> None:
    conn.send_headers(1, request_fields("/sleep?s=0.5"))
    conn.send_frame(CONTINUATION, END_HEADERS, 1, conn.block([(b"x-late", b"1")]))
    # No header block is open: a connection error (h2spec also allows STREAM_CLOSED).
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_5_1_closed_by_rst_stream_data_is_stream_closed(conn: H2Connection) -> None:
    open_stream(conn)
    conn.send_frame(RST_STREAM, 0, 1, struct.pack(">L", 8))
    conn.send_data(1, b"after the reset")
    conn.expect_stream_error(1, STREAM_CLOSED)


def test_5_1_closed_by_rst_stream_headers_is_stream_closed(conn: H2Connection) -> None:
    open_stream(conn)
    conn.send_frame(RST_STREAM, 0, 1, struct.pack(">L", 8))
    conn.send_headers(1, [(b"x-trailer", b"late")])
    conn.expect_stream_error(1, STREAM_CLOSED)


def test_5_1_closed_by_rst_stream_continuation_is_protocol_error(conn: H2Connection) -> None:
    open_stream(conn)
    conn.send_frame(RST_STREAM, 0, 1, struct.pack(">L", 8))
    conn.send_frame(CONTINUATION, END_HEADERS, 1, conn.block([(b"x-late", b"1")]))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_5_1_closed_stream_data_is_stream_closed(conn: H2Connection) -> None:
    assert conn.get().status == 200
    conn.send_data(1, b"after the end")
    conn.expect_stream_error(1, STREAM_CLOSED)


def test_5_1_closed_stream_headers_is_stream_closed(conn: H2Connection) -> None:
    assert conn.get().status == 200
    conn.send_headers(1, GET_HELLO)
    conn.expect_stream_error(1, STREAM_CLOSED)


def test_5_1_window_update_and_priority_on_a_closed_stream_are_ignored(
        conn: H2Connection) -> None:
    assert conn.get().status == 200
    conn.window_update(1, 100)
    conn.send_frame(PRIORITY, 0, 1, struct.pack(">LB", 0, 15))
    conn.send_frame(RST_STREAM, 0, 1, struct.pack(">L", 0))
    conn.expect_alive()


def test_5_1_client_reset_of_a_stream_in_the_app_keeps_the_connection(
        conn: H2Connection) -> None:
    stream_id = conn.request("/sleep?s=0.3")
    conn.send_frame(RST_STREAM, 0, stream_id, struct.pack(">L", 8))
    assert conn.get().status == 200
    assert stream_id not in conn.responses   # nothing was sent on the reset stream


# -- §5.1.1 stream identifiers ------------------------------------------------------------


def test_5_1_1_even_stream_id_is_protocol_error(conn: H2Connection) -> None:
    conn.send_headers(2, GET_HELLO)
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_5_1_1_stream_id_lower_than_a_previous_one_is_protocol_error(conn: H2Connection) -> None:
    conn.send_headers(5, GET_HELLO)
    conn.response(5)
    conn.send_headers(3, GET_HELLO)
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_5_1_1_unused_lower_ids_are_closed_by_a_higher_one(conn: H2Connection) -> None:
    conn.send_headers(7, GET_HELLO)
    assert conn.response(7).status == 200
    # Streams 1, 3 and 5 went from idle to closed when 7 opened (§5.1.1).
    conn.send_headers(9, GET_HELLO)
    assert conn.response(9).status == 200


def test_5_1_1_the_largest_stream_id_is_served(conn: H2Connection) -> None:
    conn.send_headers(2**31 - 1, GET_HELLO)
    assert conn.response(2**31 - 1).status == 200


# -- §5.1.2 stream concurrency ------------------------------------------------------------


def test_5_1_2_streams_over_max_concurrent_streams_are_refused(conn: H2Connection) -> None:
    limit = conn.server_settings[MAX_CONCURRENT_STREAMS]
    fields = request_fields("/echo", "POST")
    conn.send(b"".join(frame(HEADERS, END_HEADERS, 2 * index + 1, conn.block(fields))
                       for index in range(limit + 1)))
    refused = conn.expect(lambda f: f.type in (RST_STREAM, GOAWAY), "RST_STREAM")
    assert refused.type == RST_STREAM and refused.stream_id == 2 * limit + 1
    assert refused.code() == REFUSED_STREAM
    # The body the client sent before it saw the reset is ignored, not an error.
    conn.send_data(2 * limit + 1, b"in flight", end_stream=True)
    conn.expect_alive()


# -- §5.3.1 stream dependencies -----------------------------------------------------------


def test_5_3_1_headers_depending_on_itself_is_a_stream_error(conn: H2Connection) -> None:
    block = conn.block(GET_HELLO)
    conn.send_frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1,
                    struct.pack(">LB", 1, 15) + block)
    conn.expect_stream_error(1, PROTOCOL_ERROR)
    # The block was decoded all the same: the next request refers to the same table.
    assert conn.get().status == 200


def test_5_3_1_priority_of_an_open_stream_depending_on_itself_is_a_stream_error(
        conn: H2Connection) -> None:
    open_stream(conn)
    conn.send_frame(PRIORITY, 0, 1, struct.pack(">LB", 1, 15))
    conn.expect_stream_error(1, PROTOCOL_ERROR)


def test_5_3_1_priority_of_an_idle_stream_depending_on_itself_is_protocol_error(
        conn: H2Connection) -> None:
    # §6.4: no RST_STREAM for an idle stream, so the connection goes.
    conn.send_frame(PRIORITY, 0, 3, struct.pack(">LB", 3, 15))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_5_3_2_priority_frames_are_accepted_and_ignored(conn: H2Connection) -> None:
    conn.send_frame(PRIORITY, 0, 5, struct.pack(">LB", 0, 200))   # idle stream: allowed
    conn.send_frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1,
                    struct.pack(">LB", 0x80000005, 15) + conn.block(GET_HELLO))
    assert conn.response(1).status == 200


# -- §5.4 error handling --------------------------------------------------------------------


def test_5_4_1_connection_error_goaway_names_the_last_stream_processed(
        conn: H2Connection) -> None:
    assert conn.get().status == 200
    conn.send_headers(3, GET_HELLO)
    conn.response(3)
    conn.send_frame(PING, 0, 0, b"short")
    goaway = conn.expect_connection_error(FRAME_SIZE_ERROR)
    assert goaway.last_stream_id() == 3


def test_5_4_2_stream_error_leaves_other_streams_and_the_connection(conn: H2Connection) -> None:
    slow = conn.request("/sleep?s=0.3")
    conn.send_headers(3, GET_HELLO + [(b"connection", b"keep-alive")])
    conn.expect_stream_error(3, PROTOCOL_ERROR)
    assert conn.response(slow).status == 200


# -- §5.5 extending HTTP/2 -----------------------------------------------------------------


def test_5_5_unknown_extension_frame_is_ignored(conn: H2Connection) -> None:
    conn.send_frame(0x16, 0, 0, b"extension")
    conn.send_frame(0x10, 0, 1, b"\x00\x00\x00\x01u=3")   # RFC 9218 PRIORITY_UPDATE
    conn.expect_alive()


def test_5_5_unknown_extension_frame_inside_a_header_block_is_protocol_error(
        conn: H2Connection) -> None:
    conn.send_headers(1, GET_HELLO, end_headers=False)
    conn.send_frame(0x16, 0, 0, b"extension")
    conn.expect_connection_error(PROTOCOL_ERROR)
