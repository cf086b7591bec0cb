"""The server's own WebSockets (environ["wsgiserve.websocket"]) in a real worker process,
through two independent clients: the ``websockets`` library and hand-built frames
(``ws_raw``). Both styles, event mode and blocking, answer every test that concerns them.
"""
from __future__ import annotations

import os
import signal
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import wait_until
from serving import Server, peak_rss_kib
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect
from ws_raw import (
    ACCEPT,
    BINARY,
    PING,
    PONG,
    TEXT,
    RawWebSocket,
    close_frame,
    connect,
    frame,
    upgrade_request,
)

APP = "tests.ws_apps:native"
STYLES = ["/event", "/blocking"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("ws"), APP, "--threads", "4",
                "--access-logfile", "-", "--websocket-ping-interval", "0") as started:
        yield started


def _url(server: Server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


# -- echo, both clients, both styles --------------------------------------------------------

@pytest.mark.parametrize("path", STYLES)
def test_echo_with_the_websockets_library(server: Server, path: str) -> None:
    with ws_connect(_url(server, path), open_timeout=10) as ws:
        assert ws.protocol.extensions, "permessage-deflate is negotiated by default"
        for message in ["hello", b"\x00\xff" * 10, "é" * 50_000, os.urandom(300_000)]:
            ws.send(message)
            assert ws.recv(timeout=10) == message


@pytest.mark.parametrize("path", STYLES)
def test_echo_and_close_handshake_with_raw_frames(server: Server, path: str) -> None:
    with connect(server.port, path) as ws:
        ws.send(frame(TEXT, b"hi") + frame(BINARY, b"\x01\x02"))
        assert (ws.read_frame().opcode, ws.read_frame().payload) == (TEXT, b"\x01\x02")
        # A message in fragments, a ping between them.
        ws.send(frame(TEXT, b"frag", fin=False) + frame(PING, b"p") + frame(0, b"ment"))
        pong = ws.read_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"p")
        echoed = ws.read_frame()
        assert (echoed.opcode, echoed.payload, echoed.fin) == (TEXT, b"fragment", True)
        ws.send(close_frame(1000, "done"))
        assert ws.read_frame().close_code == 1000
        assert ws.is_closed()  # RFC 6455 §7.1.1: the server closes the TCP connection


@pytest.mark.parametrize("path", STYLES)
def test_a_frame_in_the_handshake_packet_is_not_lost(server: Server, path: str) -> None:
    with RawWebSocket(server.port) as ws:
        ws.send(upgrade_request(path) + frame(TEXT, b"early") + frame(TEXT, b"bird"))
        status, fields = ws.read_head()
        assert status == 101 and fields["sec-websocket-accept"] == ACCEPT
        assert [ws.read_frame().payload for _ in range(2)] == [b"early", b"bird"]


@pytest.mark.parametrize("path", STYLES)
def test_an_upgrade_on_the_second_request_of_a_keep_alive_connection(server: Server,
                                                                      path: str) -> None:
    with RawWebSocket(server.port) as ws:
        ws.send(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
        status, fields = ws.read_head()
        assert status == 200 and ws.read_body(fields) == b"hello"
        ws.send(upgrade_request(path))
        assert ws.read_head()[0] == 101
        ws.send(frame(TEXT, b"second"))
        assert ws.read_frame().payload == b"second"


def test_plain_requests_are_untouched(server: Server) -> None:
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"hello")


# -- the handshake ----------------------------------------------------------------------------

@pytest.mark.parametrize(("request_bytes", "status"), [
    pytest.param(upgrade_request("/event", ws_version="12"), 426, id="version-12"),
    pytest.param(upgrade_request("/event", ws_version=None), 426, id="no-version"),
    pytest.param(upgrade_request("/event", key="short"), 400, id="bad-key"),
    pytest.param(upgrade_request("/event", key=None), 400, id="no-key"),
    pytest.param(upgrade_request("/event", version="HTTP/1.0"), 400, id="http-1.0"),
    pytest.param(upgrade_request("/event", method="POST"), 400, id="post"),
    pytest.param(upgrade_request("/event", connection="keep-alive"), 400,
                 id="connection-without-upgrade"),
])
def test_invalid_upgrades_are_refused(server: Server, request_bytes: bytes, status: int) -> None:
    with RawWebSocket(server.port) as ws:
        ws.send(request_bytes)
        got, fields = ws.read_head()
        assert got == status
        if status == 426:
            assert fields["sec-websocket-version"] == "13"
        assert fields["connection"] == "close"
        ws.read_body(fields)
        assert ws.is_closed()


