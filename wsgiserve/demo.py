"""The bundled demo WSGI application, served when ``wsgiserve`` is given no APP.

``/`` says the server is running, ``POST /echo`` echoes a form, ``/healthz`` answers ok.
Plain PEP 3333 code with no wsgiserve internals; imported only by name
(``wsgiserve.demo:app``) through ``appload``.
"""
from __future__ import annotations

import html
import os
import sys
import urllib.parse
from collections.abc import Iterable
from typing import Final
from wsgiref.types import StartResponse, WSGIEnvironment

from wsgiserve import __version__

__all__ = ["app"]

# A demo form never needs more; reading is bounded so the demo cannot be used to fill memory.
MAX_FORM_BYTES: Final = 64 * 1024

_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wsgiserve</title></head>
<body>
<h1>wsgiserve {version} is running</h1>
<p>This is the bundled demo app. Serve your own with <code>wsgiserve module:app</code>.</p>
<p>Python {python}, worker pid {pid}, SCRIPT_NAME <code>{script_name}</code>.</p>
<form method="post" action="{echo_url}">
<label>Say something: <input name="message"></label> <button>Echo</button>
</form>
<p><a href="{health_url}">/healthz</a></p>
</body></html>
"""


def _respond(start_response: StartResponse, status: str, body: bytes, content_type: str,
             extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
    start_response(status, headers)
    return [body]


def _read_form(environ: WSGIEnvironment) -> dict[str, list[str]] | None:
    """The urlencoded form in the body, or None when it is too large or malformed."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length < 0 or length > MAX_FORM_BYTES:
        return None
    body = environ["wsgi.input"].read(length) if length else b""
    return urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _index(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    script_name = environ.get("SCRIPT_NAME", "")
    page = _PAGE.format(
        version=html.escape(__version__), python=html.escape(sys.version.split()[0]),
        pid=os.getpid(),  # shows which worker answered
        script_name=html.escape(script_name or "/"),
        echo_url=html.escape(script_name + "/echo"),
        health_url=html.escape(script_name + "/healthz"))
    return _respond(start_response, "200 OK", page.encode(), "text/html; charset=utf-8")


def _echo(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    if environ["REQUEST_METHOD"] != "POST":
        return _respond(start_response, "405 Method Not Allowed", b"use POST\n",
                        "text/plain; charset=utf-8", [("Allow", "POST")])
    form = _read_form(environ)
    if form is None:
        return _respond(start_response, "413 Content Too Large", b"form too large\n",
                        "text/plain; charset=utf-8")
    items = "".join(f"<li><b>{html.escape(key)}</b>: {html.escape(value)}</li>"
                    for key, values in form.items() for value in values)
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>echo</title>'
            f"</head><body><h1>You sent</h1><ul>{items}</ul></body></html>\n")
    return _respond(start_response, "200 OK", page.encode(), "text/html; charset=utf-8")


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The demo application (PEP 3333)."""
    path = environ.get("PATH_INFO", "") or "/"
    method = environ["REQUEST_METHOD"]
    if path == "/healthz":
        return _respond(start_response, "200 OK", b"ok\n", "text/plain; charset=utf-8")
    if path == "/echo":
        return _echo(environ, start_response)
    if path == "/" and method in ("GET", "HEAD"):
        return _index(environ, start_response)
    if path == "/":
        return _respond(start_response, "405 Method Not Allowed", b"use GET\n",
                        "text/plain; charset=utf-8", [("Allow", "GET, HEAD")])
    return _respond(start_response, "404 Not Found", b"not found\n",
                    "text/plain; charset=utf-8")
