"""The WebSocket's socket edge: one non-blocking read, one non-blocking write, and the
wait for readiness between them, plain or TLS.

A TLS read may need the socket writable and a TLS write readable (renegotiation, key
updates): each call says which wait comes next instead of blocking. The caller holds its
lock around a read or a write and never around a wait.
"""
from __future__ import annotations

import select
import socket
import ssl
from enum import Enum
from typing import Final

from wsgiserve.client.transport import RECV_BYTES

# Bytes handed to one send() call: a few TLS records (16 KiB each, RFC 8446 §5.1), so
# that the lock a reader also needs is held briefly.
SEND_BYTES: Final = 262144


class Wait(Enum):
    READABLE = "readable"
    WRITABLE = "writable"


def recv_some(sock: socket.socket) -> bytes | Wait | OSError:
    """One read: bytes, ``b""`` at the end, what to wait for, or the error that ended it."""
    try:
        return sock.recv(RECV_BYTES)
    except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
        return Wait.READABLE
    except ssl.SSLWantWriteError:
        return Wait.WRITABLE
    except ssl.SSLEOFError:
        # A TCP close without TLS close_notify: a WebSocket message's end is in its
        # framing, so this reads as an end like any other.
        return b""
    except OSError as exc:
        return exc


def send_some(sock: socket.socket, view: memoryview) -> int | Wait | OSError:
    """One write of at most ``SEND_BYTES`` of ``view``: the bytes taken, what to wait
    for, or the error that ended the connection.

    After a wait the caller offers the same bytes again, as OpenSSL requires
    (SSL_write's retry rule).
    """
    try:
        return sock.send(view[:SEND_BYTES])
    except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
        return Wait.WRITABLE
    except ssl.SSLWantReadError:
        return Wait.READABLE
    except OSError as exc:
        return exc


def wait_for(sock: socket.socket, what: Wait, timeout: float | None) -> None:
    """Wait until ``sock`` is ready for ``what`` or ``timeout`` passes."""
    try:
        if what is Wait.READABLE:
            select.select([sock], [], [], timeout)
        else:
            select.select([], [sock], [], timeout)
    except (OSError, ValueError):
        pass   # closed meanwhile: the next call sees it


def shut_down(sock: socket.socket) -> None:
    """End the TCP connection now, both ways; a thread waiting on it wakes."""
    try:
        # socket.socket's own shutdown: SSLSocket.shutdown would also drop the SSL
        # object under a reader's feet.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
