#!/usr/bin/env python3
"""Stress a worker's event loop for lost wakeups: a request or echo left waiting for good.

Each configuration (``--threads`` x plain/TLS) starts ``python -m wsgiserve`` on
127.0.0.1:0 (one worker, pings every ``--ping-interval`` s) serving this module's ``app``,
and drives it for ``--seconds`` with client threads on the same worker at once:

- WebSocket clients (the ``websockets`` library: it answers the server's pings), event
  mode: text and binary messages, compressible or not, permessage-deflate on or off,
  fragmented, some whose callback sleeps ("slow") or sends back megabytes ("burst");
  each echo is checked; every ``--reconnect-every`` messages a client closes and reopens;
- HTTP/1.1 keep-alive clients (``http.client``): small, large and uploaded bodies;
- HTTP/2 clients (the ``h2`` package on a socket): several streams at once, downloads
  larger than the server's output bound, uploads, new requests sent while others download,
  small receive buffers and windows, so streams' threads wait in the server.

A watcher notes every wait (an echo, a response, a stream) longer than ``--stall-s``:
the worker's threads (state and wait channel from /proc), its CPU time over the next
half second, and both ends of that TCP connection (``ss``: bytes unread by the server,
unsent, unread by the client). A wait that lasts ``--give-up-s`` is a STALL; one that
ends before is LATE. Exit status 1 when any stall or client error happened.

    tools/stall_hunt.py                                  # threads 1, 2, 4; plain and TLS
    tools/stall_hunt.py --threads 2 --tls off --seconds 120 --rounds 3
"""
from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")
_CHUNK = 65536


# -- the app the server runs (imported by the worker as stall_hunt:app) ----------------------

def _echo(ws: Any, message: str | bytes) -> None:
    """Echo; a message starting with "slow:MS:" sleeps MS ms first, "burst:N:SIZE:" sends
    N binary messages of SIZE bytes before the echo (the send buffer fills: send waits)."""
    head = message[:32].encode() if isinstance(message, str) else message[:32]
    if head.startswith(b"slow:"):
        time.sleep(int(head.split(b":")[1]) / 1000)
    elif head.startswith(b"burst:"):
        _, count, size = head.split(b":")[:3]
        block = b"b" * int(size)
        for _ in range(int(count)):
            ws.send(block)
    ws.send(message)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    upgrade = environ.get("wsgiserve.websocket")
    if upgrade is not None:
        upgrade.accept().on_message = _echo
        return []
    if path == "/big":
        size = int(query.get("size", ["1000000"])[0])
        start_response("200 OK", [("Content-Length", str(size))])
        return _pieces(size)
    if path == "/upload":
        length = 0
        while piece := environ["wsgi.input"].read(_CHUNK):
            length += len(piece)
        body = str(length).encode()
    elif path == "/sleep":
        time.sleep(float(query.get("s", ["0.05"])[0]))
        body = b"slept"
    else:
        body = b"hello"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def _pieces(size: int) -> Iterator[bytes]:
    block = b"x" * _CHUNK
    while size > 0:
        yield block[:size]
        size -= _CHUNK


# -- the server process ------------------------------------------------------------------------

class ServerProcess:
    """``python -m wsgiserve`` with one worker, its log in ``directory``."""

    def __init__(self, directory: Path, threads: int, tls: tuple[Path, Path] | None,
                 ping_interval_s: float) -> None:
        self.log_path = directory / f"server-{threads}-{'tls' if tls else 'plain'}.log"
        command = [sys.executable, "-m", "wsgiserve", "--bind", "127.0.0.1:0",
                   "--workers", "1", "--threads", str(threads), "--timeout", "120",
                   "--websocket-ping-interval", str(ping_interval_s),
                   "--websocket-ping-timeout", "10", "--keep-alive", "30"]
        if tls is not None:
            command += ["--certfile", str(tls[0]), "--keyfile", str(tls[1])]
        command.append("stall_hunt:app")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT / "tools"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, cwd=directory, start_new_session=True)
        self.port = self.worker_pid = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (self.port and self.worker_pid):
            text = self.log()
            if (match := re.search(r"Listening at: https?://127\.0\.0\.1:(\d+)", text)):
                self.port = int(match.group(1))
            if (match := re.search(r"Booting worker with pid: (\d+)", text)):
                self.worker_pid = int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        if not (self.port and self.worker_pid):
            self.stop()
            raise SystemExit(f"the server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def stop(self) -> None:
        """SIGTERM the master (ours, by PID); SIGKILL it and its worker after 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                for pid in (self.worker_pid, self.process.pid):
                    if pid:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                self.process.wait(10)


# -- watching waits ----------------------------------------------------------------------------

@dataclass
class Wait:
    what: str
    local_port: int
    since: float
    snapshot: str = ""


@dataclass
class Tally:
    """What a configuration's clients did, and what went wrong."""

    counts: dict[str, int] = field(default_factory=dict)
    late: list[str] = field(default_factory=list)
    stalls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + amount

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)


