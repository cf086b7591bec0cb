"""Real HTTP/2 clients on the cleartext port (h2c with prior knowledge, the default):
curl --http2-prior-knowledge and nghttp, 103 Early Hints as both show them, an upload,
and HTTP/1.1 on the same port (an Upgrade: h2c request is answered in HTTP/1.1: upgrade
is off by default).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from h2servers import curl, tool, wait_for_line
from serving import Server

pytestmark = pytest.mark.timeout(120)

SERVER_ARGS = ("--threads", "4")


def nghttp(*args: str) -> str:
    result = subprocess.run([tool("nghttp"), "--timeout=20", *args], capture_output=True,
                            timeout=30, check=False)
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    return output


def test_curl_prior_knowledge_reports_version_2(server: Server) -> None:
    result = curl("--http2-prior-knowledge", "--write-out", "\n%{http_version}",
                  f"{server.url}/hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, World!\n2"
    wait_for_line(server, '"GET /hello HTTP/2.0" 200 13')


def test_http11_on_the_same_port(server: Server) -> None:
    result = curl("--http1.1", "--write-out", "\n%{http_version}", f"{server.url}/hello")
    assert result.stdout == b"Hello, World!\n1.1"


def test_upgrade_h2c_is_off_by_default(server: Server) -> None:
    # curl --http2 on http:// asks for "Upgrade: h2c": answered in HTTP/1.1.
    result = curl("--http2", "--write-out", "\n%{http_version}", f"{server.url}/hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, World!\n1.1"


def test_curl_prior_knowledge_upload(server: Server, tmp_path: Path) -> None:
    body = bytes(range(256)) * 4096
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)
    result = curl("--http2-prior-knowledge", "--data-binary", f"@{upload}",
                  f"{server.url}/echo")
    assert result.returncode == 0, result.stderr
    echoed = json.loads(result.stdout)
    assert echoed["body_length"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_nghttp_prior_knowledge(server: Server) -> None:
    output = nghttp("-nv", f"{server.url}/hello")
    assert "recv (stream_id=13) :status: 200" in output
    assert "recv (stream_id=13) server: wsgiserve/" in output


def test_nghttp_shows_early_hints(server: Server) -> None:
    output = nghttp("-nv", f"{server.url}/early-hints")
    statuses = [line.split(":status: ")[1] for line in output.splitlines()
                if ":status: " in line]
    assert statuses == ["103", "103", "200"], output
    assert "link: </style.css>; rel=preload; as=style" in output
    assert "link: </app.js>; rel=preload; as=script" in output
    assert "connection:" not in output   # dropped from the hints (RFC 9113 §8.2.2)


def test_curl_shows_early_hints(server: Server) -> None:
    result = curl("--http2-prior-knowledge", "--verbose", f"{server.url}/early-hints")
    assert result.returncode == 0, result.stderr
    verbose = result.stderr.decode()
    assert "< HTTP/2 103" in verbose and "< HTTP/2 200" in verbose, verbose
    assert "< link: </style.css>; rel=preload; as=style" in verbose
    assert result.stdout == b"page"
