"""Helpers for the container and Kubernetes tests (tests/e2e/test_deploy_container.py,
test_deploy_kubernetes.py): ``deploy/Containerfile`` read as data, the config it copies in,
and its ENTRYPOINT and CMD run as PID 1 of a new PID namespace (``unshare``), without an
image or a registry.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from processes import (
    READY,
    REPO_ROOT,
    child_environment,
    children_of,
    is_alive,
    kill_by_pid,
    listening_port,
    spawn,
    wait_for_log,
    wait_until,
)

DEPLOY = REPO_ROOT / "deploy"
CONTAINERFILE = DEPLOY / "Containerfile"
CONTAINER_CONFIG = DEPLOY / "container.toml"
KUBERNETES = DEPLOY / "kubernetes"
METRICS_FLAG = "--metrics-bind"

# The test app run in the "container": answers at once, or holds a request until a file
# exists (FILE.entered says it is in the app; the test decides when it ends), or spawns
# a subprocess that spawns a grandchild and exits: the grandchild is orphaned, and the
# kernel re-parents it to PID 1 of the namespace, which must reap it when it exits.
APP_SOURCE = textwrap.dedent('''\
    import json
    import os
    import subprocess
    import sys
    import time

    ORPHAN = (
        "import subprocess, sys; "
        "child = subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]], "
        "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(child.pid, flush=True)"
    )
    WAIT_FOR_FILE = (
        "import os, sys, time; deadline = time.monotonic() + 30\\n"
        "while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:\\n"
        "    time.sleep(0.01)"
    )


    def _wait_for(path):
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)


    def app(environ, start_response):
        path = environ["PATH_INFO"]
        query = environ.get("QUERY_STRING", "")
        info = {"pid": os.getpid()}
        if path == "/hold":
            open(query + ".entered", "w").close()
            _wait_for(query)
        elif path == "/orphan":
            parent = subprocess.Popen([sys.executable, "-c", ORPHAN, WAIT_FOR_FILE, query],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            info["orphan"] = int(parent.stdout.readline())
            parent.stdout.close()
            info["parent_status"] = parent.wait(timeout=30)
        body = json.dumps(info).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
''')


def write_app(directory: Path) -> str:
    """Write the test app into ``directory``; returns its APP argument."""
    (directory / "container_app.py").write_text(APP_SOURCE)
    return "container_app:app"


# --- the Containerfile as data -------------------------------------------------------------


@dataclass
class Containerfile:
    """The instructions of a Containerfile that the tests follow (one build stage)."""

    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, dest)
    user: str = ""
    workdir: str = ""
    expose: list[int] = field(default_factory=list)
    stop_signal: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    healthcheck: list[str] = field(default_factory=list)

    @property
    def command(self) -> list[str]:
        """What the container runs: ENTRYPOINT followed by CMD (both exec form)."""
        return [*self.entrypoint, *self.cmd]

    def copied_from(self, image_path: str) -> Path | None:
        """The repository file that a COPY puts at ``image_path`` (the last one wins), or
        None if none does."""
        if not image_path.startswith("/"):
            return None
        target = PurePosixPath(image_path)
        for sources, dest in reversed(self.copies):
            for source in sources:
                if dest.endswith("/"):
                    if PurePosixPath(dest) / PurePosixPath(source).name == target:
                        return REPO_ROOT / source
                elif PurePosixPath(dest) == target and len(sources) == 1:
                    return REPO_ROOT / source
        return None


def _exec_form(keyword: str, text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        raise AssertionError(f"{keyword} {text!r} is not in exec (JSON) form: a shell "
                             "would be PID 1 and TERM would not reach wsgiserve") from None
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), text
    return value


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuations joined."""
    found = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    assert not pending, "the Containerfile ends in a line continuation"
    return found


def read_containerfile(path: Path = CONTAINERFILE) -> Containerfile:
    result = Containerfile()
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "FROM":
            assert not result.base, "one build stage is expected"
            result.base = rest
        elif keyword == "ENV":
            words = shlex.split(rest)
            if words and "=" not in words[0]:  # the legacy form: ENV NAME value
                result.env[words[0]] = " ".join(words[1:])
            else:
                result.env.update(word.split("=", 1) for word in words)  # type: ignore[misc]  # pairs
        elif keyword == "COPY":
            words = [word for word in shlex.split(rest) if not word.startswith("--")]
            result.copies.append((words[:-1], words[-1]))
        elif keyword == "USER":
            result.user = rest
        elif keyword == "WORKDIR":
            result.workdir = rest
        elif keyword == "EXPOSE":
            result.expose += [int(port.split("/")[0]) for port in rest.split()]
        elif keyword == "STOPSIGNAL":
            result.stop_signal = rest
        elif keyword in ("ENTRYPOINT", "CMD"):
            setattr(result, keyword.lower(), _exec_form(keyword, rest))
        elif keyword == "HEALTHCHECK":
            match = re.fullmatch(r"((?:--[\w-]+=\S+\s+)*)CMD\s+(\[.*\])", rest, re.S)
            assert match, f"HEALTHCHECK {rest!r}: expected options then CMD in exec form"
            result.healthcheck_options = dict(
                option[2:].split("=", 1) for option in match.group(1).split())
            result.healthcheck = _exec_form("HEALTHCHECK CMD", match.group(2))
    return result


