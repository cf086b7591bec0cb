#!/usr/bin/env python3
"""wsgiserve against meinheld, granian, bjoern and gunicorn, side by side in one run.

The peers are benchmark-only tools (tools/install-bench-deps.sh installs them):
    apt-get install -y wrk strace libev-dev     # libev for meinheld's and bjoern's builds
    pip install -e '.[test,bench]'              # granian, bjoern, greenlet 3, py-spy, pinned
    pip install --no-deps meinheld==1.0.2       # it pins greenlet<0.5, which fails on 3.11

    python benchmarks/bench_server.py                     # every row, 3 rounds of 5 s, ~10 min
    python benchmarks/bench_server.py --rows keepalive,close --servers wsgiserve,meinheld
    python benchmarks/bench_server.py --rows none --profile /tmp/worker.txt --strace 3

Rows (wrk -t2, GET /hello of tests/apps.py's ``hello``, 13 bytes with Content-Length):
  keepalive  1 worker, keep-alive, -c50
  close      1 worker, 'Connection: close' on every request, -c50
  workers2   2 workers, keep-alive, -c100
  flask      benchmarks/flask_hello.py, 1 worker, 4 threads (gunicorn sync: 1), -c50
  memory     idle RSS and RSS growth streaming a body each way, wsgiserve vs gunicorn
Each server is started fresh for each run (servers.py: 127.0.0.1:0, checked to
answer 200 with the right body, stopped by PID), warmed up for 1 s, then measured. Rounds
alternate the order of servers; the table gives medians, the ratio of each wsgiserve
variant of the row to each server, and the CPU per request: user + sys of the server's
whole process tree (/proc) over the requests wrk completed. Numbers drift 20-50% on a
shared 2-core machine: compare ratios from one run; CPU per request drifts less.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import linecache
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from servers import (
    HELLO_PATH,
    REPO_ROOT,
    ServerFailed,
    ServerSpec,
    bjoern,
    cpu_seconds,
    granian,
    gunicorn,
    meinheld,
    rss_kib,
    start,
    wsgiserve,
)

HELLO_APP: Final = "tests.apps:hello"
FLASK_APP: Final = "flask_hello:app"
WARM_UP_S: Final = 1.0
WRK_TIMEOUT_S: Final = 5
# More log output than this during a measured run means a server logs per request (an
# access log), which no server here should: the note makes an unfair run visible.
LOUD_LOG_BYTES: Final = 64 * 1024
BUSY_PAUSE_S: Final = 3.0  # before measuring a disturbed run again
PROFILE_HZ: Final = 200  # py-spy samples per second: ~5 ms apart, many requests each
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
# What each server kind needs importable (the --servers names), and the flask row's app.
_MODULES: Final = {"wsgiserve": "wsgiserve", "gunicorn": "gunicorn", "granian": "granian",
                   "meinheld": "meinheld", "bjoern": "bjoern"}
_VERSIONS: Final = ("gunicorn", "granian", "meinheld", "bjoern", "greenlet", "flask", "py-spy")


@dataclass(frozen=True)
class Row:
    name: str
    title: str
    app: str
    connections: int
    close: bool
    servers: tuple[ServerSpec, ...]


def rows(connections: int) -> dict[str, Row]:
    return {row.name: row for row in (
        Row("keepalive", f"1 worker, keep-alive, wrk -t2 -c{connections}", HELLO_APP,
            connections, False,
            (wsgiserve(1), wsgiserve(4), meinheld(), granian(1), granian(4), bjoern(),
             gunicorn(4))),
        Row("close", f"1 worker, `Connection: close`, wrk -t2 -c{connections}", HELLO_APP,
            connections, True,
            (wsgiserve(1), wsgiserve(4), meinheld(), granian(1), granian(4), bjoern(),
             gunicorn(1))),
        Row("workers2", f"2 workers, keep-alive, wrk -t2 -c{2 * connections}", HELLO_APP,
            2 * connections, False,
            (wsgiserve(1, 2), wsgiserve(4, 2), meinheld(2), granian(1, 2))),
        Row("flask", f"Flask hello, 1 worker, 4 threads, keep-alive, wrk -t2 -c{connections}",
            FLASK_APP, connections, False,
            (wsgiserve(4), granian(4), gunicorn(1), gunicorn(4))),
    )}


# ---------------------------------------------------------------- wrk and /proc

@dataclass
class WrkResult:
    rate: float
    requests: int
    problems: str  # wrk's non-2xx and socket-error lines, or why it failed


def wrk_command(port: int, seconds: float, connections: int, close: bool) -> list[str]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", f"{WRK_TIMEOUT_S}s"]
    if close:
        command += ["-H", "Connection: close"]
    return [*command, f"http://127.0.0.1:{port}{HELLO_PATH}"]


def parse_wrk(output: str) -> WrkResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in ", output)
    problems = [found.group(0) for pattern in (r"Non-2xx or 3xx responses: \d+",
                                               r"Socket errors: [^\n]+")
                if (found := re.search(pattern, output))]
    if rate is None or requests is None:
        problems.append("wrk printed no result: " + output.strip()[-300:])
    return WrkResult(float(rate.group(1)) if rate else 0.0,
                     int(requests.group(1)) if requests else 0, "; ".join(problems))


def run_wrk(port: int, seconds: float, connections: int, close: bool) -> WrkResult:
    try:
        completed = subprocess.run(wrk_command(port, seconds, connections, close),
                                   capture_output=True, text=True,
                                   timeout=seconds + WRK_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired:
        return WrkResult(0.0, 0, "wrk did not finish in time")
    return parse_wrk(completed.stdout + completed.stderr)


def machine_cpu_s() -> tuple[float, float]:
    """CPU seconds the whole machine spent since boot on tasks (user, nice, system, irq),
    and on softirq: loopback TCP delivery runs there (much of a send() on loopback), and
    is charged to no process, so it is reported apart, machine-wide."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (values[0] + values[1] + values[2] + values[5]) / _CLOCK_TICKS, values[6] / _CLOCK_TICKS


