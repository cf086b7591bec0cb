#!/usr/bin/env python3
"""The sans-IO WebSocket core against wsproto, side by side, in one process.

- unmask throughput (MB/s) for 100 B, 16 KiB and 1 MiB payloads: ``frames.apply_mask``
  against wsproto's masker;
- echo messages per second: a 100-byte text message client -> server -> client through
  two in-memory connections (every frame masked one way), plain and with
  permessage-deflate;
- parsing many small frames from one buffer (frames per second): 10,000 masked 10-byte
  text frames fed at once, which an O(n^2) buffer would make crawl.

Each case is checked once, then timed; the implementations take turns inside each repeat
so that machine noise hits them alike, and the median over the repeats is reported (gc
disabled while timing). wsproto is a test dependency; without it only our column is shown.

    python benchmarks/bench_websocket_core.py                # Markdown table
    python benchmarks/bench_websocket_core.py --repeat 9 --min-time 0.5
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wsgiserve.websocket import (  # noqa: E402  (path set up above)
    DeflateOptions,
    Role,
    TextMessage,
    WebSocketConnection,
    accept_upgrade,
    build_upgrade_request,
    check_upgrade_response,
    parse_upgrade_request,
)
from wsgiserve.websocket.frames import apply_mask, encode_frame  # noqa: E402

try:
    import wsproto
    from wsproto import ConnectionType, WSConnection
    from wsproto import events as wse
    from wsproto.extensions import PerMessageDeflate
    from wsproto.frame_protocol import XorMaskerSimple
except ImportError:  # pragma: no cover - wsproto is a test dependency
    wsproto = None

Case = Callable[[], int]     # runs once, returns the units of work done (bytes, messages)


def ours_unmask(size: int) -> Case:
    data = os.urandom(size)
    mask = os.urandom(4)

    def run() -> int:
        apply_mask(data, mask)
        return size
    return run


def wsproto_unmask(size: int) -> Case:
    data = os.urandom(size)
    mask = os.urandom(4)

    def run() -> int:
        XorMaskerSimple(mask).process(bytearray(data))
        return size
    return run


def _our_pair(deflate: bool) -> tuple[WebSocketConnection, WebSocketConnection]:
    options = DeflateOptions() if deflate else None
    handshake = build_upgrade_request(deflate=options)
    acceptance = accept_upgrade(parse_upgrade_request(b"GET", b"1.1", handshake.headers),
                                deflate=options)
    negotiated = check_upgrade_response(handshake, 101, acceptance.headers)
    return (WebSocketConnection(Role.CLIENT, deflate=negotiated.deflate),
            WebSocketConnection(Role.SERVER, deflate=acceptance.deflate))


def ours_echo(deflate: bool, count: int = 200) -> Case:
    client, server = _our_pair(deflate)
    text = "x" * 60 + "0123456789" * 4

    def run() -> int:
        for _ in range(count):
            client.send_text(text)
            server.receive_data(client.data_to_send())
            for event in server.events():
                assert isinstance(event, TextMessage)
                server.send_text(event.text)
            client.receive_data(server.data_to_send())
            for event in client.events():
                assert isinstance(event, TextMessage) and event.text == text
        return count
    return run


def _wsproto_pair(deflate: bool) -> tuple[WSConnection, WSConnection]:
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    extensions = [PerMessageDeflate()] if deflate else []
    server.receive_data(client.send(wse.Request(host="a", target="/", extensions=extensions)))
    request = next(server.events())
    assert isinstance(request, wse.Request)
    client.receive_data(server.send(wse.AcceptConnection(extensions=list(extensions))))
    assert isinstance(next(client.events()), wse.AcceptConnection)
    return client, server


def wsproto_echo(deflate: bool, count: int = 200) -> Case:
    client, server = _wsproto_pair(deflate)
    text = "x" * 60 + "0123456789" * 4

    def run() -> int:
        for _ in range(count):
            server.receive_data(client.send(wse.TextMessage(text)))
            for event in server.events():
                assert isinstance(event, wse.TextMessage)
                client.receive_data(server.send(wse.TextMessage(event.data)))
            for event in client.events():
                assert isinstance(event, wse.TextMessage) and event.data == text
        return count
    return run


SMALL_FRAMES = 10_000


def _small_frames() -> bytes:
    return encode_frame(1, b"0123456789", mask=b"\x01\x02\x03\x04") * SMALL_FRAMES


def ours_many_frames() -> Case:
    wire = _small_frames()

    def run() -> int:
        server = WebSocketConnection(Role.SERVER)
        server.receive_data(wire)
        count = sum(1 for _ in server.events())
        assert count == SMALL_FRAMES
        return count
    return run


def wsproto_many_frames() -> Case:
    wire = _small_frames()

    def run() -> int:
        _, server = _wsproto_pair(False)
        server.receive_data(wire)
        count = sum(1 for _ in server.events())
        assert count == SMALL_FRAMES
        return count
    return run


def measure(case: Case, min_time_s: float) -> float:
    """Units per second over at least ``min_time_s``."""
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_time_s:
        done += case()
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per measurement")
    args = parser.parse_args()

    rows: list[tuple[str, str, Case, Case | None, float]] = []
    for size, label in ((100, "100 B"), (16384, "16 KiB"), (1 << 20, "1 MiB")):
        rows.append((f"unmask {label}", "MB/s", ours_unmask(size),
                     wsproto_unmask(size) if wsproto else None, 1e6))
    for deflate in (False, True):
        rows.append((f"echo 100 B text{' (deflate)' if deflate else ''}", "msg/s",
                     ours_echo(deflate), wsproto_echo(deflate) if wsproto else None, 1.0))
    rows.append((f"parse {SMALL_FRAMES:,} small frames in one buffer", "frames/s",
                 ours_many_frames(), wsproto_many_frames() if wsproto else None, 1.0))

    version = getattr(wsproto, "__version__", "not installed") if wsproto else "not installed"
    print(f"Python {sys.version.split()[0]}, wsproto {version}, "
          f"median of {args.repeat} x {args.min_time} s\n")
    print("| case | unit | wsgiserve | wsproto | ratio |")
    print("|---|---|---|---|---|")
    for name, unit, ours, theirs, scale in rows:
        ours()                                  # checks it works, warms up
        if theirs is not None:
            theirs()
        ours_rates: list[float] = []
        their_rates: list[float] = []
        gc.disable()
        try:
            for _ in range(args.repeat):
                ours_rates.append(measure(ours, args.min_time) / scale)
                if theirs is not None:
                    their_rates.append(measure(theirs, args.min_time) / scale)
        finally:
            gc.enable()
        mine = statistics.median(ours_rates)
        if their_rates:
            other = statistics.median(their_rates)
            print(f"| {name} | {unit} | {mine:,.0f} | {other:,.0f} | {mine / other:.1f}x |")
        else:
            print(f"| {name} | {unit} | {mine:,.0f} | - | - |")


if __name__ == "__main__":
    main()
