"""``--http2-cleartext upgrade``: a bodiless HTTP/1.1 request with ``Upgrade: h2c`` (RFC
7540 §3.2) is answered 101, its HTTP2-Settings apply, and it becomes stream 1 of the
HTTP/2 connection; a request with a body, or without a valid HTTP2-Settings, is answered
in HTTP/1.1. Prior knowledge is then off (``both`` turns on the two).
"""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
from h2client import (
    DATA,
    INITIAL_WINDOW_SIZE,
    PREFACE,
    PROTOCOL_ERROR,
    SETTINGS,
    H2Connection,
    frame,
    settings_payload,
)
from h2servers import start_server, wait_for_line
from serving import Server

pytestmark = pytest.mark.timeout(60)

SERVER_ARGS = ("--http2-cleartext", "upgrade")


def http2_settings(settings: dict[int, int]) -> str:
    return base64.urlsafe_b64encode(settings_payload(settings)).rstrip(b"=").decode()


def upgrade_request(path: str = "/echo", settings: str | None = "",
                    connection: str = "Upgrade, HTTP2-Settings", extra: str = "") -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: upgrade.test", f"Connection: {connection}",
             "Upgrade: h2c"]
    if settings is not None:
        lines.append(f"HTTP2-Settings: {settings}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


@pytest.fixture
def upgraded(server: Server) -> Iterator[H2Connection]:
    """A connection upgraded by a GET of /echo; its 101 read, the preface sent."""
    with H2Connection(server.port) as conn:
        conn.send(upgrade_request(settings=http2_settings({INITIAL_WINDOW_SIZE: 2**31 - 1})))
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head
        assert b"\r\nUpgrade: h2c\r\n" in head
        conn.send(PREFACE + frame(SETTINGS, 0, 0))
        conn.next_stream_id = 3
        yield conn


def http11(server: Server, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            assert data, received
            received += data
    return received


def test_upgraded_request_is_stream_1(upgraded: H2Connection, server: Server) -> None:
    response = upgraded.response(1)
    assert response.status == 200
    echoed = json.loads(response.body)
    assert echoed["headers"]["HTTP_HOST"] == "upgrade.test"
    assert "HTTP_UPGRADE" not in echoed["headers"]
    assert "HTTP_HTTP2_SETTINGS" not in echoed["headers"]
    assert upgraded.frames[0].type == SETTINGS   # our preface, right after the 101
    assert upgraded.get().status == 200           # the connection goes on in HTTP/2
    wait_for_line(server, '"GET /echo HTTP/2.0" 200')


def test_the_http2_settings_are_acknowledged_by_the_101_only(upgraded: H2Connection) -> None:
    upgraded.response(1)
    upgraded.ping()
    acks = [f for f in upgraded.frames if f.type == SETTINGS and f.flags & 1]
    assert len(acks) == 1   # for the SETTINGS frame of the preface, not HTTP2-Settings


def test_the_http2_settings_apply(server: Server) -> None:
    with H2Connection(server.port) as conn:
        conn.send(upgrade_request("/big?size=5", http2_settings({INITIAL_WINDOW_SIZE: 2})))
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.sock.recv(1)
        conn.send(PREFACE + frame(SETTINGS, 0, 0))
        first = conn.expect(lambda f: f.type == DATA and f.stream_id == 1, "DATA")
        assert len(first.payload) == 2   # the stream window of the HTTP2-Settings


def test_invalid_preface_after_the_101_is_protocol_error(server: Server) -> None:
    with H2Connection(server.port) as conn:
        conn.send(upgrade_request())
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.sock.recv(1)
        conn.send(b"GET / HTTP/1.1\r\n\r\nnot a preface")
        conn.expect_connection_error(PROTOCOL_ERROR)


@pytest.mark.parametrize("request_bytes", [
    pytest.param(upgrade_request(settings=None), id="no-http2-settings"),
    pytest.param(upgrade_request(settings="not base64!"), id="invalid-http2-settings"),
    pytest.param(upgrade_request(settings="AAQ"), id="settings-not-6-bytes"),
    pytest.param(upgrade_request(connection="Upgrade"), id="connection-without-http2-settings"),
    pytest.param(upgrade_request(extra="Content-Length: 3\r\n") + b"abc", id="request-body"),
])
def test_requests_that_cannot_upgrade_are_answered_in_http11(server: Server,
                                                            request_bytes: bytes) -> None:
    assert http11(server, request_bytes).startswith(b"HTTP/1.1 200 OK\r\n")


def test_prior_knowledge_is_off_in_upgrade_mode(server: Server) -> None:
    received = http11(server, PREFACE + frame(SETTINGS, 0, 0))
    assert not received.startswith(b"\x00")   # an HTTP/1.1 refusal, no HTTP/2 SETTINGS
    assert received.startswith(b"HTTP/1.1 ")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install curl nghttp2-client)")
    return path


def test_curl_http2_upgrades(server: Server) -> None:
    result = subprocess.run([tool("curl"), "--silent", "--max-time", "20", "--http2",
                             "--write-out", "\n%{http_version}", f"{server.url}/hello"],
                            capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, World!\n2"


def test_curl_post_is_not_upgraded(server: Server) -> None:
    result = subprocess.run([tool("curl"), "--silent", "--max-time", "20", "--http2",
                             "--data-binary", "abc", "--write-out", "\n%{http_version}",
                             f"{server.url}/echo"], capture_output=True, timeout=30,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"\n1.1")
    assert json.loads(result.stdout.rsplit(b"\n", 1)[0])["body_length"] == 3


def test_nghttp_upgrade(server: Server) -> None:
    result = subprocess.run([tool("nghttp"), "-nvu", "--timeout=20", f"{server.url}/hello"],
                            capture_output=True, timeout=30, check=False)
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    assert "HTTP Upgrade response" in output and ":status: 200" in output


def test_both_modes_together(tmp_path_factory: pytest.TempPathFactory) -> None:
    both = start_server(tmp_path_factory.mktemp("both"), "--http2-cleartext", "both")
    try:
        with H2Connection(both.port) as conn:
            assert conn.handshake().get().status == 200   # prior knowledge
        result = subprocess.run([tool("curl"), "--silent", "--max-time", "20", "--http2",
                                 "--write-out", "\n%{http_version}", f"{both.url}/hello"],
                                capture_output=True, timeout=30, check=False)
        assert result.stdout == b"Hello, World!\n2"                  # upgrade
    finally:
        both.stop()
