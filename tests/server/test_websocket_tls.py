"""WebSockets over TLS: the preamble hands the worker's TLS transport to HTTP, which hands
it to the WebSocket (native) or to the library (gunicorn.socket). Certificates from
trustme at test time; the websockets library is the client.
"""
from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme
from serving import Server
from tls_servers import pem_files
from websockets.sync.client import connect as ws_connect


@pytest.mark.parametrize(("app", "path"), [
    ("tests.ws_apps:native", "/event"),
    ("tests.ws_apps:native", "/blocking"),
    ("tests.ws_apps:flask_sock", "/echo"),
])
def test_wss_echo(tmp_path: Path, app: str, path: str) -> None:
    authority = trustme.CA()
    certfile, keyfile = pem_files(tmp_path, authority.issue_cert("localhost"), "server")
    context = ssl.create_default_context()
    authority.configure_trust(context)
    with Server(tmp_path, app, "--threads", "4", "--certfile", certfile,
                "--keyfile", keyfile) as server:
        url = f"wss://localhost:{server.port}{path}"
        with ws_connect(url, ssl=context, open_timeout=10) as ws:
            for message in ["over tls", os.urandom(200_000), "é" * 40_000]:
                ws.send(message)
                assert ws.recv(timeout=10) == message
            ws.close()
            assert ws.close_code == 1000


def test_flask_sock_over_tls_closes_cleanly_every_time(tmp_path: Path) -> None:
    """simple-websocket reads the socket in its own thread while the app sends from
    another: one TLS connection does not take both at once (OpenSSL's "bad length", a
    connection dropped without its Close). Before the handed socket serialized its TLS
    calls this failed under load (5 of 100 connections with both cores busy, as in CI's
    full run), rarely on an idle machine; test_shared_tls.py tests the socket itself."""
    authority = trustme.CA()
    certfile, keyfile = pem_files(tmp_path, authority.issue_cert("localhost"), "server")
    context = ssl.create_default_context()
    authority.configure_trust(context)
    closes = []
    with Server(tmp_path, "tests.ws_apps:flask_sock", "--threads", "4", "--certfile",
                certfile, "--keyfile", keyfile) as server:
        for _ in range(60):
            with ws_connect(f"wss://localhost:{server.port}/echo", ssl=context,
                            open_timeout=10) as ws:
                for message in ["over tls", os.urandom(200_000), "é" * 40_000]:
                    ws.send(message)
                    assert ws.recv(timeout=10) == message
                ws.close()
                closes.append(ws.close_code)
    assert closes == [1000] * 60
