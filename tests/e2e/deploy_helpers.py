"""Helpers for the deployment tests (tests/e2e/test_deploy_*.py): real ``wsgiserve`` and
``nginx`` processes on loopback, configured from the files in ``deploy/``, and a load
generator that counts every response.

nginx gets its config by text substitution in a copy of ``deploy/nginx.conf``: every
replaced string must occur, so a change in the shipped file cannot leave the tests testing
something else. nginx's listening sockets are bound here on ``127.0.0.1:0`` and handed to it
through ``$NGINX`` (its own socket-inheritance mechanism, used for binary upgrades), so no
port is guessed in advance. Every process is stopped by the PID we started, and every wait
has a deadline (the process helpers are shared, in ``tests/processes.py``).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from processes import (
    READY,
    REPO_ROOT,
    child_environment,
    children_of,
    kill_by_pid,
    listening_url,
    runs_wsgiserve,
    spawn,
    stop_by_pid,
    wait_for_log,
    wait_until,
)

DEPLOY = REPO_ROOT / "deploy"
EXAMPLES = REPO_ROOT / "examples"

# The test app behind nginx: reports what the WSGI environ says, echoes bodies, and can be
# told to be slow. VERSION is rewritten by the reload test.
APP_SOURCE = textwrap.dedent('''\
    import hashlib
    import json
    import os
    import time

    VERSION = "v1"


    def echo(ws, message):
        ws.send(message)


    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/ws/") and "wsgiserve.websocket" in environ:
            ws = environ["wsgiserve.websocket"].accept()
            ws.send(environ["REMOTE_ADDR"])
            ws.on_message = echo
            return []
        query = environ.get("QUERY_STRING", "")
        if query.startswith("sleep="):
            time.sleep(float(query[len("sleep="):]))
        info = {key: environ.get(key) for key in (
            "REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME",
            "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO", "REQUEST_METHOD", "CONTENT_LENGTH",
            "HTTP_TRANSFER_ENCODING", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PREFIX",
            "HTTP_FORWARDED")}
        info["version"] = VERSION
        info["pid"] = os.getpid()
        if environ["REQUEST_METHOD"] == "POST":
            digest = hashlib.sha256()
            length = 0
            while True:
                chunk = environ["wsgi.input"].read(65536)
                if not chunk:
                    break
                digest.update(chunk)
                length += len(chunk)
            info["body_length"] = length
            info["body_sha256"] = digest.hexdigest()
        body = json.dumps(info).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body))),
                                  ("X-Worker-Pid", str(os.getpid()))])
        return [body]
''')


def write_app(directory: Path, version: str = "v1") -> None:
    """(Re)write ``deploy_app.py`` in ``directory`` with ``VERSION = version``."""
    source = APP_SOURCE.replace('VERSION = "v1"', f'VERSION = "{version}"')
    (directory / "deploy_app.py").write_text(source)


# --- wsgiserve ---------------------------------------------------------------------------


class Wsgiserve:
    """``python -m wsgiserve ARGS`` started in ``cwd``, its stdout and stderr in a file
    (a new one each time it is started)."""

    def __init__(self, log_dir: Path, args: Sequence[str], *, cwd: Path,
                 pythonpath: Sequence[Path] = (), env: Mapping[str, str] | None = None,
                 command: Sequence[str] | None = None, pass_fds: Sequence[int] = ()) -> None:
        self.log_dir = log_dir
        self.log_path = log_dir / f"wsgiserve-{time.monotonic_ns()}.log"
        self.command = [*(command or [sys.executable, "-m", "wsgiserve"]), *args]
        # PYTHONDONTWRITEBYTECODE: an app rewritten within a second
        self.environment = child_environment(
            pythonpath, {"PYTHONDONTWRITEBYTECODE": "1", **(env or {})})
        self.cwd = cwd
        self.pass_fds = tuple(pass_fds)
        self.process: subprocess.Popen[bytes] | None = None
        self.known_pids: set[int] = set()

    def start(self, *, wait_ready: bool = True, timeout_s: float = 30.0) -> Wsgiserve:
        """Start (or start again) the master, with a new log file; by default wait until it
        says its workers are ready."""
        if self.process is not None:
            self.log_path = self.log_dir / f"wsgiserve-{time.monotonic_ns()}.log"
        self.process = spawn(self.command, self.log_path, cwd=self.cwd, env=self.environment,
                             pass_fds=self.pass_fds)
        self.known_pids.add(self.process.pid)
        if wait_ready:
            self.wait_for_log(READY, timeout_s)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def wait_for_log(self, pattern: str, timeout_s: float = 20.0, *, count: int = 1) -> str:
        """Wait until ``pattern`` (a regex) has matched ``count`` times in the log; fails
        early if the process exits first."""
        return wait_for_log(self.log, self.process, pattern, timeout_s, count=count)

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def url(self) -> str:
        return listening_url(self.log())

    def workers(self) -> list[int]:
        found = children_of(self.pid)
        self.known_pids.update(found)
        return found

    def signal(self, signum: int) -> None:
        self.workers()  # remember them: they are killed by PID if they outlive the test
        os.kill(self.pid, signum)

    def terminate(self, timeout_s: float = 20.0) -> int:
        """Graceful stop (TERM) and wait for the master; returns its exit status."""
        assert self.process is not None
        self.signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """TERM the master; after 10 s SIGKILL every process of ours still alive."""
        if self.process is not None:
            # Workers orphaned by a master that died first are killed if they still run
            # wsgiserve (their number was not reused).
            stop_by_pid(self.process, self.known_pids, kill_wait_s=10.0,
                        still_ours=runs_wsgiserve)


def deploy_config_args(*, bind: str, app: str, chdir: Path, log_dir: Path,
                       extra: Sequence[str] = ()) -> list[str]:
    """wsgiserve's command line for ``deploy/wsgiserve.toml`` as shipped, with only the
    host-specific paths overridden by flags (flags win over the file)."""
    return ["--config", str(DEPLOY / "wsgiserve.toml"), "--bind", bind, "--chdir", str(chdir),
            "--access-logfile", str(log_dir / "access.log"), *extra, app]


# --- nginx -------------------------------------------------------------------------------


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                     else None)
    if path is None:
        pytest.skip("nginx is not installed (Debian package nginx; tools/install-test-deps.sh)")
    return path


def substitute(text: str, replacements: Mapping[str, str]) -> str:
    """Replace each key of ``replacements`` in ``text``; every key must occur."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in the deploy file; update the test"
        text = text.replace(old, new)
    return text


