#!/usr/bin/env python3
"""HTTP/2 protocol work per request, in process, both roles: wsgiserve.http2 against h2.

One request is the whole exchange on an open connection: the client sends a browser-like
GET (HEADERS with END_STREAM, 14 fields), the server reads it, answers HEADERS (3 fields)
and 13 bytes of DATA, and the client reads the answer; bytes move between the two in
memory. "same path" repeats one request (a page reloaded: every field is in the HPACK
tables); "new path" changes :path each time (a page's subresources: one literal per
request); "64 KiB POST" sends a body in four DATA frames, read and acknowledged by the
server, and a 2 KiB response. Both use the same flow-control windows (ours: 256 KiB per
stream, 1 MiB per connection). Each implementation is checked once, then timed; they take
turns inside each repeat and the median is reported (gc disabled while timing). h2 is a
test dependency.

    python benchmarks/bench_http2_core.py                  # Markdown table
    python benchmarks/bench_http2_core.py --profile 20     # and where our time goes
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wsgiserve.http2 import (  # noqa: E402  (path set up above)
    Connection,
    DataReceived,
    ResponseReceived,
    StreamEnded,
)

Fields = list[tuple[bytes, bytes]]
BROWSER: Fields = [
    (b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"shop.example.com"),
    (b":path", b"/search?q=wsgi+server&page=2"),
    (b"cache-control", b"max-age=0"),
    (b"sec-ch-ua", b'"Chromium";v="124", "Not-A.Brand";v="99"'),
    (b"sec-ch-ua-mobile", b"?0"), (b"sec-ch-ua-platform", b'"Linux"'),
    (b"upgrade-insecure-requests", b"1"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                    b"Chrome/124.0 Safari/537.36"),
    (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"accept-encoding", b"gzip, deflate, br"), (b"accept-language", b"en-US,en;q=0.9"),
    (b"cookie", b"sessionid=8f3a2c71b9e04d5a; theme=dark"),
]
RESPONSE: Fields = [(b":status", b"200"), (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", b"13")]
BODY = b"Hello, world!"
UPLOAD = bytes(range(256)) * 256                     # 64 KiB
POST: Fields = [(b":method", b"POST"), (b":scheme", b"https"),
                (b":authority", b"shop.example.com"), (b":path", b"/upload"),
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(UPLOAD)).encode())]
POST_RESPONSE: Fields = [(b":status", b"201"), (b"content-length", b"2048")]
POST_BODY = b"r" * 2048


class Workload:
    """One request at a time on one connection pair; ``paths`` cycles :path."""

    def __init__(self, name: str, request: Fields, response: Fields, body: bytes,
                 upload: bytes = b"", paths: int = 1):
        self.name = name
        self.requests = [request if paths == 1 else
                         [(n, v + b"&n=%d" % i if n == b":path" else v) for n, v in request]
                         for i in range(paths)]
        self.response = response
        self.body = body
        self.upload = upload


WORKLOADS = [
    Workload("browser GET, same path", BROWSER, RESPONSE, BODY),
    Workload("browser GET, new path", BROWSER, RESPONSE, BODY, paths=1000),
    Workload("64 KiB POST", POST, POST_RESPONSE, POST_BODY, upload=UPLOAD),
]
Runner = Callable[[], tuple[int, bytes]]     # one request -> (status, body)


def ours(workload: Workload) -> Runner:
    client, server = Connection(is_client=True), Connection(is_client=False)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    requests, count = workload.requests, len(workload.requests)
    response, body, upload = workload.response, workload.body, workload.upload
    state = {"n": 0}

    def run() -> tuple[int, bytes]:
        n = state["n"] = state["n"] + 1
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, requests[n % count], end_stream=not upload)
        if upload:
            client.send_data(stream_id, upload, end_stream=True)
        for event in server.receive_data(client.data_to_send()):
            if type(event) is DataReceived:
                server.acknowledge_received_data(len(event.data), event.stream_id)
            elif type(event) is StreamEnded:
                server.send_headers(event.stream_id, response)
                server.send_data(event.stream_id, body, end_stream=True)
        status, received = 0, []
        for event in client.receive_data(server.data_to_send()):
            if type(event) is ResponseReceived:
                status = event.status
            elif type(event) is DataReceived:
                received.append(event.data)
                client.acknowledge_received_data(len(event.data), event.stream_id)
        server.receive_data(client.data_to_send())
        return status, b"".join(received)
    return run


def theirs(workload: Workload) -> Runner:
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    client = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding=None))
    server = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding=None))
    from wsgiserve.http2 import Http2Limits
    limits = Http2Limits()
    for conn in (client, server):      # the same windows as ours
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE:
                              limits.initial_window_size})
        conn.increment_flow_control_window(limits.connection_window_size - 65535)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    requests, count = workload.requests, len(workload.requests)
    response, body, upload = workload.response, workload.body, workload.upload
    state = {"n": 0}

    def run() -> tuple[int, bytes]:
        n = state["n"] = state["n"] + 1
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, requests[n % count], end_stream=not upload)
        if upload:
            for start in range(0, len(upload), 16384):
                client.send_data(stream_id, upload[start:start + 16384],
                                 end_stream=start + 16384 >= len(upload))
        for event in server.receive_data(client.data_to_send()):
            if type(event) is h2.events.DataReceived:
                server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif type(event) is h2.events.StreamEnded:
                server.send_headers(event.stream_id, response)
                server.send_data(event.stream_id, body, end_stream=True)
        status, received = 0, []
        for event in client.receive_data(server.data_to_send()):
            if type(event) is h2.events.ResponseReceived:
                status = int(dict(event.headers)[b":status"])
            elif type(event) is h2.events.DataReceived:
                received.append(event.data)
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        server.receive_data(client.data_to_send())
        return status, b"".join(received)
    return run


IMPLEMENTATIONS: dict[str, Callable[[Workload], Runner]] = {"wsgiserve.http2": ours,
                                                           "h2": theirs}


def _calibrate(run: Runner, min_time_s: float) -> int:
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            run()
        if time.perf_counter() - start >= min_time_s / 4:
            return max(1, int(number * min_time_s / (time.perf_counter() - start)))
        number *= 4


def bench(workload: Workload, repeat: int, min_time_s: float) -> dict[str, float]:
    """Median microseconds per request of each implementation (one connection pair each,
    reopened when its stream ids run low)."""
    runners = {name: make(workload) for name, make in IMPLEMENTATIONS.items()}
    for name, run in runners.items():
        status, body = run()
        if (status, body) != (int(workload.response[0][1]), workload.body):
            raise SystemExit(f"{name} answered {status} {body[:40]!r} on {workload.name}")
    numbers = {name: _calibrate(run, min_time_s) for name, run in runners.items()}
    times: dict[str, list[float]] = {name: [] for name in runners}
    gc.disable()
    try:
        for _ in range(repeat):
            for name, run in runners.items():
                number = numbers[name]
                start = time.process_time_ns()
                for _ in range(number):
                    run()
                times[name].append((time.process_time_ns() - start) / number / 1000)
    finally:
        gc.enable()
    return {name: statistics.median(values) for name, values in times.items()}


def profile(workload: Workload, lines: int) -> str:
    run = ours(workload)
    for _ in range(200):
        run()
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [run() for _ in range(5000)])
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(lines)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="timed rounds (median reported)")
    ap.add_argument("--min-time", type=float, default=0.3,
                    help="seconds per implementation per round (default 0.3)")
    ap.add_argument("--profile", type=int, default=0, metavar="LINES",
                    help="also print cProfile's top LINES functions for ours, per workload")
    args = ap.parse_args(argv)
    rows = []
    for workload in WORKLOADS:
        result = bench(workload, args.repeat, args.min_time)
        mine, h2_us = result["wsgiserve.http2"], result["h2"]
        rows.append(f"| {workload.name} | {mine:.1f} us ({1e6 / mine:,.0f}/s) | "
                    f"{h2_us:.1f} us ({1e6 / h2_us:,.0f}/s) | {h2_us / mine:.1f}x |")
    print("CPU time per request, both roles (client send + server read + server answer + "
          f"client read), median of {args.repeat}:\n")
    print("| workload | wsgiserve.http2 | h2 | speed-up |\n|---|---|---|---|")
    print("\n".join(rows))
    if args.profile:
        for workload in WORKLOADS:
            print(f"\n### {workload.name}\n```\n{profile(workload, args.profile)}```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
