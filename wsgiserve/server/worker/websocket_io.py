"""The socket under an app's WebSocket: sends and reads that never block.

``write`` sends after what is buffered and keeps what the socket does not take (the send
buffer, ``out``), ``flush`` sends that as the socket takes more, ``recv`` reads what the
socket holds. The WebSocket calls them with its lock held and decides what a failed socket
means; its blocking calls wait outside the lock (``transport.wait_for_socket``).
"""
from __future__ import annotations

import socket

from wsgiserve.server.worker.context import WOULD_BLOCK
from wsgiserve.server.worker.transport import RECV_BYTES, Transport

__all__ = ["SocketIO"]


class SocketIO:
    """Non-blocking I/O on a transport's socket. A plain socket stays in blocking mode and
    each call passes ``MSG_DONTWAIT``; a TLS socket is non-blocking (ssl takes no flags).

    Attributes:
        out: what the socket has not taken yet, in order.
    """

    __slots__ = ("out", "_sock", "_flags", "_would_block")

    def __init__(self, transport: Transport) -> None:
        self.out = bytearray()
        self._sock = transport.sock
        if transport.is_tls:
            import ssl
            self._flags = 0
            self._would_block: tuple[type[Exception], ...] = (
                *WOULD_BLOCK, ssl.SSLWantReadError, ssl.SSLWantWriteError)
        else:
            self._flags = socket.MSG_DONTWAIT
            self._would_block = WOULD_BLOCK

    def write(self, data: bytes) -> None:
        """Send ``data`` after what is buffered, without blocking; keep what the socket
        does not take.

        Raises:
            OSError: the socket failed (``out`` may hold some of ``data``).
        """
        if self.out:
            self.out += data
            self.flush()
            return
        try:
            sent = self._sock.send(data, self._flags)
        except self._would_block:
            sent = 0
        if sent < len(data):
            self.out += data[sent:]

    def flush(self) -> bool:
        """Send buffered output without blocking; True when none is left.

        Raises:
            OSError: the socket failed (``out`` holds what was not sent).
        """
        out = self.out
        while out:
            try:
                sent = self._sock.send(out, self._flags)
            except self._would_block:
                return False
            del out[:sent]
        return True

    def recv(self) -> bytes | None:
        """What the socket holds (b"": closed), or None when it is empty."""
        try:
            data = self._sock.recv(RECV_BYTES, self._flags)
        except self._would_block:
            return None
        except OSError:
            return b""
        return data
