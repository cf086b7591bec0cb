"""The benchmark's hello world as a Flask app: the same 13 bytes as tests/apps.py's ``hello``
at /hello, text/plain with Content-Length, plus Flask's routing, request and response
objects. Served as ``flask_hello:app`` with benchmarks/ on PYTHONPATH.
"""
from __future__ import annotations

from flask import Flask, Response

app = Flask(__name__)


@app.get("/hello")
def hello() -> Response:
    return Response(b"Hello, World!", mimetype="text/plain")
