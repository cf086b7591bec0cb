"""``connect``: the opening handshake (RFC 6455 §4.1) over the HTTP client's transport.

TCP (or an HTTP proxy's CONNECT tunnel), TLS for wss:// (verified as the HTTP client
verifies), then one HTTP/1.1 GET with Upgrade, written and read with ``wsgiserve.http``.
Bytes that follow the 101 head in the same read are the first WebSocket frames: they go
to the core. Redirects are not followed: a 3xx is a refusal like any other non-101.
"""
from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Final
from urllib.parse import unquote

from wsgiserve.client.errors import (
    ClientError,
    InvalidRequest,
    InvalidURL,
    Phase,
    ProxyError,
    TotalTimeout,
    translate_error,
)
from wsgiserve.client.pool import DEFAULT_USER_AGENT
from wsgiserve.client.proxy import Proxy, is_excluded, parse_proxy_url, proxy_for
from wsgiserve.client.tls import TLSSettings, create_client_context
from wsgiserve.client.transport import Transport
from wsgiserve.client.url import URL, Origin, parse_url
from wsgiserve.client.websocket.errors import HandshakeRefused, InvalidHandshake
from wsgiserve.client.websocket.session import Trace, WebSocket
from wsgiserve.http.errors import LocalProtocolError as HttpLocalProtocolError
from wsgiserve.http.errors import RemoteProtocolError
from wsgiserve.http.events import NEED_DATA, Data, InformationalResponse
from wsgiserve.http.events import Response as ResponseHead
from wsgiserve.http.parser import ResponseParser
from wsgiserve.http.writer import encode_request_head
from wsgiserve.websocket import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ClientHandshake,
    DeflateOptions,
    HandshakeError,
    Role,
    WebSocketConnection,
    build_upgrade_request,
    check_upgrade_response,
)
from wsgiserve.websocket import LocalProtocolError as WsLocalProtocolError

Headers = Mapping[str, str] | Iterable[tuple[str, str]]

# The URL schemes of RFC 6455 §3 and the HTTP scheme each one's handshake uses.
_SCHEMES: Final = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
# Fields the handshake sets itself (RFC 6455 §4.1); a caller's would contradict them.
_HANDSHAKE_FIELDS: Final = frozenset({
    "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
    "sec-websocket-protocol", "sec-websocket-extensions", "content-length",
    "transfer-encoding"})
# How much of a refusal's body the error keeps (enough for an error page's message).
MAX_BODY_EXCERPT_BYTES: Final = 1024


def connect(url: str, *, subprotocols: Sequence[str] = (),
            deflate: bool | DeflateOptions = True, headers: Headers | None = None,
            timeout_s: float | None = 10.0, write_timeout_s: float | None = 60.0,
            close_timeout_s: float = 10.0,
            max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
            tls: TLSSettings = TLSSettings(), ssl_context: ssl.SSLContext | None = None,
            proxy: str | None = None, no_proxy: str | None = None, trust_env: bool = True,
            user_agent: str = DEFAULT_USER_AGENT, trace: Trace | None = None) -> WebSocket:
    """Open a WebSocket connection to a ws:// or wss:// URL (http:// and https:// too).

    Args:
        subprotocols: offered in order of preference; ``WebSocket.subprotocol`` is the
            server's choice.
        deflate: offer permessage-deflate (RFC 7692) with default options, with these
            ``DeflateOptions``, or not (False).
        headers: more fields for the upgrade request (Origin, Cookie, Authorization...),
            a mapping or (name, value) pairs. Host and User-Agent are added unless given;
            the URL's user:password@ becomes Basic Authorization unless one is given.
        timeout_s: time limit for the whole opening (connect, proxy, TLS, handshake).
        write_timeout_s: how long one send may wait for the server to take bytes.
        close_timeout_s: how long the close handshake may take.
        max_message_bytes: the largest message accepted (after decompression); a bigger
            one fails the connection with 1009.
        tls, ssl_context: how to verify the server, as for ``Pool`` (verified by default).
        proxy, no_proxy, trust_env: as for ``Pool``. Through a proxy, ws:// too goes
            through a CONNECT tunnel (a forwarding proxy would not pass the upgrade).
        trace: called with one-line notes (Pings, Pongs, Close frames), e.g. for ``-v``.
    Returns:
        The open ``WebSocket``.
    Raises:
        InvalidURL, InvalidRequest: nothing was sent.
        ConnectError (NameResolutionError, ProxyError, TLSError, CertificateError),
        RequestTimeout, TransportError: as the HTTP client raises them.
        HandshakeRefused: the server answered with another status than 101 (redirects
            included: they are not followed).
        InvalidHandshake: a 101 that does not accept our request, or not HTTP/1.1.
    """
    target_url = _parse(url)
    origin = target_url.origin
    handshake = _build_handshake(subprotocols, deflate, headers, target_url, user_agent)
    fields = [(name.decode("latin-1"), value.decode("latin-1"))
              for name, value in handshake.headers]
    try:
        head = encode_request_head("GET", target_url.target, fields)
    except HttpLocalProtocolError as exc:
        raise translate_error(exc, Phase.REQUEST) from exc
    chosen_proxy = _choose_proxy(origin, proxy, no_proxy, trust_env)
    context: ssl.SSLContext | None = None
    if origin.is_tls:
        context = ssl_context or _websocket_context(tls)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    transport = _open(origin, chosen_proxy, context, deadline)
    try:
        response, parser = _exchange(transport, head, origin, deadline)
        try:
            negotiated = check_upgrade_response(handshake, response.status,
                                                response.headers.fields)
        except HandshakeError as exc:
            raise InvalidHandshake(f"{url}: {exc}") from exc
        core = WebSocketConnection(Role.CLIENT, deflate=negotiated.deflate,
                                   max_message_bytes=max_message_bytes,
                                   should_deliver_while_closing=True)
        early = parser.trailing_data
        if early:   # the server's first frames, in the same packet as the 101
            core.receive_data(early)
    except BaseException:
        transport.close()
        raise
    return WebSocket(transport.sock, core, url=url, subprotocol=negotiated.subprotocol,
                     deflate=negotiated.deflate, request_head=head, response=response,
                     write_timeout_s=write_timeout_s, close_timeout_s=close_timeout_s,
                     trace=trace)


