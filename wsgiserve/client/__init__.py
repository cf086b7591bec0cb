"""wsgiserve's HTTP/1.1 client: a blocking connection pool on the shared sans-IO core.

The public API is what ``__all__`` names; every other module here is internal::

    with Pool() as pool:
        response = pool.request("GET", "https://example.org/")
        for piece in response:          # or response.read()
            ...
        response.trailers               # set once the body has ended
"""
from __future__ import annotations

from wsgiserve.client.body import BodyValue, RequestBody
from wsgiserve.client.connection import Connection, ConnectionState, Proxy, Timeouts
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
    ServerDisconnected,
    TimeoutError,
    TLSError,
    TooManyRedirects,
    TotalTimeout,
    TransportError,
    WriteError,
    WriteTimeout,
)
from wsgiserve.client.pool import Headers, Pool
from wsgiserve.client.response import Response
from wsgiserve.client.tls import TLSSettings, create_client_context
from wsgiserve.http.events import InformationalResponse

__all__ = [
    "BodyValue", "CertificateError", "ClientError", "ConnectError", "ConnectTimeout",
    "Connection", "ConnectionState", "HTTPStatusError", "Headers", "IncompleteResponse",
    "InformationalResponse", "InvalidRequest", "InvalidURL", "NameResolutionError", "Pool",
    "ProtocolError", "Proxy", "ProxyError", "ReadError", "ReadTimeout", "RequestBody",
    "Response", "ServerDisconnected", "TLSError", "TLSSettings", "TimeoutError",
    "Timeouts", "TooManyRedirects", "TotalTimeout", "TransportError", "WriteError",
    "WriteTimeout", "create_client_context", "request",
]


def request(method: str, url: str, **options: object) -> Response:
    """Send one request on a fresh pool and return the response with its body read.

    Takes the keyword arguments of ``Pool.request``; for streaming or connection reuse,
    use a ``Pool``.
    """
    with Pool() as pool:
        response = pool.request(method, url, **options)  # type: ignore[arg-type]  # forwarded as is
        response.read()
        return response