def option_value(command: Sequence[str], flag: str) -> str:
    """The value given to ``flag`` in an argv (``--flag value`` or ``--flag=value``)."""
    for index, word in enumerate(command):
        if word == flag:
            return command[index + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    raise AssertionError(f"{flag} is not in {list(command)}")


# --- what this checkout of wsgiserve accepts ----------------------------------------------


# --- /proc: a PID namespace seen from outside ----------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return None


@dataclass(frozen=True)
class ProcessInfo:
    pid: int  # in this (the host's) namespace
    namespace_pid: int  # in the innermost namespace (the container's)
    parent: int  # host pid of the parent
    state: str  # R, S, Z, ...
    start_ticks: int  # with pid, tells a reused number from the same process


def _info(pid: int) -> ProcessInfo | None:
    stat = _read(f"/proc/{pid}/stat")
    status = _read(f"/proc/{pid}/status")
    if stat is None or status is None:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    nspid = re.search(r"^NSpid:\s+(.*)$", status, re.M)
    namespace_pid = int(nspid.group(1).split()[-1]) if nspid else 0
    return ProcessInfo(pid, namespace_pid, int(fields[1]), fields[0], int(fields[19]))


def process_tree(root: int) -> list[ProcessInfo]:
    """``root`` and every descendant, zombies included. For PID 1 of a namespace that is
    the whole namespace: the kernel re-parents orphans to it."""
    everyone = [info for name in os.listdir("/proc") if name.isdigit()
                if (info := _info(int(name))) is not None]
    by_parent: dict[int, list[ProcessInfo]] = {}
    for info in everyone:
        by_parent.setdefault(info.parent, []).append(info)
    found = [info for info in everyone if info.pid == root]
    for info in found:  # grows while it is walked: breadth first
        found += by_parent.get(info.pid, [])
    return found


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports that ``pid`` has listening sockets on (its fds, /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in (_read(f"/proc/{pid}/net/{table}") or "").splitlines()[1:]:
            columns = line.split()
            if columns[3] == "0A" and columns[9] in inodes:  # 0A: TCP_LISTEN
                ports.add(int(columns[1].rsplit(":", 1)[1], 16))
    return ports


# --- the Containerfile's command as PID 1 ----------------------------------------------------


def unshare_binary() -> str:
    path = shutil.which("unshare")
    if path is None:
        pytest.skip("unshare is not installed (Debian package util-linux)")
    if os.geteuid() != 0:
        pytest.skip("a new PID namespace with its own /proc needs root here")
    return path


class Pid1:
    """The Containerfile's ENTRYPOINT + CMD with its ENV, run as PID 1 of a new PID
    namespace (and mount namespace, for its own /proc); the network is the host's, so
    ``extra_args`` (given after CMD: flags win over the config file) bind ``127.0.0.1:0``.

    A path in CMD is replaced by the repository file that the Containerfile's COPY puts
    there, ``wsgiserve`` by ``python -m wsgiserve`` of this checkout, and the app's folder
    (the config's chdir, the image's WORKDIR) by ``directory``.
    """

    def __init__(self, directory: Path, extra_args: Sequence[str], *,
                 containerfile: Containerfile | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        spec = containerfile or read_containerfile()
        command = spec.command
        assert command[0] == "wsgiserve", command
        args = []
        for word in command[1:]:
            source = spec.copied_from(word)
            if source is not None:
                word = str(source)
            args.append(word)
        self.directory = directory
        self.log_path = directory / f"pid1-{time.monotonic_ns()}.log"
        self.command = [unshare_binary(), "--pid", "--fork", "--mount-proc", "--kill-child",
                        sys.executable, "-m", "wsgiserve", *args, "--chdir", str(directory),
                        *extra_args]
        self.environment = child_environment([directory], {**spec.env, **(env or {})})
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0  # of wsgiserve, PID 1 inside, as the host sees it
        self.known: set[int] = set()

    def start(self, timeout_s: float = 30.0) -> Pid1:
        self.process = spawn(self.command, self.log_path, cwd=self.directory,
                             env=self.environment)
        unshare = self.process.pid
        self.pid = wait_until(lambda: next(iter(children_of(unshare)), None), 10,
                              message="the PID namespace's first process")
        self.known.add(self.pid)
        wait_for_log(self.log, self.process, READY, timeout_s)
        self.processes()
        return self

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    @property
    def port(self) -> int:
        return listening_port(self.log())

    def processes(self) -> list[ProcessInfo]:
        """Every process of the namespace now (PID 1's tree), zombies included."""
        found = process_tree(self.pid)
        self.known.update(info.pid for info in found)
        return found

    def terminate(self) -> None:
        os.kill(self.pid, signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        """The exit status of PID 1 (``unshare --fork`` exits with it)."""
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """SIGKILL ``unshare`` (its --kill-child takes PID 1 along, and with PID 1 the
        kernel kills the whole namespace), then any process of it we saw still there."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.processes()
            kill_by_pid([self.process.pid])
            self.process.wait(timeout=10)
        kill_by_pid(pid for pid in self.known if runs_python(pid))


def runs_python(pid: int) -> bool:
    """Alive and running Python (a number of ours that was not reused by another program)."""
    return is_alive(pid) and b"python" in (_read_bytes(f"/proc/{pid}/cmdline") or b"")


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None


def refuses_connections(port: int) -> bool:
    """Whether a connect to 127.0.0.1:``port`` is refused now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def loopback_args() -> list[str]:
    """Flags that move every listener of the container's config to 127.0.0.1:0 (tests
    listen on loopback only, and never on a port chosen in advance)."""
    return ["--bind", "127.0.0.1:0", METRICS_FLAG, "127.0.0.1:0"]


def container_toml() -> dict[str, Any]:
    with open(CONTAINER_CONFIG, "rb") as file:
        return tomllib.load(file)


def port_of(address: str) -> int:
    """The port of a HOST:PORT bind address."""
    return int(address.rsplit(":", 1)[1])
