#!/usr/bin/env python3
"""HTTP/2 throughput: wsgiserve against gunicorn 27 and granian, side by side in one run.

    python benchmarks/bench_http2.py                   # 3 rounds of 5 s each
    python benchmarks/bench_http2.py --rounds 1 --duration 3 --servers wsgiserve,gunicorn

One worker each, `tests/apps.py`'s hello world, h2load with 10 connections of 10 streams
(`-c 10 -m 10`), over h2c (prior knowledge) and over TLS (ALPN h2, a trustme
certificate), with 4 threads each:
  wsgiserve  --threads 4
  gunicorn   -k gthread --threads 4 --http-protocols h2,h1 --http2-cleartext prior-knowledge
             (gunicorn serves h2c to peers in --forwarded-allow-ips only: 127.0.0.1 is)
  granian    --interface wsgi --http 2 --blocking-threads 4
Then the concurrency case of issue 14, `h2load -n 8 -c 1 -m 8` against an app sleeping
0.5 s with 8 threads (one after another it would take 4 s), and our own HTTP/1.1
keep-alive rate (wrk -t2 -c50, and h2load --h1 -c10, the same client as the HTTP/2 rows),
the target being HTTP/2 at least as fast as our HTTP/1.1. Last, the latency of a fast
stream next to a slow one on one connection with --threads 1.

granian comes with the test and bench extras (pinned in setup.cfg); it is left out when
not installed. Servers bind 127.0.0.1:0 (granian's port is read from /proc) and are
stopped by PID. On the shared 2-core machine figures drift 20-50%: compare
the ratios of one run, and the CPU time per request.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "http2_server"))

from servers import children_of, cpu_seconds  # noqa: E402
from wrk import run_wrk  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
HELLO_APP = "tests.apps:hello"
SLEEP_APP = "tests.http2_server.h2_apps:app"
_LISTENING = re.compile(r"Listening at: https?://127\.0\.0\.1:(\d+)")


@dataclass
class Certificate:
    cert: Path
    key: Path         # PKCS#8 (granian reads no other format)


@dataclass
class Running:
    label: str
    process: subprocess.Popen[bytes]
    port: int
    children: list[int] = field(default_factory=list)

    @property
    def worker_pid(self) -> int:
        return self.children[0] if self.children else self.process.pid

    def stop(self) -> None:
        pids = [self.process.pid, *children_of(self.process.pid), *self.children]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for pid in pids[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def make_certificate(directory: Path) -> Certificate:
    import trustme
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert_path))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(cert_path, key_path)


def command(server: str, app: str, threads: int, tls: Certificate | None) -> list[str]:
    if server == "wsgiserve":
        argv = [sys.executable, "-m", "wsgiserve", "--workers", "1", "--threads",
                str(threads), "--bind", "127.0.0.1:0"]
        if tls:
            argv += ["--certfile", str(tls.cert), "--keyfile", str(tls.key)]
    elif server == "gunicorn":
        argv = [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class",
                "gthread", "--threads", str(threads), "--http-protocols", "h2,h1",
                "--http2-cleartext", "prior-knowledge", "--bind", "127.0.0.1:0"]
        if tls:
            argv += ["--certfile", str(tls.cert), "--keyfile", str(tls.key)]
    else:
        argv = ["granian", "--interface", "wsgi", "--http", "2", "--workers", "1",
                "--blocking-threads", str(threads), "--host", "127.0.0.1", "--port", "0",
                "--no-ws"]
        if tls:
            argv += ["--ssl-certificate", str(tls.cert), "--ssl-keyfile", str(tls.key)]
    return [*argv, app]


def listening_port_of(pids: list[int]) -> int | None:
    """The TCP port a LISTEN socket of one of ``pids`` is bound to (from /proc)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "0A" and parts[9] in inodes:   # 0A: LISTEN
            return int(parts[1].rsplit(":", 1)[1], 16)
    return None


def start(server: str, app: str, threads: int, tls: Certificate | None, directory: Path,
          timeout_s: float = 30.0) -> Running:
    log_path = directory / f"{server}-{time.monotonic_ns()}.log"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command(server, app, threads, tls), cwd=REPO_ROOT, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    label = f"{server} {'TLS' if tls else 'h2c'}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{label} exited:\n{log_path.read_text(errors='replace')}")
        children = children_of(process.pid)
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        port = int(match.group(1)) if match and match.group(1) != "0" else \
            listening_port_of([process.pid, *children])
        if port and children:
            running = Running(label, process, port, children)
            if h2load(running, "/hello" if app == HELLO_APP else "/sleep?s=0",
                      ["-n", "1", "-c", "1"], tls is not None, quiet=True)[0] == 1:
                return running
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{label} did not answer over HTTP/2 within {timeout_s} s:\n"
                       f"{log_path.read_text(errors='replace')}")


