"""The master's status listener (``--metrics-bind``): ``GET /metrics``, ``/healthz`` and
``/readyz``, served from the arbiter's own loop without ever blocking it.

The listener and its connections are non-blocking and are polled together with the
arbiter's signal pipe (``watch`` gives the descriptors, ``handle`` does what they are
ready for: one accept batch, one recv or one send each). A connection carries one request,
answered with ``Connection: close``. A client slow to send its head or to read the answer
is closed at its deadline, and at most ``MAX_CONNECTIONS`` are open (more wait in the
listen backlog), so no scraper or prober can stall worker supervision. The same loop, not
a thread, runs it because the answers read the arbiter's state (its worker table), which
then needs no lock.
"""
from __future__ import annotations

import email.utils
import enum
import http
import logging
import os
import select
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from wsgiserve.http import (
    NEED_DATA,
    HttpLimits,
    RemoteProtocolError,
    Request,
    RequestParser,
    encode_response_head,
)
from wsgiserve.server.master import sockets

__all__ = ["MAX_CONNECTIONS", "Answer", "Route", "StatusServer", "open_listener"]

_log = logging.getLogger(__name__)

# Open scrape/probe connections at most: Prometheus, the kubelet's two probes and a few
# load-balancer health checkers, with room to spare.
MAX_CONNECTIONS: Final = 16
# listen(2) backlog: clients past MAX_CONNECTIONS wait here.
BACKLOG: Final = 64
# A connection must send its head and take the answer within this (Prometheus's default
# scrape timeout is 10 s; the kubelet's probe timeout 1 s).
REQUEST_TIMEOUT_S: Final = 5.0
# After the answer and our FIN: how long we read and drop what the client still sends
# (closing with unread input would reset the connection under the answer, RFC 9112 §9.6).
LINGER_S: Final = 1.0
RECV_BYTES: Final = 8192
# A probe's head is a few hundred bytes; these bound what one connection may make us keep.
_LIMITS: Final = HttpLimits(max_request_line_bytes=2048, max_fields=64, max_field_bytes=4096,
                            max_head_bytes=8192)
_WOULD_BLOCK: Final = (BlockingIOError, InterruptedError)

# What a route returns: status, Content-Type and body.
Answer = tuple[int, str, bytes]
Route = Callable[[], Answer]


def open_listener(address: str) -> socket.socket:
    """The status listener for ``address`` (a ``--metrics-bind`` value): the one a USR2
    parent passed in ``$WSGISERVE_METRICS_FD`` when it has that address (or the address
    asks for any port), else a new one.

    Raises:
        sockets.ListenerError: the address cannot be bound.
    """
    inherited = os.environ.pop(sockets.INHERITED_METRICS_FD_VARIABLE, "")
    if inherited.isdigit():
        try:
            sock = sockets.adopt_fd(int(inherited))
        except sockets.ListenerError as exc:
            _log.warning("ignoring $%s: %s", sockets.INHERITED_METRICS_FD_VARIABLE, exc)
        else:
            wanted = sockets.bind_key(address)  # None: port 0, any address will do
            if wanted is None or sockets.listener_key(sock) == wanted:
                return sock
            sock.close()  # --metrics-bind changed across the upgrade
    return sockets.bind(address, backlog=BACKLOG)


class _Stage(enum.Enum):
    READING = "reading"        # the request head
    WRITING = "writing"        # the answer
    LINGERING = "lingering"    # our FIN is sent; dropping input until the client's


# READING -> WRITING -> LINGERING; a connection is closed from any stage.
_NEXT_STAGE: Final = {_Stage.READING: _Stage.WRITING, _Stage.WRITING: _Stage.LINGERING}


class _Client:
    __slots__ = ("sock", "parser", "stage", "deadline", "pending")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.parser = RequestParser(_LIMITS)
        self.stage = _Stage.READING
        self.deadline = deadline
        self.pending = memoryview(b"")

    def advance(self, stage: _Stage) -> None:
        if _NEXT_STAGE.get(self.stage) is not stage:
            raise AssertionError(f"status connection {self.stage} -> {stage} not allowed")
        self.stage = stage


