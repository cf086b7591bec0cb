"""Scripted raw-socket HTTP peers for the client tests: they play bytes and record bytes.

A ``Peer`` listens on 127.0.0.1:0 and runs one script per accepted connection (the
scripts in order, the last one repeated). A script gets a ``PeerConnection`` that reads
requests (head, then the body by Content-Length or chunked) with its own small parser,
independent of wsgiserve's, and sends whatever bytes the test gives it: valid or not.
Every socket call has a timeout; nothing sleeps.
"""
from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from wsgiserve.client import Timeouts

IO_TIMEOUT_S: Final = 5.0
# The client's limits in tests: short enough that a hung test fails fast, long enough
# for a loaded CI machine.
TEST_TIMEOUTS: Final = Timeouts(connect_s=5.0, read_s=5.0, write_s=5.0, total_s=20.0,
                                expect_continue_s=1.0)


@dataclass
class RecordedRequest:
    method: str = ""
    target: str = ""
    version: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    raw_head: bytes = b""
    is_complete: bool = False

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


class PeerConnection:
    """The server side of one accepted connection."""

    def __init__(self, sock: socket.socket, peer: Peer):
        self.sock = sock
        self.peer = peer
        self.received = bytearray()
        self.requests: list[RecordedRequest] = []
        self._buffer = bytearray()
        self.client_closed = False

    # -- reading --------------------------------------------------------------------------
    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            self.client_closed = True
            return False
        self.received += data
        self._buffer += data
        return True

    def read_until(self, marker: bytes) -> bytes | None:
        while (end := self._buffer.find(marker)) < 0:
            if not self._fill():
                return None
        data = bytes(self._buffer[:end + len(marker)])
        del self._buffer[:end + len(marker)]
        return data

    def read_exactly(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            if not self._fill():
                return None
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_request(self, *, read_body: bool = True) -> RecordedRequest | None:
        """Read one request head (and its body); None if the client closed first."""
        head = self.read_until(b"\r\n\r\n")
        if head is None:
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [(name, value.strip()) for name, _, value in
                   (line.partition(":") for line in lines[1:])]
        request = RecordedRequest(method, target, version, headers, raw_head=head)
        self.requests.append(request)
        self.peer.requests.append(request)
        if read_body:
            self.read_body(request)
        return request

    def read_body(self, request: RecordedRequest) -> None:
        if (request.header("transfer-encoding") or "").lower() == "chunked":
            body = bytearray()
            while True:
                line = self.read_until(b"\r\n")
                if line is None:
                    return
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    if self.read_until(b"\r\n") is None:
                        return
                    break
                chunk = self.read_exactly(size + 2)
                if chunk is None:
                    return
                body += chunk[:-2]
            request.body = bytes(body)
        elif request.header("content-length") is not None:
            data = self.read_exactly(int(request.header("content-length") or 0))
            if data is None:
                return
            request.body = data
        request.is_complete = True

    def wait_for_close(self) -> bool:
        """Read and drop everything until the client closes; True if it did in time."""
        try:
            while self._fill():
                pass
        except TimeoutError:
            return False
        return True

    def has_pending_bytes(self, timeout_s: float) -> bool:
        """True when the client sent bytes (or closed) within ``timeout_s``."""
        if self._buffer:
            return True
        self.sock.settimeout(timeout_s)
        try:
            self._fill()
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(IO_TIMEOUT_S)

    # -- writing --------------------------------------------------------------------------
    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError):
            return False

    def send_bytewise(self, data: bytes) -> bool:
        return all(self.send(data[i:i + 1]) for i in range(len(data)))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


Script = Callable[[PeerConnection], None]


class Peer:
    """A server on 127.0.0.1:0 running ``scripts`` on its connections, in order."""

    def __init__(self, *scripts: Script, tls_context: ssl.SSLContext | None = None):
        if not scripts:
            raise ValueError("a peer needs at least one script")
        self.scripts = scripts
        self.tls_context = tls_context
        self.requests: list[RecordedRequest] = []
        self.connections: list[PeerConnection] = []
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(IO_TIMEOUT_S)
        self.port: int = self.listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    @property
    def origin(self) -> str:
        scheme = "https" if self.tls_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    def _accept_loop(self) -> None:
        index = 0
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.settimeout(IO_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            script = self.scripts[min(index, len(self.scripts) - 1)]
            index += 1
            thread = threading.Thread(target=self._run, args=(sock, script), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket, script: Script) -> None:
        if self.tls_context is not None:
            try:
                sock = self.tls_context.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                self.errors.append(exc)
                sock.close()
                return
        connection = PeerConnection(sock, self)
        self.connections.append(connection)
        try:
            script(connection)
        except (OSError, ssl.SSLError):
            pass
        except BaseException as exc:  # reported by stop(): a broken script fails the test
            self.errors.append(exc)
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop accepting and wait for the scripts (they end when their client closes)."""
        self.stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)   # wakes accept(); close() would not
        except OSError:
            pass
        self.listener.close()
        self._acceptor.join(IO_TIMEOUT_S)
        for thread in self._threads:
            thread.join(IO_TIMEOUT_S)


# -- script builders ------------------------------------------------------------------------
def answer(*responses: bytes, after: str = "wait", bytewise: bool = False) -> Script:
    """Answer each request on the connection with the next response, then ``after``:
    "wait" for the client to close (a further request is read, never answered), or
    "close" at once. ``bytewise`` sends each response one byte per send()."""
    def script(connection: PeerConnection) -> None:
        for response in responses:
            if connection.read_request() is None:
                return
            if bytewise:
                connection.send_bytewise(response)
            else:
                connection.send(response)
        if after == "wait":
            connection.wait_for_close()
    return script


def respond(status: int = 200, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
            reason: str = "OK") -> bytes:
    """A response with Content-Length (unless the headers give framing)."""
    fields = list(headers or [])
    if not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in fields):
        fields.append(("Content-Length", str(len(body))))
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
    return head.encode("latin-1") + b"\r\n" + body


def chunked(*pieces: bytes, trailers: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n" + trailers + b"\r\n"


def tunnel(target_port: int, refuse: bool = False) -> Script:
    """A CONNECT proxy: 200, then bytes both ways to 127.0.0.1:``target_port`` (or 407)."""
    def script(connection: PeerConnection) -> None:
        request = connection.read_request(read_body=False)
        if request is None:
            return
        if refuse:
            connection.send(respond(407, b"", [("Proxy-Authenticate", "Basic")]))
            connection.wait_for_close()
            return
        connection.send(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        upstream = socket.create_connection(("127.0.0.1", target_port), timeout=IO_TIMEOUT_S)

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        back = threading.Thread(target=pump, args=(upstream, connection.sock), daemon=True)
        back.start()
        pump(connection.sock, upstream)
        back.join(IO_TIMEOUT_S)
        upstream.close()
    return script


PeerFactory = Callable[..., Peer]
