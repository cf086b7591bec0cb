"""Where a worker's time goes under wrk's keep-alive load: py-spy records of the wsgiserve
worker (every busy thread, then only the GIL holder) summarized per function and per kind
of leaf line, and ``strace -c`` of each server's worker, as system calls per request.
"""
from __future__ import annotations

import linecache
import re
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from servers import HELLO_APP, REPO_ROOT, ServerSpec, cpu_seconds, start
from wrk import WARM_UP_S, WRK_TIMEOUT_S, per_request_us, run_wrk, wrk_command

PROFILE_HZ: Final = 200  # py-spy samples per second: ~5 ms apart, many requests each
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
    user_us = per_request_us(user1 - user0, result.requests)
    system_us = per_request_us(system1 - system0, result.requests)
    lines = [f"{spec.label} worker, keep-alive, wrk -c{connections}: {result.rate:,.0f} req/s "
             f"without the profiler; worker CPU per request {user_us} us user + {system_us} us sys",
             f"py-spy at {PROFILE_HZ} Hz for {max(1, int(seconds))} s: the serving threads were "
             f"busy in {busy.samples} samples (of {possible} per thread), held the GIL in "
             f"{gil.samples}: Python ran {gil.samples / max(1, busy.samples):.0%} of the busy "
             "time; the rest is system calls with the GIL released, and waiting for a core "
             "(py-spy counts a runnable thread as busy: a send() that wakes wrk on the same "
             "core is charged with the time until the worker runs again)",
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
