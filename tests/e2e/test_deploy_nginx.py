"""nginx (with deploy/nginx.conf) in front of wsgiserve (with deploy/wsgiserve.toml) on a
unix socket: the client's address and scheme reach the app, spoofed forwarding headers do
not, static files never reach wsgiserve, chunked uploads arrive whole (buffered by nginx,
or streamed through), and a HUP reload under load through nginx loses no request. Also the
TCP upstream of the same site file."""
from __future__ import annotations

import hashlib
import json
import http.client
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    Certificate,
    Load,
    Nginx,
    Reply,
    Wsgiserve,
    deploy_config_args,
    https_request,
    make_certificate,
    nginx_binary,
    site_from_deploy,
    write_app,
)
from processes import wait_until

pytestmark = pytest.mark.timeout(120)


@dataclass
class Stack:
    nginx: Nginx
    server: Wsgiserve
    certificate: Certificate
    app_dir: Path
    static_dir: Path


def start_stack(tmp: Path, *, tcp: bool = False) -> Stack:
    app_dir, static_dir, logs = tmp / "app", tmp / "static", tmp / "logs"
    for directory in (app_dir, static_dir, logs, tmp / "nginx"):
        directory.mkdir()
    write_app(app_dir)
    (static_dir / "site.css").write_text("body { color: #123456; }\n")
    certificate = make_certificate(tmp)
    socket_path = tmp / "run" / "wsgiserve.sock"
    socket_path.parent.mkdir()
    bind = "127.0.0.1:0" if tcp else f"unix:{socket_path}"
    # The shipped config trusts no TCP peer (nginx comes over the unix socket); over TCP,
    # nginx's address must be listed, as the comment in deploy/nginx.conf says.
    extra = ["--workers", "2", "--threads", "4", "--graceful-timeout", "10"]
    if tcp:
        extra += ["--forwarded-allow-ips", "127.0.0.1"]
    server = Wsgiserve(logs, deploy_config_args(bind=bind, app="deploy_app:app",
                                                chdir=app_dir, log_dir=logs, extra=extra),
                       cwd=app_dir)
    nginx: Nginx | None = None
    try:
        server.start()
        tcp_port = int(server.url.rsplit(":", 1)[1]) if tcp else None
        nginx = Nginx(tmp / "nginx", "")
        nginx.site = site_from_deploy(
            upstream_socket=socket_path, static_dir=static_dir, certificate=certificate,
            log_dir=tmp / "nginx", http_port=nginx.http_port, https_port=nginx.https_port,
            tcp_port=tcp_port)
        nginx.start()
    except BaseException:
        if nginx is not None:
            nginx.stop()
        server.stop()
        raise
    return Stack(nginx, server, certificate, app_dir, static_dir)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    nginx_binary()
    started = start_stack(tmp_path_factory.mktemp("nginx-unix"))
    yield started
    started.nginx.stop()
    started.server.stop()


def request(stack: Stack, method: str, path: str, **kwargs: Any) -> Reply:
    return https_request(stack.nginx.https_port, stack.certificate.client_context(), method,
                         path, **kwargs)


def test_client_address_and_scheme_reach_the_app(stack: Stack) -> None:
    # From 127.0.0.2, so REMOTE_ADDR can only be right if X-Forwarded-For was honoured.
    reply = https_request(stack.nginx.https_port, stack.certificate.client_context(), "GET",
                          "/where?x=1", source="127.0.0.2")
    assert reply.status == 200, reply
    info = reply.json()
    assert info["REMOTE_ADDR"] == "127.0.0.2"
    assert info["wsgi.url_scheme"] == "https"
    assert info["HTTP_HOST"] == f"localhost:{stack.nginx.https_port}"
    assert info["SERVER_PORT"] == str(stack.nginx.https_port)
    assert info["PATH_INFO"] == "/where"
    # The access log names the client too (gunicorn's %(h)s is REMOTE_ADDR), not nginx.
    access_log = stack.server.log_path.parent / "access.log"
    wait_until(lambda: "/where" in access_log.read_text(), 5, message="the access line")
    [line] = [json.loads(text) for text in access_log.read_text().splitlines()
              if '"/where"' in text]
    assert line["remote_addr"] == "127.0.0.2"


