"""RFC 9113 §6 against a running server, h2spec style: each frame type's rules (stream
ids, lengths, padding, flags), SETTINGS and their synchronization, PING, GOAWAY, flow
control (§6.9) and CONTINUATION. Raw frames over real sockets; each test checks the
server's answer on the wire.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import pytest
from h2client import (
    ACK,
    CONTINUATION,
    DATA,
    ENABLE_PUSH,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_FRAME_SIZE,
    MAX_WINDOW,
    NO_ERROR,
    PADDED,
    PING,
    PRIORITY,
    PROTOCOL_ERROR,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    H2Connection,
    goaway_payload,
    request_fields,
    settings_payload,
    GET_HELLO,
    open_stream,
)
from serving import Server

pytestmark = pytest.mark.timeout(60)

SERVER_ARGS = ("--threads", "4")


def handshake(server: Server, settings: dict[int, int], *,
              window_update: int = MAX_WINDOW - 65535) -> H2Connection:
    conn = H2Connection(server.port, auto_window=False)
    return conn.handshake(settings, window_update=window_update)


def data_frames(conn: H2Connection, stream_id: int) -> Iterator[int]:
    """The sizes of the DATA frames of ``stream_id``, as they come."""
    while True:
        received = conn.expect(lambda f: f.type == DATA and f.stream_id == stream_id,
                               f"DATA on stream {stream_id}")
        yield len(received.payload)


def expect_no_data(conn: H2Connection, stream_id: int) -> None:
    """No DATA comes on ``stream_id`` before a PING round trip (after a short wait the
    server had to send it, if it was going to)."""
    start = len(conn.frames)
    conn.ping(b"nodata-1")
    conn.ping(b"nodata-2")
    assert not [f for f in conn.frames[start:] if f.type == DATA and f.stream_id == stream_id]


# -- §6.1 DATA --------------------------------------------------------------------------


def test_6_1_data_on_stream_0_is_protocol_error(conn: H2Connection) -> None:
    conn.send_frame(DATA, 0, 0, b"data")
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_1_data_on_a_half_closed_remote_stream_is_stream_closed(conn: H2Connection) -> None:
    conn.send_headers(1, request_fields("/sleep?s=2"))
    conn.send_data(1, b"data")
    conn.expect_stream_error(1, 0x5)


def test_6_1_padding_as_long_as_the_payload_is_protocol_error(conn: H2Connection) -> None:
    open_stream(conn)
    conn.send_frame(DATA, PADDED, 1, b"\x06" + b"abcde")
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_1_padded_data_is_delivered_without_its_padding(conn: H2Connection) -> None:
    open_stream(conn)
    conn.send_frame(DATA, PADDED, 1, b"\x04" + b"hello" + b"\0" * 4)
    conn.send_frame(DATA, PADDED | END_STREAM, 1, b"\x00" + b" world")
    response = conn.response(1)
    assert response.status == 200 and json.loads(response.body)["body_length"] == 11


def test_6_1_empty_data_frame_ends_a_request(conn: H2Connection) -> None:
    open_stream(conn)
    conn.send_data(1, b"body")
    conn.send_data(1, b"", end_stream=True)
    assert json.loads(conn.response(1).body)["body_length"] == 4


# -- §6.2 HEADERS -------------------------------------------------------------------------


def test_6_2_headers_without_end_headers_then_priority_is_protocol_error(
        conn: H2Connection) -> None:
    conn.send_headers(1, GET_HELLO, end_headers=False)
    conn.send_frame(PRIORITY, 0, 1, struct.pack(">LB", 0, 15))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_2_headers_for_another_stream_during_a_header_block_is_protocol_error(
        conn: H2Connection) -> None:
    conn.send_headers(1, GET_HELLO, end_headers=False)
    conn.send_headers(3, GET_HELLO)
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_2_headers_on_stream_0_is_protocol_error(conn: H2Connection) -> None:
    conn.send_headers(0, GET_HELLO)
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_2_headers_padding_too_long_is_protocol_error(conn: H2Connection) -> None:
    block = conn.block(GET_HELLO)
    conn.send_frame(HEADERS, PADDED | END_HEADERS | END_STREAM, 1,
                    bytes((len(block) + 1,)) + block)
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_2_padded_headers_are_accepted(conn: H2Connection) -> None:
    block = conn.block(GET_HELLO)
    conn.send_frame(HEADERS, PADDED | END_HEADERS | END_STREAM, 1, b"\x08" + block + b"\0" * 8)
    assert conn.response(1).status == 200


# -- §6.3 PRIORITY ------------------------------------------------------------------------


def test_6_3_priority_on_stream_0_is_protocol_error(conn: H2Connection) -> None:
    conn.send_frame(PRIORITY, 0, 0, struct.pack(">LB", 1, 15))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_3_priority_of_wrong_length_is_frame_size_error(conn: H2Connection) -> None:
    open_stream(conn)
    conn.send_frame(PRIORITY, 0, 1, struct.pack(">L", 0))
    conn.expect_stream_error(1, FRAME_SIZE_ERROR)


# -- §6.4 RST_STREAM ----------------------------------------------------------------------


def test_6_4_rst_stream_on_stream_0_is_protocol_error(conn: H2Connection) -> None:
    conn.send_frame(RST_STREAM, 0, 0, struct.pack(">L", 8))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_4_rst_stream_on_an_idle_stream_is_protocol_error(conn: H2Connection) -> None:
    conn.send_frame(RST_STREAM, 0, 1, struct.pack(">L", 8))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_4_rst_stream_of_wrong_length_is_frame_size_error(conn: H2Connection) -> None:
    open_stream(conn)
    conn.send_frame(RST_STREAM, 0, 1, struct.pack(">L", 8)[:3])
    conn.expect_connection_error(FRAME_SIZE_ERROR)


# -- §6.5 SETTINGS ------------------------------------------------------------------------


def test_6_5_settings_frame_with_ack_and_payload_is_frame_size_error(conn: H2Connection) -> None:
    conn.send_frame(SETTINGS, ACK, 0, settings_payload({INITIAL_WINDOW_SIZE: 100}))
    conn.expect_connection_error(FRAME_SIZE_ERROR)


def test_6_5_settings_on_a_stream_is_protocol_error(conn: H2Connection) -> None:
    conn.send_frame(SETTINGS, 0, 1, settings_payload({INITIAL_WINDOW_SIZE: 100}))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_5_settings_length_not_a_multiple_of_6_is_frame_size_error(conn: H2Connection) -> None:
    conn.send_frame(SETTINGS, 0, 0, settings_payload({INITIAL_WINDOW_SIZE: 100})[:5])
    conn.expect_connection_error(FRAME_SIZE_ERROR)


# -- §6.5.2 defined settings --------------------------------------------------------------


@pytest.mark.parametrize("setting,value,code", [
    pytest.param(ENABLE_PUSH, 2, PROTOCOL_ERROR, id="enable-push-2"),
    pytest.param(INITIAL_WINDOW_SIZE, 2**31, FLOW_CONTROL_ERROR, id="initial-window-2^31"),
    pytest.param(MAX_FRAME_SIZE, 16383, PROTOCOL_ERROR, id="max-frame-size-16383"),
    pytest.param(MAX_FRAME_SIZE, 2**24, PROTOCOL_ERROR, id="max-frame-size-2^24"),
])
def test_6_5_2_setting_out_of_range_is_a_connection_error(conn: H2Connection, setting: int,
                                                          value: int, code: int) -> None:
    conn.send_frame(SETTINGS, 0, 0, settings_payload({setting: value}))
    conn.expect_connection_error(code)


def test_6_5_2_unknown_setting_is_ignored(conn: H2Connection) -> None:
    conn.send_frame(SETTINGS, 0, 0, settings_payload({0xFF: 1, 0x4242: 99}))
    conn.expect(lambda f: f.type == SETTINGS and f.flags & ACK, "SETTINGS ACK")
    assert conn.get().status == 200


def test_6_5_2_enable_push_1_from_a_client_is_accepted(conn: H2Connection) -> None:
    conn.send_frame(SETTINGS, 0, 0, settings_payload({ENABLE_PUSH: 1}))
    conn.expect(lambda f: f.type == SETTINGS and f.flags & ACK, "SETTINGS ACK")
    assert conn.get().status == 200


# -- §6.5.3 settings synchronization -------------------------------------------------------


def test_6_5_3_values_are_processed_in_order(server: Server) -> None:
    with handshake(server, {INITIAL_WINDOW_SIZE: 100}) as conn:
        # Two values of one setting in one frame: the last one holds.
        payload = struct.pack(">HL", INITIAL_WINDOW_SIZE, 100) + \
            struct.pack(">HL", INITIAL_WINDOW_SIZE, 1)
        conn.send_frame(SETTINGS, 0, 0, payload)
        conn.expect(lambda f: f.type == SETTINGS and f.flags & ACK, "SETTINGS ACK")
        stream_id = conn.request("/big?size=100")
        assert next(data_frames(conn, stream_id)) == 1


def test_6_5_3_settings_are_acknowledged(conn: H2Connection) -> None:
    conn.send_frame(SETTINGS, 0, 0, settings_payload({MAX_FRAME_SIZE: 32768}))
    ack = conn.expect(lambda f: f.type == SETTINGS, "SETTINGS")
    assert ack.flags == ACK and ack.payload == b""


# -- §6.7 PING ----------------------------------------------------------------------------


def test_6_7_ping_is_answered_with_the_same_payload(conn: H2Connection) -> None:
    conn.send_frame(PING, 0, 0, b"\x00\xffopaque")
    ack = conn.expect(lambda f: f.type == PING, "PING ACK")
    assert ack.flags == ACK and ack.stream_id == 0 and ack.payload == b"\x00\xffopaque"


def test_6_7_ping_ack_is_not_answered(conn: H2Connection) -> None:
    conn.send_frame(PING, ACK, 0, b"unasked!")
    conn.ping(b"followup")
    assert [f.payload for f in conn.frames if f.type == PING] == [b"followup"]


def test_6_7_ping_on_a_stream_is_protocol_error(conn: H2Connection) -> None:
    conn.send_frame(PING, 0, 1, b"12345678")
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_7_ping_of_wrong_length_is_frame_size_error(conn: H2Connection) -> None:
    conn.send_frame(PING, 0, 0, b"1234567")
    conn.expect_connection_error(FRAME_SIZE_ERROR)


# -- §6.8 GOAWAY --------------------------------------------------------------------------


def test_6_8_goaway_on_a_stream_is_protocol_error(conn: H2Connection) -> None:
    conn.send_frame(GOAWAY, 0, 1, goaway_payload(0, NO_ERROR))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_8_client_goaway_lets_the_stream_in_flight_finish_then_closes(
        conn: H2Connection) -> None:
    stream_id = conn.request("/sleep?s=0.3")
    conn.send_frame(GOAWAY, 0, 0, goaway_payload(0, NO_ERROR))
    assert conn.response(stream_id).status == 200
    conn.expect_closed()
    assert conn.goaway is None or conn.goaway.code() == NO_ERROR


# -- §6.9 WINDOW_UPDATE ---------------------------------------------------------------------


def test_6_9_window_update_of_0_on_the_connection_is_protocol_error(conn: H2Connection) -> None:
    conn.window_update(0, 0)
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_9_window_update_of_0_on_a_stream_is_a_stream_error(conn: H2Connection) -> None:
    open_stream(conn)
    conn.window_update(1, 0)
    conn.expect_stream_error(1, PROTOCOL_ERROR)


def test_6_9_window_update_of_wrong_length_is_frame_size_error(conn: H2Connection) -> None:
    conn.send_frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01")
    conn.expect_connection_error(FRAME_SIZE_ERROR)


# -- §6.9.1 the flow-control window ---------------------------------------------------------


def test_6_9_1_initial_window_of_1_gives_data_frames_of_1_byte(server: Server) -> None:
    with handshake(server, {INITIAL_WINDOW_SIZE: 1}) as conn:
        stream_id = conn.request("/big?size=10")
        frames = data_frames(conn, stream_id)
        assert next(frames) == 1
        expect_no_data(conn, stream_id)
        conn.window_update(stream_id, 2)
        assert next(frames) == 2


def test_6_9_1_the_connection_window_bounds_all_streams(server: Server) -> None:
    # No WINDOW_UPDATE for the connection: 65,535 bytes in all, then nothing until one.
    with handshake(server, {INITIAL_WINDOW_SIZE: MAX_WINDOW}, window_update=0) as conn:
        first = conn.request("/big?size=50000")
        second = conn.request("/big?size=50000")
        conn.ping()
        conn.ping(b"settled!")
        sent = sum(len(f.payload) for f in conn.frames if f.type == DATA)
        assert sent == 65535
        conn.window_update(0, 100000)
        conn.response(first)
        conn.response(second)
        assert len(conn.responses[first].body) + len(conn.responses[second].body) == 100000


def test_6_9_1_connection_window_over_2_31_1_is_flow_control_error(conn: H2Connection) -> None:
    conn.window_update(0, MAX_WINDOW)
    conn.window_update(0, MAX_WINDOW)
    conn.expect_connection_error(FLOW_CONTROL_ERROR)


def test_6_9_1_stream_window_over_2_31_1_is_flow_control_error(conn: H2Connection) -> None:
    open_stream(conn)
    conn.window_update(1, MAX_WINDOW)
    conn.window_update(1, MAX_WINDOW)
    conn.expect_stream_error(1, FLOW_CONTROL_ERROR)


# -- §6.9.2 initial flow-control window size -----------------------------------------------


def test_6_9_2_settings_change_applies_to_open_streams(server: Server) -> None:
    with handshake(server, {INITIAL_WINDOW_SIZE: 0}) as conn:
        stream_id = conn.request("/big?size=10")
        conn.expect(lambda f: f.type == HEADERS, "the response head")
        expect_no_data(conn, stream_id)
        conn.send_frame(SETTINGS, 0, 0, settings_payload({INITIAL_WINDOW_SIZE: 3}))
        assert next(data_frames(conn, stream_id)) == 3


def test_6_9_2_a_negative_window_waits_for_credit(server: Server) -> None:
    with handshake(server, {INITIAL_WINDOW_SIZE: 5}) as conn:
        stream_id = conn.request("/big?size=100")
        frames = data_frames(conn, stream_id)
        assert next(frames) == 5
        conn.send_frame(SETTINGS, 0, 0, settings_payload({INITIAL_WINDOW_SIZE: 3}))  # -2
        conn.expect(lambda f: f.type == SETTINGS and f.flags & ACK, "SETTINGS ACK")
        conn.window_update(stream_id, 2)                                            # 0
        expect_no_data(conn, stream_id)
        conn.window_update(stream_id, 1)                                            # 1
        assert next(frames) == 1


def test_6_9_2_initial_window_over_2_31_1_is_flow_control_error(conn: H2Connection) -> None:
    conn.send_frame(SETTINGS, 0, 0, settings_payload({INITIAL_WINDOW_SIZE: 2**31}))
    conn.expect_connection_error(FLOW_CONTROL_ERROR)


def test_6_9_2_settings_change_overflowing_a_stream_window_is_flow_control_error(
        server: Server) -> None:
    with handshake(server, {INITIAL_WINDOW_SIZE: 0}) as conn:
        open_stream(conn)
        conn.window_update(1, MAX_WINDOW)
        conn.send_frame(SETTINGS, 0, 0, settings_payload({INITIAL_WINDOW_SIZE: 10}))
        conn.expect_connection_error(FLOW_CONTROL_ERROR)


# -- §6.10 CONTINUATION ---------------------------------------------------------------------


def test_6_10_continuation_frames_carry_one_header_block(conn: H2Connection) -> None:
    block = conn.block(request_fields("/echo", extra=[("x-part", "one" * 20)]))
    third = len(block) // 3
    conn.send_frame(HEADERS, END_STREAM, 1, block[:third])
    conn.send_frame(CONTINUATION, 0, 1, block[third:2 * third])
    conn.send_frame(CONTINUATION, END_HEADERS, 1, block[2 * third:])
    response = conn.response(1)
    assert json.loads(response.body)["headers"]["HTTP_X_PART"] == "one" * 20


def test_6_10_continuation_followed_by_another_frame_is_protocol_error(
        conn: H2Connection) -> None:
    block = conn.block(GET_HELLO)
    conn.send_frame(HEADERS, END_STREAM, 1, block[:3])
    conn.send_frame(CONTINUATION, 0, 1, block[3:5])
    conn.send_frame(DATA, 0, 1, b"data")
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_10_continuation_on_stream_0_is_protocol_error(conn: H2Connection) -> None:
    block = conn.block(GET_HELLO)
    conn.send_frame(HEADERS, END_STREAM, 1, block[:3])
    conn.send_frame(CONTINUATION, END_HEADERS, 0, block[3:])
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_10_continuation_after_end_headers_is_protocol_error(conn: H2Connection) -> None:
    conn.send_headers(1, request_fields("/sleep?s=1"))
    conn.send_frame(CONTINUATION, END_HEADERS, 1, conn.block([("x-more", "1")]))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_10_continuation_after_a_continuation_with_end_headers_is_protocol_error(
        conn: H2Connection) -> None:
    block = conn.block(request_fields("/sleep?s=1"))
    conn.send_frame(HEADERS, END_STREAM, 1, block[:3])
    conn.send_frame(CONTINUATION, END_HEADERS, 1, block[3:])
    conn.send_frame(CONTINUATION, END_HEADERS, 1, conn.block([("x-more", "1")]))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_10_continuation_after_data_is_protocol_error(conn: H2Connection) -> None:
    open_stream(conn)
    conn.send_data(1, b"data")
    conn.send_frame(CONTINUATION, END_HEADERS, 1, conn.block([("x-more", "1")]))
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_6_10_server_header_block_over_max_frame_size_uses_continuation(
        conn: H2Connection) -> None:
    # A response head larger than 16 KiB (the app's header) comes as HEADERS and
    # CONTINUATION frames, with no other frame between them (§4.3).
    response = conn.get("/large-header?size=40000")
    assert response.status == 200 and response.header("x-large") == "h" * 40000
    first = next(index for index, f in enumerate(conn.frames)
                 if f.type == HEADERS and f.stream_id == 1)
    assert not conn.frames[first].flags & END_HEADERS
    block = conn.frames[first + 1:]
    last = next(index for index, f in enumerate(block) if f.flags & END_HEADERS)
    assert all(f.type == CONTINUATION and f.stream_id == 1 for f in block[:last + 1])
