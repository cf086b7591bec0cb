"""URLs as the client needs them: origin (scheme, host, port), request target, Host value.

Pure functions over ``str``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from urllib.parse import urljoin, urlsplit

from wsgiserve.client.errors import InvalidURL

DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    """RFC 6454 origin: the pool key and the unit of "same site" for credentials."""

    scheme: str
    host: str      # lowercase, IPv6 literals without brackets
    port: int

    @property
    def is_tls(self) -> bool:
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        """``host[:port]`` for Host and CONNECT, the port left out when it is the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if DEFAULT_PORTS[self.scheme] == self.port:
            return host
        return f"{host}:{self.port}"

    @property
    def host_port(self) -> str:
        """``host:port`` always with the port (CONNECT's authority-form, messages)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class URL:
    origin: Origin
    target: str          # origin-form: path (at least "/") and query, no fragment
    userinfo: str | None
    text: str            # the URL without its fragment

    @property
    def scheme(self) -> str:
        return self.origin.scheme


@lru_cache(maxsize=512)  # pure and hot: a keep-alive loop asks for the same URLs again
def parse_url(text: str) -> URL:
    """Split an absolute http(s) URL.

    The path and query are kept as given (percent-encoding untouched); the fragment is
    dropped (RFC 9112 §3.2.1: origin-form has none); an empty path becomes ``/``.

    Raises:
        InvalidURL: not http or https, no host, or a bad port.
    """
    if "://" not in text:
        # curl's habit: a bare host means http.
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidURL(f"unsupported URL scheme {parts.scheme!r} in {text!r}")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid port in {text!r}") from exc
    if not host:
        raise InvalidURL(f"no host in {text!r}")
    if any(c in text for c in "\r\n\x00 "):
        raise InvalidURL(f"invalid character in URL {text!r}")
    target = parts.path or "/"
    if parts.query or text.split("#", 1)[0].endswith("?"):
        target += "?" + parts.query
    userinfo = parts.netloc.rpartition("@")[0] or None
    without_fragment = text.split("#", 1)[0]
    origin = Origin(scheme, host.lower(), port if port is not None else DEFAULT_PORTS[scheme])
    return URL(origin, target, userinfo, without_fragment)


def join_url(base: str, location: str) -> str:
    """Resolve a Location value against the URL it answered (RFC 3986 §5.2).

    RFC 9110 §10.2.2: a Location without a fragment inherits the request's fragment;
    fragments are never sent, so it is simply dropped here.
    """
    return urljoin(base, location.strip()).split("#", 1)[0]
