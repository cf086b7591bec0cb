"""A small Flask app served by wsgiserve: a page, a form POST and a static asset.

Run from this folder: ``wsgiserve --config wsgiserve.toml`` (or ``python -m wsgiserve
--config wsgiserve.toml``). Used by tests/e2e/ (WebTest and a headless browser).
"""
from __future__ import annotations

from flask import Flask, redirect, render_template, request, url_for

app = Flask(__name__)
_messages: list[str] = []  # per worker process: enough for a demo


@app.get("/")
def index() -> str:
    return render_template("index.html", messages=_messages)


@app.post("/messages")
def post_message() -> object:
    text = request.form.get("text", "").strip()
    if not text:
        return render_template("index.html", messages=_messages,
                               error="Please write something."), 400
    _messages.append(text)
    return redirect(url_for("index"), code=303)


@app.post("/echo")
def echo() -> dict[str, object]:
    """The submitted form as JSON (the browser test's results page)."""
    return {"form": request.form.to_dict(), "content_type": request.content_type}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
