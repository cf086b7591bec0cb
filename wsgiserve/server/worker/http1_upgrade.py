"""An HTTP/1.1 request that asks to upgrade: the app runs with the upgrade offered
(``upgrade.offer_upgrade``), then answers through it (a 101 to WebSocket, a rejection, or
a library that took the socket) or as to any request. ``serve_upgrade`` runs the app and
says which; ``record_upgrade`` logs and counts an answer given through the upgrade.
"""
from __future__ import annotations

import logging
import time

from wsgiserve.http import RequestParser
from wsgiserve.server.counters import WEBSOCKET
from wsgiserve.server.worker.context import ServerContext
from wsgiserve.server.worker.exchange import Exchange, Pump
from wsgiserve.server.worker.http1_errors import count_request
from wsgiserve.server.worker.transport import Transport
from wsgiserve.server.worker.upgrade import ANSWERED, HIJACKED, WebSocketUpgrade, offer_upgrade
from wsgiserve.server.worker.websocket_api import WebSocketClosed
from wsgiserve.websocket import HandshakeError

__all__ = ["record_upgrade", "serve_upgrade"]

_log = logging.getLogger(__name__)


def serve_upgrade(exchange: Exchange, transport: Transport, context: ServerContext,
                  parser: RequestParser, owner: object) -> WebSocketUpgrade | Pump:
    """Run the app for a request that asks to upgrade. For WebSocket it finds the native
    API and (a valid upgrade) gunicorn.socket in its environ.

    Args:
        parser: the connection's; what it read after the head goes to the WebSocket.
        owner: the key of the request's ``context.in_app`` entry (the protocol).
    Returns:
        The upgrade, when the app answered through it (its ``result`` says how; it
        answered 503 without calling the app if no more WebSockets are allowed); else
        what the exchange reported (``Exchange.pump`` or ``Exchange.fail``): the answer
        goes out as usual, and the connection closes after it (bytes after the head are
        never parsed as a request).
    """
    environ = exchange.environ

    def early_data() -> bytes:
        """Bytes read after the upgrade request's head (frames sent with the handshake)."""
        return parser.trailing_data  # no longer parsed: the connection ends after

    def leave_app_accounting() -> None:
        """A WebSocket's WSGI call may last as long as the socket: no hung-worker timer."""
        context.in_app.pop(owner, None)

    upgrade = offer_upgrade(exchange, transport, context, early_data, leave_app_accounting)
    if upgrade is not None and upgrade.result is not None:
        return upgrade  # refused before the app (503)
    hooks = context.hooks
    context.in_app[owner] = exchange.started
    try:
        if "pre_request" in hooks:
            hooks["pre_request"](context.worker, environ)
        exchange.result = context.app(
            environ, exchange.start_response if upgrade is None else upgrade.start_response)
    except Exception as exc:  # noqa: BLE001 - the app boundary: log, answer 500
        if upgrade is None or upgrade.result is None:
            return exchange.fail(exc)
        # StopIteration: how simple-websocket ends a call whose socket it took.
        if not isinstance(exc, (StopIteration, HandshakeError, WebSocketClosed)):
            _log.error("Error in the WebSocket app of %s", transport.remote_addr,
                       exc_info=exc)
            if upgrade.websocket is not None:
                upgrade.websocket.close(1011)  # RFC 6455 §7.4.1: an unexpected condition
    if upgrade is None or upgrade.result is None:
        if upgrade is not None:
            exchange.should_close = True
        return exchange.pump()
    return upgrade


def record_upgrade(exchange: Exchange, upgrade: WebSocketUpgrade, context: ServerContext,
                   parser: RequestParser) -> None:
    """Log and count a request the app answered through its upgrade."""
    result = upgrade.result
    metrics = context.metrics
    if result is HIJACKED:
        context.hijacked.discard(upgrade.hijacked)
        exchange.status_code = 101  # what the library answered, as far as we know
        if context.access_log is not None:
            exchange.log_access()
        if metrics is not None:  # the handshake is the request; its call, the socket's life
            metrics.request_done(WEBSOCKET, exchange.request.method,
                                 time.monotonic() - exchange.started, 101, 0, 0)
    elif result is ANSWERED:
        exchange.status_code = upgrade.status
        if context.access_log is not None:
            exchange.log_access()
        if metrics is not None:
            count_request(context, parser, exchange, upgrade.status)
    elif metrics is not None:  # the 101 went: the handshake is the WebSocket's request
        metrics.request_done(WEBSOCKET, exchange.request.method,
                             time.monotonic() - exchange.started, 101, 0, 0)
