"""Memory of work that depends only on bytes clients repeat: one ``RequestHeadCache``
per set of parsers that share their limits (a server worker owns one for all its
connections), and a ``FieldListCache`` for what an HTTP/2 header list becomes.

Most clients send the same head again and again (a health check, an API client polling
one endpoint, a load generator, a browser reloading a page), and a request head's parse
depends on nothing but its bytes and the limits. A hit costs one hash of the head (C
speed, SipHash: no collision flooding) and a dict lookup instead of the parse.
"""
from __future__ import annotations

from typing import Any, Final

from wsgiserve.http.events import Request
from wsgiserve.http.headers import FieldShape

__all__ = ["FieldListCache", "FieldNameCache", "RequestHeadCache"]

# Bounds: the cache is emptied when full (a client sending ever new heads costs one
# insert per request and never memory: at most MAX_ENTRIES * MAX_HEAD_BYTES, 512 KiB).
MAX_ENTRIES: Final = 256
MAX_HEAD_BYTES: Final = 2048


class FieldNameCache:
    """Sequences of raw field names already checked: their lowercased names (one tuple,
    shared by every head that has them) and their ``FieldShape``, by the names joined
    with LF. Clients send the same names in the same order on every request, so the
    token check, the lowering and the lookups run once per sequence. Bounded like
    ``RequestHeadCache``. Measured on a 12-field browser GET: 16.0 us a parse without it,
    11.3 us with it (``benchmarks/parse_bench.py``'s "new names" column).
    """

    __slots__ = ("_sequences",)

    def __init__(self) -> None:
        self._sequences: dict[bytes, tuple[tuple[bytes, ...], FieldShape]] = {}

    def __len__(self) -> int:
        return len(self._sequences)

    def get(self, joined: bytes) -> tuple[tuple[bytes, ...], FieldShape] | None:
        return self._sequences.get(joined)

    def put(self, joined: bytes, seen: tuple[tuple[bytes, ...], FieldShape]) -> None:
        sequences = self._sequences
        if len(sequences) >= MAX_ENTRIES:
            sequences.clear()
        sequences[joined] = seen


class RequestHeadCache:
    """``Request`` events by the exact bytes of their head (request line and fields).

    The events are shared by every request with those bytes: their readers must treat
    them as immutable (the server does). Share one cache only among parsers with the same
    limits: a head is stored once it passed the limits of the parser that read it.
    Measured on wrk's 1-field GET, feeding it and taking its events: 50,300 instructions
    a request without the cache, 18,800 on a hit.
    """

    __slots__ = ("_requests",)

    def __init__(self) -> None:
        self._requests: dict[bytes, Request] = {}

    def __len__(self) -> int:
        return len(self._requests)

    def get(self, head: bytes) -> Request | None:
        return self._requests.get(head)

    def put(self, head: bytes, request: Request) -> None:
        if len(head) > MAX_HEAD_BYTES:
            return
        requests = self._requests
        if len(requests) >= MAX_ENTRIES:
            requests.clear()
        requests[head] = request


class FieldListCache:
    """Whatever a caller derives from an HTTP/2 request's header list (the server: its
    ``Request`` event, so that its environ is built once), by the list's contents.

    Bounded like ``RequestHeadCache``: lists over MAX_HEAD_BYTES are not kept.
    """

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[tuple[Any, ...], Any] = {}

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: tuple[Any, ...]) -> Any:
        return self._values.get(key)

    def put(self, key: tuple[Any, ...], value: Any, size: int) -> None:
        """``size``: the bytes the key's fields hold."""
        if size > MAX_HEAD_BYTES:
            return
        values = self._values
        if len(values) >= MAX_ENTRIES:
            values.clear()
        values[key] = value
