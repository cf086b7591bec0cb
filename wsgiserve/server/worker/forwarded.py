"""Trusted proxies: X-Forwarded-* and RFC 7239 ``Forwarded``, honoured only from trusted peers.

``ProxySettings.apply`` runs for every request, after the environ is built. From a peer in
``forwarded_allow_ips`` (default 127.0.0.1 and ::1; CIDR networks; ``*`` trusts everyone)
it sets REMOTE_ADDR to the right-most untrusted address of the chain, ``wsgi.url_scheme``
from X-Forwarded-Proto / X-Forwarded-Ssl, HTTP_HOST / SERVER_NAME / SERVER_PORT from
X-Forwarded-Host / X-Forwarded-Port, and SCRIPT_NAME from X-Forwarded-Prefix. From any other
peer those headers are removed from the environ, so a client cannot spoof them.

Choices worth knowing when deploying:

- A Unix-socket peer has no address and counts as trusted: only local processes with
  permission on the socket file can connect (nginx in front over a Unix socket).
- Where a proxy sends both families, the X-Forwarded-* header wins over the same
  parameter of ``Forwarded`` (for= vs X-Forwarded-For, proto= vs X-Forwarded-Proto, host=
  vs X-Forwarded-Host). A proxy must set or clear every header it is trusted for that it
  does not itself set: nginx passes a client's ``X-Forwarded-Host`` on unless told not to.
- X-Forwarded-Proto, -Host, -Port and -Prefix lists take their right-most value (the one
  the nearest proxy added). When X-Forwarded-For changes REMOTE_ADDR, REMOTE_PORT is the
  port given with the address, or "0" when the chain does not say.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any, Final

from wsgiserve.config import Proxy
from wsgiserve.http import Request
from wsgiserve.wsgi import decode_path

__all__ = ["AddressMatcher", "ProxySettings"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Header names (lowercase, as the parser gives them) -> their environ keys. Checking the
# names first keeps the common request, which has none of them, to one set operation.
_HEADERS: Final = {
    b"x-forwarded-for": "HTTP_X_FORWARDED_FOR",
    b"x-forwarded-proto": "HTTP_X_FORWARDED_PROTO",
    b"x-forwarded-ssl": "HTTP_X_FORWARDED_SSL",
    b"x-forwarded-host": "HTTP_X_FORWARDED_HOST",
    b"x-forwarded-port": "HTTP_X_FORWARDED_PORT",
    b"x-forwarded-prefix": "HTTP_X_FORWARDED_PREFIX",
    b"forwarded": "HTTP_FORWARDED",
}
_HEADER_NAMES: Final = frozenset(_HEADERS)
_ENVIRON_KEYS: Final = tuple(_HEADERS.values())
# Distinct peer addresses whose trust is remembered (a bounded cache: a flood of new
# addresses costs a parse each, not memory).
_CACHE_MAX: Final = 4096
# RFC 3986 §3.2.2 host (reg-name or IP-literal) with an optional port; no userinfo, path or
# whitespace, so a forwarded host cannot smuggle anything into URLs an app builds.
_HOST: Final = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+;=%-]+)(?::([0-9]{1,5}))?")
_PORT: Final = re.compile(r"[0-9]{1,5}")
# RFC 7230 token and quoted-string, for RFC 7239 §4 forwarded-pair values.
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_QUOTED: Final = re.compile(r'"((?:[^"\\]|\\.)*)"')
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


class AddressMatcher:
    """An allow list of addresses, CIDR networks or ``*``.

    ``""`` (a Unix-socket peer, which has no address) always matches: see the module
    docstring. IPv4-mapped IPv6 peers (a dual-stack listener) match their IPv4 entries.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        entries = tuple(entries)
        self.is_everyone = "*" in entries
        self._networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in entries if entry != "*")
        self._cache: dict[str, bool] = {}

    def __contains__(self, address: str) -> bool:
        is_match = self._cache.get(address)
        if is_match is None:
            is_match = self._match(address)
            if len(self._cache) < _CACHE_MAX:
                self._cache[address] = is_match
        return is_match

    def _match(self, address: str) -> bool:
        if self.is_everyone or not address:
            return True
        parsed = _parse_ip(address)
        if parsed is None:
            return False
        candidates: list[IPAddress] = [parsed]
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            candidates.append(parsed.ipv4_mapped)
        return any(candidate in network for candidate in candidates
                   for network in self._networks if network.version == candidate.version)


