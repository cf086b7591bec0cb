"""A raw HTTP/2 client for the server tests: frames built here with ``struct`` (so that
malformed ones can be sent too), header blocks encoded and decoded by the ``hpack``
package, over a real socket (cleartext, or TLS with ALPN h2). It shares no code with
``wsgiserve.http2``: a bug in the core cannot hide behind the same bug here.

Every read has a deadline. ``expect_*`` read frames until what they expect comes (or
fail with what came instead), answering the server's SETTINGS and PINGs and, unless told
not to, returning flow-control credit for the DATA received.
"""
from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import hpack

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 §6: frame types.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
FRAME_NAMES: Final = {DATA: "DATA", HEADERS: "HEADERS", PRIORITY: "PRIORITY",
                      RST_STREAM: "RST_STREAM", SETTINGS: "SETTINGS",
                      PUSH_PROMISE: "PUSH_PROMISE", PING: "PING", GOAWAY: "GOAWAY",
                      WINDOW_UPDATE: "WINDOW_UPDATE", CONTINUATION: "CONTINUATION"}
# Flags.
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
# RFC 9113 §6.5.2: settings.
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6
# RFC 9113 §7: error codes.
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x4, 0x5, 0x6, 0x7
CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = 0x8, 0x9, 0xA, 0xB
MAX_WINDOW: Final = 2**31 - 1

Fields = Sequence[tuple[bytes | str, bytes | str]]


def frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame, exactly as given (the length is the payload's)."""
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBL", frame_type, flags,
                                                             stream_id) + payload


def settings_payload(settings: dict[int, int]) -> bytes:
    return b"".join(struct.pack(">HL", key, value) for key, value in settings.items())


