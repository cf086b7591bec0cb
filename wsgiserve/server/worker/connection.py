"""One client connection: a transport and the protocol it hosts.

The worker's loop holds a ``Connection`` per accepted socket and calls ``handle(events)``
when epoll reports it (``on_readable`` / ``on_writable`` for tests and drivers), in
whichever of its threads got the event, one thread at a time (``lock``). The protocol does
the work and returns the ``Outcome``; when it hands over to another protocol (TLS done,
an HTTP/2 preface, a WebSocket after 101) the connection installs that one and runs it.

The loop polls edge-triggered: an event comes once per change, so after a readable event
the protocol is run until the transport has found the socket empty (``read_pending``).
"""
from __future__ import annotations

import functools
import select
import socket
import threading
from collections.abc import Callable
from typing import Any, Final

from wsgiserve.http import Request
from wsgiserve.server.worker.context import ServerContext
from wsgiserve.server.worker.heads import SERVER_HEADER
from wsgiserve.server.worker.http1 import Http1
from wsgiserve.server.worker.http2 import Http2
from wsgiserve.server.worker.preamble import Preamble
from wsgiserve.server.worker.protocol import Protocol
from wsgiserve.server.worker.states import SWITCH, WAIT_READABLE, ConnState, Outcome
from wsgiserve.server.worker.transport import Transport
from wsgiserve.wsgi import ErrorStream, FileWrapper

__all__ = ["Connection", "ConnState", "Outcome", "make_base_environ"]

# Events that mean "read": data, the peer's FIN (RDHUP), or an error or hang-up (a recv
# then reports it).
READ_EVENTS: Final = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP


class Connection:
    """A client connection, driven by the worker through ``handle``.

    Attributes:
        lock: held by the thread running the protocol; a thread that finds it taken
            records the events in ``events`` for the holder to run before it lets go.
    """

    __slots__ = ("transport", "protocol", "context", "fileno", "lock", "events")

    def __init__(self, sock: socket.socket, peer: Any, context: ServerContext,
                 base_environ: dict[str, Any]) -> None:
        transport = self.transport = Transport(sock, peer)
        self.context = context
        self.fileno = transport.fileno
        self.lock = threading.Lock()
        self.events = 0
        base_environ["REMOTE_ADDR"] = transport.remote_addr
        base_environ["REMOTE_PORT"] = str(transport.remote_port)
        preamble = context.preamble
        self.protocol: Protocol
        if preamble is None:
            self.protocol = Http1(transport, context, base_environ,
                                  _prior_knowledge(transport, context, base_environ),
                                  _h2c_upgrade(transport, context, base_environ))
        else:
            self.protocol = Preamble(transport, context, base_environ, preamble,
                                     functools.partial(_start_http, transport, context,
                                                       base_environ))

    @property
    def state(self) -> ConnState:
        return self.protocol.state

    @property
    def deadline(self) -> float:
        return self.protocol.deadline

    @property
    def is_idle(self) -> bool:
        return self.protocol.is_idle

    @property
    def idle_since(self) -> float:
        return self.protocol.idle_since

    @property
    def remote_addr(self) -> str:
        return self.transport.remote_addr

    # -- driven by the loop ---------------------------------------------------------------
    def handle(self, events: int) -> Outcome:
        """Run the protocol for ``events`` (epoll's bits) until it has to wait.

        Raises:
            OSError: the connection failed (the caller closes it).
        """
        transport = self.transport
        if events & READ_EVENTS:
            transport.read_pending = True
            outcome = self.protocol.on_readable()
        else:
            outcome = self.protocol.on_writable()
        while True:
            if outcome is WAIT_READABLE:
                if not transport.read_pending:
                    return outcome
                outcome = self.protocol.on_readable()
            elif outcome is SWITCH:
                outcome = self._switch()
            else:
                return outcome

    def on_readable(self) -> Outcome:
        outcome = self.protocol.on_readable()
        while outcome is SWITCH:
            outcome = self._switch()
        return outcome

    def on_writable(self) -> Outcome:
        outcome = self.protocol.on_writable()
        while outcome is SWITCH:
            outcome = self._switch()
        return outcome

    def on_timeout(self) -> Outcome:
        outcome = self.protocol.on_timeout()
        while outcome is SWITCH:
            outcome = self._switch()
        return outcome

    def start_graceful_close(self, quiet_since: float) -> Outcome | None:
        return self.protocol.start_graceful_close(quiet_since)

    def shed(self) -> Outcome | None:
        """Load shedding (``Protocol.shed``); None: not shed, the event is still to run.
        A protocol switch on the way (an HTTP/2 preface) sheds with the new protocol."""
        outcome = self.protocol.shed()
        while outcome is SWITCH:
            protocol = self.protocol.next_protocol
            assert protocol is not None
            self.protocol = protocol
            outcome = protocol.shed()
        return outcome

    def close(self) -> None:
        self.protocol.close()  # which closes the transport

    def _switch(self) -> Outcome:
        protocol = self.protocol.next_protocol
        assert protocol is not None
        self.protocol = protocol
        return protocol.on_readable()


