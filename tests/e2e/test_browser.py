"""A real browser: headless Chromium (Debian's ``chromium``) loads the example Flask page
served by wsgiserve, whose static script fills in and submits the form; the DOM after the
POST and its 303 redirect shows the new message and the script's mark, and the server's
access log shows the browser fetching the static assets and posting the form."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from serving import Server

pytestmark = pytest.mark.timeout(90)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium: apt-get install chromium (tools/install-test-deps.sh)")


def dump_dom(url: str, profile: Path) -> str:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
               # wait (in virtual time) for the script's submit and the redirect to settle
               "--virtual-time-budget=5000", "--dump-dom", url]
    result = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result.stdout.decode()


def test_browser_submits_the_flask_form_and_loads_static_assets(flask_server: Server,
                                                                 tmp_path: Path) -> None:
    dom = dump_dom(f"{flask_server.url}/?autosubmit=sent%20by%20chromium", tmp_path)
    assert "<li>sent by chromium</li>" in dom, dom
    assert '<p id="script-status" class="loaded">static script loaded</p>' in dom, dom
    log = flask_server.log()
    browser_lines = [line for line in log.splitlines() if "HeadlessChrome" in line]
    assert any('"POST /messages HTTP/1.1" 303' in line for line in browser_lines), log
    for asset in ("/static/style.css", "/static/app.js"):
        assert any(f'"GET {asset} HTTP/1.1" 200' in line for line in browser_lines), log
