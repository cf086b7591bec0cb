#!/usr/bin/env python3
"""What --metrics-bind costs the request path: wrk throughput and the worker's CPU time per
request with metrics on and off, side by side in one run.

    python benchmarks/bench_metrics.py                     # 3 rounds of 5 s each way
    python benchmarks/bench_metrics.py --threads 4 --rounds 5
    python benchmarks/bench_metrics.py --in-process         # no wrk: the request path alone

One worker serving the hello-world app of tests/apps.py, ``wrk -t2 -c50``; rounds alternate
off/on (then on/off) so drift from other load on the machine falls on both. The CPU time
(user + system of the worker, from /proc/PID/stat around each measured run) divided by
the requests wrk made is the steadier figure; req/s drifts 20-50% on a shared machine.
With metrics on, the master's /metrics is scraped after the runs and its request count
must equal what wrk completed, give or take the responses in flight when wrk stopped.

``--in-process`` takes wrk, the kernel's scheduling and the other processes on the
machine out: one process drives a worker's ``Connection`` over a socketpair (keep-alive
GETs of the hello app, the request path as the worker runs it), with and without a
``Recorder``, alternating blocks of requests, and reports the CPU time per request of
each; their difference is what counting costs.
"""
from __future__ import annotations

import argparse
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import ServerSpec, cpu_seconds, start  # noqa: E402 - after sys.path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

_METRICS_AT = re.compile(r"Serving metrics at: (http://127\.0\.0\.1:\d+)/metrics")
_WRK_TOTAL = re.compile(r"(\d+) requests in ")


def run_wrk(port: int, seconds: float, connections: int) -> tuple[float, int, str]:
    """req/s, requests made, and any error lines."""
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
         f"http://127.0.0.1:{port}/hello"],
        capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = _WRK_TOTAL.search(output)
    errors = [m.group(0) for pattern in (r"Non-2xx or 3xx responses: (\d+)",
                                         r"Socket errors: ([^\n]+)")
              if (m := re.search(pattern, output))]
    return (float(rate.group(1)) if rate else 0.0, int(total.group(1)) if total else 0,
            "; ".join(errors))


def counted_requests(base_url: str) -> int:
    """wsgiserve_requests_total summed, from the master's /metrics (the worker counts just
    after each response: poll briefly until it settles)."""
    last, settled_at = -1, time.monotonic()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                    if line.startswith("wsgiserve_requests_total{"))
        if total != last:
            last, settled_at = total, time.monotonic()
        elif time.monotonic() - settled_at > 0.5:
            break
        time.sleep(0.1)
    return last


