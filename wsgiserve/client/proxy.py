"""Proxies: the ``Proxy`` value, and which one a URL goes through (``http_proxy``,
``https_proxy``, ``all_proxy``, ``no_proxy``).

Values and pure functions over an environment mapping; no socket work. Plain http
requests are forwarded in absolute-form (RFC 9112 §3.2.2); https goes through a CONNECT
tunnel (RFC 9110 §9.3.6), which the connection opens with the request and the check here.
"""
from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from wsgiserve.client.errors import InvalidURL, ProxyError
from wsgiserve.client.url import Origin
from wsgiserve.http.events import Response as ResponseHead
from wsgiserve.http.writer import encode_request_head


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: ``origin`` to connect to, and its Proxy-Authorization value."""

    origin: Origin
    authorization: str | None = None


def _variable(environ: Mapping[str, str], name: str) -> str | None:
    # Only the lowercase http_proxy is read, as curl does: HTTP_PROXY can be set by a CGI
    # request's "Proxy:" header (the "httpoxy" attack). The others may be in either case.
    if name == "http_proxy":
        return environ.get(name) or None
    return environ.get(name) or environ.get(name.upper()) or None


def parse_proxy_url(text: str) -> Proxy:
    """Parse ``[http://][user:password@]host[:port]`` (port 1080 when absent, as curl).

    Raises:
        InvalidURL: not an http proxy, or no host.
    """
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() != "http":
        raise InvalidURL(f"unsupported proxy scheme {parts.scheme!r} (only http:// proxies)")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid proxy port in {text!r}") from exc
    if not host:
        raise InvalidURL(f"no host in proxy {text!r}")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return Proxy(Origin("http", host.lower(), port or 1080), authorization)


def is_excluded(origin: Origin, no_proxy: str) -> bool:
    """True when ``no_proxy`` (comma-separated hosts, domains, IPs, CIDRs, ``*``) covers origin.

    ``example.com`` and ``.example.com`` both match example.com and its subdomains;
    ``host:port`` matches only that port.
    """
    host = origin.host
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry_host, port = entry, None
        if entry.count(":") == 1 or (entry.startswith("[") and "]:" in entry):
            entry_host, _, port_text = entry.rpartition(":")
            port = int(port_text) if port_text.isdigit() else None
        entry_host = entry_host.strip("[]").lstrip("*").lstrip(".")
        if port is not None and port != origin.port:
            continue
        if _host_matches(host, entry_host):
            return True
    return False


def _host_matches(host: str, entry: str) -> bool:
    if host == entry or host.endswith("." + entry):
        return True
    try:
        address = ipaddress.ip_address(host)
        return address in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


def proxy_for(origin: Origin, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """Return the proxy for requests to ``origin`` from the environment, or None.

    Raises:
        InvalidURL: the variable holds an unusable proxy URL.
    """
    env = os.environ if environ is None else environ
    text = _variable(env, f"{origin.scheme}_proxy") or _variable(env, "all_proxy")
    if text is None:
        return None
    no_proxy = _variable(env, "no_proxy")
    if no_proxy and is_excluded(origin, no_proxy):
        return None
    return parse_proxy_url(text)


def connect_request(proxy: Proxy, authority: str) -> bytes:
    """The head of the CONNECT request that opens a tunnel to ``authority`` (host:port)."""
    headers = [("Host", authority)]
    if proxy.authorization:
        headers.append(("Proxy-Authorization", proxy.authorization))
    return encode_request_head("CONNECT", authority, headers)


def check_connect_response(proxy: Proxy, authority: str, event: object,
                           has_bytes_after: bool) -> None:
    """Check the proxy's final answer to CONNECT (after any 1xx): the tunnel is open on a
    2xx (RFC 9110 §9.3.6) with no bytes after its head.

    Raises:
        ProxyError: another status, no response, or bytes before the TLS handshake.
    """
    if not isinstance(event, ResponseHead) or not 200 <= event.status < 300:
        status = event.status if isinstance(event, ResponseHead) else "no response"
        raise ProxyError(f"proxy {proxy.origin.host_port} refused CONNECT "
                         f"{authority}: {status}")
    if has_bytes_after:
        # TLS has not started: the origin cannot have sent anything yet.
        raise ProxyError("the proxy sent bytes before the TLS handshake")
