"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-
pipe``: JSON messages ending in NUL on the child's fds 3 and 4), so a test can load a
page and evaluate JavaScript in it, e.g. ``performance.getEntries()``. Every wait has a
deadline; the browser is closed (then killed by PID if it lingers) on exit.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium: apt-get install chromium (tools/install-test-deps.sh)")


class Browser:
    """``with Browser(profile, extra_args) as browser: browser.open(url)``."""

    def __init__(self, profile: Path, *args: str) -> None:
        self.profile = profile
        self.args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                     "--remote-debugging-pipe", *args, "about:blank"]
        self.process: subprocess.Popen[bytes] | None = None
        self._to_browser = -1
        self._from_browser = -1
        self._buffer = b""
        self._next_id = 0
        self.session = ""

    def __enter__(self) -> Browser:
        commands_read, self._to_browser = os.pipe()
        self._from_browser, replies_write = os.pipe()
        # bash (dash takes one-digit descriptors only) puts the pipes on fds 3 and 4,
        # where Chromium looks for them.
        command = ["bash", "-c", f'exec "$0" "$@" 3<&{commands_read} 4>&{replies_write}',
                   chromium(), *self.args]
        with open(self.profile.parent / "chromium.log", "wb") as log:
            self.process = subprocess.Popen(command, pass_fds=(commands_read, replies_write),
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        os.close(commands_read)
        os.close(replies_write)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None
        try:
            self.call("Browser.close", timeout_s=5)
        except (TimeoutError, EOFError, OSError, AssertionError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        os.close(self._to_browser)
        os.close(self._from_browser)

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             timeout_s: float = 20.0, session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result (raises AssertionError on an error)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session or (session is None and self.session):
            message["sessionId"] = session or self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\0" in self._buffer:
                raw, _, self._buffer = self._buffer.partition(b"\0")
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    assert "error" not in reply, reply
                    result: dict[str, Any] = reply["result"]
                    return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply to {method}")
            readable, _, _ = select.select([self._from_browser], [], [], remaining)
            if readable:
                data = os.read(self._from_browser, 65536)
                if not data:
                    raise EOFError("the browser closed its pipe")
                self._buffer += data

    def open(self, url: str) -> None:
        """A new tab on ``url``; later calls go to it."""
        target = self.call("Target.createTarget", {"url": url}, session="")
        attached = self.call("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session="")
        self.session = attached["sessionId"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True})
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> Any:
        """Evaluate ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            time.sleep(0.1)
