"""A tiny WSGI app for the client-against-wsgiserve tests (loaded by the real server)."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from wsgiref.types import StartResponse, WSGIEnvironment


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        text = f"{environ['REQUEST_METHOD']} {len(body)} {hashlib.sha256(body).hexdigest()}"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(text)))])
        return [text.encode()]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _pieces()
    if path == "/redirect":
        start_response("303 See Other", [("Location", "/echo"), ("Content-Length", "0")])
        return [b""]
    start_response("404 Not Found", [("Content-Length", "9")])
    return [b"not found"]


def _pieces() -> Iterator[bytes]:
    for index in range(100):
        yield bytes([index]) * 1000
