"""A connection's socket: the byte I/O every protocol on it uses.

The event loop's side never blocks: ``recv`` returns None when nothing is there, and
``send_or_park`` keeps what the socket did not take (``has_pending_output``) for ``flush``
when the loop reports the socket writable, so a slow reader never holds a thread. The app
threads' side (``send_blocking``, ``recv_blocking``: ``wsgi.input`` and PEP 3333's
``write()``) waits with a timeout. Also the lingering close of RFC 9112 §9.6 and TLS:
``start_tls`` wraps the socket and the handshake is stepped from the loop.

A plain socket stays in blocking mode and every call passes ``MSG_DONTWAIT``: a socket
taken from ``accept()`` then needs no extra system call to be made non-blocking. A TLS
socket is non-blocking (ssl's calls take no flags). ``sendfile`` needs a non-blocking
socket too, and switches it on first use.
"""
from __future__ import annotations

import math
import os
import select
import socket
import time
from typing import TYPE_CHECKING, Any, Final

from wsgiserve.server.worker.context import WOULD_BLOCK

if TYPE_CHECKING:
    import ssl

__all__ = ["RECV_BYTES", "HandshakeStep", "Transport", "wait_for_socket"]

# One recv takes up to this much (a request head, or a piece of body, in one call).
RECV_BYTES: Final = 65536
_DONTWAIT: Final = socket.MSG_DONTWAIT


class HandshakeStep:
    """What a TLS handshake step asks for next (plain ints: compared on the hot path)."""

    DONE: Final = 0
    WANT_READ: Final = 1
    WANT_WRITE: Final = 2


