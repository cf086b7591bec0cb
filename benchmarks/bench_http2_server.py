#!/usr/bin/env python3
"""The server's HTTP/2 path per stream, in process: our client core -> socketpair -> the
server's Http2 protocol (each stream's WSGI call run inline, ``tests.apps:hello``) -> back.

Streams go in batches of 10 on one connection, as ``h2load -m 10`` sends them; the client
never acknowledges data (13 bytes a stream). ``--icount`` runs each workload under
callgrind at two stream counts and prints the instructions per stream from the difference
(start-up cancels out; the counts are deterministic, unlike timings on a shared machine):

- ``full``: the whole path (both cores, the server's protocol and stream layers, the app,
  the socket calls);
- ``server core``: the server's ``wsgiserve.http2.Connection`` alone, fed the client's
  bytes recorded from a full run and answering each request with the head and body the
  server sent (the core calls the server's protocol makes: ``send_headers``,
  ``local_flow_control_window``, ``send_data``, ``data_to_send``);
- ``client core``: our client core alone, fed the server's recorded bytes.

    python benchmarks/bench_http2_server.py                  # CPU time per stream
    python benchmarks/bench_http2_server.py --icount         # needs valgrind; 2-6 minutes
    python benchmarks/bench_http2_server.py --profile 40     # cProfile's top 40, per stream
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import marshal
import os
import pstats
import re
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.apps import hello  # noqa: E402  (path set up above)
from wsgiserve.http import HttpLimits  # noqa: E402
from wsgiserve.http2 import Connection as Core  # noqa: E402
from wsgiserve.http2 import RequestReceived, ResponseReceived, StreamEnded  # noqa: E402
from wsgiserve.server.worker.connection import Connection, make_base_environ  # noqa: E402
from wsgiserve.server.worker.context import ServerContext  # noqa: E402
from wsgiserve.server.worker.http2 import http2_limits  # noqa: E402

Fields = list[tuple[bytes, bytes]]
BATCH = 10
# What h2load 1.52 sends (nghttp2 indexes all but :path, which goes as a literal).
REQUEST: Fields = [(b":method", b"GET"), (b":scheme", b"http"),
                   (b":authority", b"127.0.0.1:8080"), (b":path", b"/hello"),
                   (b"user-agent", b"h2load nghttp2/1.52.0"), (b"accept", b"*/*")]
# The server's [http2] defaults: 100 streams, 256 KiB windows, 16 KiB frames, 64 KiB lists.
LIMITS = http2_limits(100, 65535 * 4, 16384, 65536)
# One batch's exchange: client bytes, server bytes, client bytes after reading them.
Recording = dict[str, Any]


class FullPath:
    """Our client core and the server's connection over a socketpair (the whole path)."""

    def __init__(self) -> None:
        context = ServerContext(app=hello, limits=HttpLimits(), keepalive_s=5.0,
                                header_timeout_s=5.0, body_timeout_s=2.0, script_name="",
                                access_log=None)
        context.http2_limits = LIMITS
        context.http2_cleartext = "prior-knowledge"
        context.http2_max_streams_in_app = 100
        self.server_socket, self.client_socket = socket.socketpair()
        self.server_socket.setblocking(False)
        self.client_socket.setblocking(False)
        self.server = Connection(self.server_socket, ("127.0.0.1", 1), context,
                                 make_base_environ("127.0.0.1", "80", "http",
                                                   multithread=False, multiprocess=False))
        self.client = Core(is_client=True)
        self.batches: list[tuple[bytes, bytes, bytes]] = []
        self.head: Fields = []
        self.body = b""
        first = self._send(self.client.data_to_send())
        received = self._receive()
        self.client.receive_data(received)
        self.setup = (first, received, self._send(self.client.data_to_send(), handle=False))

    def close(self) -> None:
        self.server_socket.close()
        self.client_socket.close()

    def _send(self, data: bytes, handle: bool = True) -> bytes:
        if data:
            self.client_socket.sendall(data)
            if handle:
                self.server.handle(select.EPOLLIN)
        return data

    def _receive(self) -> bytes:
        try:
            return self.client_socket.recv(1 << 20)
        except BlockingIOError:
            return b""

    def batch(self, record: bool = False) -> int:
        client = self.client
        for _ in range(BATCH):
            client.send_headers(client.get_next_available_stream_id(), REQUEST,
                                end_stream=True)
        sent = self._send(client.data_to_send())
        received = self._receive()
        done = 0
        for event in client.receive_data(received):
            kind = type(event)
            if kind is StreamEnded:
                done += 1
            elif record and kind is ResponseReceived and not self.head:
                assert isinstance(event, ResponseReceived)
                self.head = event.headers
        after = self._send(client.data_to_send())
        if record:
            self.batches.append((sent, received, after))
        return done


def record(streams: int) -> Recording:
    path = FullPath()
    try:
        done = 0
        while done < streams:
            done += path.batch(record=True)
    finally:
        path.close()
    return {"setup": path.setup, "batches": path.batches, "head": path.head,
            "body": b"Hello, World!", "streams": done}


def run_full(streams: int) -> None:
    path = FullPath()
    done = 0
    while done < streams:
        done += path.batch()
    path.close()


