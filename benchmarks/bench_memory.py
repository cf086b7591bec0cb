#!/usr/bin/env python3
"""Worker memory while one connection streams a large body each way.

    python benchmarks/bench_memory.py [--mb 200]

For wsgiserve (--threads 4) and gunicorn (gthread, --threads 4), one worker each serving
tests/apps.py's ``raw`` app: the worker's RSS when idle, and its peak RSS growth while one
connection uploads MB of chunked body to /echo (read in 64 KiB pieces and hashed), then
while it downloads MB from /big (64 KiB pieces with Content-Length). The peak is read from
VmHWM after resetting it (``/proc/PID/clear_refs``), and from RSS samples every 20 ms.
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from servers import ServerSpec, gunicorn, rss_kib, start, wsgiserve

BLOCK = bytes(range(256)) * 256  # 64 KiB


def _reset_peak(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def stream_growth(spec: ServerSpec, direction: str, megabytes: int, directory: Path) -> int:
    """Peak RSS growth of the worker, KiB, for one streamed body (``upload``/``download``)."""
    size = megabytes * 1_000_000
    server = start(spec, "tests.apps:raw", directory)
    try:
        pid = server.worker_pid
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("GET", "/hello")
        conn.getresponse().read()
        before = rss_kib(pid)
        _reset_peak(pid)
        samples = [before]
        halt = threading.Event()

        def sample() -> None:
            while not halt.wait(0.02):
                samples.append(rss_kib(pid))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            if direction == "upload":
                def blocks() -> Iterator[bytes]:
                    sent = 0
                    while sent < size:
                        piece = BLOCK[:size - sent]
                        sent += len(piece)
                        yield piece
                conn.request("POST", "/echo", body=blocks(), encode_chunked=True,
                             headers={"Transfer-Encoding": "chunked"})
                result = json.loads(conn.getresponse().read())
                assert result["body_length"] == size, result
            else:
                conn.request("GET", f"/big?size={size}")
                response = conn.getresponse()
                received = 0
                while piece := response.read(1 << 20):
                    received += len(piece)
                assert received == size, received
        finally:
            halt.set()
            sampler.join(timeout=5)
            conn.close()
        peak = max(max(samples), rss_kib(pid, "VmHWM"))
        return peak - before
    finally:
        server.stop()


def idle_rss(spec: ServerSpec, directory: Path) -> int:
    server = start(spec, "tests.apps:hello", directory)
    try:
        return rss_kib(server.worker_pid)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args(argv)
    print("| server | idle worker RSS | upload growth | download growth |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as temp:
        for spec in (wsgiserve(4), gunicorn(4)):
            idle = idle_rss(spec, Path(temp))
            up = stream_growth(spec, "upload", args.mb, Path(temp))
            down = stream_growth(spec, "download", args.mb, Path(temp))
            print(f"| {spec.label} | {idle / 1024:.1f} MiB | {up / 1024:.1f} MiB "
                  f"({args.mb} MB) | {down / 1024:.1f} MiB ({args.mb} MB) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
