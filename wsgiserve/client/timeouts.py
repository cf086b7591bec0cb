"""The client's time limits: ``Timeouts`` (what a caller sets, per pool or per request)
and ``limit_timeout`` (one wait bounded by both its own limit and the exchange's
deadline).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from wsgiserve.client.errors import TotalTimeout


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Time limits in seconds; None means no limit.

    ``read_s`` and ``write_s`` bound each wait for the socket; ``total_s`` bounds a whole
    exchange (connect, request, redirects, and the body). ``expect_continue_s`` is how long
    a request with ``Expect: 100-continue`` holds its body back (curl waits 1 s).
    """

    connect_s: float | None = 10.0
    read_s: float | None = 60.0
    write_s: float | None = 60.0
    total_s: float | None = None
    expect_continue_s: float = 1.0


def limit_timeout(timeout_s: float | None, deadline: float | None) -> float | None:
    """The smaller of a per-operation timeout and what is left before ``deadline``.

    Raises:
        TotalTimeout: the deadline has passed.
    """
    if deadline is None:
        return timeout_s
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TotalTimeout("the total time limit was reached")
    return remaining if timeout_s is None else min(timeout_s, remaining)
