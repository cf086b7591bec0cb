"""The pool's HTTP/2 connections, shared between requests: per key, the connections taking
streams; the connections being opened that may turn out HTTP/2 (other requests wait for
them rather than open their own); the keys whose server chose HTTP/1.1. ``open`` connects
a new connection and speaks what ALPN (or prior knowledge) decides.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from wsgiserve.client.connection import Connection
from wsgiserve.client.negotiation import ALPN_H2
from wsgiserve.client.proxy import Proxy
from wsgiserve.client.timeouts import Timeouts, limit_timeout
from wsgiserve.client.url import Origin

if TYPE_CHECKING:
    # Loaded with the first HTTP/2 connection only: building the HPACK Huffman tables
    # costs tens of milliseconds, which an HTTP/1.1 command line would pay for nothing.
    from wsgiserve.client.h2connection import Http2Connection
    from wsgiserve.http2 import Http2Limits

# (origin, None) direct or to a forwarding proxy; (origin, proxy) through a CONNECT tunnel.
PoolKey = tuple[Origin, Proxy | None]


class Http2Sharing:
    """The HTTP/2 side of one pool, under the pool's ``lock``.

    ``_generation`` counts changes, so that a thread that found no free slot waits only
    if nothing changed since it looked. Lock order: a connection's lock, then the pool's
    (connections call ``changed`` holding theirs); this never calls a connection holding
    the pool's lock.
    """

    def __init__(self, lock: threading.Lock, *, note: Callable[[str], None],
                 limits: Http2Limits | None, max_keys_remembered: int):
        self._note = note
        self._limits = limits
        self._max_keys_remembered = max_keys_remembered
        self._connections: dict[PoolKey, list[Http2Connection]] = {}
        self._connecting: dict[PoolKey, int] = {}
        self._h1_keys: set[PoolKey] = set()
        self._generation = 0
        self._is_closed = False
        self._changed = threading.Condition(lock)

    def connections_locked(self) -> list[Http2Connection]:
        """The connections taking new streams (the pool's lock is held)."""
        return [c for cs in self._connections.values() for c in cs]

    def close_locked(self) -> list[Http2Connection]:
        """Share no more; return the connections to close (the pool's lock is held)."""
        self._is_closed = True
        connections, self._connections = self._connections, {}
        return [c for cs in connections.values() for c in cs]

    def take_shared(self, key: PoolKey, timeouts: Timeouts,
                    deadline: float | None) -> tuple[Http2Connection | None, bool]:
        """An HTTP/2 connection to ``key`` with a stream slot taken for the caller; or
        None, and whether the caller is now marked as opening a connection that may turn
        out HTTP/2 (not when the server chose HTTP/1.1 before)."""
        wait_s = timeouts.connect_s
        end = None if wait_s is None else time.monotonic() + wait_s
        if deadline is not None and (end is None or deadline < end):
            end = deadline
        while True:
            with self._changed:
                generation = self._generation
                candidates = list(self._connections.get(key, ()))
                is_h1 = key in self._h1_keys
            for candidate in candidates:
                if candidate.try_reserve():
                    self._note(f"re-using the HTTP/2 connection to {key[0].host_port} "
                               f"({candidate.active_streams} streams)")
                    return candidate, False
            with self._changed:
                if self._generation != generation:
                    continue
                remaining = None if end is None else end - time.monotonic()
                if is_h1 or not self._connecting.get(key) or \
                        (remaining is not None and remaining <= 0):
                    if not is_h1:
                        self._connecting[key] = self._connecting.get(key, 0) + 1
                    return None, not is_h1
                # Another thread is opening a connection that may be HTTP/2: share it.
                self._changed.wait(remaining)

    def open(self, key: PoolKey, connection: Connection, timeouts: Timeouts,
             deadline: float | None, check_head: Callable[[], None],
             is_marked: bool) -> Connection | Http2Connection:
        """Connect; speak HTTP/2 if ALPN (or prior knowledge) says so, else HTTP/1.1."""
        from wsgiserve.client.h2connection import Http2Connection
        origin, proxy = key
        h2_connection: Http2Connection | None = None
        is_h1 = False
        try:
            check_head()          # an invalid request fails before any connection is made
            connection.connect(deadline)
            protocol = connection.alpn_protocol
            if protocol is not None:
                self._note(f"ALPN: server accepted {protocol}")
            if protocol == ALPN_H2 or (protocol is None and not origin.is_tls):
                self._note("using HTTP/2" + ("" if origin.is_tls else " (prior knowledge)"))
                h2_connection = Http2Connection(
                    origin, connection.detach_transport(), proxy=proxy,
                    write_s=timeouts.write_s, limits=self._limits, on_change=self.changed)
                h2_connection.start(limit_timeout(timeouts.connect_s, deadline))
                h2_connection.reserve_first()
                return h2_connection
            is_h1 = True
            return connection
        finally:
            with self._changed:
                if is_marked:
                    self._connecting[key] -= 1
                    if not self._connecting[key]:
                        del self._connecting[key]
                if h2_connection is not None and h2_connection.active_streams:
                    self._connections.setdefault(key, []).append(h2_connection)
                    self._h1_keys.discard(key)
                if is_h1 and len(self._h1_keys) < self._max_keys_remembered:
                    self._h1_keys.add(key)
                self._generation += 1
                self._changed.notify_all()
                is_closed = self._is_closed
            if is_closed and h2_connection is not None:
                h2_connection.close()        # after the caller's stream

    def changed(self, connection: Http2Connection) -> None:
        """An HTTP/2 connection freed a slot, stopped taking streams, or closed."""
        with self._changed:
            if not connection.is_open:
                key: PoolKey = (connection.origin, connection.proxy)
                connections = self._connections.get(key)
                if connections is not None and connection in connections:
                    connections.remove(connection)
                    if not connections:
                        del self._connections[key]
            self._generation += 1
            self._changed.notify_all()