class StatusServer:
    """Answers ``routes`` (path -> ``Route``) on ``sock``, a listening socket of the
    master's; see the module docstring."""

    def __init__(self, sock: socket.socket, routes: Mapping[str, Route], *,
                 request_timeout_s: float = REQUEST_TIMEOUT_S,
                 linger_s: float = LINGER_S) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._routes = dict(routes)
        self._clients: dict[int, _Client] = {}
        self._request_timeout_s = request_timeout_s
        self._linger_s = linger_s

    @property
    def address(self) -> str:
        name = self.sock.getsockname()
        if isinstance(name, tuple):
            host = f"[{name[0]}]" if ":" in name[0] else name[0]
            return f"http://{host}:{name[1]}"
        return f"unix:{name}"

    def watch(self) -> list[tuple[int, int]]:
        """The descriptors to poll and the ``select.POLL*`` events each waits for."""
        watched = [(fd, select.POLLOUT if client.stage is _Stage.WRITING else select.POLLIN)
                   for fd, client in self._clients.items()]
        if len(self._clients) < MAX_CONNECTIONS and self.sock.fileno() >= 0:
            watched.append((self.sock.fileno(), select.POLLIN))
        return watched

    def handle(self, ready: Sequence[tuple[int, int]]) -> None:
        """Serve what ``ready`` (from polling ``watch()``) says, then close connections
        past their deadline."""
        now = time.monotonic()
        listener = self.sock.fileno()
        for fd, _ in ready:
            if fd == listener:
                self._accept(now)
                continue
            client = self._clients.get(fd)
            if client is not None:
                try:
                    self._step(client, now)
                except OSError as exc:
                    _log.debug("status connection failed: %s", exc)
                    self._close(client)
        for client in list(self._clients.values()):
            if now >= client.deadline:
                self._close(client)

    def close(self, *, unlink: bool = True) -> None:
        """Close the listener and every connection; with ``unlink``, remove a unix
        socket's file (pass False while a new master from USR2 serves on it)."""
        for client in list(self._clients.values()):
            self._close(client)
        sockets.close_listeners([self.sock], unlink=unlink)

    def close_in_child(self) -> None:
        """In a forked worker: drop the master's sockets (nothing is sent)."""
        for client in self._clients.values():
            client.sock.close()
        self._clients.clear()
        self.sock.close()

    # --- connections ----------------------------------------------------------------------

    def _accept(self, now: float) -> None:
        while len(self._clients) < MAX_CONNECTIONS:
            try:
                sock, _ = self.sock.accept()
            except _WOULD_BLOCK:
                return
            except OSError as exc:  # ECONNABORTED, EMFILE: try again on the next wake-up
                _log.debug("status listener accept failed: %s", exc)
                return
            sock.setblocking(False)
            self._clients[sock.fileno()] = _Client(sock, now + self._request_timeout_s)

    def _close(self, client: _Client) -> None:
        self._clients.pop(client.sock.fileno(), None)
        client.sock.close()

    def _step(self, client: _Client, now: float) -> None:
        if client.stage is _Stage.READING:
            self._read(client)
        elif client.stage is _Stage.WRITING:
            self._write(client, now)
        else:
            self._linger(client)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(RECV_BYTES)
        except _WOULD_BLOCK:
            return
        parser = client.parser
        parser.feed(data)
        try:
            event = parser.next_event()
        except RemoteProtocolError as exc:
            self._answer(client, (exc.status, "text/plain; charset=utf-8",
                                  f"{exc}\n".encode()), head_only=False)
            return
        if event is NEED_DATA:
            return
        if type(event) is not Request:  # the client closed
            self._close(client)
            return
        self._answer(client, self._route(event), head_only=event.method == b"HEAD")

    def _route(self, request: Request) -> Answer:
        if request.method not in (b"GET", b"HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET and HEAD\n"
        target = request.target.decode("latin-1")
        if "://" in target:  # absolute-form: keep the path
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        route = self._routes.get(target.partition("?")[0])
        if route is None:
            paths = ", ".join(sorted(self._routes))
            return 404, "text/plain; charset=utf-8", f"not found; try {paths}\n".encode()
        try:
            return route()
        except Exception:  # noqa: BLE001 - a metrics bug must not take the master down
            _log.exception("the status page %s failed", target)
            return 500, "text/plain; charset=utf-8", b"internal error: see the server log\n"

    def _answer(self, client: _Client, answer: Answer, *, head_only: bool) -> None:
        status, content_type, body = answer
        head = encode_response_head(f"{status} {http.HTTPStatus(status).phrase}", [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ])
        client.pending = memoryview(head if head_only else head + body)
        client.advance(_Stage.WRITING)
        self._write(client, time.monotonic())

    def _write(self, client: _Client, now: float) -> None:
        try:
            sent = client.sock.send(client.pending)
        except _WOULD_BLOCK:
            return
        client.pending = client.pending[sent:]
        if client.pending:
            return
        client.sock.shutdown(socket.SHUT_WR)
        client.advance(_Stage.LINGERING)
        client.deadline = now + self._linger_s
        self._linger(client)

    def _linger(self, client: _Client) -> None:
        try:
            if client.sock.recv(RECV_BYTES):
                return  # more on the next wake-up, until the client's FIN or the deadline
        except _WOULD_BLOCK:
            return
        self._close(client)
