"""wrk, the load generator every benchmark here drives: its command line, one bounded run,
and what it printed (requests, rate, non-2xx and socket errors).
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Final

from servers import HELLO_PATH

WARM_UP_S: Final = 1.0
WRK_TIMEOUT_S: Final = 5  # wrk's own per-request timeout, and slack for bounding a run


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


def per_request_us(seconds: float, requests: int) -> str:
    """Microseconds per request, for tables; "-" when nothing was served."""
    return f"{1e6 * seconds / requests:.0f}" if requests else "-"
