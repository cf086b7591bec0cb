"""The socket under one client connection: TCP connect, TLS, timed send and recv, readiness.

``Transport`` raises the socket's own errors (``OSError``, ``ssl`` errors included); the
connection translates them (``errors.translate_error``), as it knows what the exchange was
doing. A TLS peer that closes without close_notify reads as a close, and is remembered.
"""
from __future__ import annotations

import select
import socket
import ssl
from typing import Final

# Bytes asked of recv() at a time: what one loopback or TLS record read usually yields.
RECV_BYTES: Final = 65536
_UNSET: Final = -1.0   # no settimeout() call made yet (None means blocking)


class Transport:
    """A connected socket, TLS or not, with the timeout of each call cached.

    Attributes:
        is_truncated: the peer ended the TCP connection without TLS close_notify (RFC 8446
            §6.1), so what it sent last may have been cut short by an attacker (RFC 9112
            §9.8); ``recv`` then returned ``b""`` as for a close. Always False without TLS.
    """

    __slots__ = ("sock", "is_truncated", "_timeout")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.is_truncated = False
        self._timeout: float | None = _UNSET

    @classmethod
    def open(cls, host: str, port: int, timeout_s: float | None) -> Transport:
        """Connect over TCP (Nagle off: heads and small bodies go out at once).

        Raises:
            OSError: ``socket.gaierror``, a refusal, a timeout.
        """
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = cls(sock)
        transport._timeout = timeout_s
        return transport

    def start_tls(self, context: ssl.SSLContext, server_hostname: str,
                  timeout_s: float | None) -> None:
        """Run the TLS handshake (SNI and host name check from ``server_hostname``).

        Raises:
            OSError: ``ssl.SSLCertVerificationError``, another ``ssl.SSLError``, a timeout.
                The plain socket stays in ``sock``, for ``close()``.
        """
        self.set_timeout(timeout_s)
        # suppress_ragged_eofs=False: a close without close_notify raises SSLEOFError
        # instead of reading as b"", so that recv() can tell the two apart.
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname,
                                        suppress_ragged_eofs=False)

    def recv(self, timeout_s: float | None) -> bytes:
        """Return the next bytes, or ``b""`` once the peer has closed.

        Raises:
            OSError: a reset, a timeout (``TimeoutError``), a TLS error.
        """
        if timeout_s != self._timeout:   # set_timeout, inlined: once per recv
            self.sock.settimeout(timeout_s)
            self._timeout = timeout_s
        try:
            return self.sock.recv(RECV_BYTES)
        except ssl.SSLEOFError:
            self.is_truncated = True
            return b""

    def send(self, data: bytes, timeout_s: float | None) -> None:
        """Send all of ``data``; ``timeout_s`` bounds each wait for the socket.

        Raises:
            OSError: a reset, a broken pipe, a timeout (``TimeoutError``).
        """
        if timeout_s != self._timeout:   # set_timeout, inlined: once per send
            self.sock.settimeout(timeout_s)
            self._timeout = timeout_s
        self.sock.sendall(data)

    def is_readable(self, timeout_s: float = 0.0) -> bool:
        """True when ``recv`` would not block (bytes, a close or an error are waiting),
        within ``timeout_s`` seconds.

        Bytes TLS has already decrypted sit in the SSL object, where ``select`` cannot see
        them: ``SSLSocket.pending()`` counts them. A socket ``select`` refuses (closed) is
        readable: ``recv`` would fail at once.
        """
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        try:
            readable, _, _ = select.select([sock], [], [], timeout_s)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def has_input_while_idle(self) -> bool:
        """True when an idle connection has something to read: stray bytes or a close.

        A TLS 1.3 session ticket that arrives late makes the socket readable without any
        application bytes: it is consumed here and does not count.
        """
        if not self.is_readable():
            return False
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and not sock.pending():
            sock.setblocking(False)
            self._timeout = 0.0
            try:
                sock.recv(1)
            except ssl.SSLWantReadError:
                return False
            except OSError:
                pass
        return True

    def set_timeout(self, timeout_s: float | None) -> None:
        if timeout_s != self._timeout:
            self.sock.settimeout(timeout_s)
            self._timeout = timeout_s

    def close(self) -> None:
        """Close the socket; idempotent."""
        try:
            self.sock.close()
        except OSError:
            pass
