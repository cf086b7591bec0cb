"""A real ``python -m wsgiserve`` for the TLS and proxy tests, and test certificates.

The server binds 127.0.0.1:0 and reports its port in its log, which a thread reads line by
line; waits are on that stream (with deadlines), never sleeps. Certificates come from
trustme at test time: no private key is committed.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"Listening at: (https?)://[^ ]*:(\d+)")


class Server:
    """``with Server(directory, "module:app", *flags) as server:``; stopped by PID on exit."""

    def __init__(self, directory: Path, app: str, *args: str, bind: bool = True) -> None:
        self.directory = directory
        command = [sys.executable, "-m", "wsgiserve"]
        if bind:
            command += ["--bind", "127.0.0.1:0"]
        self.command = [*command, *args, app]
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.scheme = ""

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 20.0) -> Server:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(self.directory)])
        self.process = subprocess.Popen(
            self.command, cwd=self.directory, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read_log, daemon=True).start()
        match = self.wait_for(_LISTENING, timeout_s)
        self.scheme, self.port = match.group(1), int(match.group(2))
        self.wait_for(re.compile(r"ready: \d+ worker"), timeout_s)
        return self

    def _read_log(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # end of log: the process exited
            self._changed.notify_all()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float = 10.0,
                 start: int = 0, count: int = 1) -> re.Match[str]:
        """The ``count``-th match in log lines ``start:``; fails if the process exits
        first."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                matches = [match for match in map(pattern.search, self.lines[start:])
                           if match]
                if len(matches) >= count:
                    return matches[count - 1]
                if self.lines and self.lines[-1] == "":
                    raise AssertionError(f"server exited before {pattern.pattern!r}:\n"
                                         f"{self.log[-3000:]}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {pattern.pattern!r} in {timeout_s} s:\n"
                                         f"{self.log[-3000:]}")
                self._changed.wait(remaining)

    def wait_exit(self, timeout_s: float = 20.0) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout_s)
        with self._changed:
            self._changed.wait_for(lambda: bool(self.lines) and self.lines[-1] == "",
                                   timeout_s)
        return code

    def connect(self, timeout_s: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s)

    def connect_tls(self, context: ssl.SSLContext, timeout_s: float = 10.0,
                    server_hostname: str = "localhost") -> ssl.SSLSocket:
        sock = self.connect(timeout_s)
        try:
            return context.wrap_socket(sock, server_hostname=server_hostname)
        except BaseException:
            sock.close()
            raise

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self, timeout_s: float = 15.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One Content-Length response from a blocking socket (with its timeout)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a response body")
        body += chunk
    return status, headers, body[:length]


def get(sock: socket.socket, path: str = "/", headers: str = "") -> tuple[int, dict[str, str],
                                                                        bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode("latin-1"))
    return read_response(sock)


def pem_files(directory: Path, certificate: Any, name: str) -> tuple[str, str]:
    """Write a trustme LeafCert's chain and key; returns (certfile, keyfile)."""
    certfile, keyfile = directory / f"{name}.crt", directory / f"{name}.key"
    certificate.private_key_pem.write_to_path(str(keyfile))
    with open(certfile, "wb") as file:
        for blob in certificate.cert_chain_pems:
            file.write(blob.bytes())
    return str(certfile), str(keyfile)
