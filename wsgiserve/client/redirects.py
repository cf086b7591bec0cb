"""What the next request is after a redirect: RFC 9110 §15.4 method rules, credentials.

Pure functions. 303 turns any method but HEAD into GET; 301 and 302 turn POST into GET
(what every browser does, RFC 9110 §15.4.2-3 allow it); 307 and 308 keep the method and
the body. Credentials never cross to another origin.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from wsgiserve.client.errors import InvalidURL
from wsgiserve.client.url import DEFAULT_PORTS, join_url, parse_url

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
# Fields that describe the content: dropped with it when the redirect turns into GET.
_CONTENT_FIELDS: Final = frozenset({
    "content-length", "content-type", "content-encoding", "content-language",
    "content-location", "transfer-encoding", "expect", "digest", "content-digest",
})
# Fields that carry the user's identity for one origin (RFC 9110 §11.6.2, RFC 6265);
# also Host, which a caller may have set for the first origin only.
_ORIGIN_BOUND_FIELDS: Final = frozenset({
    "authorization", "cookie", "proxy-authorization", "host",
})


@dataclass(frozen=True, slots=True)
class RedirectStep:
    """The request to send next."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    keeps_body: bool


def next_request(method: str, url: str, headers: list[tuple[str, str]], status: int,
                 location: str) -> RedirectStep:
    """Return the request a redirect asks for.

    Args:
        method, url, headers: the request that was answered.
        status: one of ``REDIRECT_STATUSES``.
        location: the Location field value, relative or absolute.

    Raises:
        InvalidURL: the Location is not an http(s) URL.
    """
    new_url = join_url(url, location)
    scheme = new_url.partition(":")[0].lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidURL(f"redirect to an unsupported URL {new_url[:100]!r}")
    keeps_body = True
    new_method = method
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        new_method, keeps_body = "GET", False
    new_headers = headers
    if not keeps_body:
        new_headers = [(n, v) for n, v in new_headers if n.lower() not in _CONTENT_FIELDS]
    if not is_same_origin(url, new_url):
        new_headers = [(n, v) for n, v in new_headers if n.lower() not in _ORIGIN_BOUND_FIELDS]
    return RedirectStep(new_method, new_url, new_headers, keeps_body)


def is_same_origin(first: str, second: str) -> bool:
    """RFC 6454: same scheme, host and port."""
    return parse_url(first).origin == parse_url(second).origin
