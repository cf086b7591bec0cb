"""Tiny WSGI apps for the worker, connection and WSGI tests (plain PEP 3333, stdlib only).

``raw`` routes by PATH_INFO; ``app`` is the same router inside ``wsgiref.validate``'s
validator, with its warnings turned into errors, so any PEP 3333 slip by the server (or
by these apps) becomes a 500 and a traceback in the server's log. ``hello`` is the
benchmark's hello world. Served as ``tests.apps:app`` with the repository on PYTHONPATH.

Routes (query arguments in brackets):
  /hello                   13 bytes, Content-Length
  /echo, /echo/...         JSON: method, SCRIPT_NAME, PATH_INFO, query, the HTTP_* keys,
                           REMOTE_PORT, and the length and SHA-256 of the body (read in
                           64 KiB pieces, so uploads of any size stream)
  /environ                 JSON of every str value in the environ
  /ignore-body             answers without reading the body
  /stream [n, size]        n parts of size bytes, no Content-Length (chunked on 1.1)
  /big [size, block]       size bytes of b"x" in blocks, with Content-Length
  /status [code]           that status, yielding a body the server must drop for 204/304
  /write                   the legacy write() callable, then an iterable
  /error-before            raises before start_response (expect 500)
  /error-after             raises after the first body piece (expect an aborted response)
  /short                   declares 10 bytes, sends 5 (expect close after the response)
  /file [path, size]       wsgi.file_wrapper over a real file (raw only: the validator
                           hides the wrapper from the server)
  /file-bytesio [size]     wsgi.file_wrapper over a BytesIO (no fileno)
  /slow-tail [s]           head and a first piece at once, the last piece s seconds later
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment
from wsgiref.validate import WSGIWarning, validator

warnings.simplefilter("error", WSGIWarning)

READ_BYTES = 65536
_HandlerResult = Iterable[bytes]
_Handler = Callable[[WSGIEnvironment, StartResponse], _HandlerResult]


def _query(environ: WSGIEnvironment, key: str, default: str) -> str:
    values = parse_qs(environ.get("QUERY_STRING", "")).get(key)
    return values[0] if values else default


def _json(start_response: StartResponse, data: object, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(data, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    body = b"Hello, World!"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _echo(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    length = 0
    while piece := stream.read(READ_BYTES):
        digest.update(piece)
        length += len(piece)
    return _json(start_response, {
        "method": environ["REQUEST_METHOD"],
        "script_name": environ["SCRIPT_NAME"],
        "path_info": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "remote_port": environ["REMOTE_PORT"],
        "content_length": environ.get("CONTENT_LENGTH"),
        "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
        "body_length": length,
        "body_sha256": digest.hexdigest(),
    })


def _environ(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    return _json(start_response, {k: v for k, v in environ.items() if type(v) is str})


def _ignore_body(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    body = b"ignored"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _stream(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    parts = int(_query(environ, "n", "3"))
    size = int(_query(environ, "size", "10"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for index in range(parts):
        yield bytes([0x61 + index % 26]) * size


def _big(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    size = int(_query(environ, "size", "1048576"))
    block_size = int(_query(environ, "block", "65536"))
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    block = b"x" * block_size
    while size > 0:
        piece = block if size >= block_size else block[:size]
        size -= len(piece)
        yield piece


def _status(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    code = int(_query(environ, "code", "200"))
    headers = [] if code in (204, 304) else [("Content-Type", "text/plain")]
    start_response(f"{code} Status {code}", headers)
    return [b"this body must not be sent for 204 and 304"]


def _write(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"first,")
    write(b"second,")
    return [b"", b"tail"]


def _error_before(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    raise RuntimeError("SECRET-DETAIL boom before the head")


def _error_after(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial"
    raise RuntimeError("boom after the head")


def _short(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"12345"]


def _file(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
    path = _query(environ, "path", "")
    size = os.path.getsize(path)
    declared = int(_query(environ, "size", str(size)))
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(declared))])
    return environ["wsgi.file_wrapper"](open(path, "rb"), 65536)  # noqa: SIM115


def _file_bytesio(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
    size = int(_query(environ, "size", "100000"))
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return environ["wsgi.file_wrapper"](io.BytesIO(data), 8192)


def _slow_tail(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    delay_s = float(_query(environ, "s", "1.0"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"started;"
    time.sleep(delay_s)  # the request in flight while the test stops the server
    yield b"finished"


ROUTES: dict[str, _Handler] = {
    "/hello": hello,
    "/echo": _echo,
    "/environ": _environ,
    "/ignore-body": _ignore_body,
    "/stream": _stream,
    "/big": _big,
    "/status": _status,
    "/write": _write,
    "/error-before": _error_before,
    "/error-after": _error_after,
    "/short": _short,
    "/file": _file,
    "/file-bytesio": _file_bytesio,
    "/slow-tail": _slow_tail,
}


def raw(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    handler = ROUTES.get(path) or (_echo if path.startswith("/echo/") else None)
    if handler is None:
        body = b"not found"
        start_response("404 Not Found", [("Content-Type", "text/plain"),
                                         ("Content-Length", str(len(body)))])
        return [body]
    return handler(environ, start_response)


app: WSGIApplication = validator(raw)
