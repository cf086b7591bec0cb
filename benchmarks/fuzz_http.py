#!/usr/bin/env python3
"""Fuzz both wsgiserve parsers, and compare their framing with h11's.

Random and mutated inputs (byte flips; insertions of CR, LF, NUL, SP, ":" and digits;
splicing; truncation; duplicated header lines; random splits; peer close) go through
``RequestParser`` and ``ResponseParser``. Anything raised other than RemoteProtocolError
(including the AssertionError of a transition missing from the table) is a failure, and
so is a parser holding more than its limit while reading a head.

With ``--differential`` every input is also parsed by h11 (a test dependency, not a
runtime one): for each message both accept, the two must agree on the body bytes and on
where the message ends (the next message's first byte).

    python benchmarks/fuzz_http.py --count 20000             # CI-sized
    python benchmarks/fuzz_http.py --count 1000000 --differential --jobs 2

Exit status 1 on any failure or disagreement.
"""
from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wsgiserve.http import (  # noqa: E402  (path set up above)
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    HttpLimits,
    Request,
    RequestParser,
    Response,
    ResponseParser,
)
from wsgiserve.http.errors import RemoteProtocolError  # noqa: E402
from wsgiserve.http.parser import ParserState  # noqa: E402

LIMITS = HttpLimits(max_request_line_bytes=256, max_fields=16, max_field_bytes=256,
                    max_head_bytes=1024, max_chunk_line_bytes=64, max_trailer_bytes=256)
EXAMPLES_KEPT = 5

REQUEST_SEEDS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /search?q=1 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: x/1\r\n"
    b"Accept: */*\r\nCookie: a=b\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=\"q\"\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc"
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\nCONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
]
RESPONSE_SEEDS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: y\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\nHTTP/1.1 404 Not Found\r\n"
    b"Content-Length: 2\r\n\r\nno",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
]
INSERTS = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b"0", b"1", b"9", b"a", b"f",
           b"-", b"+", b",", b";", b"\"", b"\x7f", b"\xff", b"\r\n\r\n", b"\r\n ",
           b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: b\r\n",
           b"Connection: close\r\n", b"00", b"ffffffffffffffffff", b"99999999999999999999"]


def _corpus_seeds() -> list[bytes]:
    return [path.read_bytes() for path in sorted((ROOT / "tests/http/corpus").glob("*.http"))]


class Mutator:
    """Makes inputs from the seeds with a seeded random generator (reproducible)."""

    def __init__(self, seed: int, seeds: list[bytes]) -> None:
        self.random = random.Random(seed)
        self.seeds = seeds

    def random_bytes(self) -> bytes:
        r = self.random
        if r.random() < 0.5:
            return r.randbytes(r.randrange(0, 120))
        alphabet = b"GET /HTP1.0\r\n: abcHost-Length\t\x00chunked;=\"9f"
        return bytes(r.choice(alphabet) for _ in range(r.randrange(0, 160)))

    def mutate(self, data: bytes) -> bytes:
        r = self.random
        buf = bytearray(data)
        for _ in range(r.randrange(1, 5)):
            op = r.randrange(7)
            at = r.randrange(len(buf) + 1)
            if op == 0 and buf:                      # flip a byte
                buf[min(at, len(buf) - 1)] ^= 1 << r.randrange(8)
            elif op == 1:                            # insert a protocol-significant byte
                buf[at:at] = r.choice(INSERTS)
            elif op == 2 and buf:                    # delete a few bytes
                del buf[at:at + r.randrange(1, 4)]
            elif op == 3:                            # splice another seed in
                other = r.choice(self.seeds)
                start = r.randrange(len(other) + 1)
                buf[at:] = other[start:] if r.random() < 0.5 else other
            elif op == 4 and buf:                    # truncate
                del buf[at:]
            elif op == 5:                            # duplicate a header line
                lines = bytes(buf).split(b"\r\n")
                if len(lines) > 2:
                    i = r.randrange(1, len(lines) - 1)
                    lines.insert(i, lines[i])
                    buf = bytearray(b"\r\n".join(lines))
            elif op == 6 and buf:                    # replace a byte with a random one
                buf[min(at, len(buf) - 1)] = r.randrange(256)
        return bytes(buf)

    def input(self) -> bytes:
        if self.random.random() < 0.1:
            return self.random_bytes()
        return self.mutate(self.random.choice(self.seeds))

    def splits(self, data: bytes) -> list[bytes]:
        r = self.random
        if r.random() < 0.5 or len(data) < 2:
            return [data]
        cuts = sorted(r.sample(range(1, len(data)), min(len(data) - 1, r.randrange(1, 6))))
        bounds = [0, *cuts, len(data)]
        return [data[a:b] for a, b in zip(bounds, bounds[1:])]


# -- running our parsers ------------------------------------------------------------------

_HEAD_BOUND = {ParserState.HEAD: LIMITS.max_head_bytes,
               ParserState.CHUNK_SIZE: LIMITS.max_chunk_line_bytes,
               ParserState.TRAILERS: LIMITS.max_trailer_bytes}
