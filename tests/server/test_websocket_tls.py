"""WebSockets over TLS: the preamble hands the worker's TLS transport to HTTP, which hands
it to the WebSocket (native) or to the library (gunicorn.socket). Certificates from
trustme at test time; the websockets library is the client, its asyncio one: its threaded
client reads and writes one SSLSocket from two threads, and under load a request it sent
now and then never reaches the wire (the server sees the TLS handshake, then nothing).
"""
from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import pytest
import trustme
from serving import Server
from tls_servers import pem_files
from websockets.asyncio.client import connect as ws_connect


async def _echo(url: str, context: ssl.SSLContext, messages: list[str | bytes]) -> int | None:
    """Send each message and check its echo, then close; the close code."""
    async with ws_connect(url, ssl=context, open_timeout=10, max_size=None) as ws:
        for message in messages:
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), 10) == message
        await ws.close()
        return ws.close_code


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
        assert asyncio.run(_echo(url, context, ["over tls", os.urandom(200_000),
                                                "é" * 40_000])) == 1000


def test_flask_sock_over_tls_closes_cleanly_every_time(tmp_path: Path) -> None:
    """simple-websocket reads the socket in its own thread while the app sends from
    another: one TLS connection does not take both at once (OpenSSL's "bad length", a
    connection dropped without its Close). Before the handed socket serialized its TLS
    calls this failed under load (5 of 100 connections with both cores busy; once in a
    fresh-clone run of the suite), rarely when idle; test_shared_tls.py tests the socket."""
    authority = trustme.CA()
    certfile, keyfile = pem_files(tmp_path, authority.issue_cert("localhost"), "server")
    context = ssl.create_default_context()
    authority.configure_trust(context)
    closes = []
    with Server(tmp_path, "tests.ws_apps:flask_sock", "--threads", "4", "--certfile",
                certfile, "--keyfile", keyfile) as server:
        for _ in range(60):
            closes.append(asyncio.run(_echo(f"wss://localhost:{server.port}/echo", context,
                                            ["over tls", os.urandom(200_000), "é" * 40_000])))
    assert closes == [1000] * 60