def _parse(url: str) -> URL:
    """A ws(s) URL as the HTTP client's ``URL`` of its handshake (RFC 6455 §3).

    Raises:
        InvalidURL: another scheme, or not a valid URL.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "ws", url      # a bare host: ws://, as curl takes http://
    http_scheme = _SCHEMES.get(scheme.lower())
    if http_scheme is None:
        raise InvalidURL(f"unsupported URL scheme {scheme!r} in {url!r} (ws or wss)")
    if "#" in rest:
        # RFC 6455 §3: fragment identifiers MUST NOT be used on these URIs.
        raise InvalidURL(f"a WebSocket URL has no fragment: {url!r}")
    return parse_url(f"{http_scheme}://{rest}")


def _build_handshake(subprotocols: Sequence[str], deflate: bool | DeflateOptions,
                     headers: Headers | None, url: URL, user_agent: str) -> ClientHandshake:
    """The request's fields in order: Host, the handshake's, the caller's, User-Agent.

    Raises:
        InvalidRequest: a field the handshake sets itself, or a subprotocol that is not
            a token.
    """
    items = list(headers.items() if isinstance(headers, Mapping) else headers or ())
    names = {name.lower() for name, _ in items}
    clashes = sorted(names & _HANDSHAKE_FIELDS)
    if clashes:
        raise InvalidRequest(f"the WebSocket handshake sets {', '.join(clashes)} itself")
    extra: list[tuple[bytes, bytes]] = []
    try:
        if url.userinfo and "authorization" not in names:
            user, _, password = url.userinfo.partition(":")
            credentials = f"{unquote(user)}:{unquote(password)}".encode()
            extra.append((b"Authorization", b"Basic " + base64.b64encode(credentials)))
        extra.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in items)
        if "user-agent" not in names and user_agent:
            extra.append((b"User-Agent", user_agent.encode("latin-1")))
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"a header is not latin-1 text: {exc.object!r}") from None
    options = DeflateOptions() if deflate is True else deflate or None
    try:
        handshake = build_upgrade_request(subprotocols=subprotocols, deflate=options,
                                          extra_headers=extra)
    except WsLocalProtocolError as exc:
        raise InvalidRequest(str(exc)) from None
    if "host" not in names:
        # RFC 9112 §3.2: Host first, as browsers and curl send it.
        handshake.headers.insert(0, (b"Host", url.origin.authority.encode("ascii")))
    return handshake


def _choose_proxy(origin: Origin, proxy: str | None, no_proxy: str | None,
                  trust_env: bool) -> Proxy | None:
    """The proxy for ``origin``, decided as ``Pool`` decides it."""
    if no_proxy and is_excluded(origin, no_proxy):
        return None
    if proxy is not None:
        return parse_proxy_url(proxy)
    return proxy_for(origin) if trust_env else None


def _websocket_context(tls: TLSSettings) -> ssl.SSLContext:
    context = create_client_context(tls)
    # A WebSocket upgrade is HTTP/1.1 (RFC 6455 §4.1); RFC 8441's HTTP/2 variant is a
    # different handshake, so ALPN offers http/1.1 only, whatever the pool offers.
    context.set_alpn_protocols(["http/1.1"])
    return context


def _open(origin: Origin, proxy: Proxy | None, context: ssl.SSLContext | None,
          deadline: float | None) -> Transport:
    """TCP to the origin or the proxy, the CONNECT tunnel, then TLS for wss://."""
    target = proxy.origin if proxy is not None else origin
    try:
        transport = Transport.open(target.host, target.port, _remaining(deadline))
    except OSError as exc:
        raise translate_error(exc, Phase.CONNECT, target.host_port, deadline) from exc
    try:
        if proxy is not None:
            _open_tunnel(transport, proxy, origin, deadline)
        if context is not None:
            try:
                transport.start_tls(context, origin.host, _remaining(deadline))
            except OSError as exc:
                raise translate_error(exc, Phase.TLS, origin.host_port, deadline) from exc
            protocol = transport.sock.selected_alpn_protocol()  # type: ignore[attr-defined]
            if protocol not in (None, "http/1.1"):
                raise InvalidHandshake(f"{origin.host_port}: TLS chose {protocol!r}, not "
                                       "http/1.1 (a given ssl_context must offer http/1.1)")
    except BaseException:
        transport.close()
        raise
    return transport


