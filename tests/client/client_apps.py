"""A tiny WSGI app for the client-against-real-servers tests (wsgiserve, hypercorn, granian)."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import IO
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
    if path == "/digest":        # the body hashed as it streams in
        text = _digest(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(text)))])
        return [text.encode()]
    if path == "/big":           # ?N bytes of PATTERN, streamed
        size = int(environ.get("QUERY_STRING") or 0)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return _pattern(size)
    if path == "/redirect":
        start_response("303 See Other", [("Location", "/echo"), ("Content-Length", "0")])
        return [b""]
    start_response("404 Not Found", [("Content-Length", "9")])
    return [b"not found"]


PATTERN = bytes(range(256)) * 256      # 64 KiB


def pattern_digest(size: int) -> str:
    """The SHA-256 of ``size`` bytes of PATTERN repeated (what /big?size sends)."""
    digest = hashlib.sha256()
    for piece in _pattern(size):
        digest.update(piece)
    return digest.hexdigest()


def _pattern(size: int) -> Iterator[bytes]:
    full, rest = divmod(size, len(PATTERN))
    for _ in range(full):
        yield PATTERN
    if rest:
        yield PATTERN[:rest]


def _digest(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    size = 0
    while piece := stream.read(1 << 16):
        digest.update(piece)
        size += len(piece)
    return f"{size} {digest.hexdigest()}"


def _pieces() -> Iterator[bytes]:
    for index in range(100):
        yield bytes([index]) * 1000
