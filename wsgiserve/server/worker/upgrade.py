"""What a WebSocket upgrade request offers the app, and how the app answers it.

``offer_upgrade`` runs only for requests with an Upgrade field that names websocket. It
puts ``environ["wsgiserve.websocket"]`` (a ``WebSocketUpgrade``: ``accept()`` sends the
101 and returns a ``websocket_api.WebSocket``, ``reject()`` answers with an error) and, for
a syntactically valid upgrade (GET, HTTP/1.1, Connection: upgrade, Upgrade: websocket),
``environ["gunicorn.socket"]``: a ``HijackedSocket`` for libraries that do their own
handshake (simple-websocket, Flask-Sock, Flask-SocketIO). The first use of that socket
hands it over: out of the worker's epoll set, blocking, and never read, written or closed
by the worker again. Either way the protocol learns the ``UpgradeResult`` after the app.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any, Final

from wsgiserve.http import Request
from wsgiserve.http.headers import BAD_VALUE_STR_RE, TOKEN_STR_RE
from wsgiserve.log import AccessRecord
from wsgiserve.server.worker.context import ServerContext
from wsgiserve.server.worker.exchange import Exchange
from wsgiserve.server.worker.heads import SERVER_HEADER, build_head
from wsgiserve.server.worker.shared_tls import SharedTLSSocket
from wsgiserve.server.worker.transport import Transport
from wsgiserve.server.worker.websocket_api import WebSocket
from wsgiserve.websocket import (
    DeflateOptions,
    HandshakeError,
    LocalProtocolError,
    Role,
    UpgradeRequest,
    WebSocketConnection,
    accept_upgrade,
    parse_upgrade_request,
)

__all__ = ["HijackedSocket", "UpgradeResult", "WebSocketUpgrade", "offer_upgrade"]

_SWITCHING: Final = b"HTTP/1.1 101 Switching Protocols\r\n"
_SERVER_LINE: Final = f"Server: {SERVER_HEADER}\r\n".encode("latin-1")
_REASONS: Final = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                   426: "Upgrade Required", 429: "Too Many Requests",
                   503: "Service Unavailable"}


class UpgradeResult(Enum):
    ACCEPTED = "accepted"  # 101 sent: the connection now speaks WebSocket
    ANSWERED = "answered"  # an HTTP answer went out (reject, a bad handshake, 503): close
    HIJACKED = "hijacked"  # a library took environ["gunicorn.socket"]


ACCEPTED, ANSWERED, HIJACKED = UpgradeResult


class WebSocketUpgrade:
    """``environ["wsgiserve.websocket"]``: answer the upgrade request with ``accept`` or
    ``reject``. Once either was called, what the app returns (and any ``start_response``)
    is discarded: the answer is on the wire already."""

    def __init__(self, exchange: Exchange, transport: Transport, context: ServerContext,
                 early_data: Callable[[], bytes], exempt: Callable[[], None]) -> None:
        self.result: UpgradeResult | None = None
        self.websocket: WebSocket | None = None
        self.hijacked: HijackedSocket | None = None
        self.status = 0
        self._exchange = exchange
        self._transport = transport
        self._context = context
        self._early_data = early_data
        self._exempt = exempt
        self._parsed: UpgradeRequest | HandshakeError | None = None

    def _request(self) -> UpgradeRequest | HandshakeError:
        if self._parsed is None:
            request = self._exchange.request
            try:
                self._parsed = parse_upgrade_request(request.method, request.http_version,
                                                     request.headers)
            except HandshakeError as exc:
                self._parsed = exc
        return self._parsed

    @property
    def subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offers, in its order (none if the request is
        not a valid upgrade)."""
        parsed = self._request()
        return () if isinstance(parsed, HandshakeError) else parsed.subprotocols

    def accept(self, subprotocol: str | None = None,
               headers: Iterable[tuple[str, str]] = ()) -> WebSocket:
        """Send the 101 response and return the WebSocket.

        Args:
            subprotocol: one of ``subprotocols``, or None.
            headers: more response fields (e.g. Set-Cookie), as WSGI str pairs.
        Raises:
            HandshakeError: the request is not a valid upgrade (RFC 6455 §4.2.1); the
                server has answered 400, or 426 with ``Sec-WebSocket-Version: 13``.
            RuntimeError: the request was answered already.
            ValueError: a subprotocol not offered, or an invalid header field.
            OSError: the client went away.
        """
        self._check_unanswered()
        parsed = self._request()
        if isinstance(parsed, HandshakeError):
            self._answer(parsed.status, parsed.reason,
                         [(k.decode("latin-1"), v.decode("latin-1")) for k, v in parsed.headers],
                         f"{parsed}\n".encode())
            raise type(parsed)(str(parsed))
        extra = _encode_fields(headers)
        context = self._context
        settings = context.websocket
        try:
            acceptance = accept_upgrade(parsed, subprotocol=subprotocol,
                                        deflate=DeflateOptions() if settings.websocket_deflate else None,
                                        extra_headers=extra)
        except LocalProtocolError as exc:
            raise ValueError(str(exc)) from None
        core = WebSocketConnection(Role.SERVER, deflate=acceptance.deflate,
                                   max_message_bytes=settings.websocket_max_message_bytes)
        early = self._early_data()
        if early:
            core.receive_data(early)  # frames that came with the handshake are not lost
        head = b"".join([_SWITCHING, *[name + b": " + value + b"\r\n"
                                       for name, value in acceptance.headers],
                         context.dates.line(), _SERVER_LINE, b"\r\n"])
        exchange = self._exchange
        websocket = WebSocket(self._transport, context, core, exchange.environ,
                              acceptance.subprotocol, _access_record_maker(exchange))
        self.result = ACCEPTED
        self.status = 101
        self.websocket = websocket
        self._exempt()  # a blocking-style WSGI call lasts as long as the socket
        context.websockets.add(websocket)
        self._transport.send_blocking(head, context.body_timeout_s)
        return websocket

    def reject(self, status: int = 403, headers: Iterable[tuple[str, str]] = (),
               body: bytes = b"") -> None:
        """Answer the upgrade request with an HTTP error (the connection then closes).

        Raises:
            RuntimeError: the request was answered already.
            ValueError: a status outside 400-599, or an invalid header field.
        """
        self._check_unanswered()
        if not 400 <= status <= 599:
            raise ValueError(f"reject() takes a 4xx or 5xx status, not {status}")
        fields = list(headers)
        _encode_fields(fields)
        self._answer(status, _REASONS.get(status, "Refused"), fields, body)

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], object]:
        """The app's start_response: the exchange's until the upgrade was answered,
        then ignored (a framework's response after accept() is not sent)."""
        if self.result is None:
            return self._exchange.start_response(status, headers, exc_info)
        return _ignore

    def _check_unanswered(self) -> None:
        if self.result is not None or self._exchange.status:
            raise RuntimeError("this upgrade request was answered already")

    def _answer(self, status: int, reason: str, headers: list[tuple[str, str]],
                body: bytes) -> None:
        request = self._exchange.request
        template = build_head(f"{status} {reason}",
                              [*headers, ("Content-Length", str(len(body)))],
                              request.method, request.http_version)
        head = template.render(self._context.dates.line(), True, request.http_version == b"1.0")
        self.result = ANSWERED
        self.status = status
        if request.method == b"HEAD":
            body = b""
        self._transport.send_blocking(head + body, self._context.body_timeout_s)

    def hijack(self, wrapper: HijackedSocket) -> socket.socket | SharedTLSSocket:
        """Hand the socket to the app (first use of environ["gunicorn.socket"]): the
        socket itself, or over TLS a ``SharedTLSSocket`` (libraries read and write it from
        two threads at once, which one TLS connection does not allow)."""
        if self.result is not None and self.result is not HIJACKED:
            raise RuntimeError("this upgrade request was answered already")
        transport = self._transport
        sock: socket.socket | SharedTLSSocket = transport.sock
        self._context.release(transport.fileno)  # out of epoll before anyone reads it
        sock.settimeout(None)  # blocking, as a library's own thread expects
        if transport.is_tls:  # its reader thread and the app's sends share it
            sock = SharedTLSSocket(sock)  # type: ignore[arg-type]  # an ssl.SSLSocket
        wrapper.early = self._early_data()
        transport.sock = _DETACHED  # type: ignore[assignment]  # its close() is a no-op
        self.result = HIJACKED
        self.hijacked = wrapper
        self._exempt()  # the library's loop runs in the WSGI call
        self._context.hijacked.add(wrapper)
        return sock


