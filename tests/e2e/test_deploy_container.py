"""deploy/Containerfile and deploy/container.toml: what the image runs, run without a
registry. The ENTRYPOINT and CMD, with the image's ENV, run as PID 1 of a new PID namespace
(``unshare``): SIGTERM under keep-alive load drains with no failed request and exits 0,
and orphans re-parented to PID 1 are reaped. The HEALTHCHECK one-liner is run against a
stub and (with the metrics listener) against wsgiserve; and where podman is installed the
image itself is built on a Debian base made by debootstrap, and run.
"""
from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from container_helpers import (
    CONTAINER_CONFIG,
    CONTAINERFILE,
    Pid1,
    ProcessInfo,
    container_toml,
    listening_tcp_ports,
    loopback_args,
    port_of,
    read_containerfile,
    refuses_connections,
    write_app,
)
from processes import REPO_ROOT, child_environment, wait_until

from wsgiserve.config import parse_command_line, resolve, unknown_environment

pytestmark = pytest.mark.timeout(120)


# --- the Containerfile read as data ----------------------------------------------------------


def test_containerfile_runs_wsgiserve_itself_as_pid_1_not_as_root() -> None:
    spec = read_containerfile()
    assert spec.entrypoint[0] == "wsgiserve"  # exec form is checked by the parser
    assert spec.stop_signal == "SIGTERM"
    # A numeric, non-root user: Kubernetes' runAsNonRoot can only check a number.
    uid, _, gid = spec.user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), spec.user
    name, _, tag = spec.base.partition(":")
    assert name and tag and tag != "latest", f"the base image is not pinned: {spec.base}"
    assert spec.env["PYTHONUNBUFFERED"] == "1" and spec.env["PYTHONDONTWRITEBYTECODE"] == "1"
    # Every WSGISERVE_ variable names a setting (a typo would be ignored with a warning).
    assert unknown_environment(spec.env) == []
    assert spec.copied_from(spec.cmd[spec.cmd.index("--config") + 1]) == CONTAINER_CONFIG


