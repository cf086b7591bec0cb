#!/usr/bin/env python3
"""Load shedding under overload: an app that takes 10 ms on 4 threads (about 400
requests/s) against 160 clients that each send their next request as soon as the last one
is answered, with --max-queue-time off and on, side by side in one run.

    python benchmarks/bench_shedding.py                      # 2 rounds of 5 s per mode
    python benchmarks/bench_shedding.py --duration 10 --max-queue-time 0.2

Prints a markdown table: the requests served (200) per second and their latency, the 503s
and theirs, and the requests that failed or timed out (none expected in either mode: with
shedding off every request waits its turn; with it on, a request that cannot start within
the queue time is answered 503 at once). Servers bind 127.0.0.1:0 and are stopped by PID.
"""
from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "server"))

from serving import Server  # noqa: E402 - after the sys.path set-up above

APP = textwrap.dedent('''\
    import time


    def app(environ, start_response):
        time.sleep(0.010)  # I/O-bound work: the thread is held, the GIL is not
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
''')


def _client(port: int, stop_at: float, results: list[tuple[str, float]]) -> None:
    connection = None
    while time.monotonic() < stop_at:
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.monotonic()
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            outcome = str(response.status)
            if response.will_close:
                connection.close()
                connection = None
        except TimeoutError:
            outcome = "timeout"
            connection = None
        except OSError:
            outcome = "error"
            connection = None
        results.append((outcome, time.monotonic() - started))
    if connection is not None:
        connection.close()


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(max_queue_time: str, clients: int, duration_s: float, directory: Path) -> dict[str, float]:
    results: list[tuple[str, float]] = []
    with Server(directory, "shed_app:app", "--threads", "4", "--max-queue-time",
                max_queue_time, "--backlog", "4096", pythonpath=[directory]) as server:
        stop_at = time.monotonic() + duration_s
        threads = [threading.Thread(target=_client, args=(server.port, stop_at, results))
                   for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(duration_s + 60)
    served = [latency for outcome, latency in results if outcome == "200"]
    shed = [latency for outcome, latency in results if outcome == "503"]
    failed = [outcome for outcome, _ in results if outcome not in ("200", "503")]
    return {"served/s": len(served) / duration_s,
            "served p50 ms": _percentile(served, 0.5) * 1000,
            "served p99 ms": _percentile(served, 0.99) * 1000,
            "served max ms": max(served, default=float("nan")) * 1000,
            "503s": float(len(shed)), "503 p50 ms": _percentile(shed, 0.5) * 1000,
            "503 p99 ms": _percentile(shed, 0.99) * 1000,
            "failed or timed out": float(len(failed))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per mode, alternating")
    # Each client has one request in flight, so a request queues behind (clients - 4) / 4
    # others of 10 ms: 160 clients wait about 390 ms, well past the 0.1 s setting (40 would
    # wait 90 ms, under it, and nothing would be shed).
    parser.add_argument("--clients", type=int, default=160, help="concurrent clients")
    parser.add_argument("--max-queue-time", default="0.1", help="the setting when on")
    options = parser.parse_args()
    modes = {"off": "0", f"on ({options.max_queue_time} s)": options.max_queue_time}
    rows: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        (directory / "shed_app.py").write_text(APP)
        for _ in range(options.rounds):
            for mode, value in modes.items():
                rows[mode].append(run(value, options.clients, options.duration, directory))
    columns = list(next(iter(rows.values()))[0])
    print(f"10 ms app, 4 threads (~400 req/s), {options.clients} clients, "
          f"{options.duration:.0f} s x {options.rounds} rounds, medians\n")
    print("| --max-queue-time | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for mode, runs in rows.items():
        cells = [statistics.median(run[column] for run in runs) for column in columns]
        print(f"| {mode} | " + " | ".join(f"{cell:,.0f}" for cell in cells) + " |")


if __name__ == "__main__":
    main()
