#!/usr/bin/env python3
"""Microseconds per parsed request, side by side: wsgiserve, h11, httptools, gunicorn.

"wsgiserve, new names" is the same parser with its cache of validated field-name
sequences emptied before every parse: what a client's first request costs (a keep-alive
client repeats its names, and hits the cache from its second request on).

Workloads: a ~500-byte browser GET with 12 header fields, the minimal GET wrk sends, and
a POST with a 64 KiB chunked body (16 chunks of 4 KiB) parsed to the end of the message.
Every parser is checked once against the expected result, then timed; the parsers take
turns inside each repeat so that machine noise hits them alike, and the median over the
repeats is reported (gc disabled while timing). h11, httptools and gunicorn are test
dependencies; a missing one is skipped with a note.

    python benchmarks/parse_bench.py                  # Markdown table
    python benchmarks/parse_bench.py --repeat 9 --min-time 0.3
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wsgiserve.http import (  # noqa: E402  (path set up above)
    Data,
    EndOfMessage,
    Request,
    RequestParser,
)
from wsgiserve.http.caches import FieldNameCache, RequestHeadCache  # noqa: E402

BROWSER = (
    b"GET /search?q=wsgi+server&page=2 HTTP/1.1\r\n"
    b"Host: shop.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b"Cache-Control: max-age=0\r\n"
    b"sec-ch-ua: \"Chromium\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
    b"sec-ch-ua-mobile: ?0\r\n"
    b"sec-ch-ua-platform: \"Linux\"\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: sessionid=8f3a2c71b9e04d5a\r\n"
    b"\r\n"
)
WRK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
_CHUNK = bytes(range(256)) * 16          # 4 KiB
CHUNKED_BODY = _CHUNK * 16                # 64 KiB
CHUNKED = (b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
           b"Content-Type: application/octet-stream\r\n\r\n"
           + b"".join(b"%x\r\n%b\r\n" % (len(_CHUNK), _CHUNK) for _ in range(16)) + b"0\r\n\r\n")

WORKLOADS = {f"browser GET ({len(BROWSER)} B, 12 fields)": BROWSER,
             f"minimal GET (wrk, {len(WRK)} B)": WRK,
             "64 KiB chunked POST body": CHUNKED}

# (method, target, [(lowercase name, value)], body) parsed back from each workload.
Parsed = tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]


def _expected(raw: bytes) -> Parsed:
    head, _, _ = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ")
    fields = [(n.lower(), v.strip()) for n, _, v in (line.partition(b":") for line in lines[1:])]
    return method, target, fields, CHUNKED_BODY if raw is CHUNKED else b""


# A worker's parsers share these (its connections' clients repeat their field names).
NAMES = FieldNameCache()
HEADS = RequestHeadCache()


def wsgiserve_parse(raw: bytes, names: FieldNameCache | None = NAMES,
                    heads: RequestHeadCache | None = None) -> Any:
    parser = RequestParser(name_cache=names, head_cache=heads)
    parser.feed(raw)
    request = parser.next_event()
    assert isinstance(request, Request)
    body = []
    while True:
        event = parser.next_event()
        if isinstance(event, Data):
            body.append(event.data)
        elif isinstance(event, EndOfMessage):
            break
        else:
            raise AssertionError(f"unexpected {event!r}")
    return request, body


def wsgiserve_result(parsed: Any) -> Parsed:
    request, body = parsed
    return request.method, request.target, request.headers.lowered(), b"".join(body)


def make_h11() -> tuple[Callable[[bytes], Any], Callable[[Any], Parsed]]:
    import h11

    def parse(raw: bytes) -> Any:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        conn.receive_data(raw)
        request = conn.next_event()
        assert type(request) is h11.Request
        body = []
        while True:
            event = conn.next_event()
            if type(event) is h11.Data:
                body.append(event.data)
            elif type(event) is h11.EndOfMessage:
                break
            else:
                raise AssertionError(f"unexpected {event!r}")
        return request, body

    def result(parsed: Any) -> Parsed:
        request, body = parsed
        return request.method, request.target, list(request.headers), b"".join(body)
    return parse, result


def make_httptools() -> tuple[Callable[[bytes], Any], Callable[[Any], Parsed]]:
    import httptools

    class Protocol:
        __slots__ = ("url", "headers", "body", "done")

        def __init__(self) -> None:
            self.url = b""
            self.headers: list[tuple[bytes, bytes]] = []
            self.body: list[bytes] = []
            self.done = False

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.lower(), value))

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            self.done = True

    def parse(raw: bytes) -> Any:
        protocol = Protocol()
        parser = httptools.HttpRequestParser(protocol)
        parser.feed_data(raw)
        return parser.get_method(), protocol

    def result(parsed: Any) -> Parsed:
        method, protocol = parsed
        assert protocol.done
        return method, protocol.url, protocol.headers, b"".join(protocol.body)
    return parse, result


def make_gunicorn() -> tuple[Callable[[bytes], Any], Callable[[Any], Parsed]]:
    # gunicorn ships no type information.
    from gunicorn.config import Config  # type: ignore[import-untyped]
    from gunicorn.http.message import Request as GunicornRequest  # type: ignore[import-untyped]
    from gunicorn.http.unreader import IterUnreader  # type: ignore[import-untyped]
    config = Config()
    config.set("http_parser", "python")  # the pure-Python parser, not gunicorn_h1c
    peer = ("127.0.0.1", 40000)

    def parse(raw: bytes) -> Any:
        request = GunicornRequest(config, IterUnreader([raw]), peer)
        return request, request.body.read()

    def result(parsed: Any) -> Parsed:
        request, body = parsed
        return (request.method.encode(), request.uri.encode(),
                [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in request.headers],
                body)
    return parse, result


# name -> factory of (parse, result): only parse is timed; result checks what it parsed.
def wsgiserve_parse_new_names(raw: bytes) -> Any:
    """The parser as it meets a field-name sequence for the first time (a new client):
    an empty cache of validated name sequences for each parse."""
    return wsgiserve_parse(raw, FieldNameCache())


def wsgiserve_parse_repeated_head(raw: bytes) -> Any:
    """A head the worker has seen before: the RequestHeadCache hands out its event."""
    return wsgiserve_parse(raw, NAMES, HEADS)


PARSERS: dict[str, Callable[[], tuple[Callable[[bytes], Any], Callable[[Any], Parsed]]]] = {
    "wsgiserve": lambda: (wsgiserve_parse, wsgiserve_result),
    "wsgiserve, new names": lambda: (wsgiserve_parse_new_names, wsgiserve_result),
    "wsgiserve, repeated head": lambda: (wsgiserve_parse_repeated_head, wsgiserve_result),
    "h11": make_h11,
    "httptools": make_httptools,
    "gunicorn (python)": make_gunicorn,
}


def _calibrate(parse: Callable[[bytes], Any], raw: bytes, min_time_s: float) -> int:
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            parse(raw)
        if time.perf_counter() - start >= min_time_s / 4:
            return max(1, int(number * min_time_s / (time.perf_counter() - start)))
        number *= 4


def bench(raw: bytes, parsers: dict[str, Callable[[bytes], Any]], repeat: int,
          min_time_s: float) -> dict[str, float]:
    numbers = {name: _calibrate(parse, raw, min_time_s) for name, parse in parsers.items()}
    times: dict[str, list[float]] = {name: [] for name in parsers}
    gc.disable()
    try:
        for _ in range(repeat):
            for name, parse in parsers.items():
                number = numbers[name]
                start = time.perf_counter_ns()
                for _ in range(number):
                    parse(raw)
                times[name].append((time.perf_counter_ns() - start) / number / 1000)
    finally:
        gc.enable()
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="timed rounds (median reported)")
    ap.add_argument("--min-time", type=float, default=0.2,
                    help="seconds per parser per round (default 0.2)")
    args = ap.parse_args(argv)

    parsers: dict[str, Callable[[bytes], Any]] = {}
    results: dict[str, Callable[[Any], Parsed]] = {}
    notes = []
    for name, factory in PARSERS.items():
        try:
            parsers[name], results[name] = factory()
        except ImportError as exc:
            notes.append(f"{name}: skipped ({exc})")
    for label, raw in WORKLOADS.items():
        want = _expected(raw)
        for name, parse in list(parsers.items()):
            got = results[name](parse(raw))
            if got != want:
                notes.append(f"{name}: wrong result on {label}: {str(got)[:120]}")
                del parsers[name]

    others = [name for name in parsers if name != "wsgiserve"]
    print(f"Python {sys.version.split()[0]}; microseconds per request, median of "
          f"{args.repeat} rounds; ratio = other / wsgiserve (>1: wsgiserve is faster)\n")
    header = ["workload", *parsers, *(f"{o} / wsgiserve" for o in others)]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for label, raw in WORKLOADS.items():
        result = bench(raw, parsers, args.repeat, args.min_time)
        ours = result.get("wsgiserve")
        cells = [f"{result[name]:.2f}" for name in parsers]
        ratios = [f"{result[o] / ours:.2f}x" if ours else "-" for o in others]
        print("| " + " | ".join([label, *cells, *ratios]) + " |")
    for note in notes:
        print(f"\nnote: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