def test_spoofed_forwarding_headers_from_the_client_change_nothing(stack: Stack) -> None:
    reply = https_request(
        stack.nginx.https_port, stack.certificate.client_context(), "GET", "/spoof",
        source="127.0.0.2",
        headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "http",
                 "X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/evil",
                 "Forwarded": "for=6.6.6.6;proto=http;host=evil.example"})
    info = reply.json()
    # nginx appends the real peer; wsgiserve takes the right-most untrusted address.
    assert info["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 127.0.0.2"
    assert info["REMOTE_ADDR"] == "127.0.0.2"
    assert info["wsgi.url_scheme"] == "https"
    assert info["HTTP_HOST"] == f"localhost:{stack.nginx.https_port}"
    assert info["SCRIPT_NAME"] == ""
    assert info["HTTP_X_FORWARDED_PREFIX"] is None and info["HTTP_FORWARDED"] is None


def test_plain_http_is_redirected_to_https(stack: Stack) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", stack.nginx.http_port, timeout=10)
    try:
        connection.request("GET", "/page?q=1", headers={"Host": "localhost"})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 301
    assert response.getheader("Location") == "https://localhost/page?q=1"


def test_static_files_are_served_by_nginx(stack: Stack) -> None:
    reply = request(stack, "GET", "/static/site.css")
    assert reply.status == 200
    assert reply.body == b"body { color: #123456; }\n"
    assert reply.headers["content-type"].startswith("text/css")
    assert "max-age=604800" in reply.headers["cache-control"]
    assert "x-worker-pid" not in reply.headers
    assert request(stack, "GET", "/static/missing.css").status == 404
    access_log = (stack.server.log_path.parent / "access.log").read_text()
    assert "/static/" not in access_log


def _chunks(total: int, size: int) -> Iterator[bytes]:
    for offset in range(0, total, size):
        yield bytes((offset // size + i) % 251 for i in range(min(size, total - offset)))


@pytest.mark.parametrize(("path", "total", "is_streamed"), [
    pytest.param("/submit", 300_000, False, id="buffered-by-nginx"),
    pytest.param("/upload/file", 3_000_000, True, id="streamed-to-wsgiserve"),
])
def test_chunked_upload_through_nginx(stack: Stack, path: str, total: int,
                                      is_streamed: bool) -> None:
    expected = hashlib.sha256(b"".join(_chunks(total, 8192))).hexdigest()
    reply = request(stack, "POST", path, body=_chunks(total, 8192), chunked=True,
                    headers={"Content-Type": "application/octet-stream"})
    assert reply.status == 200, reply
    info = reply.json()
    assert (info["body_length"], info["body_sha256"]) == (total, expected)
    if is_streamed:
        # proxy_request_buffering off: nginx passes the chunked body on as it arrives.
        assert info["CONTENT_LENGTH"] in (None, "")
    else:
        # nginx read the whole body first and sent it with a Content-Length.
        assert info["CONTENT_LENGTH"] == str(total)


def test_body_over_nginx_limit_is_refused_by_nginx(stack: Stack) -> None:
    reply = request(stack, "POST", "/submit", body=b"x" * (11 * 1024 * 1024))
    assert reply.status == 413


def _reload_under_load(stack: Stack, *, post_every: int) -> None:
    """Three HUPs, each loading new app code, under keep-alive load through nginx; every
    response must be a 200 and the last code must be served."""
    server = stack.server
    old_workers = set(server.workers())
    first = len(server.log().split("reload (HUP) done")) - 1
    with Load(stack.nginx.https_port, stack.certificate.client_context(), clients=6,
              post_every=post_every) as load:
        load.wait_for(100)
        for round_number in range(1, 4):
            version = f"v{first + round_number + 1}"
            write_app(stack.app_dir, version)
            server.signal(signal.SIGHUP)
            server.wait_for_log(r"reload \(HUP\) done", timeout_s=30, count=first + round_number)
            load.wait_for(100)
        wait_until(lambda: load.result.versions[version] >= 50, 30,
                   message=f"{version} responses")
        result = load.stop()
    diagnosis = (f"{result.describe()}\n--- nginx error log ---\n"
                 f"{stack.nginx.error_log()[-3000:]}\n--- wsgiserve log ---\n"
                 f"{server.log()[-3000:]}")
    assert result.errors == [] and result.bad == [], diagnosis
    assert set(result.statuses) == {200}, diagnosis
    assert result.total >= 400, diagnosis
    # The old generations' workers finish and exit; two new ones remain.
    wait_until(lambda: len(server.workers()) == 2, 20, message="the retired workers to exit")
    assert not set(server.workers()) & old_workers


def test_hup_reload_under_get_load_through_nginx_has_zero_errors(stack: Stack) -> None:
    # A GET sent on a connection the retiring worker just closed is retried by nginx.
    _reload_under_load(stack, post_every=0)


def test_hup_reload_under_post_load_through_nginx_has_zero_errors(stack: Stack) -> None:
    _reload_under_load(stack, post_every=2)


def test_tcp_upstream_of_the_same_site(tmp_path: Path) -> None:
    nginx_binary()
    tcp_stack = start_stack(tmp_path, tcp=True)
    try:
        reply = https_request(tcp_stack.nginx.https_port,
                              tcp_stack.certificate.client_context(), "GET", "/tcp",
                              source="127.0.0.2", headers={"X-Forwarded-For": "6.6.6.6"})
        info = reply.json()
        assert (info["REMOTE_ADDR"], info["wsgi.url_scheme"]) == ("127.0.0.2", "https")
        # Over TCP the peer is nginx's 127.0.0.1, trusted by --forwarded-allow-ips only.
        assert os.path.exists(tmp_path / "run") and not list((tmp_path / "run").iterdir())
    finally:
        tcp_stack.nginx.stop()
        tcp_stack.server.stop()


def test_websockets_through_nginx(stack: Stack) -> None:
    """deploy/nginx.conf's /ws/ location passes the upgrade on; the native WebSocket sees
    the client's address (X-Forwarded-For) and echoes over TLS; plain requests on the
    same site still reuse their upstream connections (Connection is empty for them)."""
    import asyncio

    # The asyncio client: the threaded one shares an SSLSocket between two threads.
    from websockets.asyncio.client import connect as ws_connect

    async def echo(url: str) -> int | None:
        async with ws_connect(url, ssl=stack.certificate.client_context(),
                              open_timeout=10) as ws:
            assert await asyncio.wait_for(ws.recv(), 10) == "127.0.0.1"
            for message in ["through nginx", b"\x00" * 70_000, "é" * 10_000]:
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), 10) == message
            await ws.close()
            return ws.close_code

    assert asyncio.run(echo(f"wss://localhost:{stack.nginx.https_port}/ws/echo")) == 1000
    reply = request(stack, "GET", "/after-websocket")
    assert reply.status == 200 and reply.json()["PATH_INFO"] == "/after-websocket"
