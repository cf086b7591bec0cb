"""The worker's listeners: accepting new connections in batches up to worker_connections,
pausing (the listeners leave the epoll set, clients wait in the kernel backlog) when full or
out of descriptors, resuming as connections close, and taking what is in the backlog as
the worker stops. The loop serves what is accepted.
"""
from __future__ import annotations

import errno
import logging
import select
import socket
import threading
from typing import Any, Final

from wsgiserve.server.worker.connection import Connection
from wsgiserve.server.worker.context import ServerContext

__all__ = ["ACCEPT_BATCH", "Acceptor"]

_log = logging.getLogger(__name__)

# Connections accepted per listener wake-up before serving others (nginx multi_accept).
ACCEPT_BATCH: Final = 64
# What a stopping worker takes from each listener's backlog before closing it.
_STOP_BATCH: Final = 1024
_LISTEN: Final = select.EPOLLIN | select.EPOLLEXCLUSIVE


class Acceptor:
    """The listeners of one worker and whether they are in its epoll set."""

    def __init__(self, epoll: select.epoll, connections: dict[int, Connection],
                 context: ServerContext, max_connections: int) -> None:
        """``connections``: the worker's open connections by descriptor (accepted ones
        are added); ``max_connections``: worker_connections."""
        # Listener and the base WSGI environ of its connections, by descriptor.
        self.listener_by_fd: dict[int, tuple[socket.socket, dict[str, Any]]] = {}
        self.is_accepting = False
        self.lock = threading.Lock()  # held to accept, pause or resume
        self._epoll = epoll
        self._connections = connections
        self._context = context
        self._max_connections = max_connections

    def add(self, listener: socket.socket, base_environ: dict[str, Any]) -> None:
        """Take an inherited listener (accepting starts with ``resume``)."""
        listener.setblocking(False)
        if listener.family in (socket.AF_INET, socket.AF_INET6):
            # Accepted sockets inherit it (Linux): no setsockopt per connection.
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.listener_by_fd[listener.fileno()] = (listener, base_environ)

    def accept(self, listener: socket.socket, base: dict[str, Any],
               limit: int) -> list[Connection]:
        """Accept up to ``limit`` connections (fewer if the backlog empties or the worker
        is full: accepting then pauses). The caller holds ``lock``."""
        cap = self._max_connections
        connections = self._connections
        context = self._context
        accepted = []
        for _ in range(limit):
            if len(connections) >= cap:
                # Leave further clients in the kernel backlog rather than fail them.
                self.pause()
                break
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    _log.error("accept() failed: %s; pausing accepts", exc)
                    self.pause()
                    break
                if exc.errno == errno.EBADF:
                    break
                continue  # ECONNABORTED and friends: that client is gone
            # Left in blocking mode: the transport passes MSG_DONTWAIT on every call.
            conn = Connection(sock, peer, context, base.copy())
            connections[conn.fileno] = conn
            accepted.append(conn)
        if accepted and context.metrics is not None:
            context.metrics.connections_accepted(len(accepted))
        return accepted

    def pause(self) -> None:
        if self.is_accepting:
            self.is_accepting = False
            for fd in self.listener_by_fd:
                try:
                    self._epoll.unregister(fd)
                except (OSError, ValueError):
                    pass

    def resume(self) -> None:
        if not self.is_accepting and not self._context.is_stopping:
            self.is_accepting = True
            for fd in self.listener_by_fd:
                try:
                    self._epoll.register(fd, _LISTEN)
                except FileExistsError:
                    pass

    def resume_if_room(self) -> None:
        """Resume a pause once the worker has room again (not while it stops)."""
        if not self.is_accepting and not self._context.is_stopping \
                and len(self._connections) < self._max_connections:
            with self.lock:
                self.resume()

    def close(self) -> list[Connection]:
        """Stop accepting for good: take what is already in the backlog (those clients
        connected before the stop and deserve an answer), then close our copies of the
        listeners. Returns the connections accepted, for the loop to serve."""
        with self.lock:
            self.pause()
            accepted = []
            for listener, base in self.listener_by_fd.values():
                accepted += self.accept(listener, base, _STOP_BATCH)
            for listener, _ in self.listener_by_fd.values():
                listener.close()
            self.listener_by_fd.clear()
        return accepted