@pytest.mark.parametrize(("connection", "upgrade"), [
    ("keep-alive, Upgrade", "websocket"),
    ("upgrade", "WebSocket"),
    ("foo,  UPGRADE ,bar", "h2c, websocket"),
])
def test_token_lists_in_connection_and_upgrade(server: Server, connection: str,
                                               upgrade: str) -> None:
    with RawWebSocket(server.port) as ws:
        ws.send(upgrade_request("/event", connection=connection, upgrade=upgrade))
        assert ws.read_head()[0] == 101
        ws.send(frame(TEXT, b"ok"))
        assert ws.read_frame().payload == b"ok"


def test_reject_answers_with_the_apps_status(server: Server) -> None:
    with RawWebSocket(server.port) as ws:
        ws.send(upgrade_request("/reject"))
        status, fields = ws.read_head()
        assert (status, fields["x-why"]) == (403, "test")
        assert ws.read_body(fields) == b"go away\n"
        assert ws.is_closed()


def test_subprotocol_is_negotiated(server: Server) -> None:
    with ws_connect(_url(server, "/subprotocol"), subprotocols=["chat.v2", "chat.v1"],
                    open_timeout=10) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.recv(timeout=10) == "chat.v2"


# -- the close ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "code"), [("/app-closes", 4000), ("/returns", 1000),
                                            ("/fail", 1011), ("/raises", 1011)])
def test_the_server_closes_with_the_apps_code(server: Server, path: str, code: int) -> None:
    with ws_connect(_url(server, path), open_timeout=10) as ws:
        if path == "/fail":
            ws.send("boom")
        with pytest.raises(ConnectionClosed) as caught:
            while True:
                ws.recv(timeout=10)
        assert caught.value.rcvd is not None and caught.value.rcvd.code == code


def test_on_close_gets_the_clients_code(server: Server) -> None:
    with connect(server.port, "/event-closes") as ws:
        ws.send(close_frame(4321, "client bye"))
        assert ws.read_frame().close_code == 4321

    def closes() -> bool:
        with server.connect() as conn:
            conn.send(b"GET /closes HTTP/1.1\r\nHost: x\r\n\r\n")
            return b"4321 client bye" in conn.read_response().body
    wait_until(closes, 10, message="on_close")


def test_the_access_log_has_one_line_per_websocket(server: Server) -> None:
    with connect(server.port, "/event?log=1") as ws:
        ws.send(frame(TEXT, b"12345"))
        ws.read_frame()
        ws.send(close_frame(1000))
        ws.read_frame()
    line = wait_until(lambda: next((line for line in server.log().splitlines()
                                    if "/event?log=1" in line), None), 10, message="the line")
    assert '"GET /event?log=1 HTTP/1.1" 101' in line
    assert "ws_close=1000" in line and " ws_in=" in line and " ws_out=" in line


# -- limits ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", STYLES)
@pytest.mark.parametrize(("data", "code"), [
    pytest.param(struct.pack("!BBQ", 0x82, 0xFF, 2 << 20) + b"mask", 1009,
                 id="frame-over-the-limit"),
    pytest.param(frame(TEXT, b"\xc3\x28 not utf-8"), 1007, id="bad-utf-8"),
    pytest.param(frame(TEXT, b"unmasked", masked=False), 1002, id="unmasked"),
    pytest.param(frame(TEXT, b"x", rsv=2), 1002, id="rsv-bits"),
    pytest.param(frame(PING, b"p" * 126), 1002, id="ping-over-125"),
])
def test_violations_close_with_their_code(server: Server, path: str, data: bytes,
                                          code: int) -> None:
    with connect(server.port, path) as ws:
        ws.send(data)
        assert ws.read_until_close().close_code == code
        assert ws.is_closed()


