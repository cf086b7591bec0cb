"""WebSockets with wsgiserve's native API, plain WSGI and the standard library only.

    /          a page with a chat box (its script connects to /chat)
    /echo      echo, blocking style: the WSGI call reads the socket itself
    /chat      broadcast chat, event mode: every message goes to every client; an idle
               client holds no thread

Run: python -m wsgiserve --threads 4 app:app   (from this folder), then open
http://127.0.0.1:8000/ in two browser tabs. docs/websockets.md describes the API.
"""
from __future__ import annotations

import threading
from typing import Any

from wsgiserve.server.worker.websocket_api import WebSocketClosed

_clients: set[Any] = set()
_clients_lock = threading.Lock()

PAGE = b"""<!doctype html>
<meta charset="utf-8"><title>wsgiserve chat</title>
<ul id="log"></ul>
<form id="form"><input id="text" autocomplete="off" autofocus><button>Send</button></form>
<script>
const ws = new WebSocket(`ws://${location.host}/chat`);
ws.onmessage = (event) => {
  const item = document.createElement("li");
  item.textContent = event.data;
  document.getElementById("log").append(item);
};
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  ws.send(input.value);
  input.value = "";
};
</script>
"""


def broadcast(ws: Any, message: str | bytes) -> None:
    """on_message: send to every client. timeout=0: a client that does not read is
    dropped (close 1008) rather than holding this serving thread."""
    with _clients_lock:
        clients = list(_clients)
    for client in clients:
        try:
            client.send(message, timeout=0)
        except WebSocketClosed:
            leave(client, 1008, "")


def leave(ws: Any, code: int, reason: str) -> None:
    """on_close: forget the client."""
    with _clients_lock:
        _clients.discard(ws)


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ["PATH_INFO"]
    upgrade = environ.get("wsgiserve.websocket")
    if upgrade is None:
        if path != "/":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [PAGE]
    if path == "/echo":
        ws = upgrade.accept()
        for message in ws:           # until the client closes
            ws.send(message)
        return []
    if path == "/chat":
        ws = upgrade.accept()
        with _clients_lock:
            _clients.add(ws)
        ws.on_message = broadcast    # from now on the worker's loop holds the socket
        ws.on_close = leave
        return []
    upgrade.reject(404, body=b"no WebSocket here\n")
    return []
