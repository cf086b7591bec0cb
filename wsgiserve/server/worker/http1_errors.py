"""The answers an HTTP/1.1 connection gives by itself before it closes: 4xx for a bad
request, 408 for a slow client, 500 for a failed app, 503 while shedding load. Each is
logged and counted here and returned as the bytes to send; the protocol then sends them
and closes (``closing.send_final``).
"""
from __future__ import annotations

import logging
import time
from typing import Final

from wsgiserve.http import RemoteProtocolError, Request, RequestParser
from wsgiserve.http.framing import NO_BODY
from wsgiserve.server.counters import HTTP1
from wsgiserve.server.worker.context import ServerContext
from wsgiserve.server.worker.exchange import Exchange
from wsgiserve.server.worker.heads import error_response

__all__ = ["count_failed", "count_request", "error_answer", "failure_answer",
           "reject_answer", "shed_answer"]

_log = logging.getLogger(__name__)

# Reasons for the errors the server answers itself; a RemoteProtocolError carries its own.
_REASONS: Final = {400: "Bad Request", 408: "Request Timeout", 500: "Internal Server Error"}


def error_answer(context: ServerContext, status: int, message: str, method: bytes | None,
                 reason: str = "") -> bytes:
    """A 400, 408 or 500 (or ``reason``'s status) with ``message`` as its body."""
    return error_response(status, reason or _REASONS[status], message, method=method,
                          date_line=context.dates.line())


def reject_answer(context: ServerContext, exc: RemoteProtocolError, remote_addr: str) -> bytes:
    """The answer to an invalid request (the status ``exc`` carries), logged and counted."""
    _log.debug("invalid request from %s: %s", remote_addr, exc)
    if context.metrics is not None:
        context.metrics.protocol_error(HTTP1, exc.status)
    return error_answer(context, exc.status, str(exc), exc.method, exc.reason)


def shed_answer(context: ServerContext, request: Request, remote_addr: str) -> bytes:
    """503 with Retry-After for a request shed unserved (load shedding), counted."""
    _log.debug("request from %s shed: every thread busy", remote_addr)
    metrics = context.metrics
    if metrics is not None:
        metrics.request_shed()
        metrics.request_done(HTTP1, request.method, 0.0, 503, 0, 0)
    return error_response(
        503, "Service Unavailable", "the server is busy: retry later",
        method=request.method, date_line=context.dates.line(),
        headers=[("Retry-After", "1")])


def failure_answer(context: ServerContext, exchange: Exchange, exc: BaseException,
                   remote_addr: str) -> bytes | None:
    """The answer to an exchange that failed with ``exc`` (counted by ``count_failed``).

    Returns:
        The bytes to send before closing; None to abort the connection at once (the head
        went out already, or the client is gone).
    """
    if isinstance(exc, RemoteProtocolError):
        # The body the app was reading was invalid, too large, or cut short.
        _log.debug("bad request body from %s: %s", remote_addr, exc)
        if exchange.head_sent:
            return None
        if exc.method is None:
            exc.method = exchange.request.method
        return reject_answer(context, exc, remote_addr)
    if isinstance(exc, ConnectionError):
        _log.debug("client %s went away: %s", remote_addr, exc)
        return None
    method = exchange.request.method
    if isinstance(exc, TimeoutError) and not exchange.head_sent:
        _log.debug("client %s timed out: %s", remote_addr, exc)
        return error_answer(context, 408, "request timed out", method)
    _log.error("Error handling request %s %s", method.decode("ascii"),
               exchange.request.target.decode("latin-1")[:200], exc_info=exc)
    if exchange.head_sent:
        # Too late for a 500: abort so the client sees a truncated response.
        return None
    exchange.status_code = 500
    exchange.log_access()
    return error_answer(context, 500, "Internal Server Error", method)


# -- metrics (context.metrics is set) -------------------------------------------------------
def count_request(context: ServerContext, parser: RequestParser, exchange: Exchange,
                  status: int, now: float = 0.0) -> None:
    """Count a request whose response went out with ``status``, with its body bytes as far
    as they arrived; ``now``: the monotonic time, if the caller has it."""
    metrics = context.metrics
    assert metrics is not None
    request = exchange.request
    framing = request.framing
    writer = exchange.writer
    metrics.request_done(
        HTTP1, request.method, (now or time.monotonic()) - exchange.started, status,
        0 if framing is NO_BODY else parser.body_bytes_received(framing),
        writer.bytes_written if writer is not None else 0)


def count_failed(context: ServerContext, parser: RequestParser, exchange: Exchange,
                 exc: BaseException) -> None:
    """Count a failed exchange with the status ``failure_answer`` answers: the head's if it
    went out, else 4xx for a bad or slow body, 500 for an app error. A client gone before
    any answer is not counted (no status was sent)."""
    metrics = context.metrics
    assert metrics is not None
    if exchange.head_sent:
        count_request(context, parser, exchange, exchange.status_code)
    elif isinstance(exc, RemoteProtocolError):
        count_request(context, parser, exchange, exc.status)  # reject_answer counts the error
    elif isinstance(exc, TimeoutError):
        count_request(context, parser, exchange, 408)
        metrics.protocol_error(HTTP1, 408)
    elif not isinstance(exc, ConnectionError):
        count_request(context, parser, exchange, 500)
