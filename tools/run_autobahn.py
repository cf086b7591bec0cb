#!/usr/bin/env python3
"""Run the Autobahn WebSocket test suite (the ``kosoku`` port, from PyPI) against wsgiserve.

Starts ``python -m wsgiserve`` on 127.0.0.1:0 with an echo app, drives it with
``kosoku`` in fuzzing-client mode and summarises the report: cases, OK / NON-STRICT /
INFORMATIONAL / UNIMPLEMENTED / FAILED, and UNCLEAN closes. Exit status 1 when a case
FAILED or closed uncleanly (``--allow-failed`` tolerates FAILED, for a library with
known deviations).

    tools/run_autobahn.py native-event                  # sections 1-7, 9, 10, 12, 13
    tools/run_autobahn.py native-blocking -i '1.*' -i '5.*'
    tools/run_autobahn.py flask-sock --allow-failed
    tools/run_autobahn.py URL ...                       # an already running server

Messages up to 16 MiB (cases 9.1.6 and 9.2.6) need the server's limit raised, which
the apps here get. The full run takes about 12 minutes on 2 cores, most of it in
sections 12 and 13 (kosoku compresses in Python).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.*",
                 "13.*"]
# Target (app, path, extra server arguments) of each named setup.
SETUPS = {
    "native-event": ("tests.ws_apps:native", "/event", []),
    "native-blocking": ("tests.ws_apps:native", "/blocking", []),
    "flask-sock": ("tests.ws_apps:flask_sock", "/echo", []),
}
_BAD = ("FAILED", "WRONG CODE", "UNCLEAN")


def start_server(app: str, extra: list[str], log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    command = [sys.executable, "-m", "wsgiserve", "--bind", "127.0.0.1:0", "--workers", "1",
               "--threads", "4", "--websocket-max-message-bytes", str(16 << 20),
               # No pings: kosoku ends a section 12/13 case early when one arrives (the
               # websockets server fails those cases at its 20 s ping the same way).
               "--websocket-ping-interval", "0", *extra, app]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    log = log_path.open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                               cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log_path.read_text("utf-8", "replace")
        match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
        if match and "ready:" in text:
            return process, int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the server did not start:\n{log_path.read_text()}")


def run_kosoku(url: str, cases: list[str], outdir: Path, timeout_s: float) -> None:
    kosoku = Path(sys.executable).with_name("kosoku")
    command = [str(kosoku) if kosoku.exists() else "kosoku", url, "-o", str(outdir)]
    for case in cases:
        command += ["-i", case]
    subprocess.run(command, check=False, timeout=timeout_s, stdout=subprocess.DEVNULL)


def summarise(outdir: Path) -> tuple[collections.Counter[str], dict[str, str]]:
    """Counts of each verdict (UNCLEAN for a close whose behaviour is not OK) and the
    case ids with a bad verdict."""
    index = json.loads((outdir / "index.json").read_text())
    counts: collections.Counter[str] = collections.Counter()
    bad: dict[str, str] = {}
    for results in index.values():
        for case, result in results.items():
            verdict = result["behavior"]
            if result["behaviorClose"] not in ("OK", "INFORMATIONAL") and verdict != "FAILED":
                verdict = "UNCLEAN"
            counts[verdict] += 1
            if verdict in _BAD:
                bad[case] = verdict
    return counts, bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help=f"one of {', '.join(SETUPS)}, or a ws:// URL")
    parser.add_argument("-i", "--include", action="append", help="case glob (repeatable)")
    parser.add_argument("-o", "--outdir", type=Path, help="report directory (default: temp)")
    parser.add_argument("--allow-failed", action="store_true",
                        help="exit 0 when cases FAILED (UNCLEAN closes still fail)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for kosoku")
    args = parser.parse_args()
    cases = args.include or DEFAULT_CASES
    outdir = args.outdir or Path(tempfile.mkdtemp(prefix="autobahn-"))
    outdir.mkdir(parents=True, exist_ok=True)
    process = None
    started = time.monotonic()
    try:
        if args.target.startswith("ws"):
            url = args.target
        else:
            app, path, extra = SETUPS[args.target]
            process, port = start_server(app, extra, outdir / "server.log")
            url = f"ws://127.0.0.1:{port}{path}"
        run_kosoku(url, cases, outdir, args.timeout)
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(30)
    counts, bad = summarise(outdir)
    total = sum(counts.values())
    print(f"{args.target}: {total} cases in {time.monotonic() - started:.0f} s: "
          + ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items())))
    for case, verdict in sorted(bad.items(), key=lambda item: [int(p) for p in item[0].split(".")]):
        print(f"  {case}: {verdict}")
    print(f"reports: {outdir}")
    unclean = [case for case, verdict in bad.items() if verdict != "FAILED"]
    failed = [case for case, verdict in bad.items() if verdict == "FAILED"]
    return 1 if unclean or (failed and not args.allow_failed) else 0


if __name__ == "__main__":
    sys.exit(main())