class Transport:
    """One accepted socket, its peer's address, and the output it could not send yet.

    Attributes:
        read_pending: the loop reported the socket readable and no recv since has found it
            empty. With edge-triggered polling a protocol must read until then before it
            waits for readability again (the loop re-runs it while this is set).
    """

    __slots__ = ("sock", "fileno", "remote_addr", "remote_port", "is_tls", "read_pending",
                 "_pending", "_would_block", "_flags", "_is_blocking")

    def __init__(self, sock: socket.socket, peer: Any) -> None:
        self.sock = sock
        self.fileno = sock.fileno()
        if isinstance(peer, tuple):
            self.remote_addr, self.remote_port = str(peer[0]), int(peer[1])
        else:
            self.remote_addr, self.remote_port = "", 0
        self.is_tls = False
        self.read_pending = False
        self._pending: memoryview | None = None
        self._would_block: tuple[type[Exception], ...] = WOULD_BLOCK
        # A socket in blocking mode (accept()'s) is used with MSG_DONTWAIT.
        self._is_blocking = sock.gettimeout() is None
        self._flags = _DONTWAIT if self._is_blocking else 0

    # -- the loop's side (never blocks) ---------------------------------------------------
    def recv(self) -> bytes | None:
        """What the socket holds (``b""``: the peer closed), or None when it is empty.

        Raises:
            OSError: the connection failed (reset, ...).
        """
        try:
            data = self.sock.recv(RECV_BYTES, self._flags)
        except self._would_block:
            self.read_pending = False
            return None
        if len(data) < RECV_BYTES and not self.is_tls:
            # A short read emptied the socket: new bytes will raise a new edge. (TLS may
            # hold more records in the socket behind a short read: read on until it waits.)
            self.read_pending = False
        return data

    def send_or_park(self, data: bytes) -> bool:
        """Send without blocking; False when the rest waits for ``flush``.

        Raises:
            OSError: the connection failed.
        """
        try:
            sent = self.sock.send(data, self._flags)
        except self._would_block:
            sent = 0
        if sent == len(data):
            return True
        self._pending = memoryview(data)[sent:]
        return False

    @property
    def has_pending_output(self) -> bool:
        return self._pending is not None

    def flush(self) -> bool:
        """Send what ``send_or_park`` kept; True when nothing is left.

        Raises:
            OSError: the connection failed (the pending output is dropped).
        """
        pending = self._pending
        flags = self._flags
        while pending is not None and len(pending):
            try:
                sent = self.sock.send(pending, flags)
            except self._would_block:
                self._pending = pending
                return False
            except OSError:
                self._pending = None
                raise
            pending = pending[sent:]
        self._pending = None
        return True

    def send_partial(self, data: bytes | bytearray | memoryview) -> int:
        """Send what the socket takes now: the number of bytes (0 when it is full).

        Raises:
            OSError: the connection failed.
        """
        try:
            return self.sock.send(data, self._flags)
        except self._would_block:
            return 0

    def try_send(self, data: bytes) -> None:
        """Send what the socket takes now, ignoring failures (a last word before closing)."""
        try:
            self.sock.send(data, self._flags)
        except OSError:
            pass

    def sendfile(self, fileno: int, offset: int, count: int) -> int | None:
        """``os.sendfile`` from ``fileno``: bytes sent (0: the file ended), or None when
        the socket is full. Plain sockets only.

        Raises:
            OSError: the connection or the file failed.
        """
        if self._is_blocking:
            self.sock.setblocking(False)  # sendfile takes no MSG_DONTWAIT
            self._is_blocking = False
            self._flags = 0
        try:
            return os.sendfile(self.fileno, fileno, offset, count)
        except self._would_block:
            return None

    # -- the app threads' side (waits, with a timeout) --------------------------------------
    def send_blocking(self, data: bytes, timeout_s: float) -> None:
        """Send all of ``data``, waiting for the socket up to ``timeout_s`` in all.

        Raises:
            TimeoutError: the peer did not take the data in time.
            OSError: the connection failed.
        """
        view = memoryview(data)
        deadline = time.monotonic() + timeout_s
        flags = self._flags
        while len(view):
            try:
                sent = self.sock.send(view, flags)
                view = view[sent:]
                continue
            except self._would_block:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out writing to the client")
            wait_for_socket(self.fileno, select.POLLOUT, remaining)

    def recv_blocking(self, timeout_s: float) -> bytes:
        """The next bytes from the peer (``b""``: it closed), waiting up to ``timeout_s``.

        Raises:
            TimeoutError: nothing came in time.
            OSError: the connection failed.
        """
        deadline = time.monotonic() + timeout_s
        flags = self._flags
        while True:
            try:
                return self.sock.recv(RECV_BYTES, flags)
            except self._would_block:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out reading the request body")
            wait_for_socket(self.fileno, select.POLLIN, remaining)

    def has_input(self) -> bool:
        """Whether the peer's bytes wait unread (in the socket, or decrypted in TLS's
        buffer), without reading them: a poll, one system call."""
        if self.is_tls and self.sock.pending():  # type: ignore[attr-defined]  # an SSLSocket
            return True
        poller = select.poll()
        poller.register(self.fileno, select.POLLIN)
        return bool(poller.poll(0))

    # -- closing ----------------------------------------------------------------------------
    def shutdown_write(self) -> bool:
        """Send our FIN (after TLS's close_notify); False if the connection is already gone.

        RFC 8446 §6.1: close_notify lets the client tell the end of a response from a
        truncation. We do not wait for the peer's own.
        """
        if self.is_tls:
            try:
                self.sock.unwrap()  # type: ignore[attr-defined]  # an SSLSocket here
            except (OSError, ValueError):
                pass
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return False
        return True

    def discard_input(self) -> bool:
        """Read and drop what the peer sends; True once it has closed (or failed)."""
        sock = self.sock
        flags = self._flags
        try:
            while True:
                if not sock.recv(RECV_BYTES, flags):
                    return True
        except self._would_block:
            return False
        except OSError:
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- TLS ----------------------------------------------------------------------------------
    def start_tls(self, context: ssl.SSLContext) -> None:
        """Wrap the socket for a server-side handshake, stepped by ``handshake``.

        Raises:
            OSError: the socket could not be wrapped (the peer is gone).
        """
        import ssl
        self.sock.setblocking(False)
        self._is_blocking = False
        self._flags = 0
        self.sock = context.wrap_socket(self.sock, server_side=True,
                                        do_handshake_on_connect=False)
        self.is_tls = True
        self._would_block = (*WOULD_BLOCK, ssl.SSLWantReadError, ssl.SSLWantWriteError)

    def handshake(self) -> int:
        """Advance the TLS handshake: a ``HandshakeStep`` value.

        Raises:
            OSError: the handshake failed (``tls.is_plain_http`` tells a plain HTTP request).
        """
        from wsgiserve import tls  # loaded with the SSLContext already
        result = tls.handshake_step(self.sock)  # type: ignore[arg-type]  # an SSLSocket here
        if result is tls.HandshakeResult.WANT_READ:
            return HandshakeStep.WANT_READ
        if result is tls.HandshakeResult.WANT_WRITE:
            return HandshakeStep.WANT_WRITE
        return HandshakeStep.DONE

    def alpn_protocol(self) -> str | None:
        """The protocol TLS's ALPN chose (None: plain, or none was chosen)."""
        if not self.is_tls:
            return None
        return self.sock.selected_alpn_protocol()  # type: ignore[attr-defined, no-any-return]

    def send_raw(self, data: bytes) -> None:
        """Send past the TLS layer (a plain-text answer to plain HTTP on a TLS port).

        Raises:
            OSError: the send failed.
        """
        socket.socket.send(self.sock, data)


def wait_for_socket(fileno: int, events: int, timeout_s: float) -> None:
    """Wait until the socket has one of ``events`` (``select.POLL*``) or time runs out
    (``math.inf``: no limit)."""
    poller = select.poll()
    poller.register(fileno, events)
    poller.poll(None if timeout_s == math.inf else max(0.0, timeout_s) * 1000)