class HijackedSocket:
    """``environ["gunicorn.socket"]``: the connection's socket, handed over on first use.

    It behaves as the socket (every attribute is the socket's); bytes our parser had
    already read after the request head come first from ``recv``/``recv_into``.
    """

    __slots__ = ("_upgrade", "_sock", "early")

    def __init__(self, upgrade: WebSocketUpgrade) -> None:
        self._upgrade = upgrade
        self._sock: socket.socket | SharedTLSSocket | None = None
        self.early = b""

    def _take(self) -> socket.socket | SharedTLSSocket:
        sock = self._sock
        if sock is None:
            sock = self._sock = self._upgrade.hijack(self)
        return sock

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        sock = self._take()
        if self.early:
            data, self.early = self.early[:bufsize], self.early[bufsize:]
            return data
        return sock.recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        sock = self._take()
        if self.early:
            view = memoryview(buffer).cast("B")
            size = min(len(self.early), nbytes or len(view))
            view[:size] = self.early[:size]
            self.early = self.early[size:]
            return size
        return sock.recv_into(buffer, nbytes, flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._take(), name)

    def shut_down(self) -> None:
        """The worker exits: end the connection under the library (its reads return)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _DetachedSocket:
    """Stands in for a socket given away: closing it does nothing, using it fails."""

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise OSError(f"the socket was handed to the application ({name})")


_DETACHED: Final = _DetachedSocket()


def offer_upgrade(exchange: Exchange, transport: Transport, context: ServerContext,
                  early_data: Callable[[], bytes],
                  exempt: Callable[[], None]) -> WebSocketUpgrade | None:
    """Put the WebSocket entries in the environ of a request with an Upgrade field.

    Returns:
        The upgrade, or None when Upgrade does not name websocket. A valid upgrade that
        would pass ``websocket_max_connections``, or comes while the worker stops, is
        answered 503 at once (``result`` is ANSWERED: the app is not called).
    """
    request = exchange.request
    headers = request.headers
    if b"websocket" not in headers.tokens(b"upgrade"):
        return None
    upgrade = WebSocketUpgrade(exchange, transport, context, early_data, exempt)
    environ = exchange.environ
    environ["wsgiserve.websocket"] = upgrade
    if _is_valid_syntax(request):
        if context.is_stopping \
                or context.open_websockets >= context.websocket.websocket_max_connections:
            # A stopping worker has sent its WebSockets their 1001 already: no new ones.
            upgrade._answer(503, _REASONS[503], [("Retry-After", "5")],
                            b"no more WebSockets on this worker now\n")
            return upgrade
        environ["gunicorn.socket"] = HijackedSocket(upgrade)
    return upgrade


def _is_valid_syntax(request: Request) -> bool:
    """GET, HTTP/1.1, and Connection lists upgrade (Upgrade names websocket: checked)."""
    return request.method == b"GET" and request.http_version == b"1.1" \
        and b"upgrade" in request.headers.tokens(b"connection")


def _encode_fields(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    fields = []
    for name, value in headers:
        if not isinstance(name, str) or not isinstance(value, str) \
                or TOKEN_STR_RE.fullmatch(name) is None or BAD_VALUE_STR_RE.search(value):
            raise ValueError(f"invalid header field {name!r}: {value!r}")
        fields.append((name.encode("latin-1"), value.encode("latin-1")))
    return fields


def _ignore(data: bytes) -> None:
    """The write() returned by start_response once the upgrade was answered."""


def _access_record_maker(exchange: Exchange) -> Callable[[WebSocket], AccessRecord]:
    """The access line of a WebSocket, made when it closes (see log.log_websocket)."""
    request = exchange.request
    environ = exchange.environ
    context = exchange.context
    transport = exchange.transport
    started_wall = time.time()

    def make(websocket: WebSocket) -> AccessRecord:
        duration_s = time.monotonic() - websocket.started
        user = environ.get("REMOTE_USER")
        return AccessRecord(
            remote_addr=str(environ.get("REMOTE_ADDR") or transport.remote_addr),
            remote_port=transport.remote_port, method=request.method.decode("ascii"),
            target=request.target.decode("latin-1"), version="HTTP/1.1", status=101,
            response_bytes=websocket.bytes_sent, start_time=started_wall,
            duration_s=duration_s, request_headers=request.headers.lowered(),
            response_headers=[], pid=context.pid, remote_user=str(user) if user else "-",
            received_bytes=websocket.bytes_received, close_code=websocket.close_code or 1006)
    return make
