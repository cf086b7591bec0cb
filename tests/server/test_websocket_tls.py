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
