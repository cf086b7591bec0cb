"""wsgiserve's HTTP/1.1 and HTTP/2 client: a blocking connection pool on the sans-IO cores.

The public API is what ``__all__`` names; every other module here is internal::

    with Pool() as pool:
        response = pool.request("GET", "https://example.org/")
        for piece in response:          # or response.read()
            ...
        response.trailers               # set once the body has ended

WebSockets: ``connect_websocket(url)`` (``wsgiserve.client.websocket.connect``) returns a
``WebSocket``; the subpackage ``wsgiserve.client.websocket`` holds its API and errors.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from wsgiserve.client.body import BodyValue, RequestBody
from wsgiserve.client.connection import Connection, ConnectionState
from wsgiserve.client.errors import (
    CertificateError,
    ClientError,
    ConnectError,
    ConnectTimeout,
    HTTPStatusError,
    IncompleteResponse,
    InvalidRequest,
    InvalidURL,
    NameResolutionError,
    ProtocolError,
    ProxyError,
    ReadError,
    ReadTimeout,
    RequestTimeout,
    ServerDisconnected,
    StreamError,
    TLSError,
    TooManyRedirects,
    TotalTimeout,
    TransportError,
    TruncatedResponse,
    WriteError,
    WriteTimeout,
    deprecated_name,
)
from wsgiserve.client.negotiation import HttpVersion
from wsgiserve.client.pool import Headers, Pool
from wsgiserve.client.proxy import Proxy
from wsgiserve.client.response import Response
from wsgiserve.client.timeouts import Timeouts
from wsgiserve.client.tls import TLSSettings, create_client_context
from wsgiserve.client.websocket import (
    HandshakeRefused,
    InvalidHandshake,
    WebSocket,
    WebSocketClosed,
    WebSocketClosedOK,
)
from wsgiserve.client.websocket import connect as connect_websocket
from wsgiserve.http.events import InformationalResponse

__all__ = [
    "BodyValue", "CertificateError", "ClientError", "ConnectError", "ConnectTimeout",
    "Connection", "ConnectionState", "HTTPStatusError", "Headers", "IncompleteResponse",
    "InformationalResponse", "InvalidRequest", "InvalidURL", "NameResolutionError", "Pool",
    "ProtocolError", "Proxy", "ProxyError", "ReadError", "ReadTimeout", "RequestBody",
    "RequestTimeout", "Response", "ServerDisconnected", "TLSError", "TLSSettings",
    "HttpVersion", "StreamError",
    "Timeouts", "TooManyRedirects", "TotalTimeout", "TransportError", "TruncatedResponse",
    "WriteError", "WriteTimeout", "create_client_context", "request",
    # WebSockets (wsgiserve.client.websocket)
    "HandshakeRefused", "InvalidHandshake", "WebSocket", "WebSocketClosed", "WebSocketClosedOK",
    "connect_websocket",
]

if TYPE_CHECKING:
    from wsgiserve.client.errors import TimeoutError as TimeoutError  # deprecated alias


def __getattr__(name: str) -> object:
    # ``TimeoutError``, RequestTimeout's old name, still imports (with a DeprecationWarning)
    # until the next release; it is left out of __all__ so that ``import *`` no longer
    # shadows the builtin.
    return deprecated_name(__name__, name)


def request(method: str, url: str, **options: object) -> Response:
    """Send one request on a fresh pool and return the response with its body read.

    Takes the keyword arguments of ``Pool.request``; for streaming or connection reuse,
    use a ``Pool``.
    """
    with Pool() as pool:
        response = pool.request(method, url, **options)  # type: ignore[arg-type]  # forwarded as is
        response.read()
        return response
