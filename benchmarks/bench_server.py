#!/usr/bin/env python3
"""wsgiserve against gunicorn, side by side in one run: wrk throughput and worker memory.

    python benchmarks/bench_server.py                  # 3 rounds of 5 s, then memory
    python benchmarks/bench_server.py --rounds 1 --duration 3 --no-memory
    python benchmarks/bench_server.py --profile /tmp/worker.txt   # py-spy the worker

One worker each, the hello-world app of tests/apps.py, wrk with 50 connections:
  keep-alive  wsgiserve --threads 4   vs  gunicorn -k gthread --threads 4
  close       wsgiserve --threads 1   vs  gunicorn (sync worker), 'Connection: close'
Rounds alternate A/B and the table gives medians and the ratio. Memory (bench_memory.py):
idle worker RSS, and the worker's peak RSS growth while one connection streams a 200 MB
upload and then a 200 MB download. Servers bind 127.0.0.1:0; every process is stopped by
PID. Numbers drift 20-50% on a shared 2-core machine: compare ratios from one run.
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
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


@dataclass
class ServerSpec:
    label: str
    argv: list[str]  # without --bind and the app


def wsgiserve(threads: int) -> ServerSpec:
    return ServerSpec(f"wsgiserve --threads {threads}",
                      [sys.executable, "-m", "wsgiserve", "--workers", "1",
                       "--threads", str(threads)])


def gunicorn(threads: int) -> ServerSpec:
    if threads > 1:
        return ServerSpec(f"gunicorn gthread --threads {threads}",
                          [sys.executable, "-m", "gunicorn", "--workers", "1",
                           "--worker-class", "gthread", "--threads", str(threads)])
    return ServerSpec("gunicorn sync", [sys.executable, "-m", "gunicorn", "--workers", "1"])


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    children: list[int] = field(default_factory=list)

    @property
    def worker_pid(self) -> int:
        return self.children[0]

    def stop(self) -> None:
        pids = [self.process.pid, *self.children]
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


def children_of(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2:].split()
            if int(fields[1]) == pid and fields[0] not in (b"Z", b"X"):
                found.append(int(name))
    return sorted(found)


def start(spec: ServerSpec, app: str, directory: Path, timeout_s: float = 20.0) -> Running:
    log_path = directory / f"server-{time.monotonic_ns()}.log"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*spec.argv, "--bind", "127.0.0.1:0", app], cwd=REPO_ROOT,
                                   env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    running = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{spec.label} exited:\n{log_path.read_text()}")
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            running = Running(process, int(match.group(1)), log_path)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{running.port}/hello",
                                            timeout=2) as response:
                    response.read()
                running.children = children_of(process.pid)
                if running.children:
                    return running
            except OSError:
                pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{spec.label} did not answer within {timeout_s} s")


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def run_wrk(port: int, seconds: float, connections: int, close: bool) -> tuple[float, str]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
               "--latency"]
    if close:
        command += ["-H", "Connection: close"]
    command.append(f"http://127.0.0.1:{port}/hello")
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30,
                            check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = []
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: ([^\n]+)"):
        found = re.search(pattern, output)
        if found:
            errors.append(found.group(0))
    return float(match.group(1)) if match else 0.0, "; ".join(errors)


def profile_worker(pid: int, seconds: float, out: Path, only_gil: bool) -> None:
    """py-spy the worker (raw collapsed stacks) for ``seconds``: every thread that is not
    idle, or with ``only_gil`` just the thread holding the GIL (Python's CPU time)."""
    command = ["py-spy", "record", "-p", str(pid), "-f", "raw", "-o", str(out),
               "-d", str(max(1, int(seconds))), "-r", "200", "--nonblocking"]
    if only_gil:
        command.append("--gil")
    subprocess.run(command, capture_output=True, timeout=seconds + 60, check=False)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by a process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    fields = stat[stat.rindex(b")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def summarize_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive share of samples per function from py-spy's raw output."""
    self_counts: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [re.sub(r" \(.*?/([^/]+\.py):\d+\)", r" (\1)", f) for f in stack.split(";")]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    lines = [f"{total} samples", "", "self %  function"]
    for frame, count in sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * count / total:5.1f}  {frame}")
    lines += ["", "incl %  function"]
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * count / total:5.1f}  {frame}")
    return "\n".join(lines)


def throughput(pairs: list[tuple[str, ServerSpec, ServerSpec, bool]], rounds: int,
               seconds: float, connections: int, directory: Path,
               profile: Path | None, only_gil: bool = False) -> tuple[list[list[str]], dict[str, int]]:
    rows = []
    idle_rss: dict[str, int] = {}
    for scenario, ours, theirs, close in pairs:
        results: dict[str, list[float]] = {ours.label: [], theirs.label: []}
        cpu = {ours.label: [0.0, 0.0, 0.0], theirs.label: [0.0, 0.0, 0.0]}
        notes: list[str] = []
        for round_index in range(rounds):
            order = (ours, theirs) if round_index % 2 == 0 else (theirs, ours)
            for spec in order:
                server = start(spec, "tests.apps:hello", directory)
                try:
                    idle_rss.setdefault(spec.label, rss_kib(server.worker_pid))
                    idle_rss.setdefault(spec.label + " tree", rss_kib(server.worker_pid)
                                        + rss_kib(server.process.pid))
                    run_wrk(server.port, 1, connections, close)  # warm-up
                    if profile is not None and spec is ours and not close \
                            and round_index == 0:
                        profiler = subprocess.Popen(
                            [sys.executable, __file__, "--_profile-child",
                             str(server.worker_pid), str(seconds), str(profile),
                             "gil" if only_gil else "wall"])
                        rate, errors = run_wrk(server.port, seconds, connections, close)
                        profiler.wait(timeout=seconds + 90)
                    else:
                        user0, system0 = cpu_seconds(server.worker_pid)
                        rate, errors = run_wrk(server.port, seconds, connections, close)
                        user1, system1 = cpu_seconds(server.worker_pid)
                        cpu[spec.label][0] += user1 - user0
                        cpu[spec.label][1] += system1 - system0
                        cpu[spec.label][2] += rate * seconds
                finally:
                    server.stop()
                results[spec.label].append(rate)
                if errors:
                    notes.append(f"{spec.label}: {errors}")
                print(f"  {scenario} round {round_index + 1}: {spec.label}: {rate:,.0f} req/s"
                      f"{'  ' + errors if errors else ''}", file=sys.stderr, flush=True)
        per_request = {}
        for spec in (ours, theirs):
            user, system, requests = cpu[spec.label]
            if requests:
                per_request[spec.label] = (user + system) / requests
                notes.append(f"{spec.label}: {1e6 * user / requests:.0f} us user + "
                             f"{1e6 * system / requests:.0f} us sys CPU per request")
        if len(per_request) == 2 and per_request[ours.label]:
            notes.append(f"CPU per request ratio (less drift than req/s): "
                         f"{per_request[theirs.label] / per_request[ours.label]:.2f}x")
        ours_median = statistics.median(results[ours.label])
        theirs_median = statistics.median(results[theirs.label])
        rows.append([f"{scenario} req/s", f"{ours.label}: {ours_median:,.0f}",
                     f"{theirs.label}: {theirs_median:,.0f}",
                     f"{ours_median / theirs_median:.2f}x" if theirs_median else "-",
                     "; ".join(notes)])
    return rows, idle_rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--stream-mb", type=int, default=200)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--profile", type=Path, help="py-spy raw output for the wsgiserve "
                        "worker during the first keep-alive run; a summary is printed")
    parser.add_argument("--profile-gil", action="store_true", help="profile only the "
                        "thread holding the GIL (where Python's CPU time goes)")
    parser.add_argument("--_profile-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._profile_child:
        pid, seconds, out, mode = args._profile_child
        profile_worker(int(pid), float(seconds), Path(out), mode == "gil")
        return 0
    for tool in ("wrk",) + (("py-spy",) if args.profile else ()):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    pairs = [("keep-alive", wsgiserve(4), gunicorn(4), False),
             ("Connection: close", wsgiserve(1), gunicorn(1), True)]
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        rows, idle = throughput(pairs, args.rounds, args.duration, args.connections,
                                directory, args.profile, args.profile_gil)
        ours, theirs = wsgiserve(4), gunicorn(4)
        for suffix, what in (("", "idle worker RSS"), (" tree", "idle RSS, master + worker")):
            mine, other = idle[ours.label + suffix], idle[theirs.label + suffix]
            rows.append([what, f"{ours.label}: {mine / 1024:.1f} MiB",
                         f"{theirs.label}: {other / 1024:.1f} MiB", f"{mine / other:.2f}x", ""])
        if not args.no_memory:
            from bench_memory import stream_growth
            for direction in ("upload", "download"):
                mine = stream_growth(ours, direction, args.stream_mb, directory)
                other = stream_growth(theirs, direction, args.stream_mb, directory)
                rows.append([f"RSS growth, {args.stream_mb} MB {direction}",
                             f"{ours.label}: {mine / 1024:.1f} MiB",
                             f"{theirs.label}: {other / 1024:.1f} MiB", "", ""])
    print(f"\n1 worker, hello world, wrk -t2 -c{args.connections}, {args.rounds} rounds of "
          f"{args.duration:g} s, medians\n")
    print("| measure | wsgiserve | gunicorn | ratio | notes |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.profile and args.profile.exists():
        print("\n## py-spy profile of the wsgiserve worker (keep-alive run)\n")
        print(summarize_profile(args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
