"""Helpers for the worker and end-to-end tests: a real ``python -m wsgiserve`` process and
a raw-socket HTTP/1.1 client that shares no code with ``wsgiserve.http``.

The server binds ``127.0.0.1:0`` and the port is read from its log ("Listening at: ...");
no test picks a free port in advance. Every wait has a deadline; processes are stopped by
PID (the process helpers are shared, in ``tests/processes.py``). Used by
tests/server/test_worker*.py and tests/e2e/.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from processes import (
    READY,
    child_environment,
    children_of,
    listening_port,
    spawn,
    stop_by_pid,
    wait_for_log,
    wait_until,
)


# --- /proc ---------------------------------------------------------------------------------


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{name} not in /proc/{pid}/status")


def rss_kib(pid: int) -> int:
    """Resident set size now, KiB."""
    return _status_field(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """Peak resident set size since the process started (VmHWM), KiB."""
    return _status_field(pid, "VmHWM")


# --- the server process -----------------------------------------------------------------------


class Server:
    """``python -m wsgiserve --bind 127.0.0.1:0 --workers 1 ARGS APP``, log in a file."""

    def __init__(self, directory: Path, app: str = "tests.apps:app", *args: str,
                 pythonpath: Sequence[Path] = (), env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.log_path = directory / f"wsgiserve-{time.monotonic_ns()}.log"
        self.command = [sys.executable, "-m", "wsgiserve", "--bind", "127.0.0.1:0",
                        "--workers", "1", *args]
        if app:
            self.command.append(app)
        self.environment = child_environment(pythonpath, env)
        self.cwd = cwd or directory
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.worker_pid = 0

    def start(self, timeout_s: float = 20.0) -> Server:
        self.process = spawn(self.command, self.log_path, cwd=self.cwd, env=self.environment,
                             start_new_session=True)
        try:
            wait_for_log(self.log, self.process, READY, timeout_s)
        except AssertionError:
            self.stop()
            raise
        self.port = listening_port(self.log())
        workers = wait_until(lambda: children_of(self.pid), 5.0, message="a worker")
        self.worker_pid = workers[0]
        return self

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def connect(self, timeout_s: float = 5.0) -> RawConnection:
        return RawConnection(self.port, timeout_s)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM the master; SIGKILL it and its worker by PID if they outlive the timeout."""
        if self.process is None:
            return None
        return stop_by_pid(self.process, {self.worker_pid} if self.worker_pid else set(),
                           timeout_s=timeout_s)


# --- a raw HTTP/1.1 client --------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    framing: str = "none"  # "cl", "chunked", "close" or "none"
    head: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def announces_close(self) -> bool:
        return "close" in (self.header("connection") or "").lower()


class RawConnection:
    """A socket with a read buffer: send bytes, read whole responses one at a time."""

    def __init__(self, port: int, timeout_s: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buffer = b""

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed before {marker!r}; have {self.buffer[:200]!r}")
        data, _, self.buffer = self.buffer.partition(marker)
        return data + marker

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError(f"closed after {len(self.buffer)} of {size} bytes")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_close(self) -> bytes:
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data

    def is_closed(self, timeout_s: float = 3.0) -> bool:
        """True when the server closes (EOF or reset) within ``timeout_s`` with nothing more
        to read; False when bytes arrive or the wait times out."""
        if self.buffer:
            return False
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def read_head(self) -> RawResponse:
        head = self.read_until(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        assert version in ("HTTP/1.1", "HTTP/1.0"), lines[0]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name and name == name.strip(), f"bad field line {line!r}"
            headers.append((name, value.strip()))
        return RawResponse(int(status), reason[0] if reason else "", headers, head=head)

    def read_response(self, *, is_head: bool = False) -> RawResponse:
        """Read one final response (skipping none: a 1xx is returned as it is)."""
        response = self.read_head()
        length = response.header("content-length")
        coding = response.header("transfer-encoding")
        if is_head or response.status < 200 or response.status in (204, 304):
            response.framing = "none"
        elif coding is not None:
            assert coding.lower() == "chunked", coding
            assert length is None, "Content-Length with Transfer-Encoding"
            response.framing = "chunked"
            response.body, response.trailers = self._read_chunked()
        elif length is not None:
            response.framing = "cl"
            response.body = self.read_exactly(int(length))
        else:
            response.framing = "close"
            response.body = self.read_to_close()
        return response

    def _read_chunked(self) -> tuple[bytes, list[tuple[str, str]]]:
        pieces = []
        while True:
            size_line = self.read_until(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                break
            pieces.append(self.read_exactly(size))
            assert self.read_exactly(2) == b"\r\n", "chunk not followed by CRLF"
        trailers = []
        while (line := self.read_until(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            trailers.append((name, value.strip()))
        return b"".join(pieces), trailers


def request_bytes(method: str, path: str, *, headers: Sequence[tuple[str, str]] = (),
                  body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    """A request head (Host added) and body; Content-Length added when there is a body."""
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    names = {name.lower() for name, _ in headers}
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(pieces: Sequence[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"