def goaway_payload(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return struct.pack(">LL", last_stream_id, code) + debug


def request_fields(path: str = "/hello", method: str = "GET", *,
                   authority: str = "127.0.0.1", scheme: str = "http",
                   extra: Fields = ()) -> list[tuple[bytes, bytes]]:
    fields = [(b":method", method.encode()), (b":scheme", scheme.encode()),
              (b":authority", authority.encode()), (b":path", path.encode())]
    return fields + [(_b(name), _b(value)) for name, value in extra]


# The commonest request of the tests.
GET_HELLO: Final = request_fields("/hello")


def open_stream(conn: H2Connection, stream_id: int = 1) -> None:
    """A POST whose body has not come: the stream stays open (its app waits to read)."""
    conn.send_headers(stream_id, request_fields("/echo", "POST"), end_stream=False)


def hpack_integer(value: int, prefix_bits: int, flags: int = 0) -> bytes:
    """RFC 7541 §5.1, written here (not by the package) so any value can be sent."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes, *, first_byte: int = 0x00) -> bytes:
    """RFC 7541 §6.2: a literal field with a literal name, no Huffman coding; by default
    without indexing (0x40: with incremental indexing, 0x10: never indexed)."""
    return bytes((first_byte,)) + hpack_integer(len(name), 7) + name + \
        hpack_integer(len(value), 7) + value


def _b(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode("latin-1")


@dataclass
class Frame:
    type: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def name(self) -> str:
        return FRAME_NAMES.get(self.type, f"type {self.type:#x}")

    def code(self) -> int:
        """The error code of a RST_STREAM or GOAWAY."""
        return int.from_bytes(self.payload[4:8] if self.type == GOAWAY else self.payload[:4],
                              "big")

    def last_stream_id(self) -> int:
        return int.from_bytes(self.payload[:4], "big") & MAX_WINDOW

    def settings(self) -> dict[int, int]:
        return dict(struct.iter_unpack(">HL", self.payload))

    def increment(self) -> int:
        return int.from_bytes(self.payload[:4], "big") & MAX_WINDOW

    def __repr__(self) -> str:
        detail = ""
        if self.type in (RST_STREAM, GOAWAY):
            detail = f" code={self.code():#x}"
        if self.type == GOAWAY:
            detail += f" last={self.last_stream_id()} debug={self.payload[8:]!r}"
        return f"<{self.name} flags={self.flags:#x} stream={self.stream_id} " \
               f"len={len(self.payload)}{detail}>"


@dataclass
class Response:
    """What one stream received."""

    stream_id: int
    informational: list[list[tuple[str, str]]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    data_frames: list[int] = field(default_factory=list)   # payload sizes, padding included
    is_ended: bool = False
    reset_code: int | None = None

    @property
    def status(self) -> int:
        return int(self.header(":status") or 0)

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None


def _last(frames: list[Frame], count: int = 12) -> str:
    return f"{len(frames)} other frames, the last: {frames[-count:]}"


class ConnectionClosed(AssertionError):
    """The server closed the connection while a test expected something else."""


class H2Connection:
    """A client connection: ``H2Connection(port).handshake()`` sends the preface and our
    SETTINGS and waits until both sides' SETTINGS are acknowledged."""

    def __init__(self, port: int, *, timeout_s: float = 5.0,
                 tls: ssl.SSLContext | None = None, server_hostname: str = "localhost",
                 auto_window: bool = True, receive_buffer_bytes: int = 0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer_bytes:   # set before connecting: it bounds the TCP window
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # no Nagle delays
        sock.settimeout(timeout_s)
        sock.connect(("127.0.0.1", port))
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname)
        self.sock = sock
        self.timeout_s = timeout_s
        self.auto_window = auto_window
        self.answers_pings = True   # the server's PINGs (a graceful stop sends one)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.frames: list[Frame] = []          # every frame received, in order
        self.server_settings: dict[int, int] = {}
        self.responses: dict[int, Response] = {}
        self.goaway: Frame | None = None
        self.is_closed = False
        self.next_stream_id = 1
        # What the server lets us send (RFC 9113 §6.9): stream 0 is the connection.
        self.send_window: dict[int, int] = {0: 65535}
        self.initial_send_window = 65535
        self._header_block: list[bytes] = []
        self._header_frame: Frame | None = None

    def __enter__(self) -> H2Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- sending ---------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, frame_type: int, flags: int, stream_id: int,
                   payload: bytes = b"") -> None:
        opened = stream_id & MAX_WINDOW
        if frame_type == HEADERS and opened % 2 and opened >= self.next_stream_id:
            self.next_stream_id = opened + 2
        self.send(frame(frame_type, flags, stream_id, payload))

    def handshake(self, settings: dict[int, int] | None = None, *,
                  window_update: int = MAX_WINDOW - 65535) -> H2Connection:
        """Preface, SETTINGS (by default a large initial window) and a connection
        WINDOW_UPDATE; returns once the server's SETTINGS came and ours was acknowledged."""
        if settings is None:
            settings = {INITIAL_WINDOW_SIZE: MAX_WINDOW}
        data = PREFACE + frame(SETTINGS, 0, 0, settings_payload(settings))
        if window_update:
            data += frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", window_update))
        self.send(data)
        first = self.read_frame()
        # RFC 9113 §3.4: the server's preface is a SETTINGS frame, first.
        assert first is not None and first.type == SETTINGS and not first.flags & ACK, first
        self.expect(lambda f: f.type == SETTINGS and bool(f.flags & ACK), "SETTINGS ACK")
        return self

    def block(self, fields: Fields) -> bytes:
        return bytes(self.encoder.encode([(_b(n), _b(v)) for n, v in fields]))

    def send_headers(self, stream_id: int, fields: Fields, *, end_stream: bool = True,
                     end_headers: bool = True, flags: int = 0) -> None:
        self.send_frame(HEADERS, flags | END_STREAM * end_stream | END_HEADERS * end_headers,
                        stream_id, self.block(fields))

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        self.send_frame(DATA, END_STREAM if end_stream else 0, stream_id, data)

    def request(self, path: str = "/hello", method: str = "GET", *, body: bytes | None = None,
                extra: Fields = (), authority: str = "127.0.0.1",
                stream_id: int | None = None) -> int:
        """Send a request (a body in frames of 16 KiB); returns its stream id."""
        if stream_id is None:
            stream_id = self.next_stream_id
        self.next_stream_id = max(self.next_stream_id, stream_id + 2)
        fields = request_fields(path, method, authority=authority, extra=extra)
        self.send_headers(stream_id, fields, end_stream=body is None)
        if body is not None:
            self.send_body(stream_id, body)
        return stream_id

    def send_body(self, stream_id: int, body: bytes, *, end_stream: bool = True) -> None:
        """DATA frames of up to 16 KiB, as the server's flow-control windows allow (its
        WINDOW_UPDATE frames are read meanwhile)."""
        view = memoryview(body)
        sent = 0
        while True:
            window = min(self.send_window.get(stream_id, self.initial_send_window),
                         self.send_window[0], 16384, len(body) - sent)
            if window <= 0 and sent < len(body):
                self.expect(lambda f: f.type == WINDOW_UPDATE or
                            (f.type == RST_STREAM and f.stream_id == stream_id),
                            f"flow-control credit for stream {stream_id}")
                if self._response(stream_id).reset_code is not None:
                    return
                continue
            is_last = sent + window >= len(body)
            self.send_data(stream_id, bytes(view[sent:sent + window]),
                           end_stream=end_stream and is_last)
            self.send_window[0] -= window
            self.send_window[stream_id] = \
                self.send_window.get(stream_id, self.initial_send_window) - window
            sent += window
            if is_last:
                return

    def ping(self, data: bytes = b"pingpong", *, timeout_s: float | None = None) -> None:
        """A PING round trip: the server has handled everything sent before it."""
        self.send_frame(PING, 0, 0, data)
        self.expect(lambda f: f.type == PING and bool(f.flags & ACK) and f.payload == data,
                    "PING ACK", timeout_s=timeout_s)

    def window_update(self, stream_id: int, increment: int) -> None:
        self.send_frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">L", increment))

    # -- receiving -------------------------------------------------------------------------
    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no frame from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        except ssl.SSLError:
            data = b""
        if not data:
            self.is_closed = True
            return False
        self.buffer += data
        return True

    def read_frame(self, timeout_s: float | None = None) -> Frame | None:
        """The next frame (handled: see the module docstring), or None once the server
        closed the connection. Raises TimeoutError."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            if len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + length:
                    frame_type, flags, stream_id = struct.unpack_from(">BBL", self.buffer, 3)
                    received = Frame(frame_type, flags, stream_id & MAX_WINDOW,
                                     self.buffer[9:9 + length])
                    self.buffer = self.buffer[9 + length:]
                    self._handle(received)
                    return received
            if self.is_closed or not self._fill(deadline):
                return None

    def _handle(self, received: Frame) -> None:
        self.frames.append(received)
        kind = received.type
        if kind == SETTINGS and not received.flags & ACK:
            settings = received.settings()
            if INITIAL_WINDOW_SIZE in settings:
                delta = settings[INITIAL_WINDOW_SIZE] - self.initial_send_window
                self.initial_send_window = settings[INITIAL_WINDOW_SIZE]
                for stream_id in self.send_window:
                    if stream_id:
                        self.send_window[stream_id] += delta
            self.server_settings.update(settings)
            self.send_frame(SETTINGS, ACK, 0)
        elif kind == WINDOW_UPDATE:
            self.send_window[received.stream_id] = received.increment() + \
                self.send_window.get(received.stream_id, self.initial_send_window)
        elif kind == GOAWAY:
            self.goaway = received
        elif kind in (HEADERS, CONTINUATION):
            self._on_header_fragment(received)
        elif kind == DATA:
            response = self._response(received.stream_id)
            payload = received.payload
            response.data_frames.append(len(payload))
            if received.flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            response.body += payload
            if received.flags & END_STREAM:
                response.is_ended = True
            if self.auto_window and received.payload:
                self.window_update(0, len(received.payload))
                if not received.flags & END_STREAM:
                    self.window_update(received.stream_id, len(received.payload))
        elif kind == RST_STREAM:
            self._response(received.stream_id).reset_code = received.code()
        elif kind == PING and not received.flags & ACK and self.answers_pings:
            self.send_frame(PING, ACK, 0, received.payload)

    def _on_header_fragment(self, received: Frame) -> None:
        payload = received.payload
        if received.type == HEADERS:
            if received.flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            if received.flags & PRIORITY_FLAG:
                payload = payload[5:]
            self._header_frame = received
            self._header_block = [payload]
        else:
            self._header_block.append(payload)
        if not received.flags & END_HEADERS:
            return
        first = self._header_frame
        assert first is not None
        decoded = self.decoder.decode(b"".join(self._header_block), raw=True)
        fields = [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in decoded]
        response = self._response(first.stream_id)
        status = dict(fields).get(":status")
        if status is not None and status.startswith("1"):
            response.informational.append(fields)
        elif status is not None:
            response.headers = fields
        else:
            response.trailers = fields
        if first.flags & END_STREAM:
            response.is_ended = True

    def _response(self, stream_id: int) -> Response:
        return self.responses.setdefault(stream_id, Response(stream_id))

    def expect(self, predicate: object, what: str, *,
               timeout_s: float | None = None) -> Frame:
        """Read until a frame matches ``predicate`` (a callable on a Frame)."""
        assert callable(predicate)
        seen: list[Frame] = []
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            try:
                received = self.read_frame(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise AssertionError(f"no {what} in time; {_last(seen)}") from None
            if received is None:
                raise ConnectionClosed(f"the server closed before {what}; {_last(seen)}")
            if predicate(received):
                return received
            seen.append(received)

    def expect_closed(self, timeout_s: float | None = None) -> None:
        """The server closes the connection (after any frames: they are read)."""
        try:
            while self.read_frame(timeout_s) is not None:
                pass
        except TimeoutError:
            raise AssertionError("the server did not close the connection") from None

    def expect_connection_error(self, code: int) -> Frame:
        """RFC 9113 §5.4.1: a GOAWAY with ``code``, then the connection closes."""
        goaway = self.expect(lambda f: f.type == GOAWAY, "GOAWAY")
        assert goaway.stream_id == 0
        assert goaway.code() == code, f"GOAWAY code {goaway.code():#x}, expected " \
                                      f"{code:#x}: {goaway}"
        self.expect_closed()
        return goaway

    def expect_stream_error(self, stream_id: int, code: int) -> Frame:
        """RFC 9113 §5.4.2: a RST_STREAM with ``code`` on ``stream_id``; the connection
        stays usable (a PING round trip)."""
        reset = self.expect(lambda f: f.type == RST_STREAM or f.type == GOAWAY,
                            f"RST_STREAM on stream {stream_id}")
        assert reset.type == RST_STREAM, f"a connection error instead: {reset}"
        assert reset.stream_id == stream_id, reset
        assert reset.code() == code, f"RST_STREAM code {reset.code():#x}, expected {code:#x}"
        self.ping()
        return reset

    def expect_alive(self) -> None:
        """The connection still works: a PING round trip, and no GOAWAY so far."""
        self.ping()
        assert self.goaway is None, self.goaway

    def response(self, stream_id: int, timeout_s: float | None = None) -> Response:
        """Read until ``stream_id`` has ended or was reset; its response."""
        response = self._response(stream_id)
        if not (response.is_ended or response.reset_code is not None):
            self.expect(lambda f: self.responses.get(stream_id, response).is_ended
                        or self.responses.get(stream_id, response).reset_code is not None,
                        f"the end of stream {stream_id}", timeout_s=timeout_s)
        return self.responses[stream_id]

    def get(self, path: str = "/hello", method: str = "GET", *, body: bytes | None = None,
            extra: Fields = ()) -> Response:
        """One request and its whole response."""
        return self.response(self.request(path, method, body=body, extra=extra))
