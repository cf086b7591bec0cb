"""The connection pool and the request API: keep-alive reuse, one safe retry, redirects.

``Pool.request`` builds the request (default fields, framing from the body), picks an
idle connection for the origin (or the proxy), sends, and follows redirects when asked.
It is the only module that owns connections past one exchange.
"""
from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from wsgiserve import __version__
from wsgiserve.client.body import BodyValue, RequestBody
from wsgiserve.client.connection import Connection, InformationalCallback, Timeouts
from wsgiserve.client.errors import (
    InvalidRequest,
    Phase,
    ServerDisconnected,
    TooManyRedirects,
    WriteError,
    translate_error,
)
from wsgiserve.client.proxy import Proxy, is_excluded, parse_proxy_url, proxy_for
from wsgiserve.client.redirects import next_request
from wsgiserve.client.response import Response
from wsgiserve.client.tls import TLSSettings, create_client_context
from wsgiserve.client.url import URL, Origin, parse_url
from wsgiserve.http.errors import RemoteProtocolError
from wsgiserve.http.framing import parse_content_length
from wsgiserve.http.limits import HttpLimits

log = logging.getLogger(__name__)

# RFC 9110 §9.2.2: the methods a client may repeat without asking (POST and PATCH not).
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# requests and urllib3 default to 30 redirects, browsers to about 20.
DEFAULT_MAX_REDIRECTS: Final = 20
# A redirect's body up to this size is read and dropped to keep the connection; more
# costs the connection instead (urllib3 drains 64 KiB, curl drains everything).
_MAX_DRAIN_BYTES: Final = 1 << 20
_MAX_ORIGINS_REMEMBERED: Final = 256  # origins whose proxy is remembered (then forgotten)
DEFAULT_USER_AGENT: Final = f"wsgiserve/{__version__}"

Headers = Mapping[str, str] | Iterable[tuple[str, str]]
# (origin, None) direct or to a forwarding proxy; (origin, proxy) through a CONNECT tunnel.
_PoolKey = tuple[Origin, Proxy | None]


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
        on_request_head: called with each request head as sent, for ``-v``.

    Thread-safe: several threads may share one pool; each request holds its connection.
    """

    def __init__(self, *, timeouts: Timeouts = Timeouts(), tls: TLSSettings = TLSSettings(),
                 ssl_context: ssl.SSLContext | None = None, max_idle_per_origin: int = 8,
                 trust_env: bool = True, proxy: str | None = None, no_proxy: str | None = None,
                 user_agent: str = DEFAULT_USER_AGENT, limits: HttpLimits | None = None,
                 trace: Callable[[str], None] | None = None,
                 on_request_head: Callable[[bytes], None] | None = None):
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
        self._idle: dict[_PoolKey, list[Connection]] = {}
        self._lock = threading.Lock()
        self._is_closed = False

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every idle connection; responses still being read keep theirs."""
        with self._lock:
            self._is_closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    @property
    def idle_count(self) -> int:
        with self._lock:
            return sum(len(connections) for connections in self._idle.values())

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
                log.debug("not following %s: the body cannot be sent again", response.status)
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
        key: _PoolKey = (proxy.origin, None) if proxy is not None and not url.origin.is_tls \
            else (url.origin, proxy)
        may_retry = method in IDEMPOTENT_METHODS and (body is None or body.is_replayable)
        while True:
            connection, is_reused = self._acquire(key, timeouts)
            connection.timeouts = timeouts
            try:
                response = connection.request(
                    method, target, headers, body, url=url.text, deadline=deadline,
                    expect_continue=expect_continue, on_informational=on_informational,
                    on_release=self._release, on_head_sent=self.on_request_head)
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

    def _acquire(self, key: _PoolKey, timeouts: Timeouts) -> tuple[Connection, bool]:
        while True:
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
        return Connection(origin, ssl_context=context, timeouts=timeouts, proxy=proxy,
                          limits=self._limits), False

    def _release(self, connection: Connection) -> None:
        key: _PoolKey = (connection.origin, connection.proxy)
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if not self._is_closed and len(idle) < self.max_idle_per_origin:
                idle.append(connection)
                return
        connection.close()

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = create_client_context(self._tls)
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
        log.debug("%s", message)
        if self.trace is not None:
            self.trace(message)


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
