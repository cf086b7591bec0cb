"""Process helpers for the arbiter tests (imported by conftest and the tests): start ``python -m wsgiserve``, read its log, find
its workers in /proc, drive keep-alive load, and always clean up by PID (the process helpers
are shared, in ``tests/processes.py``).

Servers bind ``127.0.0.1:0`` and report the port in their log ("Listening at: ..."); no test
picks a free port in advance. Every wait has a deadline.
"""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from processes import (
    READY,
    child_environment,
    children_of,
    listening_port,
    listening_url,
    spawn,
    stop_by_pid,
    wait_for_log,
    wait_until,
)

# The test apps: written into each test's directory, loaded by module name.
APP_SOURCE = textwrap.dedent('''\
    import os
    import time

    VERSION = b"v1"


    def app(environ, start_response):
        query = environ.get("QUERY_STRING", "")
        if query.startswith("sleep="):
            time.sleep(float(query[len("sleep="):]))  # the hung-request line
        body = VERSION + b" " + str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body))),
                                  ("X-Worker-Pid", str(os.getpid())),
                                  ("X-Master-Pid", str(os.getppid()))])
        return [body]
''')


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- the server process -------------------------------------------------------------------


class ServerProcess:
    """``python -m wsgiserve ARGS`` with stdout and stderr in ``log_path``."""

    def __init__(self, directory: Path, args: Sequence[str], *,
                 env: dict[str, str] | None = None, pass_fds: Sequence[int] = (),
                 command: Sequence[str] | None = None) -> None:
        self.directory = directory
        self.log_path = directory / f"server-{time.monotonic_ns()}.log"
        self.args = list(args)
        # PYTHONDONTWRITEBYTECODE: an app rewritten within a second
        self.environment = child_environment(
            [directory], {"PYTHONDONTWRITEBYTECODE": "1", **(env or {})})
        self.command = list(command or [sys.executable, "-m", "wsgiserve"]) + self.args
        self.pass_fds = tuple(pass_fds)
        self.process: subprocess.Popen[bytes] | None = None
        self.known_pids: set[int] = set()

    def start(self) -> ServerProcess:
        self.process = spawn(self.command, self.log_path, cwd=self.directory,
                             env=self.environment, pass_fds=self.pass_fds)
        self.known_pids.add(self.process.pid)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def wait_for_log(self, pattern: str, timeout_s: float = 10.0, *, count: int = 1,
                     while_running: bool = True) -> str:
        """Wait until ``pattern`` (a regex) has matched ``count`` times; returns the log.
        With ``while_running``, fail early if the process we started exits first."""
        return wait_for_log(self.log, self.process, pattern, timeout_s, count=count,
                            while_running=while_running)

    def wait_ready(self, timeout_s: float = 15.0) -> ServerProcess:
        self.wait_for_log(READY, timeout_s)
        return self

    @property
    def url(self) -> str:
        return listening_url(self.log())

    @property
    def port(self) -> int:
        return listening_port(self.log())

    def workers(self, master: int | None = None) -> list[int]:
        found = children_of(self.pid if master is None else master)
        self.known_pids.update(found)
        return found

    def wait_workers(self, count: int, timeout_s: float = 10.0, *,
                     exclude: Sequence[int] = (), master: int | None = None) -> list[int]:
        current: list[int] = []

        def settled() -> bool:
            current[:] = self.workers(master)
            return len(current) == count and not set(current) & set(exclude)
        try:
            wait_until(settled, timeout_s, message=f"{count} workers")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; now {current}\n{self.log()[-4000:]}") from None
        return current

    def signal(self, signum: int, pid: int | None = None) -> None:
        os.kill(self.pid if pid is None else pid, signum)

    def wait_exit(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """TERM the master; after 10 s SIGKILL every process of ours still alive, by PID."""
        if self.process is not None:
            stop_by_pid(self.process, self.known_pids)


# --- clients ------------------------------------------------------------------------------


def get(port: int, path: str = "/", *, timeout_s: float = 5.0,
        headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, body, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


@dataclass
class LoadResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    workers: set[str] = field(default_factory=set)
    masters: set[str] = field(default_factory=set)


class KeepAliveLoad:
    """``threads`` http.client keep-alive clients in a closed loop, bounded by
    ``max_requests`` per thread and ``max_seconds``. Counts every non-2xx and exception."""

    def __init__(self, port: int, *, threads: int = 4, path: str = "/",
                 max_requests: int = 50_000, max_seconds: float = 60.0) -> None:
        self.port = port
        self.path = path
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self._halt = threading.Event()
        self._locals = [LoadResult() for _ in range(threads)]
        self._threads = [threading.Thread(target=self._run, args=(local,), daemon=True)
                         for local in self._locals]

    def __enter__(self) -> KeepAliveLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, local: LoadResult) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_requests):
            if self._halt.is_set() or time.monotonic() >= deadline:
                break
            is_reused = conn.sock is not None
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                local.failures.append(f"{type(exc).__name__}{'(reused)' if is_reused else ''}"
                                      f" at {time.monotonic():.2f}")
                time.sleep(0.01)
                continue
            if 200 <= response.status < 300:
                local.ok += 1
                local.workers.add(response.getheader("X-Worker-Pid", ""))
                local.masters.add(response.getheader("X-Master-Pid", ""))
            else:
                local.failures.append(f"status {response.status}")
        conn.close()

    def snapshot_ok(self) -> int:
        """Requests answered so far (read while the clients run: an int read is atomic)."""
        return sum(local.ok for local in self._locals)

    def stop(self) -> LoadResult:
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout=15)
        result = LoadResult()
        for local in self._locals:
            result.ok += local.ok
            result.failures += local.failures
            result.workers |= local.workers
            result.masters |= local.masters
        return result


def assert_no_failed_requests(result: LoadResult) -> None:
    """Zero failed requests: no reset, no early close of a reused connection, no non-2xx."""
    assert result.ok > 0
    assert result.failures == [], result.failures


def raise_nofile(minimum: int) -> None:
    """Raise this process's RLIMIT_NOFILE soft limit to at least ``minimum`` (or skip)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= minimum:
        return
    if hard != resource.RLIM_INFINITY and hard < minimum:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {minimum}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (minimum, hard))


def connect(port: int, timeout_s: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
