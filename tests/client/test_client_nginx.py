"""Interop with a real nginx: static files, a chunked proxied response, keep-alive, uploads.

nginx is started on a listening socket this test binds on 127.0.0.1:0 and hands over
through nginx's own socket inheritance (the ``NGINX`` environment variable, as for its
binary upgrade), so no port is guessed and no readiness poll is needed: connections
wait in the accept queue until nginx takes them.
"""
from __future__ import annotations

import email.utils
import hashlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from client_peers import TEST_TIMEOUTS, Peer, PeerConnection, respond

from wsgiserve.client import InformationalResponse, Pool

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="the nginx binary is not installed "
                                                      "(Debian package nginx)")

CONFIG = """
daemon off;
master_process on;
user {user};
worker_processes 1;
error_log {prefix}/error.log notice;
pid {prefix}/nginx.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 64m;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/www;
        add_header X-Connection $connection always;
        add_header X-Connection-Requests $connection_requests always;
        location = /redirect {{ return 301 /static/small.txt; }}
        location /up/ {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_http_version 1.1;
            proxy_buffering off;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    port: int
    prefix: Path
    files: dict[str, bytes]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _upstream(connection: PeerConnection) -> None:
    while (request := connection.read_request()) is not None:
        if request.target.startswith("/up/chunked"):
            pieces = [b"up-stream-", bytes(range(256)) * 20, b"-end"]
            body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            connection.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                            b"Connection: close\r\n\r\n" + body)
            return
        digest = hashlib.sha256(request.body).hexdigest()
        connection.send(respond(200, f"{len(request.body)} {digest}".encode(),
                                [("Connection", "close")]))
        return


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    assert NGINX is not None
    prefix = tmp_path_factory.mktemp("nginx")
    static = prefix / "www" / "static"
    static.mkdir(parents=True)
    files = {"small.txt": b"hello from nginx\n", "a.bin": os.urandom(300_000),
             "big.bin": os.urandom(5 << 20)}
    for name, data in files.items():
        (static / name).write_bytes(data)
    prefix.chmod(0o755)
    upstream = Peer(_upstream)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)   # nginx expects its inherited listeners non-blocking
    port = listener.getsockname()[1]
    config = prefix / "nginx.conf"
    user = "root" if os.geteuid() == 0 else "nobody"
    config.write_text(CONFIG.format(prefix=prefix, port=port, upstream_port=upstream.port,
                                    user=user))
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(config)], pass_fds=[listener.fileno()],
        env={"NGINX": f"{listener.fileno()};"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    listener.close()
    try:
        yield Nginx(port, prefix, files)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        upstream.stop()


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool(timeouts=TEST_TIMEOUTS, trust_env=False) as shared:
        yield shared


@pytest.mark.parametrize("name", ["small.txt", "a.bin", "big.bin"])
def test_static_file_byte_exact(nginx: Nginx, pool: Pool, name: str) -> None:
    response = pool.get(nginx.url(f"/static/{name}"))
    assert response.status == 200
    assert response.read() == nginx.files[name]
    assert response.header("content-length") == str(len(nginx.files[name]))


def test_keep_alive_reuse(nginx: Nginx, pool: Pool) -> None:
    seen = []
    for name in ("small.txt", "a.bin", "small.txt"):
        response = pool.get(nginx.url(f"/static/{name}"))
        assert response.read() == nginx.files[name]
        seen.append((response.header("x-connection"), response.header("x-connection-requests")))
    assert len({connection for connection, _ in seen}) == 1
    assert [requests for _, requests in seen] == ["1", "2", "3"]


def test_head_range_304_404_and_redirect(nginx: Nginx, pool: Pool) -> None:
    head = pool.head(nginx.url("/static/a.bin"))
    assert (head.status, head.read(), head.header("content-length")) == (200, b"", "300000")
    ranged = pool.get(nginx.url("/static/a.bin"), headers={"Range": "bytes=100-199"})
    assert (ranged.status, ranged.read()) == (206, nginx.files["a.bin"][100:200])
    mtime = (nginx.prefix / "www" / "static" / "small.txt").stat().st_mtime
    since = email.utils.formatdate(mtime, usegmt=True)
    cached = pool.get(nginx.url("/static/small.txt"), headers={"If-Modified-Since": since})
    assert (cached.status, cached.read()) == (304, b"")
    missing = pool.get(nginx.url("/static/missing"))
    assert missing.status == 404 and b"404" in missing.read()
    moved = pool.get(nginx.url("/redirect"), follow_redirects=True)
    assert (moved.status, moved.read()) == (200, nginx.files["small.txt"])
    assert [r.status for r in moved.history] == [301]
    assert {r.header("x-connection") for r in (head, ranged, cached, missing, moved)} \
        == {head.header("x-connection")}


def test_chunked_proxied_response(nginx: Nginx, pool: Pool) -> None:
    response = pool.get(nginx.url("/up/chunked"))
    assert response.header("transfer-encoding") == "chunked"
    assert response.read() == b"up-stream-" + bytes(range(256)) * 20 + b"-end"
    assert response.is_complete


@pytest.mark.parametrize("mode", ["content-length", "chunked", "expect-100"])
def test_large_upload(nginx: Nginx, pool: Pool, mode: str, tmp_path: Path) -> None:
    data = os.urandom(16 << 20)
    path = tmp_path / "up.bin"
    path.write_bytes(data)
    headers = {"Transfer-Encoding": "chunked"} if mode == "chunked" else {}
    seen: list[InformationalResponse] = []
    with open(path, "rb") as file:
        response = pool.put(nginx.url("/up/echo"), file, headers=headers,
                            expect_continue=mode == "expect-100",
                            on_informational=seen.append)
        assert response.status == 200
        assert response.read() == f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()
    if mode == "expect-100":
        assert [event.status for event in seen] == [100]