def h2load(server: Running, path: str, options: list[str], is_tls: bool,
           quiet: bool = False) -> tuple[int, float, str]:
    """(requests succeeded, req/s, h2load's output)."""
    scheme = "https" if is_tls else "http"
    # -N: a connection silent for 5 s ends (a stalled server does not hang the run).
    result = subprocess.run(["h2load", "-t", "1", "-N", "5", *options,
                             f"{scheme}://127.0.0.1:{server.port}{path}"],
                            capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", output)
    rate = re.search(r"finished in [^,]+, ([\d.]+) req/s", output)
    if not quiet and (done is None or rate is None):
        print(output, file=sys.stderr)
    return (int(done.group(1)) if done else 0, float(rate.group(1)) if rate else 0.0, output)


def measure(server: Running, seconds: float, is_tls: bool) -> tuple[float, float]:
    """(req/s, worker CPU microseconds per request) of hello under h2load -c10 -m10.

    The run is sized in requests from a warm-up's rate (h2load's timed mode, -D, never
    ended against gunicorn's TLS listener)."""
    _, warm_rate, _ = h2load(server, "/hello", ["-n", "1000", "-c", "10", "-m", "10"], is_tls)
    count = max(1000, int(warm_rate * seconds))
    user0, system0 = cpu_seconds([server.worker_pid])
    succeeded, rate, _ = h2load(server, "/hello", ["-n", str(count), "-c", "10", "-m", "10"],
                                is_tls)
    user1, system1 = cpu_seconds([server.worker_pid])
    cpu_us = 1e6 * (user1 - user0 + system1 - system0) / succeeded if succeeded else 0.0
    return rate, cpu_us


def throughput(servers: list[str], rounds: int, seconds: float, tls: Certificate,
               directory: Path) -> list[list[str]]:
    rows = []
    for is_tls in (False, True):
        rates: dict[str, list[float]] = {name: [] for name in servers}
        cpus: dict[str, list[float]] = {name: [] for name in servers}
        for round_index in range(rounds):
            order = servers if round_index % 2 == 0 else servers[::-1]
            for name in order:
                running = start(name, HELLO_APP, 4, tls if is_tls else None, directory)
                try:
                    rate, cpu_us = measure(running, seconds, is_tls)
                finally:
                    running.stop()
                rates[name].append(rate)
                cpus[name].append(cpu_us)
                print(f"  {running.label} round {round_index + 1}: {rate:,.0f} req/s, "
                      f"{cpu_us:.0f} us CPU per request", file=sys.stderr, flush=True)
        ours = statistics.median(rates["wsgiserve"])
        cells = []
        for name in servers:
            rate = statistics.median(rates[name])
            ratio = f" ({ours / rate:.2f}x)" if name != "wsgiserve" and rate else ""
            cells.append(f"{rate:,.0f}{ratio}; {statistics.median(cpus[name]):.0f} us")
        rows.append([f"hello, h2load -c10 -m10, {'TLS (ALPN h2)' if is_tls else 'h2c'}",
                     *cells])
    return rows


def sleeping_streams(servers: list[str], directory: Path) -> list[str]:
    cells = []
    for name in servers:
        running = start(name, SLEEP_APP, 8, None, directory)
        try:
            started = time.monotonic()
            succeeded, _, _ = h2load(running, "/sleep?s=0.5", ["-n", "8", "-c", "1", "-m", "8"],
                                     False)
            elapsed = time.monotonic() - started
        finally:
            running.stop()
        cells.append(f"{elapsed:.2f} s ({succeeded}/8)")
    return ["8 streams sleeping 0.5 s, one connection (-n8 -c1 -m8), 8 threads", *cells]


def http11_rates(seconds: float, directory: Path) -> tuple[float, float]:
    """Our HTTP/1.1 keep-alive rates with 4 threads: wrk -t2 -c50, h2load --h1 -c10."""
    running = start("wsgiserve", HELLO_APP, 4, None, directory)
    try:
        run_wrk(running.port, 1, 50, False)
        wrk_rate = run_wrk(running.port, seconds, 50, False).rate
        _, warm_rate, _ = h2load(running, "/hello", ["--h1", "-n", "1000", "-c", "10"], False)
        _, h1load_rate, _ = h2load(running, "/hello", [
            "--h1", "-n", str(max(1000, int(warm_rate * seconds))), "-c", "10"], False)
    finally:
        running.stop()
    return wrk_rate, h1load_rate


def fast_next_to_slow(directory: Path, tries: int = 10) -> float:
    """Median ms until a fast response comes while a slow stream of the same connection
    (its app sleeping 0.8 s) is queued, wsgiserve --threads 1."""
    from h2client import H2Connection

    running = start("wsgiserve", SLEEP_APP, 1, None, directory)
    latencies = []
    try:
        with H2Connection(running.port, timeout_s=10) as conn:
            conn.handshake()
            for _ in range(tries):
                started = time.monotonic()
                fast = conn.request("/hello")
                slow = conn.request("/sleep?s=0.8")
                conn.response(fast)
                latencies.append(1000 * (time.monotonic() - started))
                conn.response(slow)
    finally:
        running.stop()
    return statistics.median(latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per h2load run")
    parser.add_argument("--servers", default="wsgiserve,gunicorn,granian")
    args = parser.parse_args(argv)
    for tool in ("h2load", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    servers = [name for name in args.servers.split(",")
               if name != "granian" or shutil.which("granian")]
    if "wsgiserve" not in servers:
        servers.insert(0, "wsgiserve")
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        certificate = make_certificate(directory)
        rows = throughput(servers, args.rounds, args.duration, certificate, directory)
        rows.append(sleeping_streams(servers, directory))
        wrk_rate, h1load_rate = http11_rates(args.duration, directory)
        latency_ms = fast_next_to_slow(directory)
    ours_h2c = float(rows[0][1].split(";")[0].replace(",", ""))
    print(f"\n1 worker each, {args.rounds} rounds of {args.duration:g} s, medians; "
          "req/s (wsgiserve's ratio to it); worker CPU per request\n")
    print("| measure | " + " | ".join(servers) + " |")
    print("|---|" + "---|" * len(servers))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nwsgiserve HTTP/1.1 keep-alive, --threads 4: wrk -t2 -c50 {wrk_rate:,.0f} req/s, "
          f"h2load --h1 -c10 {h1load_rate:,.0f} req/s; HTTP/2 h2c / HTTP/1.1: "
          f"{ours_h2c / wrk_rate:.2f}x (wrk), {ours_h2c / h1load_rate:.2f}x (h2load --h1)")
    print(f"A fast stream next to a slow one, wsgiserve --threads 1: {latency_ms:.1f} ms "
          "(median of 10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
