"""The example Flask and Django apps, served by wsgiserve, driven through WebTest's
``TestApp`` pointed at the live server (WSGIProxy2 turns each request into real HTTP)."""
from __future__ import annotations

from typing import Any

import pytest
from serving import Server, request_bytes

pytestmark = pytest.mark.timeout(60)


def live(server: Server) -> Any:
    webtest = pytest.importorskip("webtest")
    pytest.importorskip("wsgiproxy", reason="WSGIProxy2 is needed for TestApp(URL)")
    return webtest.TestApp(server.url)


# --- Flask -----------------------------------------------------------------------------------


def test_flask_page_form_and_redirect(flask_server: Server) -> None:
    app = live(flask_server)
    page = app.get("/")
    assert page.status_int == 200 and "<h1>Messages</h1>" in page.text
    assert page.headers["Server"].startswith("wsgiserve/")
    form = page.forms["message-form"]
    form["text"] = "from webtest é"
    posted = form.submit()
    assert posted.status_int == 303
    after = posted.follow()
    assert "<li>from webtest é</li>" in after.text


def test_flask_form_validation_error(flask_server: Server) -> None:
    app = live(flask_server)
    response = app.post("/messages", {"text": "  "}, status=400)
    assert "Please write something." in response.text


def test_flask_static_assets(flask_server: Server) -> None:
    app = live(flask_server)
    css = app.get("/static/style.css")
    assert css.content_type == "text/css" and b"font-family" in css.body
    script = app.get("/static/app.js")
    assert b"autosubmit" in script.body
    etag = css.headers["ETag"]
    app.get("/static/style.css", headers={"If-None-Match": etag}, status=304)


def test_flask_json_and_404(flask_server: Server) -> None:
    app = live(flask_server)
    assert app.get("/health").json == {"status": "ok"}
    echoed = app.post("/echo", {"a": "1", "b": "two words"}).json
    assert echoed["form"] == {"a": "1", "b": "two words"}
    app.get("/missing", status=404)


def test_flask_head_of_a_static_file_keeps_the_connection_in_sync(flask_server: Server) -> None:
    """Flask serves static files through wsgi.file_wrapper: HEAD must send no body and
    leave the keep-alive connection ready for the next request (raw bytes, pipelined)."""
    with flask_server.connect() as conn:
        conn.send(request_bytes("HEAD", "/static/style.css") + request_bytes("GET", "/health"))
        head = conn.read_response(is_head=True)
        assert head.status == 200 and int(head.header("content-length") or 0) > 0
        after = conn.read_response()
        assert after.status == 200 and b'"ok"' in after.body
        assert not after.announces_close


# --- Django ----------------------------------------------------------------------------------


def test_django_form_with_csrf(django_server: Server) -> None:
    app = live(django_server)
    page = app.get("/")
    assert "csrfmiddlewaretoken" in page.text
    form = page.forms["greet-form"]
    form["name"] = "Ada"
    result = form.submit()
    assert result.status_int == 200
    assert result.html.find(id="greeting").text == "Hello, Ada!"


def test_django_rejects_a_post_without_csrf_token(django_server: Server) -> None:
    app = live(django_server)
    app.post("/greet/", {"name": "Mallory"}, status=403)


def test_django_invalid_form(django_server: Server) -> None:
    app = live(django_server)
    form = app.get("/").forms["greet-form"]
    form["name"] = "x" * 101
    assert form.submit(status=400).status_int == 400


def test_django_static_and_json(django_server: Server) -> None:
    app = live(django_server)
    css = app.get("/static/pages/style.css")
    assert css.content_type == "text/css" and b"#greeting" in css.body
    health = app.get("/health/").json
    assert health["status"] == "ok" and health["server"].startswith("wsgiserve/")
    app.get("/nope/", status=404)