def in_process(rounds: int, block: int) -> int:
    """CPU time per keep-alive request through ``Connection.handle``, metrics off and on."""
    from tests.apps import hello
    from wsgiserve.http import HttpLimits
    from wsgiserve.server.counters import Recorder, WorkerCounters
    from wsgiserve.server.worker.connection import Connection, make_base_environ
    from wsgiserve.server.worker.context import ServerContext

    request = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n\r\n"
    setups = {}
    for label, recorder in (("metrics off", None),
                            ("metrics on", Recorder(WorkerCounters(threads=1)))):
        context = ServerContext(app=hello, limits=HttpLimits(), keepalive_s=5.0,
                                header_timeout_s=5.0, body_timeout_s=5.0, script_name="",
                                access_log=None, metrics=recorder)
        server, client = socket.socketpair()
        base = make_base_environ("127.0.0.1", "80", "http", multithread=False,
                                 multiprocess=False)
        setups[label] = (Connection(server, ("127.0.0.1", 5555), context, base), client)
    totals = {label: [0.0, 0] for label in setups}
    for round_index in range(rounds):
        order = list(setups) if round_index % 2 == 0 else list(reversed(setups))
        for label in order:
            conn, client = setups[label]
            started = time.thread_time()
            for _ in range(block):
                client.send(request)
                conn.handle(select.EPOLLIN)
                client.recv(65536)
            totals[label][0] += time.thread_time() - started
            totals[label][1] += block
    print(f"\nIn one process, {rounds} alternating blocks of {block:,} keep-alive requests "
          "each way (client included)\n")
    per_request = {label: 1e6 * cpu / count for label, (cpu, count) in totals.items()}
    for label, us in per_request.items():
        print(f"| {label} | {us:.2f} us CPU per request |")
    print(f"\nCounting costs {per_request['metrics on'] - per_request['metrics off']:.2f} us "
          "per request")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="worker threads")
    parser.add_argument("--in-process", action="store_true",
                        help="drive a Connection in this process instead of wrk and a server")
    parser.add_argument("--block", type=int, default=20_000,
                        help="requests per block with --in-process")
    args = parser.parse_args(argv)
    if args.in_process:
        return in_process(args.rounds * 4, args.block)
    if shutil.which("wrk") is None:
        print("wrk is not installed (tools/install-test-deps.sh)", file=sys.stderr)
        return 2
    base = [sys.executable, "-m", "wsgiserve", "--workers", "1", "--threads", str(args.threads),
            "--bind", "127.0.0.1:0"]
    off = ServerSpec("metrics off", "wsgiserve", [*base, "{app}"])
    with socket.socket() as probe:  # a free port for the metrics listener
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    on = ServerSpec("metrics on", "wsgiserve",
                    [*base, "--metrics-bind", f"127.0.0.1:{metrics_port}", "{app}"])
    rates: dict[str, list[float]] = {off.label: [], on.label: []}
    cpu: dict[str, list[float]] = {off.label: [0.0, 0.0, 0.0], on.label: [0.0, 0.0, 0.0]}
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as directory:
        for round_index in range(args.rounds):
            for spec in (off, on) if round_index % 2 == 0 else (on, off):
                server = start(spec, "tests.apps:hello", Path(directory),
                               other_ports=frozenset({metrics_port}))
                try:
                    _, warm_total, _ = run_wrk(server.port, 1, args.connections)
                    user0, system0 = cpu_seconds([server.worker_pid])
                    rate, total, errors = run_wrk(server.port, args.duration, args.connections)
                    user1, system1 = cpu_seconds([server.worker_pid])
                    match = _METRICS_AT.search(server.log_path.read_text())
                    if match:
                        # +1: start() checks the server with one request of its own. wrk
                        # drops the responses in flight when it stops (up to one per
                        # connection, per run): the server answered and counted those.
                        counted = counted_requests(match.group(1))
                        made = warm_total + total + 1
                        if not made <= counted <= made + 2 * args.connections:
                            problems.append(f"round {round_index + 1}: /metrics counted "
                                            f"{counted}, wrk completed {made}")
                finally:
                    server.stop()
                rates[spec.label].append(rate)
                cpu[spec.label][0] += user1 - user0
                cpu[spec.label][1] += system1 - system0
                cpu[spec.label][2] += total
                if errors:
                    problems.append(f"{spec.label}: {errors}")
                print(f"  round {round_index + 1}: {spec.label}: {rate:,.0f} req/s, "
                      f"{1e6 * (user1 - user0 + system1 - system0) / max(1, total):.1f} us "
                      "CPU/request", file=sys.stderr, flush=True)
    print(f"\n1 worker --threads {args.threads}, hello world, wrk -t2 -c{args.connections}, "
          f"{args.rounds} rounds of {args.duration:g} s each way\n")
    print("| | req/s (median) | req/s per round | worker CPU per request (user + sys) |")
    print("|---|---|---|---|")
    per_request = {}
    for spec in (off, on):
        user, system, requests = cpu[spec.label]
        per_request[spec.label] = (user + system) / requests if requests else 0.0
        rounds = ", ".join(f"{rate:,.0f}" for rate in rates[spec.label])
        print(f"| {spec.label} | {statistics.median(rates[spec.label]):,.0f} | {rounds} | "
              f"{1e6 * user / max(1, requests):.1f} + {1e6 * system / max(1, requests):.1f} "
              f"= {1e6 * per_request[spec.label]:.1f} us |")
    if per_request[off.label]:
        print(f"\nCPU per request, on / off: {per_request[on.label] / per_request[off.label]:.3f}"
              f"; req/s median, on / off: "
              f"{statistics.median(rates[on.label]) / statistics.median(rates[off.label]):.3f}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
