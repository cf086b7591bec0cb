"""The connection pool and the request API: keep-alive reuse, HTTP/2 multiplexing, safe
retries, redirects.

``Pool.request`` builds the request (default fields, framing from the body), picks a
connection for the origin (or the proxy): an HTTP/2 one with a free stream slot (shared
by ``h2sharing``), or an idle HTTP/1.1 one, or a new one whose protocol ALPN decides;
sends, and follows redirects when asked. Connections live past one exchange only here.
"""
from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Final

from wsgiserve import __version__
from wsgiserve.client.body import BodyValue, RequestBody
from wsgiserve.client.connection import Connection, InformationalCallback
from wsgiserve.client.errors import (
    InvalidRequest,
    Phase,
    ServerDisconnected,
    StreamError,
    TooManyRedirects,
    WriteError,
    translate_error,
)
from wsgiserve.client.h2sharing import Http2Sharing, PoolKey
from wsgiserve.client.negotiation import HttpVersion, alpn_protocols, is_h2_direct
from wsgiserve.client.proxy import Proxy, is_excluded, parse_proxy_url, proxy_for
from wsgiserve.client.redirects import next_request
from wsgiserve.client.response import Response
from wsgiserve.client.timeouts import Timeouts
from wsgiserve.client.tls import TLSSettings, create_client_context
from wsgiserve.client.url import URL, Origin, parse_url
from wsgiserve.http.errors import LocalProtocolError, RemoteProtocolError
from wsgiserve.http.framing import parse_content_length
from wsgiserve.http.limits import HttpLimits
from wsgiserve.http.writer import encode_request_head

if TYPE_CHECKING:
    from wsgiserve.client.h2connection import Http2Connection
    from wsgiserve.http2 import Http2Limits

_log = logging.getLogger(__name__)

# RFC 9110 §9.2.2: the methods a client may repeat without asking (POST and PATCH not).
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# requests and urllib3 default to 30 redirects, browsers to about 20.
DEFAULT_MAX_REDIRECTS: Final = 20
# A redirect's body up to this size is read and dropped to keep the connection; more
# costs the connection instead (urllib3 drains 64 KiB, curl drains everything).
_MAX_DRAIN_BYTES: Final = 1 << 20
# Origins whose proxy, or whose server's choice of HTTP/1.1, is remembered (then forgotten).
_MAX_ORIGINS_REMEMBERED: Final = 256
DEFAULT_USER_AGENT: Final = f"wsgiserve/{__version__}"
# A request the server did not process (REFUSED_STREAM, a stream above the last id of a
# GOAWAY) is sent again, on another connection if need be, at most this many times: a
# server that refuses every stream costs a bounded number of attempts.
MAX_UNPROCESSED_RETRIES: Final = 5

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