def remove_lines(text: str, *patterns: str) -> str:
    """Drop the lines matching each regex; each must match at least one line."""
    for pattern in patterns:
        compiled = re.compile(pattern)
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if not compiled.search(line)]
        assert len(kept) < len(lines), f"{pattern!r} matches no line of the deploy file"
        text = "".join(kept)
    return text


@dataclass(frozen=True)
class Certificate:
    ca_path: Path
    cert_path: Path
    key_path: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))


def make_certificate(directory: Path) -> Certificate:
    """A CA and a ``localhost`` certificate, generated now (trustme)."""
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    issued = authority.issue_cert("localhost", "127.0.0.1")
    ca_path, cert_path, key_path = (directory / name for name in
                                    ("ca.pem", "fullchain.pem", "privkey.pem"))
    authority.cert_pem.write_to_path(str(ca_path))
    issued.private_key_pem.write_to_path(str(key_path))
    with open(cert_path, "wb") as file:
        for blob in issued.cert_chain_pems:
            file.write(blob.bytes())
    return Certificate(ca_path, cert_path, key_path)


def _loopback_listener(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(511)
    # nginx does not make inherited listeners non-blocking. With a blocking one, a worker
    # woken with another for the same connection blocks in accept() until the next client
    # comes, and the connections it already holds stall meanwhile (seen as read timeouts).
    sock.setblocking(False)
    return sock


def site_from_deploy(*, upstream_socket: Path, static_dir: Path, certificate: Certificate,
                     log_dir: Path, http_port: int, https_port: int, tcp_port: int | None = None,
                     upstream_block: str | None = None) -> str:
    """``deploy/nginx.conf`` with this host's paths and ports; its logs go to ``log_dir``
    (the nginx prefix, where ``Nginx.error_log`` reads them).

    ``tcp_port`` points the ``wsgiserve_tcp`` upstream at that port and proxies to it
    instead of the unix-socket one. ``upstream_block`` replaces the ``upstream wsgiserve``
    block (the multi-instance example).
    """
    site = (DEPLOY / "nginx.conf").read_text()
    site = remove_lines(site, r"^\s*listen \[::\]:")  # no IPv6 loopback needed in tests
    site = substitute(site, {
        "server unix:/run/wsgiserve/wsgiserve.sock ": f"server unix:{upstream_socket} ",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "/etc/letsencrypt/live/example.com/fullchain.pem": str(certificate.cert_path),
        "/etc/letsencrypt/live/example.com/privkey.pem": str(certificate.key_path),
        "alias /srv/myproject/static/;": f"alias {static_dir}/;",
        "root /var/www/letsencrypt;": f"root {log_dir / 'acme'};",
        "/var/log/nginx/": f"{log_dir}/nginx-",
    })
    if tcp_port is not None:
        site = substitute(site, {"server 127.0.0.1:8000 ": f"server 127.0.0.1:{tcp_port} ",
                                 "proxy_pass http://wsgiserve;":
                                 "proxy_pass http://wsgiserve_tcp;"})
    if upstream_block is not None:
        match = re.search(r"^upstream wsgiserve \{.*?^\}\n", site, re.S | re.M)
        assert match, "no upstream wsgiserve block in deploy/nginx.conf"
        site = site[:match.start()] + upstream_block + site[match.end():]
    return site


class Nginx:
    """A real nginx serving ``site`` (an http{}-level snippet) from a private prefix."""

    def __init__(self, prefix: Path, site: str) -> None:
        self.prefix = prefix
        self.site = site
        self.http_listener = _loopback_listener()
        self.https_listener = _loopback_listener()
        self.http_port = self.http_listener.getsockname()[1]
        self.https_port = self.https_listener.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None
        self.known_pids: set[int] = set()

    def render_main(self) -> str:
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / "temp" / name).mkdir(parents=True, exist_ok=True)
        temp = self.prefix / "temp"
        # As root, nginx would switch its workers to "nobody", who cannot open our temp dirs.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        mime = "include /etc/nginx/mime.types;" if os.path.exists("/etc/nginx/mime.types") \
            else ""
        return textwrap.dedent(f"""\
            {user}worker_processes 2;
            pid {self.prefix}/nginx.pid;
            error_log {self.prefix}/error.log info;
            events {{ worker_connections 1024; }}
            http {{
                {mime}
                default_type application/octet-stream;
                sendfile on;
                access_log {self.prefix}/access.log;
                client_body_temp_path {temp}/client_body;
                proxy_temp_path {temp}/proxy;
                fastcgi_temp_path {temp}/fastcgi;
                uwsgi_temp_path {temp}/uwsgi;
                scgi_temp_path {temp}/scgi;
            """) + textwrap.indent(self.site, "    ") + "}\n"

    def start(self, timeout_s: float = 15.0) -> Nginx:
        conf = self.prefix / "nginx.conf"
        conf.write_text(self.render_main())
        fds = [self.http_listener.fileno(), self.https_listener.fileno()]
        command = [nginx_binary(), "-p", str(self.prefix), "-c", str(conf),
                   "-e", str(self.prefix / "error.log"), "-g", "daemon off;"]
        check = subprocess.run([*command[:-2], "-t"], capture_output=True, timeout=30,
                               check=False)
        assert check.returncode == 0, check.stderr.decode(errors="replace")
        environment = dict(os.environ, NGINX="".join(f"{fd};" for fd in fds))
        with open(self.prefix / "nginx.out", "ab") as out:
            self.process = subprocess.Popen(command, env=environment, pass_fds=fds,
                                            stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT)
        self.known_pids.add(self.process.pid)

        def started() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited ({self.process.returncode}):\n"
                                     f"{self.error_log()}")
            return len(children_of(self.process.pid)) >= 2
        wait_until(started, timeout_s, message="nginx workers")
        self.known_pids.update(children_of(self.process.pid))
        return self

    def error_log(self) -> str:
        """nginx's own error log and the site's (both kept in the prefix directory)."""
        return "".join(path.read_text("utf-8", "replace")
                       for path in sorted(self.prefix.glob("*error.log")))

    def access_log(self) -> str:
        return "".join(path.read_text("utf-8", "replace")
                       for path in sorted(self.prefix.glob("*access.log")))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.known_pids.update(children_of(self.process.pid))
            self.process.send_signal(signal.SIGQUIT)  # graceful shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_by_pid([self.process.pid, *children_of(self.process.pid)])
                self.process.wait(timeout=10)
        self.http_listener.close()
        self.https_listener.close()


