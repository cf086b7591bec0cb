"""The Flask and Django examples (examples/) served as deploy/ describes it: wsgiserve on a
unix socket with the example's own wsgiserve.toml (2 workers with threads), nginx with
deploy/nginx.conf in front (TLS, static files from disk). Driven through nginx with
requests, WebTest's TestApp pointed at the live site, and a headless Chromium."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    EXAMPLES,
    Certificate,
    Nginx,
    Wsgiserve,
    make_certificate,
    nginx_binary,
    site_from_deploy,
)

pytestmark = pytest.mark.timeout(120)


@dataclass
class Site:
    server: Wsgiserve
    nginx: Nginx
    certificate: Certificate

    @property
    def url(self) -> str:
        return f"https://localhost:{self.nginx.https_port}"

    def session(self) -> Any:
        requests = pytest.importorskip("requests")
        session = requests.Session()
        # Else $REQUESTS_CA_BUNDLE, when set, wins over session.verify (a requests quirk).
        session.trust_env = False
        session.verify = str(self.certificate.ca_path)
        return session

    def wsgiserve_paths(self) -> list[str]:
        """Request paths in wsgiserve's access log (the example's config logs to stdout)."""
        return re.findall(r'"[A-Z]+ (\S+) HTTP/1\.[01]"', self.server.log())


def serve_behind_nginx(tmp: Path, example: Path, static_dir: Path,
                       extra: Sequence[str] = (), env: dict[str, str] | None = None) -> Site:
    nginx_binary()
    socket_path = tmp / "wsgiserve.sock"
    (tmp / "nginx").mkdir()
    server = Wsgiserve(tmp, ["--config", "wsgiserve.toml", "--bind", f"unix:{socket_path}",
                             *extra], cwd=example, pythonpath=[example], env=env)
    certificate = make_certificate(tmp)
    nginx = Nginx(tmp / "nginx", "")
    nginx.site = site_from_deploy(
        upstream_socket=socket_path, static_dir=static_dir, certificate=certificate,
        log_dir=tmp / "nginx", http_port=nginx.http_port, https_port=nginx.https_port)
    try:
        server.start()
        nginx.start()
    except BaseException:
        nginx.stop()
        server.stop()
        raise
    return Site(server, nginx, certificate)


@pytest.fixture(scope="module")
def flask_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    pytest.importorskip("flask")
    example = EXAMPLES / "flask_app"
    site = serve_behind_nginx(tmp_path_factory.mktemp("flask-nginx"), example,
                              example / "static")
    yield site
    site.nginx.stop()
    site.server.stop()


def _collect_static(tmp: Path, example: Path) -> Path:
    """``manage.py collectstatic`` into a temporary STATIC_ROOT, as a deploy does."""
    static_root = tmp / "staticfiles"
    (tmp / "deploy_settings.py").write_text(textwrap.dedent(f"""\
        from mysite.settings import *  # noqa: F403
        STATIC_ROOT = {str(static_root)!r}
        """))
    environment = dict(os.environ, DJANGO_SETTINGS_MODULE="deploy_settings",
                       PYTHONPATH=os.pathsep.join([str(tmp), str(example)]))
    result = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"],
                            cwd=example, env=environment, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return static_root


@pytest.fixture(scope="module")
def django_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    pytest.importorskip("django")
    example = EXAMPLES / "django_project"
    tmp = tmp_path_factory.mktemp("django-nginx")
    site = serve_behind_nginx(tmp, example, _collect_static(tmp, example))
    yield site
    site.nginx.stop()
    site.server.stop()


# --- Flask -------------------------------------------------------------------------------


def test_flask_example_runs_with_two_threaded_workers(flask_site: Site) -> None:
    log = flask_site.server.log()
    assert "ready: 2 worker(s) serving" in log
    response = flask_site.session().get(f"{flask_site.url}/health", timeout=10)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_flask_page_form_and_static_through_nginx(flask_site: Site) -> None:
    session = flask_site.session()
    page = session.get(f"{flask_site.url}/", timeout=10)
    assert page.status_code == 200 and "<h1>Messages</h1>" in page.text
    assert '<link rel="stylesheet" href="/static/style.css">' in page.text
    posted = session.post(f"{flask_site.url}/messages", data={"text": "via nginx"},
                          allow_redirects=False, timeout=10)
    assert posted.status_code == 303 and posted.headers["Location"] == "/"
    empty = session.post(f"{flask_site.url}/messages", data={"text": " "}, timeout=10)
    assert empty.status_code == 400 and "Please write something." in empty.text
    echoed = session.post(f"{flask_site.url}/echo", data={"a": "1", "b": "é"}, timeout=10)
    assert echoed.json()["form"] == {"a": "1", "b": "é"}
    asset = session.get(f"{flask_site.url}/static/app.js", timeout=10)
    assert asset.status_code == 200 and "autosubmit" in asset.text
    assert "/messages" in flask_site.wsgiserve_paths()
    assert not [p for p in flask_site.wsgiserve_paths() if p.startswith("/static/")]


def test_flask_example_through_nginx_with_webtest(flask_site: Site,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    webtest = pytest.importorskip("webtest")
    pytest.importorskip("wsgiproxy")
    # WSGIProxy2 makes its own HTTPS connections with the default trust store.
    monkeypatch.setenv("SSL_CERT_FILE", str(flask_site.certificate.ca_path))
    app = webtest.TestApp(flask_site.url)
    page = app.get("/")
    form = page.forms["message-form"]
    form["text"] = "sent by webtest"
    result = form.submit(status=303)
    # WSGIProxy2 makes the app's relative Location "/" absolute.
    assert result.headers["Location"].rstrip("/") == flask_site.url
    assert "<h1>Messages</h1>" in result.follow().text
    assert app.get("/health").json == {"status": "ok"}


# --- Django ------------------------------------------------------------------------------


def test_django_csrf_form_round_trip_through_nginx(django_site: Site) -> None:
    session = django_site.session()
    page = session.get(f"{django_site.url}/", timeout=10)
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token and "csrftoken" in session.cookies
    # Over HTTPS Django also checks the Referer against the host: both come from nginx's
    # X-Forwarded-Proto/-Host/-Port, which wsgiserve honours from its trusted peer.
    referer = {"Referer": f"{django_site.url}/"}
    greeted = session.post(f"{django_site.url}/greet/", timeout=10, headers=referer,
                           data={"csrfmiddlewaretoken": token.group(1), "name": "Ada"})
    assert greeted.status_code == 200, greeted.text[:2000]
    assert '<p id="greeting">Hello, Ada!</p>' in greeted.text
    forged = django_site.session().post(f"{django_site.url}/greet/", data={"name": "Eve"},
                                        headers=referer, timeout=10)
    assert forged.status_code == 403
    wrong_origin = session.post(f"{django_site.url}/greet/", timeout=10,
                                headers={"Referer": "https://evil.example/"},
                                data={"csrfmiddlewaretoken": token.group(1), "name": "Eve"})
    assert wrong_origin.status_code == 403


def test_django_static_files_from_collectstatic_served_by_nginx(django_site: Site) -> None:
    session = django_site.session()
    page = session.get(f"{django_site.url}/", timeout=10)
    href = re.search(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    assert href and href.group(1) == "/static/pages/style.css"
    asset = session.get(f"{django_site.url}{href.group(1)}", timeout=10)
    assert asset.status_code == 200 and asset.headers["Content-Type"].startswith("text/css")
    assert "max-age=604800" in asset.headers["Cache-Control"]
    assert not [p for p in django_site.wsgiserve_paths() if p.startswith("/static/")]
    health = session.get(f"{django_site.url}/health/", timeout=10).json()
    assert health["status"] == "ok" and health["server"].startswith("wsgiserve/")


def test_django_example_through_nginx_with_webtest(django_site: Site,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    webtest = pytest.importorskip("webtest")
    pytest.importorskip("wsgiproxy")
    monkeypatch.setenv("SSL_CERT_FILE", str(django_site.certificate.ca_path))
    app = webtest.TestApp(django_site.url)
    page = app.get("/")
    form = page.forms["greet-form"]
    form["name"] = "Grace"
    result = form.submit(headers={"Referer": f"{django_site.url}/"})
    assert result.status_int == 200
    assert result.html.find(id="greeting").get_text() == "Hello, Grace!"


# --- a browser ---------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium (Debian package chromium; tools/install-test-deps.sh)")


def test_chromium_submits_the_flask_form_through_nginx(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    chromium = _chromium()
    example = EXAMPLES / "flask_app"
    # One worker: the example keeps its messages in the worker's memory, and the page
    # after the redirect must come from the worker that stored the message.
    site = serve_behind_nginx(tmp_path, example, example / "static",
                              extra=["--workers", "1"])
    try:
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update",
                   "--disable-sync", "--disable-dev-shm-usage", "--ignore-certificate-errors",
                   f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                   "--dump-dom", f"{site.url}/?autosubmit=sent%20through%20nginx"]
        result = subprocess.run(command, capture_output=True, timeout=60, check=False)
        dom = result.stdout.decode()
        assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
        assert "<li>sent through nginx</li>" in dom, dom
        assert '<p id="script-status" class="loaded">static script loaded</p>' in dom, dom
        nginx_log = site.nginx.access_log()
        browser = [line for line in nginx_log.splitlines() if "HeadlessChrome" in line]
        assert any('"POST /messages HTTP/1.1" 303' in line for line in browser), nginx_log
        # The script ran, and it came from nginx's disk (the site logs no static requests),
        # while the form went to wsgiserve.
        assert "/messages" in site.wsgiserve_paths()
        assert not [p for p in site.wsgiserve_paths() if p.startswith("/static/")]
    finally:
        site.nginx.stop()
        site.server.stop()
