"""The servers the benchmarks compare, each started the same way and checked before use.

Every server binds 127.0.0.1:0 in a new session led by the process we start; its port is
read from the kernel (the LISTEN socket its processes hold, /proc/net/tcp), since granian
logs the port it was given, 0. Before a server counts as started it must answer GET /hello
with 200 and the expected body (twice on one connection for keep-alive; for
``Connection: close`` it must also close). Every process is stopped by PID.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
BENCH_DIR: Final = REPO_ROOT / "benchmarks"
HELLO_APP: Final = "tests.apps:hello"  # served as MODULE:CALLABLE by every server
HELLO_PATH: Final = "/hello"
HELLO_BODY: Final = b"Hello, World!"
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_TCP_LISTEN: Final = "0A"  # include/net/tcp_states.h: TCP_LISTEN = 10
_LOOPBACK_HEX: Final = "0100007F"  # 127.0.0.1 as /proc/net/tcp prints it (host byte order)
_APP: Final = "{app}"


class ServerFailed(RuntimeError):
    """A server did not start, or answered the check request wrongly."""


@dataclass(frozen=True)
class ServerSpec:
    label: str
    kind: str  # wsgiserve, meinheld, granian, bjoern, gunicorn: what --servers selects
    argv: list[str]  # the whole command; "{app}" stands for MODULE:CALLABLE
    workers: int = 1
    keeps_alive: bool = True  # False: answers every request with a close (gunicorn sync)

    def command(self, app: str) -> list[str]:
        return [app if word == _APP else word for word in self.argv]


def wsgiserve(threads: int, workers: int = 1) -> ServerSpec:
    return ServerSpec(_label("wsgiserve", f"--threads {threads}", workers), "wsgiserve",
                      [sys.executable, "-m", "wsgiserve", "--workers", str(workers),
                       "--threads", str(threads), "--bind", "127.0.0.1:0", _APP], workers)


def gunicorn(threads: int, workers: int = 1) -> ServerSpec:
    """gthread with ``threads`` > 1, else the sync worker (which closes every connection)."""
    common = [sys.executable, "-m", "gunicorn", "--workers", str(workers),
              "--bind", "127.0.0.1:0"]
    if threads > 1:
        return ServerSpec(_label("gunicorn", f"gthread --threads {threads}", workers), "gunicorn",
                          [*common, "--worker-class", "gthread", "--threads", str(threads),
                           _APP], workers)
    return ServerSpec(_label("gunicorn", "sync", workers), "gunicorn", [*common, _APP], workers,
                      keeps_alive=False)


def granian(blocking_threads: int, workers: int = 1) -> ServerSpec:
    """WSGI interface, HTTP/1 only, one runtime thread; the app runs on the blocking threads."""
    return ServerSpec(
        _label("granian", f"--blocking-threads {blocking_threads}", workers), "granian",
        [sys.executable, "-m", "granian", "--interface", "wsgi", "--http", "1", "--no-ws",
         "--workers", str(workers), "--runtime-threads", "1",
         "--blocking-threads", str(blocking_threads), "--host", "127.0.0.1", "--port", "0",
         _APP], workers)


def meinheld(workers: int = 1) -> ServerSpec:
    return _c_server("meinheld", workers)


def bjoern(workers: int = 1) -> ServerSpec:
    return _c_server("bjoern", workers)


def _c_server(name: str, workers: int) -> ServerSpec:
    return ServerSpec(_label(name, "", workers), name,
                      [sys.executable, str(BENCH_DIR / "peer_server.py"), name,
                       "--workers", str(workers), "--bind", "127.0.0.1:0", _APP], workers)


def _label(name: str, detail: str, workers: int) -> str:
    parts = [name] + ([f"-w {workers}"] if workers > 1 else []) + ([detail] if detail else [])
    return " ".join(parts)


@dataclass
class Running:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    children: list[int] = field(default_factory=list)

    @property
    def worker_pid(self) -> int:
        return self.children[0]

    def pids(self) -> list[int]:
        """Every live process of the server: its session (the leader started a new one)."""
        return session_pids(self.process.pid)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the leader, wait up to 10 s, then SIGKILL every process left, by PID."""
        others = [pid for pid in self.pids() if pid != self.process.pid]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for pid in {*others, *session_pids(self.process.pid)}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3 onwards of /proc/PID/stat (state, ppid, pgrp, session, ...), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()


