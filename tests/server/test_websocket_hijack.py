"""Libraries that speak WebSocket themselves over environ["gunicorn.socket"] (Flask-Sock
and simple-websocket, Flask-SocketIO in threading mode) run unchanged in a real worker.

The socket is offered only for a syntactically valid upgrade, handed over on first use
(bytes our parser already read come first), and the worker then writes nothing, never
closes it, and holds a serving thread for it as long as the library's WSGI call lasts:
N threads serve N such sockets (the native API has no such limit: test_websocket_budget).
"""
from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import Server
from websockets.sync.client import connect as ws_connect
from ws_raw import ACCEPT, CLOSE, TEXT, RawWebSocket, close_frame, frame, upgrade_request


@pytest.fixture(scope="module")
def flask_sock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("flask-sock"), "tests.ws_apps:flask_sock",
                "--threads", "4") as started:
        yield started


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("native"), "tests.ws_apps:native",
                "--threads", "2") as started:
        yield started


def test_flask_sock_echoes(flask_sock: Server) -> None:
    with ws_connect(f"ws://127.0.0.1:{flask_sock.port}/echo", open_timeout=10) as ws:
        for message in ["hello", b"\x00\xff" * 10, "é" * 50_000, os.urandom(300_000)]:
            ws.send(message)
            assert ws.recv(timeout=10) == message


def test_flask_sock_closes_cleanly(flask_sock: Server) -> None:
    with RawWebSocket(flask_sock.port) as ws:
        ws.send(upgrade_request("/echo"))
        status, fields = ws.read_head()
        assert status == 101 and fields["sec-websocket-accept"] == ACCEPT
        ws.send(frame(TEXT, b"one"))
        assert ws.read_frame().payload == b"one"
        ws.send(close_frame(1000))
        assert ws.read_until_close().close_code == 1000
        assert ws.is_closed()
    # The worker still serves plain requests (it did not write into the socket).
    with flask_sock.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.read_response().body == b"hello"


def test_a_frame_in_the_handshake_packet_reaches_the_library(flask_sock: Server) -> None:
    with RawWebSocket(flask_sock.port) as ws:
        ws.send(upgrade_request("/echo") + frame(TEXT, b"early"))
        assert ws.read_head()[0] == 101
        assert ws.read_frame().payload == b"early"
        ws.send(frame(TEXT, b"late"))
        assert ws.read_frame().payload == b"late"


def test_an_upgrade_on_the_second_request_of_a_keep_alive_connection(flask_sock: Server) -> None:
    with RawWebSocket(flask_sock.port) as ws:
        ws.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, fields = ws.read_head()
        assert (status, ws.read_body(fields)) == (200, b"hello")
        ws.send(upgrade_request("/echo"))
        assert ws.read_head()[0] == 101
        ws.send(frame(TEXT, b"second"))
        assert ws.read_frame().payload == b"second"


@pytest.mark.parametrize(("request_bytes", "offered"), [
    pytest.param(upgrade_request("/gunicorn-socket"), b"yes", id="valid"),
    pytest.param(upgrade_request("/gunicorn-socket", connection="keep-alive, upgrade",
                                 upgrade="foo, WebSocket"), b"yes", id="token-lists"),
    pytest.param(upgrade_request("/gunicorn-socket", ws_version="12"), b"yes",
                 id="version-is-the-librarys-business"),
    pytest.param(upgrade_request("/gunicorn-socket", version="HTTP/1.0"), b"no",
                 id="http-1.0"),
    pytest.param(upgrade_request("/gunicorn-socket", method="POST"), b"no", id="post"),
    pytest.param(upgrade_request("/gunicorn-socket", connection="keep-alive"), b"no",
                 id="connection-without-upgrade"),
    pytest.param(upgrade_request("/gunicorn-socket", upgrade="h2c"), b"no", id="not-websocket"),
    pytest.param(b"GET /gunicorn-socket HTTP/1.1\r\nHost: x\r\n\r\n", b"no", id="no-upgrade"),
])
def test_gunicorn_socket_is_offered_for_valid_upgrades_only(native: Server,
                                                            request_bytes: bytes,
                                                            offered: bytes) -> None:
    with RawWebSocket(native.port) as ws:
        ws.send(request_bytes)
        status, fields = ws.read_head()
        assert (status, ws.read_body(fields)) == (200, offered)


def test_flask_socketio_in_threading_mode(tmp_path: Path) -> None:
    with Server(tmp_path, "tests.ws_apps:flask_socketio", "--threads", "4") as server:
        url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
        with ws_connect(url, open_timeout=10) as ws:
            opened = ws.recv(timeout=10)
            assert isinstance(opened, str) and opened.startswith("0")  # engine.io open
            assert "sid" in json.loads(opened[1:])
            ws.send("40")  # socket.io connect to the default namespace
            assert str(ws.recv(timeout=10)).startswith("40")
            ws.send('42["echo","hi there"]')
            assert ws.recv(timeout=10) == '42["echo","hi there"]'


def test_n_threads_serve_n_hijacked_sockets(tmp_path: Path) -> None:
    """The honest limit of the hijack path: each socket holds a serving thread for its
    whole life, so with --threads 2 a third client waits until one of the two ends."""
    with Server(tmp_path, "tests.ws_apps:flask_sock", "--threads", "2") as server:
        first, second = (RawWebSocket(server.port) for _ in range(2))
        for ws in (first, second):
            ws.send(upgrade_request("/echo"))
            assert ws.read_head()[0] == 101
            ws.send(frame(TEXT, b"hold"))
            assert ws.read_frame().payload == b"hold"
        with server.connect() as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            conn.sock.settimeout(1.0)
            with pytest.raises(TimeoutError):
                conn.sock.recv(1)  # no thread is free to answer
            first.send(close_frame(1000))
            assert first.read_until_close().opcode == CLOSE
            conn.sock.settimeout(10.0)
            assert conn.read_response().body == b"hello"  # answered once one is free
        first.close()
        second.close()


def test_a_stopping_worker_ends_hijacked_sockets_when_it_exits(tmp_path: Path) -> None:
    """A graceful stop lets a library's WebSocket run until graceful_timeout, then the
    worker shuts it down as it exits: the client sees the connection end."""
    with Server(tmp_path, "tests.ws_apps:flask_sock", "--threads", "2",
                "--graceful-timeout", "2") as server:
        with RawWebSocket(server.port) as ws:
            ws.send(upgrade_request("/echo"))
            assert ws.read_head()[0] == 101
            ws.send(frame(TEXT, b"before"))
            assert ws.read_frame().payload == b"before"
            os.kill(server.pid, signal.SIGTERM)
            ws.send(frame(TEXT, b"during"))  # still served while the worker drains
            assert ws.read_frame().payload == b"during"
            assert ws.is_closed(15)
        assert server.process is not None
        assert server.process.wait(15) == 0
