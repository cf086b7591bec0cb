"""gunicorn flags that change what a running server does, checked on real processes:
StatsD metrics after real requests, --daemon with a pid file, --root-path, --no-sendfile
and --paste."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from arbiter_processes import ServerProcess, get
from processes import (
    READY,
    child_environment,
    children_of,
    is_alive,
    kill_by_pid,
    listening_port,
    runs_wsgiserve,
    wait_for_log,
    wait_until,
)

StartServer = Callable[..., ServerProcess]

# The app of these tests: its environ's SCRIPT_NAME and PATH_INFO, and a file response whose
# descriptor holds A's while read() gives B's, so the client sees which way it was sent.
FLAGS_APP = textwrap.dedent('''\
    import json
    import os
    import tempfile

    class TwoFacedFile:
        def __init__(self, size):
            self.size = size
            self.file = tempfile.TemporaryFile()
            self.file.write(b"A" * size)
            self.file.seek(0)
            self.left = size

        def fileno(self):
            return self.file.fileno()

        def read(self, size=-1):
            size = self.left if size < 0 else min(size, self.left)
            self.left -= size
            return b"B" * size

        def close(self):
            self.file.close()

    def app(environ, start_response):
        if environ["PATH_INFO"].endswith("/file"):
            start_response("200 OK", [("Content-Length", "1000")])
            return environ["wsgi.file_wrapper"](TwoFacedFile(1000))
        body = json.dumps([environ["SCRIPT_NAME"], environ["PATH_INFO"]]).encode()
        status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK"
        start_response(status, [("Content-Length", str(len(body)))])
        return [body]
''')


@pytest.fixture
def flags_app(app_dir: Path) -> str:
    (app_dir / "flags_app.py").write_text(FLAGS_APP)
    return "flags_app:app"


def test_statsd_receives_gunicorns_metrics_from_a_server(start_server: StartServer,
                                                         flags_app: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd:
        statsd.bind(("127.0.0.1", 0))
        statsd.settimeout(10)
        host, port = statsd.getsockname()
        server = start_server("--workers", "2", "--statsd-host", f"{host}:{port}",
                              "--statsd-prefix", "shop", "--dogstatsd-tags", "env:test",
                              app=flags_app)
        statuses = [get(server.port, path)[0] for path in ("/a", "/b", "/missing")]
        assert statuses == [200, 200, 404]
        lines: list[str] = []

        def seen_all() -> bool:
            lines.extend(statsd.recv(65536).decode().split("\n"))
            return (sum(line.startswith("shop.gunicorn.requests:") for line in lines) == 3
                    and any(line.startswith("shop.gunicorn.workers:2|g") for line in lines))
        wait_until(seen_all, 10, interval_s=0, message="the StatsD metrics")
    requests = [line for line in lines if ".request" in line]
    assert sorted(requests, key=lambda line: line.split(":")[0]) == sorted([
        *(line for line in requests if line.startswith("shop.gunicorn.request.duration:")),
        "shop.gunicorn.request.status.200:1|c|@1.0|#env:test",
        "shop.gunicorn.request.status.200:1|c|@1.0|#env:test",
        "shop.gunicorn.request.status.404:1|c|@1.0|#env:test",
        *["shop.gunicorn.requests:1|c|@1.0|#env:test"] * 3,
    ], key=lambda line: line.split(":")[0])
    durations = [line for line in requests if line.startswith("shop.gunicorn.request.duration:")]
    assert len(durations) == 3
    for line in durations:
        value, kind = line.split(":")[1].split("|")[:2]
        assert kind == "ms" and float(value) >= 0
    assert "shop.gunicorn.workers:2|g|#env:test" in lines


def test_root_path_is_script_name(start_server: StartServer, flags_app: str) -> None:
    server = start_server("--root-path", "/api", app=flags_app)
    assert get(server.port, "/api/users/7")[1] == b'["/api", "/users/7"]'
    assert get(server.port, "/api")[1] == b'["/api", ""]'
    assert get(server.port, "/other")[1] == b'["/api", "/other"]'


@pytest.mark.parametrize(("flags", "body"), [
    pytest.param([], b"A" * 1000, id="sendfile"),
    pytest.param(["--no-sendfile"], b"B" * 1000, id="no-sendfile"),
])
def test_no_sendfile_reads_the_file(start_server: StartServer, flags_app: str,
                                    flags: list[str], body: bytes) -> None:
    server = start_server(*flags, app=flags_app)
    assert get(server.port, "/file")[:2] == (200, body)


def test_paste_app_is_served(start_server: StartServer, app_dir: Path) -> None:
    pytest.importorskip("paste.deploy")
    (app_dir / "site.ini").write_text("[app:main]\npaste.app_factory = paste_site:make\n"
                                      "greeting = hello from paste\n")
    (app_dir / "paste_site.py").write_text(textwrap.dedent('''\
        def make(global_config, greeting):
            def app(environ, start_response):
                start_response("200 OK", [("Content-Length", str(len(greeting)))])
                return [greeting.encode()]
            return app
    '''))
    server = start_server("--paste", str(app_dir / "site.ini"), app="")
    assert get(server.port, "/")[:2] == (200, b"hello from paste")


@pytest.mark.parametrize("keeps_stdio", [False, True], ids=["daemon", "stdio-inheritance"])
def test_daemon_detaches_and_writes_its_own_pid(app_dir: Path, flags_app: str,
                                                keeps_stdio: bool) -> None:
    pid_file = app_dir / "server.pid"
    log_file = app_dir / "server.log"
    output = app_dir / "output.txt"
    command = [sys.executable, "-m", "wsgiserve", "--daemon", "--pid", str(pid_file),
               "--bind", "127.0.0.1:0", "--error-logfile", str(log_file), flags_app]
    if keeps_stdio:
        command.insert(3, "--enable-stdio-inheritance")
    environment = child_environment([app_dir])
    with output.open("wb") as stdout:
        started = subprocess.run(command, cwd=app_dir, env=environment, stdout=stdout,
                                 stderr=subprocess.STDOUT, timeout=30, check=False)
    assert (started.returncode, output.read_bytes()) == (0, b"")
    daemon_pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(),
                                15, message="the pid file"))
    workers: list[int] = []
    try:
        log = wait_for_log(log_file.read_text, None, READY, 15)
        assert f"[{daemon_pid}]" in log  # the arbiter that logs is the one in the pid file
        assert daemon_pid != os.getpid() and runs_wsgiserve(daemon_pid)
        assert os.getsid(daemon_pid) != os.getsid(0)  # a session of its own
        assert Path(f"/proc/{daemon_pid}/fd/0").resolve() == Path(os.devnull)
        for fd in (1, 2):
            assert Path(f"/proc/{daemon_pid}/fd/{fd}").resolve() == (
                output if keeps_stdio else Path(os.devnull))
        assert get(listening_port(log), "/x")[:2] == (200, b'["", "/x"]')
        workers = children_of(daemon_pid)
        os.kill(daemon_pid, signal.SIGTERM)
        wait_until(lambda: not is_alive(daemon_pid), 15, message="the daemon to stop")
        assert not pid_file.exists()
    finally:
        kill_by_pid([pid for pid in (daemon_pid, *workers) if runs_wsgiserve(pid)])
