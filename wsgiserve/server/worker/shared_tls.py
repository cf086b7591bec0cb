"""A TLS socket that a reading thread and a writing thread may use at once.

OpenSSL does not allow one connection's ``SSL_read`` and ``SSL_write`` to run at the
same time, and Python's ``ssl`` module releases the GIL around both: libraries that read
a socket in one thread while the app sends from another (simple-websocket under Flask-Sock
and Flask-SocketIO, handed ``environ["gunicorn.socket"]``) then fail now and then with
``SSLError: bad length`` and drop the connection. ``SharedTLSSocket`` keeps the socket
non-blocking and makes each TLS call under a lock, waiting for the socket with the lock
released, so a blocked reader never holds up a writer. Plain sockets need none of this.
"""
from __future__ import annotations

import errno
import select
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:  # imported when a TLS socket is wrapped: ssl is there by then
    import ssl

__all__ = ["SharedTLSSocket"]

_T = TypeVar("_T")

# A thread waiting for the socket looks again at least this often: bytes a TLS call made
# on another thread pulled into the TLS buffer raise no readiness of their own.
WAIT_SLICE_S: Final = 1.0


class SharedTLSSocket:
    """Wraps a connected ``ssl.SSLSocket`` (made non-blocking here). Blocking calls and
    ``settimeout`` behave as on a socket; every other attribute is the socket's."""

    __slots__ = ("_sock", "_lock", "_timeout", "_want_read", "_want_write")

    def __init__(self, sock: ssl.SSLSocket) -> None:
        import ssl
        sock.setblocking(False)
        self._sock = sock
        self._lock = threading.Lock()
        self._timeout: float | None = None  # as socket.gettimeout(): None blocks
        self._want_read = ssl.SSLWantReadError
        self._want_write = ssl.SSLWantWriteError

    # -- blocking mode, as the caller sets it ---------------------------------------------------
    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    # -- I/O --------------------------------------------------------------------------------------
    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self._call(self._sock.recv, bufsize)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        return self._call(self._sock.recv_into, buffer, nbytes)

    def send(self, data: Any, flags: int = 0) -> int:
        return self._call(self._sock.send, data)

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[self.send(view):]

    def _call(self, method: Callable[..., _T], *args: Any) -> _T:
        """Run one TLS call under the lock; wait (unlocked) while it wants the socket.

        Raises:
            TimeoutError: the timeout passed (``BlockingIOError`` in non-blocking mode).
            OSError: the socket failed or was closed.
        """
        timeout = self._timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                try:
                    return method(*args)
                except self._want_read:
                    events = select.POLLIN
                except self._want_write:
                    events = select.POLLOUT
            if timeout == 0.0:
                raise BlockingIOError("the TLS socket is not ready")
            wait_s = WAIT_SLICE_S
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("timed out")
                wait_s = min(wait_s, remaining)
            fileno = self._sock.fileno()
            if fileno < 0:  # closed by another thread meanwhile: as a plain socket says
                raise OSError(errno.EBADF, "the TLS socket is closed")
            poller = select.poll()
            poller.register(fileno, events)
            poller.poll(wait_s * 1000)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