def replay_client(recording: Recording, streams: int) -> None:
    """Our client core alone: the same calls as the full path, the server's bytes replayed."""
    client = Core(is_client=True)
    first, received, _ = recording["setup"]
    client.data_to_send()
    client.receive_data(received)
    client.data_to_send()
    done = 0
    for _, received, _ in recording["batches"][:streams // BATCH]:
        for _ in range(BATCH):
            client.send_headers(client.get_next_available_stream_id(), REQUEST,
                                end_stream=True)
        client.data_to_send()
        for event in client.receive_data(received):
            if type(event) is StreamEnded:
                done += 1
        client.data_to_send()
    if done != streams // BATCH * BATCH:
        raise SystemExit(f"client replay: {done} streams ended, not {streams}")


def replay_server(recording: Recording, streams: int) -> None:
    """The server's core alone: the client's bytes replayed, each request answered with the
    core calls the server's protocol makes."""
    server = Core(is_client=False, limits=LIMITS)
    head, body = recording["head"], recording["body"]
    first, _, acknowledgement = recording["setup"]
    server.receive_data(first)
    server.data_to_send()
    pending = acknowledgement
    done = 0
    for sent, _, after in recording["batches"][:streams // BATCH]:
        for data in (pending + sent, after):
            if not data:
                continue
            for event in server.receive_data(data):
                if type(event) is RequestReceived:
                    assert isinstance(event, RequestReceived)
                    stream_id = event.stream_id
                    server.send_headers(stream_id, list(head), end_stream=False)
                    server.local_flow_control_window(stream_id)
                    server.send_data(stream_id, body, end_stream=True)
                    server.data_to_send()
                    done += 1
        pending = b""
    if done != streams // BATCH * BATCH:
        raise SystemExit(f"server replay: {done} requests, not {streams}")


WORKLOADS: dict[str, Callable[[Recording, int], None]] = {
    "full": lambda recording, streams: run_full(streams),
    "server": replay_server,
    "client": replay_client,
}
LABELS = {"full": "whole path (both cores, server protocol, app, sockets)",
          "server": "server core alone", "client": "client core alone"}


def _callgrind(workload: str, streams: int, recording_path: str) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, "--run", workload, "--streams", str(streams),
               "--recording", recording_path]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                            check=False)
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode or found is None:
        raise SystemExit(f"callgrind failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return int(found.group(1))


def icount(low: int, high: int, workloads: list[str]) -> dict[str, float]:
    """Instructions per stream of each workload: (count at ``high`` - count at ``low``)
    / (``high`` - ``low``)."""
    with tempfile.TemporaryDirectory() as directory:
        recording_path = os.path.join(directory, "recording")
        with open(recording_path, "wb") as file:
            marshal.dump(record(high), file)
        return {workload: (_callgrind(workload, high, recording_path)
                           - _callgrind(workload, low, recording_path)) / (high - low)
                for workload in workloads}


def timed(streams: int, repeat: int) -> dict[str, float]:
    """Median CPU microseconds per stream of each workload (gc disabled while timing)."""
    recording = record(streams)
    times: dict[str, list[float]] = {workload: [] for workload in WORKLOADS}
    gc.disable()
    try:
        for _ in range(repeat):
            for workload, run in WORKLOADS.items():
                start = time.process_time_ns()
                run(recording, streams)
                times[workload].append((time.process_time_ns() - start) / streams / 1000)
    finally:
        gc.enable()
    return {workload: statistics.median(values) for workload, values in times.items()}


def profile(workload: str, streams: int, lines: int) -> str:
    recording = record(streams)
    run = WORKLOADS[workload]
    profiler = cProfile.Profile()
    profiler.runcall(run, recording, streams)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    table = stats.stats  # type: ignore[attr-defined]  # Stats.stats is not in typeshed
    rows = sorted(table.items(), key=lambda item: -item[1][2])
    total = sum(value[1] for value in table.values())
    print(f"{total / streams:.1f} calls per stream", file=out)
    for (file, line, name), value in rows[:lines]:
        print(f"  {value[1] / streams:6.2f} calls {value[2] / streams * 1e6:7.2f} us self "
              f"{value[3] / streams * 1e6:7.2f} us cumulative  "
              f"{file.split('/')[-1]}:{line}:{name}", file=out)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--icount", action="store_true",
                    help="instructions per stream under callgrind (needs valgrind)")
    ap.add_argument("--low", type=int, default=1000, help="--icount: the smaller run")
    ap.add_argument("--high", type=int, default=3000, help="--icount: the larger run")
    ap.add_argument("--workloads", default="full,server,client",
                    help="--icount, --profile: which of full, server, client")
    ap.add_argument("--streams", type=int, default=3000, help="streams per timed run")
    ap.add_argument("--repeat", type=int, default=7, help="timed rounds (median reported)")
    ap.add_argument("--profile", type=int, default=0, metavar="LINES",
                    help="print cProfile's top LINES functions per stream")
    ap.add_argument("--run", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    ap.add_argument("--recording", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    workloads = args.workloads.split(",")
    if args.run:                      # one workload, under callgrind
        with open(args.recording, "rb") as file:
            recording = marshal.load(file)
        WORKLOADS[args.run](recording, args.streams)
        return 0
    if args.icount:
        counts = icount(args.low, args.high, workloads)
        print(f"Instructions per stream (callgrind, {args.high} - {args.low} streams, "
              f"batches of {BATCH}):\n")
        print("| workload | instructions per stream |\n|---|---|")
        for workload, count in counts.items():
            print(f"| {LABELS[workload]} | {count:,.0f} |")
        if {"full", "server", "client"} <= counts.keys():
            rest = counts["full"] - counts["server"] - counts["client"]
            print(f"| the rest: server protocol and stream layers, app, sockets | {rest:,.0f} |")
        return 0
    if args.profile:
        for workload in workloads:
            print(f"### {LABELS[workload]}\n```\n"
                  f"{profile(workload, args.streams, args.profile)}```")
        return 0
    result = timed(args.streams, args.repeat)
    print(f"CPU time per stream, median of {args.repeat} runs of {args.streams} streams:\n")
    print("| workload | us per stream | streams/s |\n|---|---|---|")
    for workload, us in result.items():
        print(f"| {LABELS[workload]} | {us:.1f} | {1e6 / us:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