class Watcher:
    """Clients announce their waits; a thread snapshots the server on each long one."""

    def __init__(self, server: ServerProcess, tally: Tally, stall_s: float,
                 give_up_s: float, should_dump_stacks: bool = False) -> None:
        self.server = server
        self.should_dump_stacks = should_dump_stacks
        self.tally = tally
        self.stall_s = stall_s
        self.give_up_s = give_up_s
        self._waits: dict[object, Wait] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def begin(self, key: object, what: str, local_port: int) -> None:
        with self._lock:
            self._waits[key] = Wait(what, local_port, time.monotonic())

    def end(self, key: object) -> None:
        with self._lock:
            wait = self._waits.pop(key, None)
        if wait is not None and wait.snapshot:
            waited = time.monotonic() - wait.since
            with self.tally.lock:
                self.tally.late.append(f"LATE {waited:.1f} s: {wait.what}\n{wait.snapshot}")

    def give_up(self, key: object) -> None:
        """The client stops waiting (``give_up_s`` passed): a stall."""
        with self._lock:
            wait = self._waits.pop(key, None)
        if wait is not None:
            snapshot = wait.snapshot or self._snapshot(wait)
            with self.tally.lock:
                self.tally.stalls.append(f"STALL {time.monotonic() - wait.since:.1f} s: "
                                         f"{wait.what}\n{snapshot}")

    def stop(self) -> None:
        self._done.set()
        self._thread.join(10)

    def _watch(self) -> None:
        while not self._done.wait(0.25):
            now = time.monotonic()
            with self._lock:
                overdue = [w for w in self._waits.values()
                           if not w.snapshot and now - w.since > self.stall_s]
            for wait in overdue:
                wait.snapshot = self._snapshot(wait)
                match = re.search(r"CPU (\d+) ms.*server socket: Recv-Q (\d+)", wait.snapshot,
                                  re.DOTALL)
                if self.should_dump_stacks and match and int(match.group(1)) < 20 \
                        and int(match.group(2)) > 0:
                    # Bytes wait unread in the server: where is every thread? (SIGABRT: the
                    # worker writes all stacks to its log and exits; the master replaces it.)
                    self.should_dump_stacks = False
                    os.kill(self.server.worker_pid, signal.SIGABRT)

    def _snapshot(self, wait: Wait) -> str:
        pid = self.server.worker_pid
        before = _cpu_ticks(pid)
        time.sleep(0.5)
        cpu_ms = (_cpu_ticks(pid) - before) * 1000 // _TICKS
        sockets = _ss(self.server.port, wait.local_port)
        return (f"  after {time.monotonic() - wait.since:.1f} s: worker CPU {cpu_ms} ms in "
                f"0.5 s; threads: {_thread_states(pid)}\n{sockets}")


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _thread_states(pid: int) -> str:
    states: dict[str, int] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return "(gone)"
    for tid in tasks:
        try:
            state = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = Path(f"/proc/{pid}/task/{tid}/wchan").read_text().strip() or "-"
        except OSError:
            continue
        key = f"{state}:{wchan}"
        states[key] = states.get(key, 0) + 1
    return ", ".join(f"{key} x{count}" for key, count in sorted(states.items()))


