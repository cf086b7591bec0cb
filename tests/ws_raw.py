"""A raw-socket WebSocket client for the server tests, sharing no code with
``wsgiserve.websocket``: handshakes and frames built by hand (RFC 6455 §4.1, §5.2), so a
bug in the core cannot hide itself. The ``websockets`` library is the other client.
"""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's sample key
ACCEPT = base64.b64encode(hashlib.sha1(KEY + GUID).digest()).decode()
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def upgrade_request(path: str, *, method: str = "GET", version: str = "HTTP/1.1",
                    connection: str = "Upgrade", upgrade: str = "websocket",
                    ws_version: str | None = "13", key: str | None = KEY.decode(),
                    extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1", f"Connection: {connection}",
             f"Upgrade: {upgrade}"]
    if ws_version is not None:
        lines.append(f"Sec-WebSocket-Version: {ws_version}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
          masked: bool = True) -> bytes:
    """One frame as a client sends it (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


@dataclass
class Frame:
    opcode: int
    payload: bytes
    fin: bool
    rsv: int

    @property
    def close_code(self) -> int:
        assert self.opcode == CLOSE, self
        return struct.unpack("!H", self.payload[:2])[0] if self.payload else 1005


class RawWebSocket:
    """A socket with a read buffer: the handshake's response head, then frames."""

    def __init__(self, port: int, timeout_s: float = 10.0, *,
                 sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.sock.settimeout(timeout_s)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed; have {self.buffer[:100]!r}")
        self.buffer += data

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_head(self) -> tuple[int, dict[str, str]]:
        """The response's status and fields (names lowercased), up to its blank line."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return int(lines[0].split(" ")[1]), fields

    def read_body(self, fields: dict[str, str]) -> bytes:
        return self._take(int(fields.get("content-length", "0")))

    def read_frame(self) -> Frame:
        first, second = self._take(2)
        assert not second & 0x80, "a server's frames are never masked"
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._take(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._take(8))[0]
        return Frame(first & 0x0F, self._take(length), bool(first & 0x80), (first >> 4) & 7)

    def read_until_close(self) -> Frame:
        """Frames until a Close, skipping pings and data."""
        while True:
            received = self.read_frame()
            if received.opcode == CLOSE:
                return received

    def is_closed(self, timeout_s: float = 5.0) -> bool:
        """The server closed the TCP connection (EOF or reset) within ``timeout_s``."""
        self.sock.settimeout(timeout_s)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def connect(port: int, path: str, **options: object) -> RawWebSocket:
    """Open a WebSocket by a handshake checked to the letter (101 and the accept key)."""
    ws = RawWebSocket(port)
    ws.send(upgrade_request(path))
    status, fields = ws.read_head()
    assert status == 101, (status, fields)
    assert fields["sec-websocket-accept"] == ACCEPT
    return ws