def own_cpu_s() -> float:
    """CPU seconds of this script and its reaped children (the wrk runs)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                 resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


# ---------------------------------------------------------------- one measured run

@dataclass
class Run:
    rate: float
    requests: int
    user_s: float
    system_s: float
    softirq_s: float  # machine-wide: both directions of the loopback traffic, and others'
    idle_rss_kib: int  # the whole process tree, after the check request
    other_cores: float  # CPU used meanwhile by processes that are neither server nor wrk
    problems: str


def measure(spec: ServerSpec, row: Row, seconds: float, directory: Path) -> Run:
    server = start(spec, row.app, directory, close=row.close)
    try:
        pids = server.pids()
        idle_rss = sum(rss_kib(pid) for pid in pids)
        run_wrk(server.port, WARM_UP_S, row.connections, row.close)
        pids = server.pids()
        log_bytes = server.log_path.stat().st_size
        user0, system0 = cpu_seconds(pids)
        (busy0, softirq0), own0, clock0 = machine_cpu_s(), own_cpu_s(), time.monotonic()
        result = run_wrk(server.port, seconds, row.connections, row.close)
        user1, system1 = cpu_seconds(pids)
        (busy1, softirq1), own1, clock1 = machine_cpu_s(), own_cpu_s(), time.monotonic()
        problems = [result.problems] if result.problems else []
        logged = server.log_path.stat().st_size - log_bytes
        if logged > LOUD_LOG_BYTES:
            problems.append(f"wrote {logged // 1024} KiB to its log during the run")
        if server.process.poll() is not None:
            problems.append(f"server exited ({server.process.returncode}):\n{server.log_tail()}")
    finally:
        server.stop()
    server_s = user1 - user0 + system1 - system0
    other = (busy1 - busy0) - server_s - (own1 - own0)
    return Run(result.rate, result.requests, user1 - user0, system1 - system0,
               softirq1 - softirq0, idle_rss, max(0.0, other) / (clock1 - clock0),
               "; ".join(problems))


def round_orders(servers: tuple[ServerSpec, ...], rounds: int) -> Iterator[tuple[int, ServerSpec]]:
    """(round, server) in run order: A B C, then C B A, then A B C..."""
    for round_index in range(rounds):
        order = servers if round_index % 2 == 0 else tuple(reversed(servers))
        for spec in order:
            yield round_index, spec


def measure_row(row: Row, rounds: int, seconds: float, directory: Path,
                max_other: float = 0.5, busy_retries: int = 2) -> dict[str, list[Run]]:
    """Every server of the row, ``rounds`` times. A run during which other processes used
    more than ``max_other`` cores is measured again, up to ``busy_retries`` times, and
    the least disturbed attempt kept (other engineers' test suites share the machine)."""
    runs: dict[str, list[Run]] = {spec.label: [] for spec in row.servers}
    for round_index, spec in round_orders(row.servers, rounds):
        run = measure(spec, row, seconds, directory)
        for attempt in range(busy_retries):
            if run.other_cores <= max_other:
                break
            print(f"  {row.name} round {round_index + 1}: {spec.label}: other load "
                  f"{run.other_cores:.2f} cores, measuring again ({attempt + 1}/{busy_retries})",
                  file=sys.stderr, flush=True)
            time.sleep(BUSY_PAUSE_S)
            again = measure(spec, row, seconds, directory)
            if again.other_cores <= run.other_cores:
                run = again
        runs[spec.label].append(run)
        print(f"  {row.name} round {round_index + 1}: {spec.label}: {run.rate:,.0f} req/s, "
              f"{_us(run.user_s, run.requests)} + {_us(run.system_s, run.requests)} us CPU, "
              f"other load {run.other_cores:.2f} cores"
              + (f"  !! {run.problems}" if run.problems else ""), file=sys.stderr, flush=True)
    return runs


# ---------------------------------------------------------------- the table

def _us(seconds: float, requests: int) -> str:
    return f"{1e6 * seconds / requests:.0f}" if requests else "-"


def _cpu_per_request(runs: list[Run]) -> float:
    requests = sum(run.requests for run in runs)
    return sum(run.user_s + run.system_s for run in runs) / requests if requests else 0.0


def render_row(row: Row, runs: dict[str, list[Run]], rounds: int, seconds: float,
               max_other: float) -> list[str]:
    ours = [spec for spec in row.servers if spec.kind == "wsgiserve"]
    medians = {label: statistics.median(run.rate for run in done)
               for label, done in runs.items() if done}
    cpu = {label: _cpu_per_request(done) for label, done in runs.items()}
    header = ["server", "req/s", "range"]
    header += [f"`{spec.label}` / this, req/s" for spec in ours]
    header += ["CPU per request, user + sys"]
    header += [f"this / `{spec.label}`, CPU" for spec in ours]
    header += ["softirq per request, machine", "idle RSS, tree", "notes"]
    lines = [f"**{row.title}**, {rounds} rounds of {seconds:g} s, medians", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for spec in row.servers:
        done = runs[spec.label]
        rates = [run.rate for run in done]
        requests = sum(run.requests for run in done)
        cells = [spec.label, f"{medians[spec.label]:,.0f}",
                 f"{min(rates):,.0f}-{max(rates):,.0f}"]
        for reference in ours:
            cells.append("" if reference is spec else
                         _ratio(medians[reference.label], medians[spec.label]))
        cells.append(f"{_us(sum(r.user_s for r in done), requests)} + "
                     f"{_us(sum(r.system_s for r in done), requests)} us")
        for reference in ours:
            cells.append("" if reference is spec else
                         _ratio(cpu[spec.label], cpu[reference.label]))
        cells.append(f"{_us(sum(r.softirq_s for r in done), requests)} us")
        cells.append(f"{statistics.median(r.idle_rss_kib for r in done) / 1024:.1f} MiB")
        notes = sorted({run.problems.splitlines()[0] for run in done if run.problems})
        busiest = max(run.other_cores for run in done)
        if busiest > max_other:
            notes.append(f"other load up to {busiest:.2f} cores")
        cells.append("; ".join(notes))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator else "-"


def memory_lines(stream_mb: int, directory: Path) -> list[str]:
    from bench_memory import idle_rss, stream_growth
    lines = ["**Memory, 1 worker, --threads 4 (gunicorn gthread)**", "",
             "| server | idle worker RSS | RSS growth, upload | RSS growth, download |",
             "|---|---|---|---|"]
    for spec in (wsgiserve(4), gunicorn(4)):
        idle = idle_rss(spec, directory)
        growth = [stream_growth(spec, direction, stream_mb, directory)
                  for direction in ("upload", "download")]
        lines.append(f"| {spec.label} | {idle / 1024:.1f} MiB | "
                     + " | ".join(f"{kib / 1024:.1f} MiB ({stream_mb} MB)" for kib in growth)
                     + " |")
    return lines


# ---------------------------------------------------------------- profile and strace

# Leaf lines of py-spy's Python stacks that are a system call (the time in the C call is
# charged to the line that calls it), by what the line calls.
_SYSCALL_LINES: Final = (
    ("send", re.compile(r"\.(send|sendall|sendmsg|sendfile)\(")),
    ("recv", re.compile(r"\.(recv|recv_into|recvmsg)\(")),
    ("epoll_wait", re.compile(r"\.(poll|select)\(")),
    ("epoll_ctl", re.compile(r"\.(modify|register|unregister)\(")),
    ("accept", re.compile(r"\.accept\(")),
    ("close, shutdown", re.compile(r"\.(close|shutdown)\(\)")),
    ("locks, semaphores", re.compile(r"\.(acquire|release|wait)\(|^\s*with .*(lock|_mutex)")),
)
_FRAME: Final = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*):(?P<line>\d+)\)$")