class Pool:
    """Idle keep-alive connections per origin, and the request API on top of them.

    Args:
        timeouts: default time limits (each request may pass its own).
        tls: how to verify servers; the ``SSLContext`` is built once, on first https use.
        ssl_context: a ready context instead of ``tls``.
        max_idle_per_origin: idle connections kept per origin; extra ones are closed.
        trust_env: read ``http_proxy``/``https_proxy``/``no_proxy`` from the environment.
        proxy: one proxy URL for every request (overrides the environment).
        no_proxy: hosts that never go through a proxy (the variable's syntax), on top of
            the environment's ``no_proxy``.
        user_agent: the default User-Agent (a caller's field replaces it).
        trace: called with one-line notes (connecting, reusing, retrying), for ``-v``.
        on_request_head: called with each request head as sent, for ``-v`` (HTTP/2
            requests are shown as an HTTP/1.1-style head with ``HTTP/2``).
        http_version: ``HttpVersion.HTTP_2`` (https offers h2 by ALPN), ``HTTP_1_1``, or
            ``HTTP_2_PRIOR_KNOWLEDGE`` (plain http speaks HTTP/2 at once too).
        http2_limits: the HTTP/2 windows, header and flood limits
            (``h2connection.CLIENT_LIMITS`` by default).

    Thread-safe: several threads may share one pool. An HTTP/1.1 request holds its
    connection; HTTP/2 requests to one origin share a connection, one stream each, up to
    the server's SETTINGS_MAX_CONCURRENT_STREAMS, and open another past it.
    """

    def __init__(self, *, timeouts: Timeouts = Timeouts(), tls: TLSSettings = TLSSettings(),
                 ssl_context: ssl.SSLContext | None = None, max_idle_per_origin: int = 8,
                 trust_env: bool = True, proxy: str | None = None, no_proxy: str | None = None,
                 user_agent: str = DEFAULT_USER_AGENT, limits: HttpLimits | None = None,
                 trace: Callable[[str], None] | None = None,
                 on_request_head: Callable[[bytes], None] | None = None,
                 http_version: HttpVersion = HttpVersion.HTTP_2,
                 http2_limits: Http2Limits | None = None):
        self.timeouts = timeouts
        self.user_agent = user_agent
        self.max_idle_per_origin = max_idle_per_origin
        self.trace = trace
        self.on_request_head = on_request_head
        self._tls = tls
        self._ssl_context = ssl_context
        self._trust_env = trust_env
        self._proxy = proxy
        self._no_proxy = no_proxy
        self._limits = limits
        # The proxy of each origin, decided on its first request (parsing the settings and
        # reading the environment cost more than a small request itself).
        self._proxies: dict[Origin, Proxy | None] = {}
        self._idle: dict[PoolKey, list[Connection]] = {}
        self._lock = threading.Lock()
        self._is_closed = False
        self.http_version = http_version
        # Lock order: a connection's lock, then the pool's (HTTP/2 connections call
        # ``_h2.changed`` holding theirs); the pool never calls a connection holding its own.
        self._h2 = Http2Sharing(self._lock, note=self._note, limits=http2_limits,
                                max_keys_remembered=_MAX_ORIGINS_REMEMBERED)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every idle connection; responses still being read keep theirs."""
        with self._lock:
            self._is_closed = True
            idle, self._idle = self._idle, {}
            multiplexed = self._h2.close_locked()
        for connections in idle.values():
            for connection in connections:
                connection.close()
        for h2_connection in multiplexed:
            h2_connection.close()    # once its streams have ended

    @property
    def idle_count(self) -> int:
        """Idle HTTP/1.1 connections, and HTTP/2 ones with no stream open."""
        with self._lock:
            multiplexed = self._h2.connections_locked()
            idle = sum(len(connections) for connections in self._idle.values())
        return idle + sum(1 for c in multiplexed if not c.active_streams)

    @property
    def http2_connection_count(self) -> int:
        """HTTP/2 connections taking new streams."""
        with self._lock:
            return len(self._h2.connections_locked())

    # -- the request API ----------------------------------------------------------------------
    def request(self, method: str, url: str, *, headers: Headers | None = None,
                body: BodyValue | RequestBody = None, follow_redirects: bool = False,
                max_redirects: int = DEFAULT_MAX_REDIRECTS, expect_continue: bool = False,
                on_informational: InformationalCallback | None = None,
                timeouts: Timeouts | None = None) -> Response:
        """Send a request; return the response with its head read and its body streaming.

        Args:
            headers: fields to send, in order; Host and User-Agent are added unless given.
                ``Transfer-Encoding: chunked`` forces chunked framing; ``Content-Length``
                declares the length of an iterator body; ``Expect: 100-continue`` is the
                same as ``expect_continue=True``.
            body: bytes, str (UTF-8), a binary file object, or an iterable of bytes.
            follow_redirects: follow 301/302/303/307/308 (RFC 9110 §15.4 method rules),
                at most ``max_redirects`` times.
            expect_continue: send ``Expect: 100-continue`` and hold the body until 100,
                a final status (the body is then never sent) or ``expect_continue_s``.
            on_informational: called with each 1xx response (100, 103...).

        Returns:
            The final ``Response``; read or iterate it, or ``close()`` it. Its connection
            returns to the pool when the body has been read to the end.

        Raises:
            ClientError: see ``wsgiserve.client.errors``; a response is never returned
                for a failed exchange.
        """
        timeouts = timeouts or self.timeouts
        deadline = time.monotonic() + timeouts.total_s if timeouts.total_s is not None else None
        method = method.upper()
        fields, request_body, expect_continue = _prepare(headers, body, expect_continue)
        response = self._send(method, parse_url(url), fields, request_body, deadline,
                              timeouts, expect_continue, on_informational)
        history: list[Response] = []
        while follow_redirects and response.is_redirect:
            if len(history) >= max_redirects:
                response.close()
                raise TooManyRedirects(f"more than {max_redirects} redirects, last to "
                                       f"{response.header('location')}")
            step = next_request(method, response.url, fields, response.status,
                                response.header("location") or "")
            if step.keeps_body and request_body is not None and not request_body.is_replayable:
                _log.debug("not following %s: the body cannot be sent again", response.status)
                break
            self._discard(response)
            history.append(response)
            method, fields = step.method, step.headers
            if not step.keeps_body:
                request_body, expect_continue = None, False
            response = self._send(method, parse_url(step.url), fields, request_body, deadline,
                                  timeouts, expect_continue, on_informational)
        response.history = history
        return response

    def get(self, url: str, **options: object) -> Response:
        return self.request("GET", url, **options)  # type: ignore[arg-type]  # forwarded as is

    def head(self, url: str, **options: object) -> Response:
        return self.request("HEAD", url, **options)  # type: ignore[arg-type]  # forwarded as is

    def post(self, url: str, body: BodyValue = None, **options: object) -> Response:
        return self.request("POST", url, body=body, **options)  # type: ignore[arg-type]

    def put(self, url: str, body: BodyValue = None, **options: object) -> Response:
        return self.request("PUT", url, body=body, **options)  # type: ignore[arg-type]

    # -- internals ------------------------------------------------------------------------------
    def _send(self, method: str, url: URL, fields: list[tuple[str, str]],
              body: RequestBody | None, deadline: float | None, timeouts: Timeouts,
              expect_continue: bool, on_informational: InformationalCallback | None) -> Response:
        proxy = self._proxy_for(url.origin)
        target = url.target
        headers = self._default_fields(url, fields)
        if proxy is not None and not url.origin.is_tls:
            target = url.text  # RFC 9112 §3.2.2: absolute-form to a forwarding proxy
            if proxy.authorization and not any(n.lower() == "proxy-authorization"
                                               for n, _ in headers):
                headers.append(("Proxy-Authorization", proxy.authorization))
        is_forwarded = proxy is not None and not url.origin.is_tls
        key: PoolKey = (proxy.origin, None) if proxy is not None and not url.origin.is_tls \
            else (url.origin, proxy)
        may_retry = method in IDEMPOTENT_METHODS and (body is None or body.is_replayable)
        may_be_h2 = self._may_speak_h2(url.origin, is_forwarded)
        unprocessed = 0
        while True:
            connection, is_reused = self._acquire(key, timeouts, deadline, may_be_h2,
                                                  partial(_check_head, method, target, headers))
            try:
                if isinstance(connection, Connection):
                    connection.timeouts = timeouts
                    response = connection.request(
                        method, target, headers, body, url=url.text, deadline=deadline,
                        expect_continue=expect_continue, on_informational=on_informational,
                        on_release=self._release, on_head_sent=self.on_request_head)
                else:
                    response = connection.request(
                        method, target, headers, body, url=url.text, read_s=timeouts.read_s,
                        write_s=timeouts.write_s, deadline=deadline,
                        expect_continue=expect_continue,
                        expect_continue_s=timeouts.expect_continue_s,
                        on_informational=on_informational, on_head_sent=self.on_request_head)
            except StreamError as exc:
                # RFC 9113 §8.7: a refused stream was not processed; any method may go again.
                if not exc.is_unprocessed or unprocessed >= MAX_UNPROCESSED_RETRIES or \
                        not (body is None or body.can_send):
                    raise
                unprocessed += 1
                self._note(f"{exc}; the request was not processed: sending it again")
                continue
            except (ServerDisconnected, WriteError) as exc:
                # The server closed a keep-alive connection while it sat idle: the request
                # never reached it, so an idempotent one is sent again, once, on a new
                # connection (RFC 9112 §9.3.1).
                if not (is_reused and may_retry):
                    raise
                self._note(f"connection to {url.origin.host_port} was closed while idle "
                           f"({exc}); retrying on a new one")
                may_retry = False
                continue
            if response.status == 417 and expect_continue and (body is None
                                                                or body.is_replayable):
                # RFC 9110 §10.1.1: a client that receives 417 to a 100-continue
                # expectation SHOULD repeat the request without it.
                self._note("417 Expectation Failed: sending again without Expect")
                response.close()
                headers = [(n, v) for n, v in headers if n.lower() != "expect"]
                expect_continue = False
                continue
            return response

    def _default_fields(self, url: URL, fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
        names = {name.lower() for name, _ in fields}
        headers: list[tuple[str, str]] = []
        if "host" not in names:
            # RFC 9112 §3.2: Host first, as every browser and curl send it.
            headers.append(("Host", url.origin.authority))
        headers.extend(fields)
        if "user-agent" not in names and self.user_agent:
            headers.append(("User-Agent", self.user_agent))
        return headers

    def _proxy_for(self, origin: Origin) -> Proxy | None:
        try:
            return self._proxies[origin]
        except KeyError:
            pass
        if self._no_proxy and is_excluded(origin, self._no_proxy):
            proxy = None
        elif self._proxy is not None:
            proxy = parse_proxy_url(self._proxy)
        else:
            proxy = proxy_for(origin) if self._trust_env else None
        if len(self._proxies) >= _MAX_ORIGINS_REMEMBERED:
            self._proxies.clear()
        self._proxies[origin] = proxy
        return proxy

    def _may_speak_h2(self, origin: Origin, is_forwarded: bool) -> bool:
        if self.http_version is HttpVersion.HTTP_1_1 or is_forwarded:
            return False
        return origin.is_tls or is_h2_direct(self.http_version, False, False)

    def _acquire(self, key: PoolKey, timeouts: Timeouts, deadline: float | None,
                 may_be_h2: bool,
                 check_head: Callable[[], None]) -> tuple[Connection | Http2Connection, bool]:
        """Return a connection for ``key`` (an HTTP/2 one with a stream slot taken) and
        whether it served requests before."""
        is_marked = False
        if may_be_h2:
            shared, is_marked = self._h2.take_shared(key, timeouts, deadline)
            if shared is not None:
                return shared, True
        while not is_marked:
            with self._lock:
                idle = self._idle.get(key)
                connection = idle.pop() if idle else None
            if connection is None:
                break
            if connection.is_reusable():
                self._note(f"re-using the connection to {connection.origin.host_port}")
                return connection, True
            self._note(f"dropping a connection to {connection.origin.host_port} "
                       "the server closed while idle")
        origin, proxy = key
        self._note(f"connecting to {origin.host_port}"
                   + (f" through proxy {proxy.origin.host_port}" if proxy else ""))
        context = self._context() if origin.is_tls else None
        connection = Connection(origin, ssl_context=context, timeouts=timeouts, proxy=proxy,
                                limits=self._limits)
        if not may_be_h2:
            return connection, False      # it connects as it sends (HTTP/1.1 only)
        return self._h2.open(key, connection, timeouts, deadline, check_head, is_marked), False

    def _release(self, connection: Connection) -> None:
        key: PoolKey = (connection.origin, connection.proxy)
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if not self._is_closed and len(idle) < self.max_idle_per_origin:
                idle.append(connection)
                return
        connection.close()

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = create_client_context(self._tls,
                                                      alpn_protocols(self.http_version))
        return self._ssl_context

    def _discard(self, response: Response) -> None:
        """Read and drop a redirect's body to keep its connection, or close it."""
        received = 0
        for piece in response.iter_bytes():
            received += len(piece)
            if received > _MAX_DRAIN_BYTES:
                response.close()
                return

    def _note(self, message: str) -> None:
        _log.debug("%s", message)
        if self.trace is not None:
            self.trace(message)


