"""Floods against a running server (the core counts them per window of frames): each is
answered with GOAWAY ENHANCE_YOUR_CALM and the close, and the worker stays healthy: a
connection opened before the flood and a new one after it are still served, by the same
worker process.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import pytest
from h2client import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    HEADERS,
    MAX_WINDOW,
    PING,
    PRIORITY,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    H2Connection,
    frame,
    literal,
    request_fields,
    settings_payload,
)
from serving import Server

pytestmark = pytest.mark.timeout(60)

SERVER_ARGS = ("--threads", "4")


@pytest.fixture
def bystander(server: Server) -> Iterator[H2Connection]:
    """A connection opened before the flood: it must still be served after it."""
    worker = server.worker_pid
    with H2Connection(server.port) as connection:
        assert connection.handshake().get().status == 200
        yield connection
        assert connection.get().status == 200
    with H2Connection(server.port) as after:
        assert after.handshake().get().status == 200
    assert server.worker_pid == worker


@pytest.fixture
def conn(server: Server, bystander: H2Connection) -> Iterator[H2Connection]:
    with H2Connection(server.port, timeout_s=10) as connection:
        # No WINDOW_UPDATE of ours: the floods of them below must not overflow the window.
        yield connection.handshake(window_update=0)


def test_rapid_reset_is_enhance_your_calm(conn: H2Connection, server: Server) -> None:
    # CVE-2023-44487: requests opened and reset at once, the reset before any answer.
    block = conn.block(request_fields("/sleep?s=0.1&rapid=1"))
    conn.send(b"".join(frame(HEADERS, END_STREAM | END_HEADERS, stream_id, block) +
                       frame(RST_STREAM, 0, stream_id, struct.pack(">L", 8))
                       for stream_id in range(1, 601, 2)))
    conn.expect_connection_error(ENHANCE_YOUR_CALM)
    # Streams reset before they reached the app never ran it.
    assert server.log().count("rapid=1") < 20


def test_streams_reset_before_they_run_do_not_reach_the_app(conn: H2Connection) -> None:
    # Fewer resets than a flood: no GOAWAY, but none of these requests runs the app.
    block = conn.block(request_fields("/calls?name=reset-early"))
    conn.send(b"".join(frame(HEADERS, END_STREAM | END_HEADERS, stream_id, block) +
                       frame(RST_STREAM, 0, stream_id, struct.pack(">L", 8))
                       for stream_id in range(1, 101, 2)))
    conn.next_stream_id = 101
    # The pool takes tasks in order: once this one is answered, those before it ran.
    conn.get("/calls?name=barrier")
    counts = json.loads(conn.get("/calls").body)
    assert counts.get("reset-early", 0) == 0 and counts["barrier"] >= 1


def test_server_induced_resets_are_enhance_your_calm(conn: H2Connection) -> None:
    # CVE-2025-8671 (MadeYouReset): frames that make the server reset the stream.
    block = conn.block(request_fields("/echo", "POST"))
    conn.send(b"".join(frame(HEADERS, END_HEADERS, stream_id, block) +
                       frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">L", 0))
                       for stream_id in range(1, 601, 2)))
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_malformed_requests_flood_is_enhance_your_calm(conn: H2Connection) -> None:
    block = conn.block(request_fields("/hello", extra=[("connection", "close")]))
    conn.send(b"".join(frame(HEADERS, END_STREAM | END_HEADERS, stream_id, block)
                       for stream_id in range(1, 601, 2)))
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_continuation_flood_is_enhance_your_calm(conn: H2Connection) -> None:
    block = conn.block(request_fields("/hello"))
    conn.send(frame(HEADERS, END_STREAM, 1, block) +
              frame(CONTINUATION, 0, 1) * 1000)
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_header_block_too_large_is_enhance_your_calm(conn: H2Connection) -> None:
    filler = literal(b"x-filler", b"f" * 16000)
    conn.send(frame(HEADERS, END_STREAM, 1, conn.block(request_fields("/hello"))) +
              b"".join(frame(CONTINUATION, 0, 1, filler) for _ in range(5)))
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_hpack_bomb_is_answered_431_and_repeated_is_enhance_your_calm(
        conn: H2Connection) -> None:
    # One entry of 4 KB in the dynamic table, then blocks of 20 one-byte references
    # (80 KB decoded each, over the 64 KiB limit). The other fields are not indexed,
    # so the entry stays index 62.
    head = b"\x82\x86\x84" + literal(b":authority", b"127.0.0.1")   # GET http /
    conn.send_frame(HEADERS, END_STREAM | END_HEADERS, 1,
                    head + literal(b"x-bomb", b"b" * 4000, first_byte=0x40))
    assert conn.response(1).status == 404
    bomb = head + b"\xbe" * 20
    conn.send_frame(HEADERS, END_STREAM | END_HEADERS, 3, bomb)
    assert conn.response(3).status == 431
    conn.send(b"".join(frame(HEADERS, END_STREAM | END_HEADERS, stream_id, bomb)
                       for stream_id in range(5, 605, 2)))
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_ping_flood_is_enhance_your_calm(conn: H2Connection) -> None:
    conn.send(b"".join(frame(PING, 0, 0, struct.pack(">Q", index)) for index in range(500)))
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_settings_flood_is_enhance_your_calm(conn: H2Connection) -> None:
    conn.send(frame(SETTINGS, 0, 0, settings_payload({0x4: 65535})) * 500)
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_settings_with_too_many_entries_is_enhance_your_calm(conn: H2Connection) -> None:
    payload = b"".join(struct.pack(">HL", 0x100 + index, 1) for index in range(100))
    conn.send_frame(SETTINGS, 0, 0, payload)
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_empty_data_flood_is_enhance_your_calm(conn: H2Connection) -> None:
    conn.send_headers(1, request_fields("/echo", "POST"), end_stream=False)
    conn.send(frame(DATA, 0, 1) * 1000)
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_priority_flood_is_enhance_your_calm(conn: H2Connection) -> None:
    conn.send(b"".join(frame(PRIORITY, 0, stream_id, struct.pack(">LB", 0, 15))
                       for stream_id in range(1, 1001, 2)))
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_window_update_flood_is_enhance_your_calm(conn: H2Connection) -> None:
    conn.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", 1)) * 500)
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_unknown_frame_flood_is_enhance_your_calm(conn: H2Connection) -> None:
    conn.send(frame(0x42, 0, 0, b"junk") * 500)
    conn.expect_connection_error(ENHANCE_YOUR_CALM)


def test_window_overflow_is_flow_control_error(conn: H2Connection) -> None:
    conn.window_update(0, MAX_WINDOW)
    conn.window_update(0, MAX_WINDOW)
    conn.expect_connection_error(FLOW_CONTROL_ERROR)


def test_well_behaved_busy_connection_is_not_a_flood(server: Server) -> None:
    # Many requests, each with its PING and WINDOW_UPDATE, as browsers and gRPC do.
    conn = H2Connection(server.port).handshake(window_update=0)
    for index in range(300):
        stream_id = conn.request("/hello")
        conn.send_frame(PING, 0, 0, struct.pack(">Q", index))
        conn.window_update(0, 1)
        assert conn.response(stream_id).status == 200
    conn.expect_alive()
    conn.close()
