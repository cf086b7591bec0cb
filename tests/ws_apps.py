"""WSGI apps for the WebSocket server tests, served as ``tests.ws_apps:NAME``.

``native`` routes by PATH_INFO (anything else is a 200 "hello"):
  /event             echo in event mode (on_message sends the message back)
  /blocking          echo in the blocking style (for message in ws)
  /event-closes      event-mode echo; on_close appends "code reason" to /closes
  /closes            what /event-closes saw closed, one per line
  /subprotocol       accepts the first offered subprotocol, sends its name, closes
  /reject            reject(403) with a body
  /app-closes        accepts, sends "bye", closes 4000, returns
  /returns           accepts and returns at once (the server closes 1000)
  /idle              event mode, sends nothing: a socket that waits
  /fail              event mode; on_message raises (the server closes 1011)
  /raises            accepts, then the WSGI call raises (the server closes 1011)
  /gunicorn-socket   "yes" or "no": whether environ has gunicorn.socket (never accepts)
  /flood             event mode; the first message makes on_message send 64 MiB with a
                     1 s send timeout; "flood CODE" goes to /closes when send gives up
  /burst             event mode; a message "N" makes on_message send N binary messages of
                     64 KiB (the default send timeout), then the text "done"
``flask_sock`` is a Flask-Sock echo at /echo (and "hello" at /); ``flask_socketio`` a
Flask-SocketIO (threading mode) app echoing "echo" events.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any
from wsgiref.types import StartResponse

_closes: list[str] = []
_closes_lock = threading.Lock()


def _hello(start_response: StartResponse, body: bytes = b"hello") -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _echo(ws: Any, message: str | bytes) -> None:
    ws.send(message)


def _record_close(ws: Any, code: int, reason: str) -> None:
    with _closes_lock:
        _closes.append(f"{code} {reason}")


def _fail(ws: Any, message: str | bytes) -> None:
    raise RuntimeError("this callback fails on purpose")


def _flood(ws: Any, message: str | bytes) -> None:
    from wsgiserve.server.worker.websocket_api import WebSocketClosed
    try:
        for _ in range(1024):
            ws.send(b"x" * 65536, timeout=1.0)
    except WebSocketClosed as exc:
        with _closes_lock:
            _closes.append(f"flood {exc.code}")


def _burst(ws: Any, message: str | bytes) -> None:
    block = b"b" * 65536
    for _ in range(int(message)):
        ws.send(block)
    ws.send("done")


def native(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/closes":
        with _closes_lock:
            return _hello(start_response, "\n".join(_closes).encode())
    if path == "/gunicorn-socket":
        return _hello(start_response, b"yes" if "gunicorn.socket" in environ else b"no")
    upgrade = environ.get("wsgiserve.websocket")
    if upgrade is None:
        return _hello(start_response)
    if path == "/reject":
        upgrade.reject(403, [("X-Why", "test")], b"go away\n")
        return []
    if path == "/subprotocol":
        offered = upgrade.subprotocols
        ws = upgrade.accept(subprotocol=offered[0] if offered else None)
        ws.send(ws.subprotocol or "")
        ws.close()
        return []
    ws = upgrade.accept()
    if path == "/blocking":
        for message in ws:
            ws.send(message)
    elif path in ("/event", "/event-closes"):
        ws.on_message = _echo
        if path == "/event-closes":
            ws.on_close = _record_close
    elif path == "/app-closes":
        ws.send("bye")
        ws.close(4000, "app done")
    elif path == "/idle":
        ws.on_close = _record_close
    elif path == "/fail":
        ws.on_message = _fail
    elif path == "/raises":
        raise RuntimeError("this app fails on purpose after accept()")
    elif path == "/flood":
        ws.on_message = _flood
    elif path == "/burst":
        ws.on_message = _burst
    return []


def _make_flask_sock() -> Any:
    from flask import Flask
    from flask_sock import Sock

    app = Flask(__name__)
    sock = Sock(app)

    @app.route("/")
    def index() -> str:
        return "hello"

    @sock.route("/echo")
    def echo(ws: Any) -> None:
        while True:
            ws.send(ws.receive())

    return app


def _make_flask_socketio() -> Any:
    from flask import Flask
    from flask_socketio import SocketIO, emit

    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="threading")

    @socketio.on("echo")
    def echo(data: Any) -> None:
        emit("echo", data)

    return app


class _Lazy:
    """A WSGI app built on first call (the Flask apps need Flask only when served)."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._app: Any = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        with self._lock:
            if self._app is None:
                self._app = self._make()
        return self._app(environ, start_response)


flask_sock = _Lazy(_make_flask_sock)
flask_socketio = _Lazy(_make_flask_socketio)