_DIGITS = re.compile(r"\d+|b'[^']*'|b\"[^\"]*\"")


def reason_class(exc: RemoteProtocolError) -> str:
    return f"{type(exc).__name__}: {_DIGITS.sub('_', str(exc))[:60]}"


def run_ours(parser: RequestParser | ResponseParser, pieces: list[bytes],
             close: bool) -> tuple[list[tuple[bytes, int]], str]:
    """Feed pieces; return each completed message's (body, end offset) and the outcome."""
    messages: list[tuple[bytes, int]] = []
    body = bytearray()
    fed = 0
    for piece in [*pieces, *([b""] if close else [])]:
        parser.feed(piece)
        fed += len(piece)
        for _ in range(100_000):
            try:
                event = parser.next_event()
            except RemoteProtocolError as exc:
                return messages, "rejected " + reason_class(exc)
            if event is NEED_DATA or event is PAUSED or isinstance(event, ConnectionClosed):
                break
            if isinstance(event, Request | Response):
                body = bytearray()
            elif isinstance(event, Data):
                body += event.data
            elif isinstance(event, EndOfMessage):
                messages.append((bytes(body), fed - parser.buffered_bytes))
        else:
            raise AssertionError("next_event never stopped returning events")
        bound = _HEAD_BOUND.get(parser.state)
        if bound is not None and parser.buffered_bytes > bound:
            raise AssertionError(f"{parser.state}: {parser.buffered_bytes} bytes buffered")
    return messages, "accepted"


# -- running h11 (differential) -----------------------------------------------------------

def h11_requests(data: bytes) -> list[tuple[bytes, int]]:
    """Each request h11 completes: (body, end offset). A fresh connection per message
    (h11 would wait for our response before reading the next request)."""
    import h11
    messages: list[tuple[bytes, int]] = []
    offset = 0
    while offset < len(data):
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=LIMITS.max_head_bytes)
        conn.receive_data(data[offset:])
        body = bytearray()
        keep_alive = True
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return messages
                if isinstance(event, h11.Request):
                    keep_alive = event.http_version == b"1.1" and not any(
                        n == b"connection" and b"close" in v.lower() for n, v in event.headers)
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
        except h11.RemoteProtocolError:
            return messages
        end = len(data) - len(conn.trailing_data[0])
        messages.append((bytes(body), end))
        if not keep_alive or end == offset:
            return messages
        offset = end
    return messages


def h11_responses(data: bytes, method: bytes) -> list[tuple[bytes, int]]:
    import h11
    messages: list[tuple[bytes, int]] = []
    offset = 0
    while offset < len(data):
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=LIMITS.max_head_bytes)
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "a")]))
        conn.send(h11.EndOfMessage())
        conn.receive_data(data[offset:])
        conn.receive_data(b"")
        body = bytearray()
        keep_alive = True
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED or \
                        isinstance(event, h11.ConnectionClosed):
                    return messages
                if isinstance(event, h11.Response):
                    keep_alive = conn.their_state is not h11.MUST_CLOSE
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    keep_alive = keep_alive and conn.their_state is not h11.MUST_CLOSE
                    break
        except h11.RemoteProtocolError:
            return messages
        end = len(data) - len(conn.trailing_data[0])
        messages.append((bytes(body), end))
        if not keep_alive or end == offset:
            return messages
        offset = end
    return messages


def compare(kind: str, data: bytes, ours: list[tuple[bytes, int]], our_outcome: str,
            theirs: list[tuple[bytes, int]], stats: Counter[str],
            examples: dict[str, list[Any]]) -> None:
    if ours and theirs:
        stats[f"diff {kind}: both accept >=1 message"] += 1
        common = min(len(ours), len(theirs))
        if ours[:common] != theirs[:common]:
            stats[f"diff {kind}: DISAGREEMENT on framing"] += 1
            _keep(examples, f"diff {kind} disagreement", (data, ours, theirs))
    elif ours:
        stats[f"diff {kind}: only wsgiserve accepts"] += 1
        _keep(examples, f"diff {kind} only wsgiserve accepts", (data, ours))
    elif theirs:
        stats[f"diff {kind}: only h11 accepts"] += 1
        # Where we are stricter than h11, and why (printed under the differential counts).
        stats[f"stricter {kind}: {our_outcome.removeprefix('rejected ')}"] += 1
        _keep(examples, f"diff {kind} only h11 accepts", (data, theirs))


def _keep(examples: dict[str, list[Any]], key: str, item: Any) -> None:
    bucket = examples.setdefault(key, [])
    if len(bucket) < EXAMPLES_KEPT:
        bucket.append(item)