def _open_tunnel(transport: Transport, proxy: Proxy, origin: Origin,
                 deadline: float | None) -> None:
    """RFC 9110 §9.3.6: CONNECT host:port; raw bytes once a 2xx arrives."""
    authority = origin.host_port
    fields = [("Host", authority)]
    if proxy.authorization:
        fields.append(("Proxy-Authorization", proxy.authorization))
    parser = ResponseParser()
    parser.expect_response(b"CONNECT")
    where = proxy.origin.host_port
    _send(transport, encode_request_head("CONNECT", authority, fields), where, deadline)
    try:
        event = _next_head(transport, parser, where, deadline)
    except ClientError as exc:
        raise ProxyError(f"proxy {where}: no answer to CONNECT {authority}: {exc}") from exc
    if not 200 <= event.status < 300:
        raise ProxyError(f"proxy {where} refused CONNECT {authority}: {event.status}")
    if parser.trailing_data:
        raise ProxyError(f"proxy {where} sent bytes before the tunnel's first byte")


def _exchange(transport: Transport, head: bytes, origin: Origin,
              deadline: float | None) -> tuple[ResponseHead, ResponseParser]:
    """Send the upgrade request; return the 101 head and the parser (holding what came
    after it).

    Raises:
        HandshakeRefused: any other final status (the start of its body read).
    """
    where = origin.host_port
    parser = ResponseParser()
    parser.expect_response(b"GET")
    _send(transport, head, where, deadline)
    response = _next_head(transport, parser, where, deadline)
    if response.status == 101:
        return response, parser
    body = _body_excerpt(transport, parser, where, deadline)
    fields = [(name.decode("latin-1"), value.decode("latin-1"))
              for name, value in response.headers.fields]
    reason = response.reason.decode("latin-1")
    message = f"{where}: the server refused the WebSocket upgrade: {response.status} {reason}"
    location = response.headers.get(b"location")
    if 300 <= response.status < 400 and location is not None:
        message += f" (redirects are not followed: Location {location.decode('latin-1')})"
    text = body.decode("utf-8", "replace").strip()
    if text:
        message += f": {' '.join(text.split())[:200]}"
    raise HandshakeRefused(message, response.status, fields, body)


def _next_head(transport: Transport, parser: ResponseParser, where: str,
               deadline: float | None) -> ResponseHead:
    """The final response head; 1xx other than 101 are skipped (RFC 9110 §15.2)."""
    has_bytes = False
    while True:
        try:
            event = parser.next_event()
        except RemoteProtocolError as exc:
            raise InvalidHandshake(f"{where}: not a valid HTTP/1.1 response: {exc}") from exc
        if isinstance(event, ResponseHead):
            return event
        if isinstance(event, InformationalResponse):
            continue
        if event is not NEED_DATA:
            raise InvalidHandshake(f"{where}: the server closed the connection without a "
                                   "response")
        data = _recv(transport, Phase.READ if has_bytes else Phase.AWAIT, where, deadline)
        has_bytes = has_bytes or bool(data)
        parser.feed(data)


def _body_excerpt(transport: Transport, parser: ResponseParser, where: str,
                  deadline: float | None) -> bytes:
    """Up to ``MAX_BODY_EXCERPT_BYTES`` of a refusal's body; what cannot be read in time
    or is not valid is left out (the refusal is what matters)."""
    body = b""
    try:
        while len(body) < MAX_BODY_EXCERPT_BYTES:
            event = parser.next_event()
            if type(event) is Data:
                body += event.data
            elif event is NEED_DATA:
                parser.feed(_recv(transport, Phase.READ, where, deadline))
            else:
                break
    except (ClientError, RemoteProtocolError):
        pass
    return body[:MAX_BODY_EXCERPT_BYTES]


def _send(transport: Transport, data: bytes, where: str, deadline: float | None) -> None:
    try:
        transport.send(data, _remaining(deadline))
    except OSError as exc:
        raise translate_error(exc, Phase.WRITE, where, deadline) from exc


def _recv(transport: Transport, phase: Phase, where: str, deadline: float | None) -> bytes:
    try:
        return transport.recv(_remaining(deadline))
    except OSError as exc:
        raise translate_error(exc, phase, where, deadline) from exc


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TotalTimeout("the WebSocket opening took longer than its time limit")
    return remaining