def test_the_image_install_gets_every_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pip install`` of the copied source (not editable, as in the image) installs the
    packages setup.cfg finds; a folder of modules without ``__init__.py`` is not one, and
    the image would lack it (``find:`` is not ``find_namespace:``)."""
    setupcfg = pytest.importorskip("setuptools.config.setupcfg")
    monkeypatch.chdir(REPO_ROOT)
    found = set(setupcfg.read_configuration("setup.cfg")["options"]["packages"])
    folders = {".".join(path.parent.relative_to(REPO_ROOT).parts)
               for path in (REPO_ROOT / "wsgiserve").rglob("*.py")}
    assert folders - found == set(), "module folders that a non-editable install leaves out"


def test_image_config_with_the_image_environment_resolves_as_intended(tmp_path: Path) -> None:
    spec = read_containerfile()
    config = resolve(parse_command_line(["--config", str(CONTAINER_CONFIG)]), spec.env)
    assert config.workers.workers == int(spec.env["WSGISERVE_WORKERS"])
    assert config.workers.threads == int(spec.env["WSGISERVE_THREADS"])
    assert config.server.bind == ("0.0.0.0:8000",)
    assert config.server.chdir == spec.workdir
    # Logs go to the container's output; nothing is written into the image.
    assert (config.logging.error_logfile, config.logging.access_logfile) == ("-", "-")
    assert not config.server.pid
    # Under Kubernetes' default 30 s grace period, with room for a preStop sleep.
    assert config.workers.graceful_timeout <= 25


def test_exposed_ports_and_healthcheck_match_the_config() -> None:
    spec = read_containerfile()
    settings = container_toml()
    app_port = port_of(settings["server"]["bind"][0])
    metrics_port = port_of(settings["metrics"]["metrics_bind"])
    assert sorted(spec.expose) == sorted([app_port, metrics_port])
    assert spec.healthcheck[0] == "python"
    assert f"'http://127.0.0.1:{metrics_port}/healthz'" in spec.healthcheck[2]
    # The one-liner gives up before the runtime does, so a hang reads as "unhealthy".
    match = re.search(r"timeout=(\d+(?:\.\d+)?)\)", spec.healthcheck[2])
    assert match, spec.healthcheck
    assert float(match[1]) < float(spec.healthcheck_options["timeout"].rstrip("s"))


# --- the HEALTHCHECK one-liner ----------------------------------------------------------------


class _StubHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stub_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def _run_healthcheck(port: int, *, proxy_port: int) -> int:
    """The Containerfile's HEALTHCHECK command against 127.0.0.1:``port``, with HTTP
    proxy variables that would break it if it used them."""
    command = read_containerfile().healthcheck
    metrics_port = port_of(container_toml()["metrics"]["metrics_bind"])
    code = command[2].replace(f"127.0.0.1:{metrics_port}/", f"127.0.0.1:{port}/")
    proxy = f"http://127.0.0.1:{proxy_port}"
    environment = child_environment(env={"http_proxy": proxy, "HTTP_PROXY": proxy,
                                         "no_proxy": "", "NO_PROXY": ""})
    result = subprocess.run([sys.executable, *command[1:2], code], env=environment,
                            capture_output=True, timeout=30, check=False)
    return result.returncode


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the test's duration: bound, never
    listening, so nothing else can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_healthcheck_exits_0_on_200_and_1_on_503_refusal_or_silence(
        stub_server: http.server.ThreadingHTTPServer, refused_port: int) -> None:
    port = stub_server.server_address[1]
    assert isinstance(port, int)
    _StubHandler.status = 200
    assert _run_healthcheck(port, proxy_port=refused_port) == 0  # the proxy is not used
    _StubHandler.status = 503
    assert _run_healthcheck(port, proxy_port=refused_port) == 1
    assert _run_healthcheck(refused_port, proxy_port=refused_port) == 1
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        assert _run_healthcheck(silent.getsockname()[1], proxy_port=refused_port) == 1


def _metrics_port(server: Pid1) -> int:
    ports = listening_tcp_ports(server.pid) - {server.port}
    assert len(ports) == 1, (ports, server.port)
    return ports.pop()


def test_healthcheck_passes_against_wsgiserve_metrics(tmp_path: Path,
                                                      refused_port: int) -> None:
    server = Pid1(tmp_path, [*loopback_args(), write_app(tmp_path)])
    try:
        server.start()
        assert _run_healthcheck(_metrics_port(server), proxy_port=refused_port) == 0
        server.terminate()
        assert server.wait(30) == 0
    finally:
        server.stop()


# --- PID 1: drain under load, reaping --------------------------------------------------------


@dataclass
class _Outcome:
    started_at: float
    error: str  # empty for a 2xx


@dataclass
class _ClosedLoop:
    """``threads`` keep-alive clients (http.client), each sending its next request when
    the last is answered; records when each request started and how it ended. Bounded
    by ``max_requests`` per thread and ``max_seconds``."""

    port: int
    threads: int = 4
    max_requests: int = 20_000
    max_seconds: float = 60.0
    outcomes: list[_Outcome] = field(default_factory=list)
    _halt: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> _ClosedLoop:
        self._workers = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(self.threads)]
        for thread in self._workers:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._halt.set()
        for thread in self._workers:
            thread.join(timeout=20)
        assert not any(thread.is_alive() for thread in self._workers), "clients hung"

    def answered(self) -> int:
        return sum(1 for outcome in list(self.outcomes) if not outcome.error)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_requests):
            if self._halt.is_set() or time.monotonic() >= deadline:
                break
            started = time.monotonic()
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                error = "" if 200 <= response.status < 300 else f"status {response.status}"
                if response.will_close:
                    connection.close()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                error = repr(exc)
            self.outcomes.append(_Outcome(started, error))  # list.append is atomic
            if error:
                self._halt.wait(0.01)  # a refused connect returns at once
        connection.close()


class _ZombieWatch:
    """Samples the namespace's processes every 20 ms in a thread; a zombie seen in two
    samples more than a second apart was not reaped (a reaping master takes one tick)."""

    def __init__(self, server: Pid1) -> None:
        self.server = server
        self.samples: list[tuple[float, list[ProcessInfo]]] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _ZombieWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._halt.set()
        self._thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + 90
        while not self._halt.is_set() and time.monotonic() < deadline:
            self.samples.append((time.monotonic(), self.server.processes()))
            self._halt.wait(0.02)

    def count_since(self, since: float) -> int:
        return sum(1 for at, _ in list(self.samples) if at >= since)

    def lingering(self) -> list[str]:
        first_seen: dict[tuple[int, int], float] = {}
        found = []
        for at, infos in self.samples:
            for info in infos:
                if info.state != "Z":
                    continue
                key = (info.pid, info.start_ticks)
                since = first_seen.setdefault(key, at)
                if at - since > 1.0:
                    found.append(f"pid {info.pid} (ns pid {info.namespace_pid}, parent "
                                 f"{info.parent}) a zombie for {at - since:.1f} s")
        return sorted(set(found))


def _hold_request(port: int, release: Path, results: list[object]) -> threading.Thread:
    def run() -> None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=40)
            connection.request("GET", f"/hold?{release}")
            response = connection.getresponse()
            response.read()
            results.append(response.status)
            connection.close()
        except (OSError, http.client.HTTPException) as exc:
            results.append(repr(exc))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(Path(f"{release}.entered").exists, 15, message="the held request in the app")
    return thread


def test_sigterm_to_pid_1_drains_under_load_and_exits_0(tmp_path: Path) -> None:
    server = Pid1(tmp_path, [*loopback_args(), write_app(tmp_path)])
    graceful_timeout_s = container_toml()["workers"]["graceful_timeout"]
    try:
        server.start()
        port = server.port
        pid_1 = [info for info in server.processes() if info.pid == server.pid]
        assert pid_1 and pid_1[0].namespace_pid == 1
        with _ZombieWatch(server) as watch, _ClosedLoop(port) as load:
            wait_until(lambda: load.answered() >= 300 and watch.count_since(0) >= 5, 30,
                       message="300 answered requests and 5 samples of the processes")
            release, held = tmp_path / "release", list[object]()
            holder = _hold_request(port, release, held)
            signalled_at = time.monotonic()
            server.terminate()
            # The listener closes at once, while the held request is still in the app.
            wait_until(lambda: refuses_connections(port), 10, message="the listener closed")
            wait_until(lambda: watch.count_since(signalled_at) >= 2, 10,
                       message="samples of the processes while draining")
            assert server.process is not None and server.process.poll() is None
            release.touch()
            holder.join(30)
            assert server.wait(graceful_timeout_s + 5) == 0
            load.stop()
        assert held == [200]
        before = [o for o in load.outcomes if o.started_at < signalled_at]
        assert len(before) >= 300
        assert [o.error for o in before if o.error] == []
        assert refuses_connections(port)
        assert "graceful stop" in server.log() and "master 1 exiting" in server.log()
        assert watch.lingering() == []
        # PID 1 gone, the kernel ended the namespace: nothing of it is left, not a zombie.
        assert server.processes() == []
    finally:
        server.stop()


def test_pid_1_reaps_an_orphaned_grandchild_of_the_app(tmp_path: Path) -> None:
    server = Pid1(tmp_path, [*loopback_args(), write_app(tmp_path)])
    try:
        server.start()
        release = tmp_path / "orphan-may-exit"
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", f"/orphan?{release}")
        reply = json.loads(connection.getresponse().read())
        connection.close()
        assert reply["parent_status"] == 0

        def orphan() -> ProcessInfo | None:
            found = [info for info in server.processes()
                     if info.namespace_pid == reply["orphan"]]
            return found[0] if found else None
        found = wait_until(orphan, 10, message="the orphan in the namespace")
        # Its parent exited: the kernel re-parented it to PID 1, wsgiserve's master.
        assert found.parent == server.pid and found.state != "Z"
        release.touch()
        try:
            wait_until(lambda: orphan() is None, 10, message="PID 1 to reap its orphan")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the orphan now: {orphan()}") from None
        server.terminate()
        assert server.wait(30) == 0
    finally:
        server.stop()


def test_readyz_turns_503_while_pid_1_drains(tmp_path: Path) -> None:
    server = Pid1(tmp_path, [*loopback_args(), write_app(tmp_path)])
    try:
        server.start()
        metrics = _metrics_port(server)

        def status(path: str) -> int:
            connection = http.client.HTTPConnection("127.0.0.1", metrics, timeout=10)
            try:
                connection.request("GET", path)
                return connection.getresponse().status
            finally:
                connection.close()
        assert wait_until(lambda: status("/readyz") == 200, 15, message="/readyz 200")
        assert status("/healthz") == 200
        release, held = tmp_path / "release", list[object]()
        holder = _hold_request(server.port, release, held)
        server.terminate()
        wait_until(lambda: status("/readyz") == 503, 10, message="/readyz 503 while draining")
        release.touch()
        holder.join(30)
        assert held == [200]
        assert server.wait(30) == 0
    finally:
        server.stop()


# --- the image itself, built and run by podman -------------------------------------------------

# A stand-in for python:3.11-slim made from Debian's packages alone (no image registry is
# reachable here): Debian's python3 with pip, setuptools and wheel, where pip builds
# without fetching build dependencies. Made once with debootstrap and kept in podman's
# storage under this name.
STAND_IN_BASE = "localhost/wsgiserve-test-base:bookworm"
STAND_IN_PACKAGES = "python3,python3-pip,python3-setuptools,python3-wheel,python-is-python3"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
IMAGE = "localhost/wsgiserve-test:containerfile"


def _podman() -> list[str]:
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed (Debian package podman)")
    if os.geteuid() != 0:
        pytest.skip("the podman test runs as root")
    # runc with cgroupfs works on cgroup v1 hosts too (crun refuses hybrid v1/v2 here).
    runc = shutil.which("runc") or ("/usr/sbin/runc" if Path("/usr/sbin/runc").exists()
                                    else None)
    return [podman, "--runtime", runc, "--cgroup-manager", "cgroupfs"] if runc else [podman]


def _run(command: list[str], timeout_s: float = 120, check: bool = True
         ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}:\n{result.stdout[-3000:]}"
                             f"\n{result.stderr[-3000:]}")
    return result


def _stand_in_base(podman: list[str], tmp_path: Path) -> None:
    if _run([*podman, "image", "exists", STAND_IN_BASE], check=False).returncode == 0:
        return
    debootstrap = shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if Path(
        "/usr/sbin/debootstrap").exists() else None)
    if debootstrap is None:
        pytest.skip("debootstrap is not installed (Debian package debootstrap): it makes "
                    f"the stand-in base image {STAND_IN_BASE}")
    rootfs = tmp_path / "rootfs"
    _run([debootstrap, "--variant=minbase", f"--include={STAND_IN_PACKAGES}", "bookworm",
          str(rootfs), DEBIAN_MIRROR], timeout_s=600)
    # python:3.11-slim's Python is not Debian's, so pip may install into it.
    (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    archive = tmp_path / "rootfs.tar"
    _run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], timeout_s=300)
    _run([*podman, "import", "--change", "ENV PIP_NO_BUILD_ISOLATION=0", "--change",
          'CMD ["python3"]', str(archive), STAND_IN_BASE], timeout_s=300)
    shutil.rmtree(rootfs, ignore_errors=True)


@pytest.mark.timeout(900)
def test_podman_builds_the_image_and_it_serves_and_stops_as_pid_1(tmp_path: Path) -> None:
    podman = _podman()
    _stand_in_base(podman, tmp_path)
    # The Containerfile unchanged, on the stand-in base; chroot isolation needs no OCI
    # runtime to RUN steps, and the stand-in's pip needs no network.
    _run([*podman, "build", "--isolation", "chroot", "--pull=never", "--format", "docker",
          "--from", STAND_IN_BASE, "-f", str(CONTAINERFILE), "-t", IMAGE, str(REPO_ROOT)],
         timeout_s=300)
    name = f"wsgiserve-test-{time.monotonic_ns()}"
    try:
        inspected = json.loads(_run([*podman, "image", "inspect", IMAGE]).stdout)[0]
        image, spec = inspected["Config"], read_containerfile()
        assert image["User"] == spec.user and image["StopSignal"] == "SIGTERM"
        assert image["Entrypoint"] == spec.entrypoint and image["Cmd"] == spec.cmd
        assert inspected["Healthcheck"]["Test"] == ["CMD", *spec.healthcheck]
        # As the Deployment runs it: read-only root, a writable /tmp, the config mounted
        # over /etc/wsgiserve. No network but the container's own loopback.
        config_dir = tmp_path / "configmap"
        config_dir.mkdir()
        (config_dir / "wsgiserve.toml").write_text(
            CONTAINER_CONFIG.read_text())
        _run([*podman, "run", "-d", "--name", name, "--network", "none", "--read-only",
              "--tmpfs", "/tmp", "-v", f"{config_dir}:/etc/wsgiserve:ro",
              "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
              "--health-interval", "disable", IMAGE])

        def logs() -> str:
            result = _run([*podman, "logs", name], check=False)
            return result.stdout + result.stderr
        try:
            wait_until(lambda: re.search(r"ready: \d+ worker", logs()), 60, message="ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- podman logs ---\n{logs()[-3000:]}") from None
        fetch = ("import urllib.request as u; print(u.build_opener(u.ProxyHandler({}))"
                 ".open('http://127.0.0.1:8000/', timeout=10).status)")
        assert _run([*podman, "exec", name, "python", "-c", fetch]).stdout.strip() == "200"
        assert _run([*podman, "exec", name, "id", "-u"]).stdout.strip() == \
            spec.user.split(":")[0]
        cmdline = _run([*podman, "exec", name, "cat", "/proc/1/cmdline"]).stdout
        assert cmdline.split("\0")[1:4] == ["/usr/local/bin/wsgiserve", *spec.cmd]
        assert _run([*podman, "exec", name, "touch", "/app/x"], check=False).returncode != 0
        assert _run([*podman, "healthcheck", "run", name], check=False).returncode == 0
        _run([*podman, "stop", "-t", "30", name], timeout_s=60)
        state = _run([*podman, "inspect", name, "--format", "{{.State.ExitCode}}"])
        assert state.stdout.strip() == "0"
        # The access log on stdout, one JSON object a line; the error log on stderr.
        output = _run([*podman, "logs", name])
        access = [json.loads(line) for line in output.stdout.splitlines()]
        assert [(line["path"], line["status"]) for line in access] == [("/", 200)]
        assert "graceful stop" in output.stderr and "master 1 exiting" in output.stderr
    finally:
        _run([*podman, "rm", "-f", name], check=False)
        _run([*podman, "rmi", "-f", IMAGE], check=False)
