"""Run the Autobahn fuzzing server's cases against wsgiserve's WebSocket client.

The fuzzing server (``kosoku -m fuzzingserver``, pinned in tools/test-constraints.txt)
plays each case to a client that echoes every message back; this script is that client.
It follows the fuzzing server's protocol: ``/getCaseCount``, then ``/runCase?case=N&agent=A``
for each case, then ``/updateReports?agent=A``, after which the server writes its reports
(``index.json`` and HTML) and exits (status 1 if any case failed)::

    kosoku -m fuzzingserver -o /tmp/autobahn -i '1.*' -i '9.*' 127.0.0.1:9001 &
    python tools/autobahn_client.py ws://127.0.0.1:9001 --report /tmp/autobahn/index.json

``--report`` prints a table of the verdicts per section from the server's index.json once
it has been written.

The permessage-deflate offer is Autobahn's own test clients' by default:
``client_no_context_takeover; client_max_window_bits``. Cases 13.2, 13.5 and 13.6 have the
server ask the client not to keep its compression context, which the fuzzing server does
only for a client that offered so (RFC 7692 §7.1.1.2). With ``--library-offer`` (the
client's default, what browsers offer: ``client_max_window_bits``) the server declines
compression in those 54 cases, which then report UNIMPLEMENTED (not FAILED).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Final

from wsgiserve.client.errors import ClientError
from wsgiserve.client.websocket import DeflateOptions, connect

# Case 9.x sends messages of up to 16 MiB (9.1.6, 9.2.6); the core counts a message after
# decompression, and 12.x/13.x compress what they send.
MAX_MESSAGE_BYTES: Final = 32 << 20
AGENT: Final = "wsgiserve"
# The offer Autobahn's own test clients make (module docstring).
AUTOBAHN_OFFER: Final = DeflateOptions(client_no_context_takeover=True)
# The verdicts that pass (Autobahn's "OK", "NON-STRICT" and "INFORMATIONAL").
PASSING: Final = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})


def case_count(base_url: str, timeout_s: float) -> int:
    with connect(f"{base_url}/getCaseCount", timeout_s=timeout_s) as ws:
        return int(ws.recv(timeout_s=timeout_s))


def run_case(base_url: str, number: int, agent: str, timeout_s: float,
             deflate: bool | DeflateOptions = AUTOBAHN_OFFER) -> str:
    """Echo every message of case ``number`` until the server closes; return how it ended."""
    try:
        ws = connect(f"{base_url}/runCase?case={number}&agent={agent}", timeout_s=timeout_s,
                     max_message_bytes=MAX_MESSAGE_BYTES, deflate=deflate)
    except ClientError as exc:
        return f"no connection: {exc}"
    try:
        with ws:
            for message in ws:
                ws.send(message)
    except ClientError as exc:   # the connection ended otherwise than with 1000
        return type(exc).__name__
    return "closed"


def update_reports(base_url: str, agent: str, timeout_s: float) -> None:
    with connect(f"{base_url}/updateReports?agent={agent}", timeout_s=timeout_s) as ws:
        ws.close()


def summarize(index_path: Path, agent: str = AGENT) -> tuple[str, bool]:
    """A table of the verdicts per section (behavior / close behavior) and whether every
    case passed."""
    cases = json.loads(index_path.read_text())[agent]
    sections: dict[str, Counter[str]] = {}
    is_passing = True
    for case_id, result in cases.items():
        behavior, close = result["behavior"], result["behaviorClose"]
        counter = sections.setdefault(case_id.split(".")[0], Counter())
        counter["cases"] += 1
        counter[behavior] += 1
        if close not in PASSING:
            counter[f"close {close}"] += 1
        if behavior not in PASSING or close not in PASSING:
            is_passing = False
    columns = ["cases", "OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
    extra = sorted({key for counter in sections.values() for key in counter} - set(columns))
    header = ["section", *columns, *extra]
    rows = [header]
    for section in sorted(sections, key=int):
        counter = sections[section]
        rows.append([section, *(str(counter.get(key, 0)) for key in columns + extra)])
    total: Counter[str] = sum(sections.values(), Counter())
    rows.append(["all", *(str(total.get(key, 0)) for key in columns + extra)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    return "\n".join(lines), is_passing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Autobahn fuzzing server's cases "
                                     "against wsgiserve's WebSocket client.")
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:9001",
                        help="the fuzzing server's URL")
    parser.add_argument("--agent", default=AGENT, help="the agent name in the reports")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="time limit for each connection's opening (seconds)")
    parser.add_argument("--report", type=Path,
                        help="the server's index.json: print the verdicts once written")
    parser.add_argument("--report-wait", type=float, default=30.0,
                        help="how long to wait for index.json to appear (seconds)")
    parser.add_argument("--library-offer", action="store_true",
                        help="offer permessage-deflate as the client does by default")
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per case")
    options = parser.parse_args(argv)
    base_url = options.url.rstrip("/")
    started = time.monotonic()
    count = case_count(base_url, options.timeout)
    for number in range(1, count + 1):
        case_started = time.monotonic()
        outcome = run_case(base_url, number, options.agent, options.timeout,
                           True if options.library_offer else AUTOBAHN_OFFER)
        if not options.quiet:
            print(f"case {number}/{count}: {outcome} ({time.monotonic() - case_started:.2f} s)",
                  flush=True)
    update_reports(base_url, options.agent, options.timeout)
    print(f"{count} cases in {time.monotonic() - started:.1f} s", flush=True)
    if options.report is None:
        return 0
    deadline = time.monotonic() + options.report_wait
    while not options.report.exists():
        if time.monotonic() > deadline:
            print(f"no report at {options.report}", file=sys.stderr)
            return 1
        time.sleep(0.1)   # the server writes it when the run ends: no event to wait on
    table, is_passing = summarize(options.report, options.agent)
    print(table)
    return 0 if is_passing else 1


if __name__ == "__main__":
    sys.exit(main())
