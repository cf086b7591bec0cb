"""examples/websocket_chat served by a real worker: the echo and the broadcast chat."""
from __future__ import annotations

from pathlib import Path

from serving import Server
from websockets.sync.client import connect as ws_connect

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "websocket_chat"


def test_echo_and_broadcast_chat(tmp_path: Path) -> None:
    with Server(tmp_path, "app:app", "--threads", "2", pythonpath=[EXAMPLE]) as server:
        base = f"ws://127.0.0.1:{server.port}"
        with ws_connect(f"{base}/echo", open_timeout=10) as echo:
            echo.send("ping")
            assert echo.recv(timeout=10) == "ping"
        with ws_connect(f"{base}/chat", open_timeout=10) as alice, \
                ws_connect(f"{base}/chat", open_timeout=10) as bob:
            alice.send("hello bob")
            assert bob.recv(timeout=10) == "hello bob"
            assert alice.recv(timeout=10) == "hello bob"
            bob.send("hi alice")
            assert alice.recv(timeout=10) == "hi alice"
        with server.connect() as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"new WebSocket" in conn.read_response().body
