#!/usr/bin/env python3
"""WebSocket servers side by side: a 100-byte text echo, one worker process each.

- wsgiserve, event mode (``tests.ws_apps:native`` /event, 4 threads);
- wsgiserve, blocking style (/blocking, one thread per connection);
- the ``websockets`` library's asyncio server (its C speedups on);
- Flask-Sock on gunicorn's gthread worker (one thread per connection).

One client process (raw sockets and a selector, frames masked once in advance: the
cheapest client we can write in Python) keeps ``--connections`` WebSockets busy, each
with one message in flight, for ``--messages`` echoes or ``--seconds``, whichever comes
first. Reported: messages per second, and the server's CPU time (user + system of its
processes, from /proc) per message. No permessage-deflate (the client does not offer it).
The servers take turns inside each repeat; the median of the repeats is shown.

    python benchmarks/bench_websocket.py                 # Markdown table
    python benchmarks/bench_websocket.py --connections 16 --messages 40000 --repeat 3
"""
from __future__ import annotations

import argparse
import base64
import os
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = b"x" * 100
_KEY = base64.b64encode(b"0123456789abcdef").decode()
_TICKS = os.sysconf("SC_CLK_TCK")

_WEBSOCKETS_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        print("Listening at: http://127.0.0.1:%d" % server.sockets[0].getsockname()[1],
              flush=True)
        await asyncio.Future()
asyncio.run(main())
"""


@dataclass
class Target:
    name: str
    command: list[str]
    path: str


def targets(connections: int) -> list[Target]:
    python = sys.executable
    threads = str(max(4, connections))
    wsgiserve = [python, "-m", "wsgiserve", "--bind", "127.0.0.1:0", "--workers", "1",
                 "--websocket-ping-interval", "0", "--no-websocket-deflate"]
    gunicorn = [python, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--workers", "1",
                "--worker-class", "gthread", "--threads", threads]
    return [
        Target("wsgiserve event mode", [*wsgiserve, "--threads", "4", "tests.ws_apps:native"],
               "/event"),
        Target("wsgiserve blocking", [*wsgiserve, "--threads", threads, "tests.ws_apps:native"],
               "/blocking"),
        Target("websockets (asyncio, C speedups)", [python, "-c", _WEBSOCKETS_SERVER], "/"),
        Target("Flask-Sock on gunicorn gthread", [*gunicorn, "tests.ws_apps:flask_sock"],
               "/echo"),
    ]


def _frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


class Started:
    def __init__(self, target: Target, log_dir: Path) -> None:
        self.log_path = log_dir / f"{target.name.split()[0]}-{time.monotonic_ns()}.log"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
        self.process = subprocess.Popen(target.command, stdout=self.log_path.open("wb"),
                                        stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                        start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            text = self.log_path.read_text("utf-8", "replace")
            match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            if match:
                self.port = int(match.group(1))
                break
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise SystemExit(f"{target.name} did not start:\n{text}")
            time.sleep(0.05)
        time.sleep(1.0)  # workers booted

    def cpu_s(self) -> float:
        """User + system seconds of the server's process group (master and workers)."""
        total = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:  # field 5: the process group
                total += int(fields[11]) + int(fields[12])
        return total / _TICKS

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)


def _connect(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {_KEY}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("closed during the handshake")
        head += data
    assert head.startswith(b"HTTP/1.1 101"), head[:100]
    assert head.endswith(b"\r\n\r\n"), "a frame came with the 101"
    sock.setblocking(False)
    return sock


def run_echo(port: int, path: str, connections: int, messages: int, seconds: float) -> int:
    """Echo messages over ``connections`` sockets; returns how many came back."""
    frame = _frame(PAYLOAD)
    expected = 2 + len(PAYLOAD)
    sockets = [_connect(port, path) for _ in range(connections)]
    pending = {sock: 0 for sock in sockets}  # bytes of the current echo received
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
        sock.send(frame)
    done = 0
    sent = connections
    deadline = time.monotonic() + seconds
    while done < messages and time.monotonic() < deadline:
        for key, _ in selector.select(5.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed")
            received = pending[sock] + len(data)
            while received >= expected:
                received -= expected
                done += 1
                if sent < messages:
                    sent += 1
                    sock.send(frame)
            pending[sock] = received
    selector.close()
    for sock in sockets:
        sock.close()
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as log_dir:
        chosen = targets(args.connections)
        for _ in range(args.repeat):
            for target in chosen:
                server = Started(target, Path(log_dir))
                try:
                    run_echo(server.port, target.path, args.connections, 500, 10)  # warm-up
                    cpu_before = server.cpu_s()
                    started = time.perf_counter()
                    done = run_echo(server.port, target.path, args.connections,
                                    args.messages, args.seconds)
                    elapsed = time.perf_counter() - started
                    cpu = server.cpu_s() - cpu_before
                finally:
                    server.stop()
                results.setdefault(target.name, []).append((done / elapsed,
                                                            cpu / done * 1e6))
    print(f"100-byte text echo, {args.connections} connections, one message in flight "
          f"each, {args.messages} messages, median of {args.repeat}\n")
    print("| server | messages/s | server CPU per message |")
    print("|---|---:|---:|")
    for name, runs in results.items():
        rate = statistics.median(run[0] for run in runs)
        cpu_us = statistics.median(run[1] for run in runs)
        print(f"| {name} | {rate:,.0f} | {cpu_us:.0f} us |")


if __name__ == "__main__":
    main()
