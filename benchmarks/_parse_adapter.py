"""Adapter for ../shared/probes/parse_bench.py --impl: parse one head with wsgiserve."""
from __future__ import annotations

from wsgiserve.http import RequestParser, Request


def parse_head(head: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    parser = RequestParser()
    parser.feed(head)
    event = parser.next_event()
    assert isinstance(event, Request)
    return event.method, event.target, event.headers.fields
