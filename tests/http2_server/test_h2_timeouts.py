"""The timers of an HTTP/2 connection: the keep-alive timeout closes an idle connection
(GOAWAY NO_ERROR, then the close), and the header timeout bounds a header block that
never ends (HEADERS without END_HEADERS and no CONTINUATION), whether or not other
streams are in the app meanwhile.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from h2client import GOAWAY, HEADERS, NO_ERROR, PROTOCOL_ERROR, H2Connection, request_fields
from serving import Server

pytestmark = pytest.mark.timeout(60)

SERVER_ARGS = ("--keep-alive", "2", "--header-timeout", "1")


@pytest.fixture
def conn(server: Server) -> Iterator[H2Connection]:
    with H2Connection(server.port, timeout_s=10) as connection:
        yield connection.handshake()


def test_idle_connection_is_closed_after_the_keep_alive_timeout(conn: H2Connection) -> None:
    assert conn.get().status == 200
    goaway = conn.expect_connection_error(NO_ERROR)
    assert goaway.last_stream_id() == 1


def test_connection_in_use_is_not_closed_by_the_keep_alive_timeout(
        conn: H2Connection) -> None:
    # A stream in the app for longer than the keep-alive timeout.
    assert conn.get("/sleep?s=3").status == 200
    conn.expect_alive()


def test_header_block_that_never_ends_is_closed_after_the_header_timeout(
        conn: H2Connection) -> None:
    conn.send_headers(1, request_fields("/hello"), end_headers=False)
    # Before the keep-alive timeout, and as an error: the block was cut short.
    conn.expect_connection_error(PROTOCOL_ERROR)


def test_header_timeout_runs_while_other_streams_are_in_the_app(conn: H2Connection) -> None:
    slow = conn.request("/sleep?s=4")
    conn.ping()
    conn.send_headers(3, request_fields("/hello"), end_headers=False)
    goaway = conn.expect(lambda f: f.type == GOAWAY, "GOAWAY")
    assert goaway.code() == PROTOCOL_ERROR
    # Before the slow stream could answer.
    assert not [f for f in conn.frames if f.type == HEADERS and f.stream_id == slow]
