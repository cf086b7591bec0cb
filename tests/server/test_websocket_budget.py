"""The thread budget of event-mode WebSockets: an idle one holds no thread.

With ``--threads 4``, 1,000 native WebSockets in event mode stay open while plain HTTP
requests on the same worker are still answered, and every socket still echoes at the
end. (The hijack path's limit, one thread per socket, is in test_websocket_hijack.)
"""
from __future__ import annotations

import selectors
from pathlib import Path

from serving import Server
from ws_raw import TEXT, RawWebSocket, close_frame, frame, upgrade_request

SOCKETS = 1000


def _open_all(port: int) -> list[RawWebSocket]:
    """Open SOCKETS WebSockets, sending every handshake before reading any answer."""
    sockets = [RawWebSocket(port, timeout_s=30.0) for _ in range(SOCKETS)]
    for ws in sockets:
        ws.send(upgrade_request("/event"))
    for ws in sockets:
        assert ws.read_head()[0] == 101
    return sockets


def _echo_all(sockets: list[RawWebSocket], payload: bytes) -> None:
    for ws in sockets:
        ws.send(frame(TEXT, payload))
    with selectors.DefaultSelector() as selector:
        for ws in sockets:
            selector.register(ws.sock, selectors.EVENT_READ, ws)
        waiting = len(sockets)
        while waiting:
            ready = selector.select(30.0)
            assert ready, f"{waiting} echoes never came"
            for key, _ in ready:
                received: RawWebSocket = key.data
                assert received.read_frame().payload == payload
                selector.unregister(received.sock)
                waiting -= 1


def test_a_thousand_idle_websockets_hold_no_thread(tmp_path: Path) -> None:
    with Server(tmp_path, "tests.ws_apps:native", "--threads", "4",
                "--worker-connections", str(SOCKETS + 100),
                "--websocket-max-connections", str(SOCKETS + 10)) as server:
        sockets = _open_all(server.port)
        try:
            _echo_all(sockets, b"warm")
            # All 1,000 are open and idle: plain requests are still answered.
            for _ in range(20):
                with server.connect(timeout_s=30.0) as conn:
                    conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    assert conn.read_response().body == b"hello"
            _echo_all(sockets, b"still open")
            for ws in sockets[:10]:
                ws.send(close_frame(1000))
                assert ws.read_until_close().close_code == 1000
        finally:
            for ws in sockets:
                ws.close()
