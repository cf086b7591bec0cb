"""The socket under one client connection: TCP connect, TLS, timed send and recv, readiness.

``Transport`` raises the socket's own errors (``OSError``, ``ssl`` errors included); the
connection translates them (``errors.translate_error``), as it knows what the exchange was
doing. A TLS peer that closes without close_notify reads as a close, and is remembered.
Blocking calls serve HTTP/1.1; an HTTP/2 connection's I/O thread switches the socket to
non-blocking and uses ``wait``, ``recv_nowait`` and ``send_nowait``.
"""
from __future__ import annotations

import select
import socket
import ssl
import time
from typing import Final

# Bytes asked of recv() at a time: what one loopback or TLS record read usually yields.
RECV_BYTES: Final = 65536
_UNSET: Final = -1.0   # no settimeout() call made yet (None means blocking)
# A non-blocking call that would block raises one of these (TLS: the record layer needs
# more bytes in, or room out, first).
_WOULD_BLOCK: Final = (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                       ssl.SSLWantWriteError)
_POLL_READ: Final = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class Waker:
    """A socket pair whose ``wake`` (from any thread) makes ``Transport.wait`` return."""

    __slots__ = ("_reader", "_writer")

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def fileno(self) -> int:
        return self._reader.fileno()

    def wake(self) -> None:
        try:
            self._writer.send(b"\0")
        except OSError:
            pass    # full (a wake is pending anyway) or closed (nobody waits)

    def drain(self) -> None:
        try:
            while self._reader.recv(4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


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

    @property
    def alpn_protocol(self) -> str | None:
        """The ALPN protocol the TLS server selected (``h2``, ``http/1.1``), or None."""
        sock = self.sock
        return sock.selected_alpn_protocol() if isinstance(sock, ssl.SSLSocket) else None

    def tls_facts(self) -> tuple[str | None, str | None, str | None]:
        """``(version, cipher name, compression)`` of the TLS session (all None without)."""
        sock = self.sock
        if not isinstance(sock, ssl.SSLSocket):
            return None, None, None
        cipher = sock.cipher()
        return sock.version(), cipher[0] if cipher else None, sock.compression()

    # -- non-blocking use (one I/O thread owns the socket) -----------------------------------
    def set_nonblocking(self) -> None:
        self.sock.setblocking(False)
        self._timeout = 0.0

    def wait(self, wakeup_fd: int, want_write: bool, timeout_s: float) -> tuple[bool, bool, bool]:
        """Wait up to ``timeout_s`` for the socket to be readable (or writable, when
        ``want_write``) or for ``wakeup_fd`` to be readable.

        Returns:
            ``(readable, writable, woken)``. Bytes TLS has already decrypted count as
            readable; an error or hang-up on the socket too (``recv_nowait`` reports it).
        """
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True, False, False
        poller = select.poll()
        poller.register(sock.fileno(), _POLL_READ | (select.POLLOUT if want_write else 0))
        poller.register(wakeup_fd, select.POLLIN)
        readable = writable = woken = False
        for fileno, events in poller.poll(max(0.0, timeout_s) * 1000):
            if fileno == wakeup_fd:
                woken = True
                continue
            readable = bool(events & _POLL_READ)
            writable = bool(events & select.POLLOUT)
        return readable, writable, woken

    def recv_nowait(self) -> bytes | None:
        """Return bytes, ``b""`` once the peer has closed, or None if none are waiting.

        Raises:
            OSError: a reset, a TLS error.
        """
        try:
            return self.sock.recv(RECV_BYTES)
        except ssl.SSLEOFError:
            self.is_truncated = True
            return b""
        except _WOULD_BLOCK:
            return None

    def send_nowait(self, data: bytes) -> int:
        """Send what the socket takes now; return how many bytes (0: it would block).

        Over TLS a call that returned 0 must be repeated with the same ``data`` (OpenSSL's
        write-retry rule), so the caller keeps the bytes it passed until they are taken.

        Raises:
            OSError: a reset, a broken pipe, a TLS error.
        """
        try:
            return self.sock.send(data)
        except _WOULD_BLOCK:
            return 0

    def linger(self, timeout_s: float, max_bytes: int = 1 << 20) -> None:
        """Stop sending, then read and drop what the peer still sends, until it closes,
        ``timeout_s`` passes or ``max_bytes`` went by: closing with unread bytes makes the
        kernel send a reset, which can destroy our last bytes (a GOAWAY) before the peer
        reads them. The raw socket is read: nothing more is decrypted."""
        sock = self.sock
        try:
            socket.socket.shutdown(sock, socket.SHUT_WR)
            sock.setblocking(False)
            end = time.monotonic() + timeout_s
            while max_bytes > 0 and (remaining := end - time.monotonic()) > 0:
                if not select.select([sock], [], [], remaining)[0]:
                    return
                data = socket.socket.recv(sock, RECV_BYTES)
                if not data:
                    return
                max_bytes -= len(data)
        except OSError:
            pass

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