def session_pids(session: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields and int(fields[3]) == session and fields[0] not in (b"Z", b"X"):
                found.append(int(name))
    return sorted(found)


def children_of(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields and int(fields[1]) == pid and fields[0] not in (b"Z", b"X"):
                found.append(int(name))
    return sorted(found)


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by these processes, all their threads."""
    user = system = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            user += int(fields[11])
            system += int(fields[12])
    return user / _CLOCK_TICKS, system / _CLOCK_TICKS


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def listening_ports(pids: list[int]) -> set[int]:
    """Loopback TCP ports in LISTEN state whose socket one of these processes holds."""
    inodes = set()
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, _, port_hex = fields[1].partition(":")
        if fields[3] == _TCP_LISTEN and address == _LOOPBACK_HEX and fields[9] in inodes:
            ports.add(int(port_hex, 16))
    return ports


def check_answers(port: int, close: bool, keeps_alive: bool = True,
                  timeout_s: float = 3.0) -> None:
    """GET /hello as wrk will: twice on one connection, or once with ``Connection: close``
    (once without it for a server that closes every connection, ``keeps_alive`` false).

    Raises:
        ConnectionError, TimeoutError: nothing answered (yet).
        ServerFailed: an answer that is not 200 with HELLO_BODY, a keep-alive request
            answered with a close, or a connection left open when a close was due.
    """
    request = (f"GET {HELLO_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               + ("Connection: close\r\n" if close else "") + "\r\n").encode("ascii")
    expects_close = close or not keeps_alive
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        for _ in range(1 if expects_close else 2):
            sock.sendall(request)
            response = http.client.HTTPResponse(sock)
            response.begin()
            body = response.read()
            if response.status != 200 or body != HELLO_BODY:
                raise ServerFailed(f"GET {HELLO_PATH} answered {response.status} with "
                                   f"{body[:200]!r}, expected 200 with {HELLO_BODY!r}")
            if not expects_close and response.will_close:
                raise ServerFailed("a keep-alive request was answered with a close "
                                   f"(Connection: {response.getheader('Connection')})")
        if expects_close:
            try:
                closed = sock.recv(1) == b""
            except TimeoutError:
                closed = False
            if not closed:
                raise ServerFailed("the connection stayed open after a response that "
                                   "should have closed it")


def start(spec: ServerSpec, app: str, directory: Path, close: bool = False,
          timeout_s: float = 30.0, other_ports: frozenset[int] = frozenset()) -> Running:
    """Start ``spec`` serving ``app`` and return once it answers the check request.
    ``other_ports``: ports it also listens on that do not serve the app (a metrics port).

    Raises:
        ServerFailed: it exited, answered wrongly, or did not answer within ``timeout_s``
            (everything it started is stopped first; the message holds its log's tail).
    """
    log_path = directory / f"{spec.kind}-{time.monotonic_ns()}.log"
    pythonpath = [str(REPO_ROOT), str(BENCH_DIR)]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath), PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(spec.command(app), cwd=REPO_ROOT, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    running = Running(spec, process, 0, log_path)
    deadline = time.monotonic() + timeout_s
    problem = "no loopback port in LISTEN state"
    try:
        while time.monotonic() < deadline:
            ports = listening_ports(running.pids()) - other_ports
            if len(ports) > 1:
                raise ServerFailed(f"listens on several ports: {sorted(ports)}")
            if ports:
                running.port = ports.pop()
                try:
                    check_answers(running.port, close, spec.keeps_alive)
                except (ConnectionError, TimeoutError) as exc:
                    problem = f"no answer yet ({exc!r})"
                except http.client.HTTPException as exc:
                    raise ServerFailed(f"answered something that is not HTTP: {exc!r}") from exc
                else:
                    running.children = children_of(process.pid)
                    if len(running.children) >= spec.workers:
                        return running
                    problem = f"{len(running.children)} of {spec.workers} workers"
            try:
                process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            raise ServerFailed(f"exited with status {process.returncode}")
        raise ServerFailed(f"not ready within {timeout_s:g} s: {problem}")
    except ServerFailed as exc:
        running.stop()
        raise ServerFailed(f"{spec.label} serving {app}: {exc}\n--- its log ---\n"
                           f"{running.log_tail()}") from None