def _short_path(path: str) -> str:
    try:
        return str(Path(path).relative_to(REPO_ROOT))
    except ValueError:
        return Path(path).name


@dataclass
class Profile:
    samples: int
    own: dict[str, int]
    inclusive: dict[str, int]
    leaf_kinds: dict[str, int]  # "send", "recv", ... or "Python", by the leaf line


def read_profile(path: Path) -> Profile:
    """Samples per function (own and inclusive) and per kind of leaf line, from py-spy's
    raw output (made with --full-filenames, so that the leaf lines can be read)."""
    profile = Profile(0, {}, {}, {})
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        leaf_kind = "Python"
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            if match is None:
                continue  # the "process" and "thread" pseudo-frames
            frames.append(f"{match['function']} ({_short_path(match['path'])})")
            source = linecache.getline(match["path"], int(match["line"]))
            leaf_kind = next((kind for kind, pattern in _SYSCALL_LINES
                              if pattern.search(source)), "Python")
        if not frames:
            continue
        profile.samples += count
        profile.leaf_kinds[leaf_kind] = profile.leaf_kinds.get(leaf_kind, 0) + count
        profile.own[frames[-1]] = profile.own.get(frames[-1], 0) + count
        for frame in set(frames):
            profile.inclusive[frame] = profile.inclusive.get(frame, 0) + count
    return profile