def _prior_knowledge(transport: Transport, context: ServerContext,
                     base_environ: dict[str, Any]) -> Callable[[bytes], Protocol] | None:
    """How HTTP/1.1 hands a connection opening with the HTTP/2 preface over (None: it
    does not: HTTP/2 off, or cleartext HTTP/2 only by upgrade)."""
    if context.http2_limits is None or \
            context.http2_cleartext not in ("prior-knowledge", "both"):
        return None
    return functools.partial(Http2, transport, context, base_environ)


def _h2c_upgrade(transport: Transport, context: ServerContext, base_environ: dict[str, Any]
                 ) -> Callable[[bytes, bytes, Request], Protocol] | None:
    """How HTTP/1.1 hands over a cleartext connection whose request asks for
    ``Upgrade: h2c`` (None: it does not: HTTP/2 off, or cleartext HTTP/2 by prior
    knowledge only)."""
    if context.http2_limits is None or context.http2_cleartext not in ("upgrade", "both"):
        return None

    def upgrade(initial: bytes, settings: bytes, request: Request) -> Protocol:
        return Http2(transport, context, base_environ, initial, upgrade=(settings, request))
    return upgrade


def _start_http(transport: Transport, context: ServerContext,
                base_environ: dict[str, Any]) -> Protocol:
    """The protocol after the preamble: HTTP/2 when TLS's ALPN chose h2, else HTTP/1.1."""
    if transport.is_tls:
        if context.http2_limits is not None and transport.alpn_protocol() == "h2":
            return Http2(transport, context, base_environ)
        return Http1(transport, context, base_environ)
    return Http1(transport, context, base_environ,
                 _prior_knowledge(transport, context, base_environ),
                 _h2c_upgrade(transport, context, base_environ))


def make_base_environ(server_name: str, server_port: str, url_scheme: str, *,
                      multithread: bool, multiprocess: bool,
                      errors: ErrorStream | None = None) -> dict[str, Any]:
    """The part of every environ that depends only on the listener and the worker."""
    environ = {
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SCRIPT_NAME": "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.errors": errors or ErrorStream(),
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
        "SERVER_SOFTWARE": SERVER_HEADER,
        # Set for each connection and each request; here so the dict is sized for them.
        "REMOTE_ADDR": "", "REMOTE_PORT": "", "REQUEST_METHOD": "", "SERVER_PROTOCOL": "",
        "RAW_URI": "", "QUERY_STRING": "", "PATH_INFO": "", "wsgi.input": None,
        "wsgi.early_hints": None,
    }
    # Every environ is a copy of this dict, and a copy keeps its original's table size: one
    # more key now (then removed) grows the table to 64 slots, so a request's headers fill
    # its copy without the resize (a rehash of every key: ~6,000 instructions) that
    # the 22nd key otherwise costs each request.
    environ["wsgiserve.sizing"] = None
    del environ["wsgiserve.sizing"]
    return environ