# --- clients -----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def https_request(port: int, context: ssl.SSLContext, method: str, path: str, *,
                  body: bytes | Iterator[bytes] | None = None,
                  headers: Mapping[str, str] | None = None, source: str = "",
                  chunked: bool = False, timeout_s: float = 15.0) -> Reply:
    """One request over a new TLS connection (``http.client``, not ours)."""
    connection = http.client.HTTPSConnection(
        "localhost", port, context=context, timeout=timeout_s,
        source_address=(source, 0) if source else None)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}),
                           encode_chunked=chunked)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())
    finally:
        connection.close()


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    pids: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)

    def describe(self) -> str:
        return (f"{self.total} requests, statuses {dict(self.statuses)}, "
                f"{len(self.errors)} errors {self.errors[:5]}, non-2xx {self.bad[:5]}")


class Load:
    """``clients`` threads, each sending keep-alive requests through nginx over TLS until
    stopped: GETs, and every ``post_every``-th request a small POST. Counts every status,
    every exception, and which worker pids and app versions answered."""

    def __init__(self, port: int, context: ssl.SSLContext, *, clients: int = 4,
                 path: str = "/", post_every: int = 3, timeout_s: float = 20.0) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.context = context
        self.path = path
        self.post_every = post_every
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(clients)]

    def __enter__(self) -> Load:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in self._threads), "load threads hung"
        return self.result

    def wait_for(self, count: int, timeout_s: float = 30.0) -> None:
        """Wait until ``count`` more requests have been answered."""
        target = self.result.total + count
        wait_until(lambda: self.result.total >= target, timeout_s,
                   message=f"{count} more requests under load")

    def _run(self) -> None:
        connection: http.client.HTTPSConnection | None = None
        sent = 0
        while not self._stop.is_set():
            if connection is None:
                connection = http.client.HTTPSConnection("localhost", self.port,
                                                         context=self.context,
                                                         timeout=self.timeout_s)
            sent += 1
            is_post = self.post_every > 0 and sent % self.post_every == 0
            try:
                if is_post:
                    connection.request("POST", self.path, body=b"field=value&n=%d" % sent,
                                       headers={"Content-Type":
                                                "application/x-www-form-urlencoded"})
                else:
                    connection.request("GET", self.path)
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                port = connection.sock.getsockname()[1] if connection.sock else 0
                with self._lock:
                    self.result.errors.append(
                        f"{'POST' if is_post else 'GET'} (from port {port}, "
                        f"{time.monotonic() - self._started:.1f} s into the load): {exc!r}")
                connection.close()
                connection = None
                continue
            with self._lock:
                self.result.statuses[response.status] += 1
                if not 200 <= response.status < 300:
                    self.result.bad.append(f"{'POST' if is_post else 'GET'} {response.status} "
                                           f"{body[:60]!r}")
                else:
                    self.result.pids[response.getheader("X-Worker-Pid", "")] += 1
                    try:
                        self.result.versions[json.loads(body).get("version", "")] += 1
                    except ValueError:
                        pass
            if response.will_close:
                connection.close()
                connection = None
        if connection is not None:
            connection.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def unix_request(path: Path, method: str, target: str, *, body: bytes | None = None,
                 headers: Mapping[str, str] | None = None, timeout_s: float = 15.0) -> Reply:
    """One request to a server on the unix socket ``path`` (``http.client``)."""
    connection = _UnixConnection(str(path), timeout_s)
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())
    finally:
        connection.close()
