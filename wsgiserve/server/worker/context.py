"""What every connection of a worker shares: the app, limits, timeouts, logs and hooks.

Built once per worker process by the worker's loop from the configuration sections it
needs, then read (never changed, apart from the stop flag and counters) by the protocols.
``metrics`` is where protocols report what the master's ``/metrics`` shows.
"""
from __future__ import annotations

import email.utils
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from wsgiserve.config import WebSocketSettings
from wsgiserve.http import HttpLimits
from wsgiserve.http.caches import FieldListCache, FieldNameCache, RequestHeadCache
from wsgiserve.log import AccessLog
from wsgiserve.server.counters import Recorder
from wsgiserve.server.worker.heads import HeadCache, Http2HeadCache
from wsgiserve.wsgi import EnvironBuilder

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

_log = logging.getLogger(__name__)

# A request body up to this size is read in full by the event loop before a thread runs the
# app, so a slow uploader never holds a thread (nginx buffers bodies the same way).
PREBUFFER_MAX_BYTES: Final = 65536
# Unread request body we read and drop to keep a connection alive after the response;
# past it we close instead (gunicorn and waitress drain without a bound).
DRAIN_MAX_BYTES: Final = 65536
# How long a closed-for-writing connection may still send before we close it: the
# lingering close of RFC 9112 §9.6, done in the event loop (nginx lingering_time is 30 s,
# lingering_timeout 5 s; we allow 2 s).
LINGER_S: Final = 2.0
# What a non-blocking send or receive on a plain socket raises when it has to wait. (TLS
# sockets add ssl's SSLWantReadError and SSLWantWriteError: see server.connection.)
WOULD_BLOCK: Final = (BlockingIOError, InterruptedError)


class DateCache:
    """The ``Date`` header value, formatted once per second (RFC 9110 §6.6.1)."""

    __slots__ = ("_expires_at", "_value", "_line")

    def __init__(self) -> None:
        self._expires_at = 0.0  # the wall-clock second after the one formatted
        self._value = ""
        self._line = b""

    def now(self) -> str:
        if time.time() >= self._expires_at:
            self._refresh()
        return self._value

    def line(self) -> bytes:
        """The whole ``Date: ...\r\n`` field line, as bytes."""
        if time.time() >= self._expires_at:
            self._refresh()
        return self._line

    def _refresh(self) -> None:
        second = int(time.time())
        self._value = email.utils.formatdate(second, usegmt=True)
        self._line = f"Date: {self._value}\r\n".encode("ascii")
        self._expires_at = second + 1


@dataclass
class ServerContext:
    """Per-worker state shared by connections. Mutable parts: ``is_stopping``, counters."""

    app: WSGIApplication
    limits: HttpLimits
    keepalive_s: float
    header_timeout_s: float
    body_timeout_s: float
    script_name: str
    access_log: AccessLog | None
    proxy: Any = None  # trusted-proxy handling (issue 6)
    hooks: Mapping[str, Callable[..., object]] = field(default_factory=dict)
    is_stopping: bool = False
    dates: DateCache = field(default_factory=DateCache)
    heads: HeadCache = field(default_factory=HeadCache)
    http2_heads: Http2HeadCache = field(default_factory=Http2HeadCache)
    # HTTP/2: the core's limits (None: HTTP/2 is off), how a cleartext connection may
    # start it ("off", "prior-knowledge", "upgrade" or "both"), and the streams of one
    # connection allowed in the app at once.
    http2_limits: Any = None
    http2_cleartext: str = "off"
    http2_max_streams_in_app: int = 1
    # Output flushes protocols deferred to send several responses in one write; the
    # housekeeping thread runs what is left within a couple of milliseconds.
    deferred_flushes: set[Callable[[], None]] = field(default_factory=set)
    environs: EnvironBuilder = field(default_factory=EnvironBuilder)
    request_heads: RequestHeadCache = field(default_factory=RequestHeadCache)
    field_names: FieldNameCache = field(default_factory=FieldNameCache)
    http2_requests: FieldListCache = field(default_factory=FieldListCache)
    pid: int = field(default_factory=os.getpid)
    # Connections whose app code is running now, with the monotonic time it started: the
    # worker stops its heartbeat when one has run longer than the timeout.
    in_app: dict[object, float] = field(default_factory=dict)
    on_request_done: Callable[[], None] | None = None
    use_sendfile: bool = True  # False: wsgi.file_wrapper files are read and sent (--no-sendfile)
    worker: Any = None
    # Runs a callable on one of the worker's serving threads (tests: at once, inline).
    submit: Callable[[Callable[[], object]], None] = field(default=lambda task: task())
    # The PROXY-protocol and TLS stage before HTTP (None: connections start with HTTP).
    preamble: Any = None
    # Counts requests, errors and handshakes for the master's /metrics (None: off).
    metrics: Recorder | None = None
    _noted_bugs: set[str] = field(default_factory=set)
    # -- WebSockets (see websocket_api.py); nothing here is read by plain HTTP requests --
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)
    # Native WebSockets open now, and sockets handed to a library (environ["gunicorn.socket"]).
    websockets: set[Any] = field(default_factory=set)
    hijacked: set[Any] = field(default_factory=set)
    # Builds the protocol a connection switches to after a 101 (the loop sets it).
    websocket_protocol: Callable[..., Any] | None = None
    # Loop services: queue a readable event for a descriptor (a protocol that stopped
    # reading while a callback ran resumes so), and take a descriptor out of the epoll set
    # (a socket given away). Tests without a loop: nothing to do.
    resume_reading: Callable[[int], None] = field(default=lambda fileno: None)
    release: Callable[[int], None] = field(default=lambda fileno: None)

    def note_app_bug(self, message: str, *args: object) -> None:
        """Log an app bug the server works around, once per worker for each message."""
        if message not in self._noted_bugs:
            self._noted_bugs.add(message)
            _log.warning(message + " (logged once per worker)", *args)

    @property
    def open_websockets(self) -> int:
        """Native and hijacked WebSockets open now (against ``websocket.websocket_max_connections``)."""
        return len(self.websockets) + len(self.hijacked)

    def close_websockets(self) -> None:
        """The worker is stopping: send every native WebSocket a Close 1001 (going away)."""
        for websocket in list(self.websockets):
            websocket.close_for_stop()

    def end_hijacked(self) -> None:
        """The worker exits: shut down the sockets apps still hold (their readers wake)."""
        for hijacked in list(self.hijacked):
            hijacked.shut_down()
