"""WSGI apps for the HTTP/2 server tests (plain PEP 3333, stdlib only), served as
``tests.http2_server.h2_apps:app`` with the repository on PYTHONPATH.

``app`` routes the paths below, and everything else to ``tests.apps.raw``; all but the
routes in ``_UNVALIDATED`` run inside ``wsgiref.validate``'s validator (its warnings are
errors), so a PEP 3333 slip by the server becomes a 500 and a traceback in the log.
CONNECT requests and ``OPTIONS *`` (which the validator refuses) go to the fallback.

Routes (query arguments in brackets):
  /sleep [s]               sleeps s seconds (default 0.5), then "slept"
  /environ-h2              JSON: the str values of the environ, and the types of the
                           wsgi.* values the tests look at
  /slow-read [delay, piece]  reads the body piece bytes at a time, sleeping delay
                           seconds after each read; JSON: length and SHA-256
  /trailers                reads the body to its end; JSON: its length and
                           wsgiserve.request_trailers
  /early-hints             two 103 Early Hints heads, then 200
  /connection-headers      a response with connection-specific fields (not validated:
                           the validator refuses them, the server must drop them)
  /one-piece [size]        size bytes as a one-item list (not validated: the validator
                           would wrap the list)
  /cookie-echo             JSON: HTTP_COOKIE
  /large-header [size]     a response with an X-Large header of size bytes
  /late-big [s, size]      sleeps s seconds, then size bytes (Content-Length)
  /gauge [s]               sleeps s seconds (default 0.3) counted as "in the app"; JSON:
                           the most calls in the app at once since /gauge-reset
  /gauge-reset             forgets that most
  /calls [name]            counts a call under name; JSON: every count so far
  /response-trailers       a streamed body, then trailers through
                           wsgiserve.response_trailers
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment
from wsgiref.validate import validator

from tests.apps import raw as fallback

_Handler = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]


def _query(environ: WSGIEnvironment, key: str, default: str) -> str:
    values = parse_qs(environ.get("QUERY_STRING", "")).get(key)
    return values[0] if values else default


def _json(start_response: StartResponse, data: object) -> list[bytes]:
    body = json.dumps(data, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _sleep(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    time.sleep(float(_query(environ, "s", "0.5")))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"slept"]


def _environ(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    data: dict[str, object] = {k: v for k, v in environ.items() if type(v) is str}
    data["wsgi.input_terminated"] = environ.get("wsgi.input_terminated")
    data["has_early_hints"] = callable(environ.get("wsgi.early_hints"))
    data["has_file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
    data["wsgi.multithread"] = environ["wsgi.multithread"]
    return _json(start_response, data)


def _slow_read(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    delay_s = float(_query(environ, "delay", "0.01"))
    piece = int(_query(environ, "piece", "65536"))
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    length = 0
    while data := stream.read(piece):
        digest.update(data)
        length += len(data)
        time.sleep(delay_s)
    return _json(start_response, {"length": length, "sha256": digest.hexdigest()})


def _trailers(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    length = 0
    while piece := environ["wsgi.input"].read(65536):
        length += len(piece)
    trailers = environ.get("wsgiserve.request_trailers")
    return _json(start_response, {"length": length, "trailers": trailers})


def _early_hints(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    hints = environ["wsgi.early_hints"]
    hints([("Link", "</style.css>; rel=preload; as=style")])
    hints([("Link", "</app.js>; rel=preload; as=script"), ("Connection", "close")])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"page"]


def _connection_headers(environ: WSGIEnvironment,
                        start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close"),
                              ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"),
                              ("Upgrade", "h2c"), ("Proxy-Connection", "close"),
                              ("X-Kept", "yes"), ("Content-Length", "2")])
    return [b"ok"]


def _large_header(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    size = int(_query(environ, "size", "20000"))
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Large", "h" * size),
                              ("Content-Length", "2")])
    return [b"ok"]


_gauge_lock = threading.Lock()
_gauge_now_and_most = [0, 0]


def _gauge(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    with _gauge_lock:
        _gauge_now_and_most[0] += 1
        _gauge_now_and_most[1] = max(_gauge_now_and_most)
    time.sleep(float(_query(environ, "s", "0.3")))
    with _gauge_lock:
        _gauge_now_and_most[0] -= 1
        most = _gauge_now_and_most[1]
    return _json(start_response, {"most": most})


def _gauge_reset(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    with _gauge_lock:
        _gauge_now_and_most[1] = _gauge_now_and_most[0]
    return _json(start_response, {"most": _gauge_now_and_most[1]})


def _late_big(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    time.sleep(float(_query(environ, "s", "1")))
    size = int(_query(environ, "size", "100000"))
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return [b"x" * size]


_calls: dict[str, int] = {}


def _count_calls(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    name = _query(environ, "name", "")
    with _gauge_lock:
        if name:
            _calls[name] = _calls.get(name, 0) + 1
        counts = dict(_calls)
    return _json(start_response, counts)


def _cookie_echo(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    return _json(start_response, {"cookie": environ.get("HTTP_COOKIE")})


def _response_trailers(environ: WSGIEnvironment,
                       start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Trailer", "x-checksum")])
    yield b"part one,"
    yield b"part two"
    environ["wsgiserve.response_trailers"]([("X-Checksum", "abc123")])


def _one_piece(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    size = int(_query(environ, "size", "100000"))
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return [b"o" * size]


ROUTES: dict[str, _Handler] = {
    "/sleep": _sleep,
    "/environ-h2": _environ,
    "/slow-read": _slow_read,
    "/trailers": _trailers,
    "/early-hints": _early_hints,
    "/cookie-echo": _cookie_echo,
    "/large-header": _large_header,
    "/late-big": _late_big,
    "/calls": _count_calls,
    "/gauge": _gauge,
    "/gauge-reset": _gauge_reset,
    "/response-trailers": _response_trailers,
}
_UNVALIDATED: dict[str, _Handler] = {
    "/connection-headers": _connection_headers,
    "/one-piece": _one_piece,
}


def _router(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    handler = ROUTES.get(environ["PATH_INFO"], fallback)
    return handler(environ, start_response)


_validated = validator(_router)


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    handler = _UNVALIDATED.get(environ["PATH_INFO"])
    if environ["REQUEST_METHOD"] == "CONNECT" or environ["PATH_INFO"] == "*":
        handler = fallback  # the validator refuses both; the fallback answers 404
    if handler is not None:
        return handler(environ, start_response)
    return _validated(environ, start_response)


application: WSGIApplication = app