def _ss(server_port: int, client_port: int) -> str:
    """Both ends of one loopback connection: Recv-Q (unread) and Send-Q (unsent)."""
    query = (f"( sport = :{server_port} and dport = :{client_port} ) or "
             f"( sport = :{client_port} and dport = :{server_port} )")
    try:
        result = subprocess.run(["ss", "-tnH", "state", "established", query],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"  ss failed: {exc}"
    lines = []
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            side = "server" if parts[2].endswith(f":{server_port}") else "client"
            lines.append(f"  {side} socket: Recv-Q {parts[0]} (unread), Send-Q {parts[1]}")
    return "\n".join(lines) or "  (connection not found by ss)"


# -- clients -----------------------------------------------------------------------------------

@dataclass
class Setup:
    port: int
    tls: ssl.SSLContext | None
    watcher: Watcher
    tally: Tally
    deadline: float
    max_messages: int
    reconnect_every: int
    give_up_s: float
    stop: threading.Event


def _text(rng: random.Random, size: int) -> str:
    words = ["stall", "edge", "wakeup", "epoll", "frame", "deflate", "ping", "thread"]
    return " ".join(rng.choice(words) for _ in range(size // 6 + 1))[:size]


def _ws_message(rng: random.Random) -> tuple[str | bytes, bool]:
    """A message, and whether to send it fragmented."""
    kind = rng.random()
    if kind < 0.04:
        return f"burst:{rng.randint(64, 256)}:{_CHUNK}:".encode(), False
    if kind < 0.15:
        return f"slow:{rng.randint(20, 300)}:" + _text(rng, rng.randint(10, 3000)), False
    size = rng.choice([16, 125, 700, 4096, 20000, 70000, 131072])
    if rng.random() < 0.5:
        message: str | bytes = _text(rng, size)
    else:
        message = rng.randbytes(size) if rng.random() < 0.5 else zlib.compress(b"z" * size)
    return message, rng.random() < 0.3


def _fragments(message: str | bytes, rng: random.Random) -> Iterator[str | bytes]:
    step = max(1, len(message) // rng.randint(2, 8))
    for start in range(0, len(message), step):
        yield message[start:start + step]


def websocket_client(setup: Setup, number: int) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    rng = random.Random(number)
    scheme = "wss" if setup.tls else "ws"
    sent = 0
    while not setup.stop.is_set() and time.monotonic() < setup.deadline \
            and sent < setup.max_messages:
        compression = "deflate" if rng.random() < 0.7 else None
        try:
            with connect(f"{scheme}://127.0.0.1:{setup.port}/ws", ssl=setup.tls,
                         compression=compression, ping_interval=None, open_timeout=30,
                         max_size=None, close_timeout=10) as ws:
                setup.tally.add("websocket connections")
                port = ws.socket.getsockname()[1]
                ends_after = sent + setup.reconnect_every
                while sent < min(ends_after, setup.max_messages) and not setup.stop.is_set() \
                        and time.monotonic() < setup.deadline:
                    # Sometimes several in flight: the later ones wait in the socket while
                    # the first one's callback runs (the loop stops reading meanwhile).
                    batch = [_ws_message(rng) for _ in range(rng.choice([1, 1, 1, 2, 4]))]
                    for message, is_fragmented in batch:
                        ws.send(_fragments(message, rng) if is_fragmented else message)
                    sent += len(batch)
                    setup.tally.add("websocket messages", len(batch))
                    _await_echoes(ws, [message for message, _ in batch], setup, port, number)
        except (ConnectionClosed, OSError, TimeoutError, AssertionError) as exc:
            setup.tally.error(f"websocket client {number}: {type(exc).__name__}: {exc}")
            return


def _await_echoes(ws: Any, messages: list[str | bytes], setup: Setup, port: int,
                  number: int) -> None:
    key = ("ws", number)
    first = messages[0]
    setup.watcher.begin(key, f"websocket client {number} (port {port}): echoes of "
                        f"{len(messages)} messages, the first {first[:24]!r}... "
                        f"({len(first)} bytes)", port)
    deadline = time.monotonic() + setup.give_up_s
    try:
        for message in messages:
            head = message[:32].encode() if isinstance(message, str) else message[:32]
            expected = 1 + (int(head.split(b":")[1]) if head.startswith(b"burst:") else 0)
            while expected:
                try:
                    received = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    setup.watcher.give_up(key)
                    raise
                expected -= 1
                if expected == 0 and received != message:
                    raise AssertionError(f"websocket client {number}: a wrong echo")
                setup.tally.add("websocket bytes", len(received))
    finally:
        setup.watcher.end(key)


def http1_client(setup: Setup, number: int) -> None:
    rng = random.Random(1000 + number)
    done = 0
    while not setup.stop.is_set() and time.monotonic() < setup.deadline \
            and done < setup.max_messages:
        conn: http.client.HTTPConnection
        if setup.tls:
            conn = http.client.HTTPSConnection("127.0.0.1", setup.port, context=setup.tls,
                                               timeout=setup.give_up_s)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", setup.port, timeout=setup.give_up_s)
        try:
            conn.connect()
            setup.tally.add("http/1.1 connections")
            port = conn.sock.getsockname()[1]
            for _ in range(rng.randint(5, 50)):
                if time.monotonic() >= setup.deadline:
                    break
                kind = rng.random()
                key = ("h1", number)
                if kind < 0.5:
                    path, body = "/hello", None
                elif kind < 0.8:
                    path, body = f"/big?size={rng.randint(1, 3_000_000)}", None
                else:
                    path, body = "/upload", rng.randbytes(rng.randint(1, 500_000))
                setup.watcher.begin(key, f"HTTP/1.1 client {number} (port {port}): {path}", port)
                try:
                    conn.request("POST" if body else "GET", path, body=body)
                    response = conn.getresponse()
                    data = response.read()
                except TimeoutError:
                    setup.watcher.give_up(key)
                    raise
                finally:
                    setup.watcher.end(key)
                if response.status != 200 or (body is not None and int(data) != len(body)):
                    raise AssertionError(f"HTTP/1.1 {path}: {response.status} {data[:80]!r}")
                done += 1
                setup.tally.add("http/1.1 requests")
        except (OSError, http.client.HTTPException, AssertionError) as exc:
            setup.tally.error(f"HTTP/1.1 client {number}: {type(exc).__name__}: {exc}")
            return
        finally:
            conn.close()


def http2_client(setup: Setup, number: int) -> None:
    rng = random.Random(2000 + number)
    done = 0
    while not setup.stop.is_set() and time.monotonic() < setup.deadline \
            and done < setup.max_messages:
        try:
            done += _http2_connection(setup, number, rng)
        except (OSError, AssertionError) as exc:
            setup.tally.error(f"HTTP/2 client {number}: {type(exc).__name__}: {exc}")
            return


@dataclass
class _Stream:
    path: str
    started: float
    upload: bytes = b""
    expected: int = -1
    received: int = 0
    status: int = 0


def _http2_connection(setup: Setup, number: int, rng: random.Random) -> int:
    """One HTTP/2 connection for a while: up to 6 streams at once. Returns streams done."""
    import h2.config
    import h2.connection
    import h2.settings

    sock = socket.create_connection(("127.0.0.1", setup.port), timeout=10)
    if rng.random() < 0.5:
        # A small receive buffer: the server's output piles up. (Not below the loopback
        # MSS of 64 KiB: the receiver would then announce no window update, and the
        # sender's zero-window probes would back off for seconds.)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 17)
    if setup.tls:
        sock = setup.tls.wrap_socket(sock, server_hostname="127.0.0.1")
        assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
    port = sock.getsockname()[1]
    setup.tally.add("http/2 connections")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                header_encoding=None))
    conn.initiate_connection()
    if rng.random() < 0.5:  # else the default windows of 64 KiB: streams wait for credit
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        conn.increment_flow_control_window(1 << 24)
    streams: dict[int, _Stream] = {}
    done = 0
    ends_at = min(setup.deadline, time.monotonic() + rng.uniform(2, 15))
    scheme = "https" if setup.tls else "http"
    sock.settimeout(0.05)
    try:
        while True:
            now = time.monotonic()
            if now < ends_at and len(streams) < 6 and rng.random() < 0.3:
                kind = rng.random()
                stream = _Stream("/hello", now)
                if kind < 0.4:
                    stream.path = f"/big?size={rng.randint(100_000, 4_000_000)}"
                elif kind < 0.6:
                    stream.path, stream.upload = "/upload", rng.randbytes(rng.randint(1, 300_000))
                elif kind < 0.7:
                    stream.path = "/sleep?s=0.1"
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, [(b":method", b"POST" if stream.upload else b"GET"),
                                              (b":scheme", scheme.encode()),
                                              (b":authority", b"127.0.0.1"),
                                              (b":path", stream.path.encode())],
                                  end_stream=not stream.upload)
                streams[stream_id] = stream
                setup.watcher.begin(("h2", number, stream_id),
                                    f"HTTP/2 client {number} (port {port}): stream "
                                    f"{stream_id} {stream.path}", port)
            _send_uploads(conn, streams)
            if (data := conn.data_to_send()):
                sock.settimeout(setup.give_up_s)
                sock.sendall(data)
                sock.settimeout(0.05)
            if not streams and now >= ends_at:
                break
            for stream_id, stream in streams.items():
                if now - stream.started > setup.give_up_s:
                    setup.watcher.give_up(("h2", number, stream_id))
                    raise AssertionError(f"stream {stream_id} {stream.path} unanswered")
            try:
                data = sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            if not data:
                raise AssertionError("the server closed the connection")
            for event in conn.receive_data(data):
                if _on_http2_event(conn, event, streams, setup):
                    done += 1
                    setup.watcher.end(("h2", number, event.stream_id))  # type: ignore[attr-defined]
            if rng.random() < 0.05:
                time.sleep(0.01)  # reads lag now and then
        conn.close_connection()
        sock.settimeout(10)
        sock.sendall(conn.data_to_send())
    finally:
        for stream_id in streams:
            setup.watcher.end(("h2", number, stream_id))
        sock.close()
    return done


def _send_uploads(conn: Any, streams: dict[int, _Stream]) -> None:
    for stream_id, stream in streams.items():
        while stream.upload:
            room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if room <= 0:
                break
            piece, stream.upload = stream.upload[:room], stream.upload[room:]
            conn.send_data(stream_id, piece, end_stream=not stream.upload)


def _on_http2_event(conn: Any, event: Any, streams: dict[int, _Stream], setup: Setup) -> int:
    import h2.events

    stream = streams.get(getattr(event, "stream_id", 0) or 0)
    if isinstance(event, h2.events.ResponseReceived) and stream is not None:
        fields = dict(event.headers)
        stream.status = int(fields[b":status"])
        stream.expected = int(fields.get(b"content-length", b"-1"))
    elif isinstance(event, h2.events.DataReceived):
        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        if stream is not None:
            stream.received += len(event.data)
            setup.tally.add("http/2 bytes", len(event.data))
    elif isinstance(event, h2.events.StreamEnded) and stream is not None:
        del streams[event.stream_id]
        if stream.status != 200 or stream.received != stream.expected:
            raise AssertionError(f"HTTP/2 {stream.path}: {stream.status}, "
                                 f"{stream.received} of {stream.expected} bytes")
        setup.tally.add("http/2 streams")
        return 1
    elif isinstance(event, h2.events.StreamReset):
        raise AssertionError(f"stream {event.stream_id} reset: {event.error_code}")
    elif isinstance(event, h2.events.ConnectionTerminated):
        raise AssertionError(f"GOAWAY {event.error_code}")
    return 0


# -- a run -------------------------------------------------------------------------------------

def _certificates(directory: Path) -> tuple[tuple[Path, Path], ssl.SSLContext,
                                             ssl.SSLContext]:
    """A trustme certificate's files, and client contexts offering h2 (HTTP/2) and
    http/1.1 only (WebSockets, HTTP/1.1)."""
    import trustme

    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = directory / "server.pem", directory / "server.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    contexts = []
    for alpn in ("h2", "http/1.1"):
        context = ssl.create_default_context()
        authority.configure_trust(context)
        context.set_alpn_protocols([alpn])
        contexts.append(context)
    return (cert, key), contexts[0], contexts[1]


def run_configuration(args: argparse.Namespace, directory: Path, threads: int,
                      use_tls: bool) -> Tally:
    tls_files = h2_tls = h1_tls = None
    if use_tls:
        tls_files, h2_tls, h1_tls = _certificates(directory)
    server = ServerProcess(directory, threads, tls_files, args.ping_interval)
    tally = Tally()
    watcher = Watcher(server, tally, args.stall_s, args.give_up_s, args.dump_stacks)
    stop = threading.Event()
    deadline = time.monotonic() + args.seconds

    def setup(tls: ssl.SSLContext | None) -> Setup:
        return Setup(server.port, tls, watcher, tally, deadline, args.max_messages,
                     args.reconnect_every, args.give_up_s, stop)

    clients = [threading.Thread(target=websocket_client, args=(setup(h1_tls), n), daemon=True)
               for n in range(args.websockets)]
    clients += [threading.Thread(target=http1_client, args=(setup(h1_tls), n), daemon=True)
                for n in range(args.http1)]
    clients += [threading.Thread(target=http2_client, args=(setup(h2_tls), n), daemon=True)
                for n in range(args.http2)]
    started = time.monotonic()
    try:
        for client in clients:
            client.start()
        for client in clients:
            client.join(max(0.0, deadline - time.monotonic()) + args.give_up_s + 30)
        if any(client.is_alive() for client in clients):
            tally.error("a client thread did not finish in time")
    finally:
        stop.set()
        watcher.stop()
        server.stop()
    log = server.log()
    for line in log.splitlines():
        if "Unexpected error" in line or "Traceback" in line or "WORKER TIMEOUT" in line:
            tally.error(f"server log: {line}")
    tally.add("seconds", int(time.monotonic() - started))
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2,4", help="serving threads, comma-separated")
    parser.add_argument("--tls", choices=["off", "on", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=60, help="per configuration")
    parser.add_argument("--rounds", type=int, default=1, help="times through the configurations")
    parser.add_argument("--websockets", type=int, default=16, help="WebSocket clients")
    parser.add_argument("--http1", type=int, default=3, help="HTTP/1.1 clients")
    parser.add_argument("--http2", type=int, default=3, help="HTTP/2 clients")
    parser.add_argument("--max-messages", type=int, default=20000,
                        help="messages or requests per client at most")
    parser.add_argument("--reconnect-every", type=int, default=200,
                        help="WebSocket messages per connection")
    parser.add_argument("--ping-interval", type=float, default=0.2,
                        help="the server's WebSocket ping interval, seconds")
    parser.add_argument("--stall-s", type=float, default=3.0,
                        help="a wait this long is looked into")
    parser.add_argument("--give-up-s", type=float, default=30.0,
                        help="a wait this long is a stall")
    parser.add_argument("--dump-stacks", action="store_true",
                        help="on the first wait with bytes unread by the server, make the "
                        "worker write every thread's stack to its log (SIGABRT: it exits "
                        "and is replaced)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="stall-hunt-"))
    tls_modes = {"off": [False], "on": [True], "both": [False, True]}[args.tls]
    failed = False
    for round_number in range(args.rounds):
        for threads in [int(n) for n in args.threads.split(",")]:
            for use_tls in tls_modes:
                name = f"round {round_number + 1}, threads {threads}, {'TLS' if use_tls else 'plain'}"
                tally = run_configuration(args, directory, threads, use_tls)
                counts = ", ".join(f"{value} {key}" for key, value in sorted(tally.counts.items()))
                print(f"{name}: {counts}; {len(tally.late)} late, {len(tally.stalls)} stalls, "
                      f"{len(tally.errors)} errors", flush=True)
                for text in tally.late + tally.stalls + tally.errors[:20]:
                    print("  " + text.replace("\n", "\n  "), flush=True)
                failed = failed or bool(tally.stalls or tally.errors)
    print(f"logs: {directory}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