def run_batch(job: tuple[int, int, bool]) -> tuple[Counter[str], dict[str, list[Any]]]:
    seed, count, differential = job
    seeds_req = REQUEST_SEEDS + [s for s in _corpus_seeds() if not s.startswith(b"HTTP/")]
    seeds_resp = RESPONSE_SEEDS + [s for s in _corpus_seeds() if s.startswith(b"HTTP/")]
    requests, responses = Mutator(seed, seeds_req), Mutator(seed + 1, seeds_resp)
    stats: Counter[str] = Counter()
    examples: dict[str, list[Any]] = {}
    for i in range(count):
        is_request = i % 2 == 0
        mutator = requests if is_request else responses
        data = mutator.input()
        pieces = mutator.splits(data)
        close = mutator.random.random() < 0.3
        kind = "request" if is_request else "response"
        method = mutator.random.choice([b"GET", b"GET", b"HEAD", b"POST", b"CONNECT"])
        parser: RequestParser | ResponseParser
        if is_request:
            parser = RequestParser(LIMITS)
        else:
            parser = ResponseParser(LIMITS)
            for _ in range(4):
                parser.expect_response(method)
        stats["inputs"] += 1
        stats[f"inputs {kind}"] += 1
        try:
            messages, outcome = run_ours(parser, pieces, close)
        except Exception as exc:  # noqa: BLE001  (what the fuzzer is looking for)
            key = f"FAILURE {kind} {type(exc).__name__}"
            stats[key] += 1
            _keep(examples, key, (data, pieces, close, repr(exc)))
            continue
        stats[f"{kind} {'accepted' if outcome == 'accepted' else 'rejected'}"] += 1
        if outcome != "accepted":
            stats[f"{kind} {outcome}"] += 1
        if differential and method != b"CONNECT":
            if is_request:
                ours, outcome = run_ours(RequestParser(LIMITS), [data], False)
                compare(kind, data, ours, outcome, h11_requests(data), stats, examples)
            else:
                parser = ResponseParser(LIMITS)
                for _ in range(8):
                    parser.expect_response(method)
                ours, outcome = run_ours(parser, [data], True)
                compare(kind, data, ours, outcome, h11_responses(data, method), stats, examples)
    return stats, examples


def batches(count: int, size: int, seed: int, differential: bool) -> Iterator[tuple[int, int, bool]]:
    done = 0
    index = 0
    while done < count:
        n = min(size, count - done)
        yield seed + 2 * index, n, differential
        done += n
        index += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20000, help="inputs in all (default 20000)")
    ap.add_argument("--differential", action="store_true", help="compare framing with h11")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (reproducible runs)")
    ap.add_argument("--examples", type=int, default=3, help="examples printed per class")
    args = ap.parse_args(argv)

    started = time.monotonic()
    stats: Counter[str] = Counter()
    examples: dict[str, list[Any]] = {}
    jobs = list(batches(args.count, 5000, args.seed, args.differential))
    with multiprocessing.Pool(args.jobs) as pool:
        for batch_stats, batch_examples in pool.imap_unordered(run_batch, jobs):
            stats.update(batch_stats)
            for key, items in batch_examples.items():
                for item in items:
                    _keep(examples, key, item)
    elapsed = time.monotonic() - started

    print(f"# {stats['inputs']} inputs in {elapsed:.0f} s ({args.jobs} processes, seed "
          f"{args.seed}{', differential vs h11' if args.differential else ''})")
    for kind in ("request", "response"):
        print(f"{kind}: {stats[f'inputs {kind}']} inputs, {stats[f'{kind} accepted']} accepted, "
              f"{stats[f'{kind} rejected']} rejected")
        rejected = [(k, v) for k, v in stats.items() if k.startswith(f"{kind} rejected ")]
        by_class: Counter[str] = Counter()
        for key, value in rejected:
            by_class[key.split(":")[0].removeprefix(f"{kind} rejected ")] += value
        for name, value in by_class.most_common():
            print(f"  {name:28} {value}")
        for key, value in sorted(rejected, key=lambda kv: -kv[1])[:12]:
            print(f"    {value:8}  {key.removeprefix(f'{kind} rejected ')}")
    for key in sorted(k for k in stats if k.startswith("diff ")):
        print(f"{key}: {stats[key]}")
    stricter = sorted(((k, v) for k, v in stats.items() if k.startswith("stricter ")),
                      key=lambda kv: -kv[1])
    if stricter:
        print("where only h11 accepts, wsgiserve's reason (top 15):")
        for key, value in stricter[:15]:
            print(f"    {value:8}  {key.removeprefix('stricter ')}")
    failures = sum(v for k, v in stats.items() if k.startswith("FAILURE"))
    disagreements = sum(v for k, v in stats.items() if "DISAGREEMENT" in k)
    print(f"failures (exceptions other than RemoteProtocolError, or buffers over limit): "
          f"{failures}")
    print(f"framing disagreements with h11: {disagreements}")
    for key, items in sorted(examples.items()):
        print(f"-- {key}")
        for item in items[:args.examples]:
            print("   ", repr(item)[:400])
    return 1 if failures or disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
