"""The WebSocket client beside the websockets library's sync client, on one echo server.

The server is the websockets library's (a subprocess on 127.0.0.1:0, so it does not share
the clients' GIL). Each workload is a fixed count of echoes on one connection: small text
round trips (latency), and 1 MiB binary messages (throughput), without and with
permessage-deflate. Prints the median of ``--repeat`` runs per client::

    python benchmarks/bench_websocket_client.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from wsgiserve.client.websocket import connect

SERVER = """
import sys
from websockets.sync.server import serve
def echo(ws):
    for message in ws:
        ws.send(message)
with serve(echo, "127.0.0.1", 0, max_size=None, compression={compression!r}) as server:
    print(server.socket.getsockname()[1], flush=True)
    server.serve_forever()
"""
SMALL_COUNT = 2000
BIG_COUNT = 32
BIG = os.urandom(1 << 19) * 2   # 1 MiB, half of it repeated: deflate has work to do


def ours(url: str, deflate: bool) -> Callable[[list[str | bytes]], None]:
    def run(messages: list[str | bytes]) -> None:
        with connect(url, deflate=deflate, max_message_bytes=4 << 20) as ws:
            for message in messages:
                ws.send(message)
                assert ws.recv(10) == message
    return run


def theirs(url: str, deflate: bool) -> Callable[[list[str | bytes]], None]:
    from websockets.sync.client import connect as websockets_connect

    def run(messages: list[str | bytes]) -> None:
        with websockets_connect(url, compression="deflate" if deflate else None,
                                max_size=4 << 20) as ws:
            for message in messages:
                ws.send(message)
                assert ws.recv(10) == message
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement")
    options = parser.parse_args()
    workloads: list[tuple[str, list[str | bytes]]] = [
        (f"{SMALL_COUNT} x 32 B text round trips", ["x" * 32] * SMALL_COUNT),
        (f"{BIG_COUNT} x 1 MiB binary echoes", [BIG] * BIG_COUNT),
    ]
    for deflate in (False, True):
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER.format(compression="deflate" if deflate else None)],
            stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            url = f"ws://127.0.0.1:{server.stdout.readline().strip()}/"
            for name, messages in workloads:
                for client, make in (("wsgiserve", ours), ("websockets", theirs)):
                    run = make(url, deflate)
                    times = []
                    for _ in range(options.repeat):
                        started = time.perf_counter()
                        run(messages)
                        times.append(time.perf_counter() - started)
                    print(f"{'deflate' if deflate else 'plain':7}  {name:32}  {client:10}  "
                          f"{statistics.median(times) * 1000:8.1f} ms", flush=True)
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