class ProxySettings:
    """Per-worker trusted-proxy handling; ``apply`` is called once per request."""

    def __init__(self, forwarded_allow_ips: Iterable[str]) -> None:
        self.trusted = AddressMatcher(forwarded_allow_ips)

    @classmethod
    def from_config(cls, proxy: Proxy) -> ProxySettings:
        return cls(proxy.forwarded_allow_ips)

    def apply(self, environ: dict[str, Any], request: Request, remote_addr: str) -> None:
        """Honour or remove the forwarding headers of one request, in place.

        Args:
            environ: the request's environ (its HTTP_* keys and REMOTE_*, SERVER_*,
                SCRIPT_NAME, PATH_INFO and wsgi.url_scheme may change).
            request: the parsed request (only its header names are looked at).
            remote_addr: the connection's peer address ("" for a Unix socket).
        """
        if _HEADER_NAMES.isdisjoint(request.headers.names):
            return
        if remote_addr not in self.trusted:
            for key in _ENVIRON_KEYS:
                environ.pop(key, None)
            return
        forwarded = _parse_forwarded(environ.get("HTTP_FORWARDED"))
        element = self._apply_client(environ, forwarded)
        scheme = self._apply_scheme(environ, element)
        self._apply_host(environ, element, scheme)
        _apply_prefix(environ)

    def _apply_client(self, environ: dict[str, Any],
                      forwarded: list[dict[str, str]]) -> dict[str, str]:
        """Set REMOTE_ADDR/PORT; return the Forwarded element the nearest untrusted
        hop's proxy wrote (its proto= and host= are trustworthy), or {}."""
        chain = environ.get("HTTP_X_FORWARDED_FOR")
        if chain is not None:
            hops = [_parse_node(entry.strip()) for entry in chain.split(",")]
        else:
            hops = [_parse_node(element.get("for", "")) for element in forwarded]
        # Walk from the nearest hop back: each trusted address vouches for the one before.
        chosen = -1
        for index in range(len(hops) - 1, -1, -1):
            chosen = index
            address = hops[index][0]
            if address is None or address not in self.trusted:
                break
        if chosen >= 0:
            address, port = hops[chosen]
            if address is None and chosen + 1 < len(hops):
                # Unknown, obfuscated or malformed: the proxy after it is what we know.
                address, port = hops[chosen + 1]
            if address is not None:
                environ["REMOTE_ADDR"] = address
                environ["REMOTE_PORT"] = str(port) if port is not None else "0"
        if not forwarded:
            return {}
        if chain is not None:
            return forwarded[-1]
        return forwarded[max(chosen, 0)]

    def _apply_scheme(self, environ: dict[str, Any], element: dict[str, str]) -> str:
        scheme = None
        proto = environ.get("HTTP_X_FORWARDED_PROTO")
        ssl_flag = environ.get("HTTP_X_FORWARDED_SSL")
        if proto is not None:
            scheme = _last(proto).lower()
        elif ssl_flag is not None:
            scheme = "https" if _last(ssl_flag).lower() == "on" else "http"
        elif "proto" in element:
            scheme = element["proto"].lower()
        if scheme in _DEFAULT_PORTS:
            environ["wsgi.url_scheme"] = scheme
        return str(environ["wsgi.url_scheme"])

    def _apply_host(self, environ: dict[str, Any], element: dict[str, str],
                    scheme: str) -> None:
        host = environ.get("HTTP_X_FORWARDED_HOST")
        host = _last(host) if host is not None else element.get("host")
        port = environ.get("HTTP_X_FORWARDED_PORT")
        port = _last(port) if port is not None else None
        if port is not None and (not _PORT.fullmatch(port) or int(port) > 65535):
            port = None
        if host is not None:
            match = _HOST.fullmatch(host)
            if match is None:
                return
            name, host_port = match.group(1), match.group(2)
            if port is not None and host_port is None and port != _DEFAULT_PORTS[scheme]:
                host = f"{name}:{port}"
            environ["HTTP_HOST"] = host
            environ["SERVER_NAME"] = name
            environ["SERVER_PORT"] = host_port or port or _DEFAULT_PORTS[scheme]
        elif port is not None:
            environ["SERVER_PORT"] = port
            current = environ.get("HTTP_HOST")
            match = _HOST.fullmatch(current) if current else None
            if match is not None:
                name = match.group(1)
                environ["HTTP_HOST"] = name if port == _DEFAULT_PORTS[scheme] \
                    else f"{name}:{port}"


def _apply_prefix(environ: dict[str, Any]) -> None:
    raw = environ.get("HTTP_X_FORWARDED_PREFIX")
    if raw is None:
        return
    prefix = decode_path(_last(raw).encode("latin-1")).rstrip("/")
    if not prefix or not prefix.startswith("/") or any(char in prefix for char in "?#") \
            or not prefix.isprintable():
        return
    path = environ.get("PATH_INFO", "")
    script_name = environ.get("SCRIPT_NAME", "")
    if not script_name and (path == prefix or path.startswith(prefix + "/")):
        # The proxy passed the path on unchanged: the prefix is ours to strip.
        environ["PATH_INFO"] = path[len(prefix):]
    environ["SCRIPT_NAME"] = prefix + script_name


def _last(value: str) -> str:
    return value.rsplit(",", 1)[-1].strip()


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_node(text: str) -> tuple[str | None, int | None]:
    """An X-Forwarded-For entry or RFC 7239 §6 node -> (address, port); address None
    for ``unknown``, an obfuscated identifier, or anything malformed."""
    port: str | None = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None, None
        port = rest[1:] or None
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host = text
    address = _parse_ip(host)
    if address is None:
        return None, None
    if port is not None and (not _PORT.fullmatch(port) or int(port) > 65535):
        port = None  # RFC 7239 §6.3 obfuscated port: keep the address
    return str(address), int(port) if port is not None else None


def _parse_forwarded(value: str | None) -> list[dict[str, str]]:
    """RFC 7239 §4: elements separated by commas, pairs by semicolons; values are tokens
    or quoted strings. Malformed -> [] (the header is ignored as a whole)."""
    if not value:
        return []
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    position, length = 0, len(value)
    while True:
        while position < length and value[position] in " \t":
            position += 1
        equals = value.find("=", position)
        if equals < 0:
            return []
        name = value[position:equals].strip().lower()
        if not _TOKEN.fullmatch(name):
            return []
        position = equals + 1
        quoted = _QUOTED.match(value, position)
        if quoted is not None:
            text = re.sub(r"\\(.)", r"\1", quoted.group(1))
            position = quoted.end()
        else:
            token = _TOKEN.match(value, position)
            if token is None:
                return []
            text = token.group(0)
            position = token.end()
        if name in element:
            return []  # §4: a parameter appears at most once per element
        element[name] = text
        while position < length and value[position] in " \t":
            position += 1
        if position >= length:
            elements.append(element)
            return elements
        separator = value[position]
        position += 1
        if separator == ",":
            elements.append(element)
            element = {}
        elif separator != ";":
            return []
