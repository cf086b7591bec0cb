"""Adapter for an external parser benchmark's --impl option: parse one head with wsgiserve."""
from __future__ import annotations

from wsgiserve.http import Request, RequestParser
from wsgiserve.http.caches import FieldNameCache

# Shared by every parse, as a worker shares it among its connections (no head cache: the
# probe measures parsing).
NAMES = FieldNameCache()


def parse_head(head: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    parser = RequestParser(name_cache=NAMES)
    parser.feed(head)
    event = parser.next_event()
    assert isinstance(event, Request)
    return event.method, event.target, event.headers.fields