@pytest.mark.parametrize("path", STYLES)
def test_a_deflate_bomb_is_refused_with_flat_memory(server: Server, path: str) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(bytes(256 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]  # RFC 7692 §7.2.1: the 00 00 ff ff tail is removed
    assert len(bomb) < 300_000
    before = peak_rss_kib(server.worker_pid)
    with RawWebSocket(server.port) as ws:
        ws.send(upgrade_request(path, extra=(("Sec-WebSocket-Extensions",
                                              "permessage-deflate"),)))
        status, fields = ws.read_head()
        assert status == 101 and "permessage-deflate" in fields["sec-websocket-extensions"]
        try:
            ws.send(frame(BINARY, bomb, rsv=4))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before it has read the whole frame
        assert ws.read_until_close().close_code == 1009
    # 256 MiB inflated would show; the limit is 1 MiB, so growth stays far below.
    assert peak_rss_kib(server.worker_pid) - before < 64 * 1024


def test_a_peer_that_does_not_read_is_dropped_with_bounded_memory(server: Server) -> None:
    before = peak_rss_kib(server.worker_pid)
    with connect(server.port, "/flood") as ws:
        ws.send(frame(TEXT, b"go"))  # then never read: 64 MiB would pile up

        def dropped() -> bool:
            with server.connect() as conn:
                conn.send(b"GET /closes HTTP/1.1\r\nHost: x\r\n\r\n")
                return b"flood 1008" in conn.read_response().body
        wait_until(dropped, 30, message="the slow reader dropped")
        assert ws.is_closed(15)  # the server closed the connection
    # The send buffer stopped at its bound (1 MiB), far below what the app sent.
    assert peak_rss_kib(server.worker_pid) - before < 32 * 1024


@pytest.mark.parametrize("threads", ["1", "2"])
def test_callbacks_sending_more_than_the_buffer_holds_to_a_reading_peer(
        tmp_path: Path, threads: str) -> None:
    # Each callback's send waits for room (32 MiB, past the 1 MiB send buffer): with every
    # serving thread in such a callback, none is left to run the loop's writes, so a send
    # must not wait for the loop to flush. Before the fix each waited out its timeout (10
    # s) and dropped its peer, which was reading all along (1008).
    count = 512
    with Server(tmp_path, APP, "--threads", threads, "--websocket-ping-interval", "0") as server:
        sockets = [connect(server.port, "/burst") for _ in range(int(threads))]
        try:
            for ws in sockets:
                ws.send(frame(TEXT, str(count).encode()))
            for ws in sockets:
                received = [ws.read_frame() for _ in range(count + 1)]
                assert [f.opcode for f in received] == [BINARY] * count + [TEXT], \
                    [(f.opcode, f.payload[:20]) for f in received if f.opcode != BINARY]
                assert received[-1].payload == b"done"
        finally:
            for ws in sockets:
                ws.close()


def test_a_frame_left_unread_behind_a_callback_does_not_stop_its_output(
        server: Server) -> None:
    # While a callback runs the loop leaves the client's next frames in the socket; every
    # edge then reports readable and writable at once, and the output must still flow.
    count = 512
    with connect(server.port, "/burst") as ws:
        ws.send(frame(TEXT, str(count).encode()))
        received = [ws.read_frame()]
        ws.send(frame(PING, b"still here"))  # unread until the callback returns
        received += [ws.read_frame() for _ in range(count + 1)]
        assert [f.opcode for f in received] == [BINARY] * count + [TEXT, PONG], \
            [(f.opcode, f.payload[:20]) for f in received if f.opcode != BINARY]


# -- pings ------------------------------------------------------------------------------------

def test_pings_keep_a_live_peer_and_drop_a_silent_one(tmp_path: Path) -> None:
    with Server(tmp_path, APP, "--threads", "2", "--websocket-ping-interval", "0.3",
                "--websocket-ping-timeout", "0.5") as server:
        # The websockets library answers pings: it stays open across several of them.
        with ws_connect(_url(server, "/event"), open_timeout=10, ping_interval=None) as ws:
            for _ in range(3):
                ws.send("still here")
                assert ws.recv(timeout=10) == "still here"
                with pytest.raises(TimeoutError):
                    ws.recv(timeout=0.5)
        # A raw client that never answers gets a ping, then a Close 1011 and the end.
        with connect(server.port, "/event") as ws:
            assert ws.read_frame().opcode == PING
            assert ws.read_until_close().close_code == 1011
            assert ws.is_closed()


# -- stopping ------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stopping_worker_sends_1001(tmp_path: Path, signum: int) -> None:
    with Server(tmp_path, APP, "--threads", "2", "--graceful-timeout", "10") as server:
        sockets = [connect(server.port, path) for path in STYLES]
        try:
            for ws in sockets:  # both are open and served
                ws.send(frame(TEXT, b"before"))
                assert ws.read_frame().payload == b"before"
            os.kill(server.pid, signum)
            for ws in sockets:
                received = ws.read_until_close()
                assert received.close_code == 1001
                ws.send(close_frame(1001))
                assert ws.is_closed(10)
        finally:
            for ws in sockets:
                ws.close()
        if signum == signal.SIGHUP:  # a new worker serves new WebSockets
            with ws_connect(_url(server, "/event"), open_timeout=10) as client:
                client.send("after")
                assert client.recv(timeout=10) == "after"


def test_the_worker_holds_at_most_max_connections_websockets(tmp_path: Path) -> None:
    with Server(tmp_path, APP, "--threads", "2", "--websocket-max-connections", "2") as server:
        first, second = connect(server.port, "/idle"), connect(server.port, "/event")
        try:
            with RawWebSocket(server.port) as third:
                third.send(upgrade_request("/event"))
                status, fields = third.read_head()
                assert (status, fields["retry-after"]) == (503, "5")
            first.send(close_frame(1000))
            assert first.read_frame().close_code == 1000
            assert first.is_closed()

            def accepted() -> bool:
                with RawWebSocket(server.port) as again:
                    again.send(upgrade_request("/event"))
                    return again.read_head()[0] == 101
            wait_until(accepted, 10, message="room for another WebSocket")
        finally:
            first.close()
            second.close()