def format_profile(profile: Profile, top: int = 25) -> list[str]:
    total = profile.samples
    if not total:
        return ["no samples"]
    lines = ["own %  function"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in _top(profile.own, top)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in _top(profile.inclusive, top)]
    lines += ["", "%  what the leaf line does (a system call, or Python work)"]
    lines += [f"{100 * n / total:5.1f}  {kind}"
              for kind, n in _top(profile.leaf_kinds, len(profile.leaf_kinds))]
    return lines


def _top(counts: dict[str, int], top: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: -item[1])[:top]


def profile_worker(spec: ServerSpec, seconds: float, out: Path, connections: int,
                   directory: Path) -> str:
    """The worker under keep-alive load: its CPU per request from /proc, then two py-spy
    records of the same length, one of every busy thread, one of the thread holding the
    GIL only (Python running): their sample counts give Python's share of the busy time."""
    paths = {"busy": out, "gil": out.with_name(f"{out.stem}-gil{out.suffix}")}
    server = start(spec, HELLO_APP, directory)
    try:
        pid = server.worker_pid
        run_wrk(server.port, WARM_UP_S, connections, False)
        user0, system0 = cpu_seconds([pid])
        result = run_wrk(server.port, seconds, connections, False)
        user1, system1 = cpu_seconds([pid])
        for mode, path in paths.items():
            load = subprocess.Popen(wrk_command(server.port, seconds + 2, connections, False),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            command = ["py-spy", "record", "-p", str(pid), "-f", "raw", "-o", str(path),
                       "-d", str(max(1, int(seconds))), "-r", str(PROFILE_HZ), "--nonblocking",
                       "--full-filenames"] + (["--gil"] if mode == "gil" else [])
            try:
                recorded = subprocess.run(command, capture_output=True, text=True,
                                          timeout=seconds + 60)
            finally:
                load.wait(timeout=seconds + WRK_TIMEOUT_S + 30)
            if not path.exists():
                return f"py-spy failed:\n{recorded.stderr}"
    finally:
        server.stop()
    busy, gil = read_profile(paths["busy"]), read_profile(paths["gil"])
    possible = PROFILE_HZ * max(1, int(seconds))
    lines = [f"{spec.label} worker, keep-alive, wrk -c{connections}: {result.rate:,.0f} req/s "
             f"without the profiler; worker CPU per request {_us(user1 - user0, result.requests)}"
             f" us user + {_us(system1 - system0, result.requests)} us sys",
             f"py-spy at {PROFILE_HZ} Hz for {max(1, int(seconds))} s: the serving threads were "
             f"busy in {busy.samples} samples (of {possible} per thread), held the GIL in "
             f"{gil.samples}: Python ran {gil.samples / max(1, busy.samples):.0%} of the busy "
             "time; the rest is in system calls with the GIL released",
             "", f"-- every busy thread ({paths['busy'].name}) --", *format_profile(busy),
             "", f"-- the thread holding the GIL ({paths['gil'].name}) --", *format_profile(gil)]
    return "\n".join(lines)


def strace_servers(specs: list[ServerSpec], seconds: float, connections: int,
                   directory: Path) -> list[str]:
    """System calls per request of each server's worker under keep-alive load:
    ``strace -c -f`` attached for one wrk run; one column per server."""
    per_server: dict[str, dict[str, float]] = {}
    lines = []
    for spec in specs:
        calls, requests, rate = _strace_worker(spec, seconds, connections, directory)
        per_server[spec.label] = {name: count / max(1, requests) for name, count in calls.items()}
        lines.append(f"- {spec.label}: {requests:,} requests in {seconds:g} s under strace "
                     f"({rate:,.0f} req/s, slowed by strace)")
    names = sorted({name for counts in per_server.values() for name in counts},
                   key=lambda name: -max(counts.get(name, 0.0) for counts in per_server.values()))
    lines += ["", "| syscall per request | " + " | ".join(per_server) + " |",
              "|---|" + "---|" * len(per_server)]
    for name in names:
        cells = [f"{counts[name]:.2f}" if name in counts else "" for counts in per_server.values()]
        if any(cell not in ("", "0.00") for cell in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    total = [f"{sum(counts.values()):.2f}" for counts in per_server.values()]
    lines.append("| **all** | " + " | ".join(total) + " |")
    return lines


def _strace_worker(spec: ServerSpec, seconds: float, connections: int,
                   directory: Path) -> tuple[dict[str, int], int, float]:
    """({syscall: calls}, requests, req/s) for one wrk run with strace on the worker."""
    server = start(spec, HELLO_APP, directory)
    out = directory / f"strace-{spec.kind}.txt"
    try:
        run_wrk(server.port, WARM_UP_S, connections, False)
        tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(server.worker_pid),
                                   "-o", str(out)], stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_attach(tracer, 10.0)
            result = run_wrk(server.port, seconds, connections, False)
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
    finally:
        server.stop()
    calls = {name: count for name, count, _ in _parse_strace(out.read_text())}
    return calls, result.requests, result.rate


def _wait_for_attach(tracer: subprocess.Popen[str], timeout_s: float) -> None:
    assert tracer.stderr is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(tracer.stderr, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if selector.select(remaining):
                line = tracer.stderr.readline()
                if "attached" in line:
                    return
                if not line:
                    break
    raise RuntimeError("strace did not attach (is ptrace allowed?)")


def _parse_strace(text: str) -> list[tuple[str, int, int]]:
    """(syscall, calls, errors) from ``strace -c``'s table, most calls first."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            numbers = fields[3:-1]
            errors = int(numbers[1]) if len(numbers) > 1 else 0
            found.append((fields[-1], int(numbers[0]), errors))
    return sorted(found, key=lambda item: -item[1])


# ---------------------------------------------------------------- main

def versions() -> str:
    found = []
    for name in _VERSIONS:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return f"Python {platform.python_version()}, {os.cpu_count()} CPUs; " + ", ".join(found)


def missing_tools(args: argparse.Namespace, selected: list[Row],
                  traced: list[ServerSpec]) -> list[str]:
    missing = [tool for tool, wanted in (("wrk", True), ("py-spy", bool(args.profile)),
                                         ("strace", bool(args.strace))) if wanted
               and shutil.which(tool) is None]
    needed = {spec.kind for row in selected for spec in row.servers}
    needed |= {spec.kind for spec in traced} if args.strace else set()
    missing += [_MODULES[kind] for kind in sorted(needed)
                if importlib.util.find_spec(_MODULES[kind]) is None]
    if any(row.app == FLASK_APP for row in selected) and importlib.util.find_spec("flask") is None:
        missing.append("flask")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="keepalive,close,workers2,flask",
                        help="comma-separated: keepalive, close, workers2, flask, memory; "
                        "or none (only --profile/--strace)")
    parser.add_argument("--servers", default=",".join(_MODULES),
                        help="comma-separated kinds to run: " + ", ".join(_MODULES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50,
                        help="wrk connections with one worker (two workers get twice this)")
    parser.add_argument("--max-other", type=float, default=0.5, help="measure a run again "
                        "when other processes used more cores than this meanwhile")
    parser.add_argument("--busy-retries", type=int, default=2,
                        help="how many times at most (the least disturbed attempt is kept)")
    parser.add_argument("--stream-mb", type=int, default=200, help="body size, memory row")
    parser.add_argument("--profile", type=Path, help="py-spy raw output (and PATH-gil) for "
                        "the wsgiserve worker under keep-alive load; a summary is printed")
    parser.add_argument("--profile-threads", type=int, default=1,
                        help="wsgiserve --threads for --profile and --strace")
    parser.add_argument("--strace", type=float, metavar="SECONDS",
                        help="strace -c -f each server's worker (of --servers) for one "
                        "keep-alive wrk run of SECONDS: system calls per request")
    args = parser.parse_args(argv)
    table = rows(args.connections)
    names = [name for name in args.rows.split(",") if name and name != "none"]
    kinds = set(args.servers.split(","))
    unknown = [name for name in names if name not in table and name != "memory"]
    unknown += sorted(kinds - set(_MODULES))
    if unknown:
        parser.error(f"unknown rows or servers: {', '.join(unknown)}")
    selected = [Row(row.name, row.title, row.app, row.connections, row.close,
                    tuple(spec for spec in row.servers if spec.kind in kinds))
                for row in (table[name] for name in names if name in table)]
    # --strace: the one-worker keep-alive servers, one thread each (bjoern and meinheld have
    # one), and gunicorn's gthread for its hand-offs between threads.
    traced = [spec for spec in (wsgiserve(args.profile_threads), meinheld(), granian(1),
                                bjoern(), gunicorn(4)) if spec.kind in kinds]
    missing = missing_tools(args, selected, traced)
    if missing:
        print(f"missing: {', '.join(missing)} (tools/install-bench-deps.sh installs them; "
              "or leave a server out with --servers)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    output: list[str] = []
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        try:
            for row in selected:
                runs = measure_row(row, args.rounds, args.duration, directory,
                                   args.max_other, args.busy_retries)
                output += render_row(row, runs, args.rounds, args.duration,
                                     args.max_other) + [""]
            if "memory" in names:
                output += memory_lines(args.stream_mb, directory) + [""]
            ours = wsgiserve(args.profile_threads)
            if args.profile and "wsgiserve" in kinds:
                output += ["**py-spy profile of the wsgiserve worker**", "", "```",
                           profile_worker(ours, args.duration, args.profile, args.connections,
                                          directory), "```", ""]
            if args.strace:
                output += ["**System calls per request of each worker, keep-alive, "
                           f"wrk -c{args.connections}**", "",
                           *strace_servers(traced, args.strace, args.connections, directory),
                           ""]
        except ServerFailed as exc:
            print(f"\n{exc}", file=sys.stderr)
            return 2
    print(f"{versions()}; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; ratios > 1 favour wsgiserve\n")
    print("\n".join(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