def _check_head(method: str, target: str, headers: list[tuple[str, str]]) -> None:
    """Raise InvalidRequest if the request head could not be sent (CR, LF, bad method)."""
    try:
        encode_request_head(method, target, headers)
    except LocalProtocolError as exc:
        raise translate_error(exc, Phase.REQUEST) from exc


def _prepare(headers: Headers | None, body: BodyValue | RequestBody,
             expect_continue: bool) -> tuple[list[tuple[str, str]], RequestBody | None, bool]:
    """Split the framing fields off the caller's headers and apply them to the body."""
    items = list(headers.items() if isinstance(headers, Mapping) else headers or ())
    fields: list[tuple[str, str]] = []
    content_length: int | None = None
    is_chunked = False
    for name, value in items:
        lowered = name.lower()
        if lowered == "content-length":
            try:
                # A non-latin-1 character becomes "?", which is no digit either.
                content_length = parse_content_length([value.encode("latin-1", "replace")])
            except RemoteProtocolError as exc:
                raise translate_error(exc, Phase.REQUEST) from exc
        elif lowered == "transfer-encoding":
            if value.strip().lower() != "chunked":
                raise InvalidRequest(f"unsupported Transfer-Encoding {value!r} (only chunked)")
            is_chunked = True
        else:
            if lowered == "expect" and value.strip().lower() == "100-continue":
                expect_continue = True
            fields.append((name, value))
    request_body = RequestBody.from_value(body, content_length)
    if request_body is not None:
        if is_chunked:
            request_body.content_length = None
        elif content_length is not None:
            request_body.content_length = content_length
    if expect_continue and request_body is not None \
            and not any(n.lower() == "expect" for n, _ in fields):
        fields.append(("Expect", "100-continue"))
    if request_body is None:
        expect_continue = False
    return fields, request_body, expect_continue
