"""The client's error tree, and the one place where ``OSError`` and ``ssl`` errors become it.

Every class carries the curl exit status the command line answers with, so ``cli.py``
needs one ``except ClientError``. ``translate_os_errors`` wraps socket calls in
``connection.py``; the original exception is always kept as ``__cause__``.
"""
from __future__ import annotations

import builtins
import errno
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import ClassVar

from wsgiserve.http.errors import IncompleteMessage, RemoteProtocolError


class ClientError(Exception):
    """Base of every error the client raises."""

    # curl's exit status for the same failure (man curl, "EXIT CODES").
    exit_code: ClassVar[int] = 1


class InvalidURL(ClientError, ValueError):
    """The URL cannot be requested (unsupported scheme, no host, bad port)."""

    exit_code = 3


class InvalidRequest(ClientError, ValueError):
    """The request would be invalid on the wire (a CR or LF in a header, a bad method)."""

    exit_code = 2


class ConnectError(ClientError):
    """No connection could be made (refused, unreachable, reset during connect)."""

    exit_code = 7


class NameResolutionError(ConnectError):
    """The host name could not be resolved."""

    exit_code = 6


class ProxyError(ConnectError):
    """The proxy refused the CONNECT tunnel or could not be reached."""

    exit_code = 56


class TimeoutError(ClientError):  # noqa: A001 - the client's own timeout family
    """A time limit ran out. Not the builtin ``TimeoutError``, which is an ``OSError``."""

    exit_code = 28


class ConnectTimeout(TimeoutError, ConnectError):
    exit_code = 28


class ReadTimeout(TimeoutError):
    """No byte arrived for ``read_s`` seconds."""


class WriteTimeout(TimeoutError):
    """The peer accepted no byte for ``write_s`` seconds."""


class TotalTimeout(TimeoutError):
    """The whole exchange (connect, request, response, redirects) took over ``total_s``."""


class TLSError(ConnectError):
    """The TLS handshake failed."""

    exit_code = 35


class CertificateError(TLSError):
    """The server's certificate could not be verified (untrusted, expired, wrong name)."""

    exit_code = 60


class TransportError(ClientError):
    """The connection failed after it was established (reset, broken pipe)."""

    exit_code = 56


class ReadError(TransportError):
    exit_code = 56


class WriteError(TransportError):
    exit_code = 55


class ServerDisconnected(TransportError):
    """The server closed the connection before sending any byte of a response.

    On a reused keep-alive connection this is the race where the server timed the
    connection out while it was idle; the pool retries idempotent requests once.
    """

    exit_code = 52  # curl: "Empty reply from server"


class ProtocolError(ClientError):
    """The server's bytes are not valid HTTP/1.1; ``__cause__`` is the core's error."""

    exit_code = 8  # curl: "Weird server reply"


class IncompleteResponse(ProtocolError):
    """The server closed the connection before the end of the response body."""

    exit_code = 18  # curl: "Partial file"


class TooManyRedirects(ClientError):
    exit_code = 47


class HTTPStatusError(ClientError):
    """Raised only when asked (``raise_for_status``, ``--fail``): status 400 or more."""

    exit_code = 22

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class Phase(Enum):
    """What the socket call being translated was doing: it picks the error class."""

    CONNECT = "connect"
    TLS = "tls"
    WRITE = "write"
    READ = "read"


_TIMEOUTS: dict[Phase, type[TimeoutError]] = {
    Phase.CONNECT: ConnectTimeout, Phase.TLS: ConnectTimeout,
    Phase.WRITE: WriteTimeout, Phase.READ: ReadTimeout,
}
_FAILURES: dict[Phase, type[ClientError]] = {
    Phase.CONNECT: ConnectError, Phase.TLS: TLSError,
    Phase.WRITE: WriteError, Phase.READ: ReadError,
}


def translate_protocol_error(exc: RemoteProtocolError) -> ProtocolError:
    """Return the client error for an error of the protocol core (the caller raises it)."""
    if isinstance(exc, IncompleteMessage):
        error: ProtocolError = IncompleteResponse(str(exc))
    else:
        error = ProtocolError(str(exc))
    error.__cause__ = exc
    return error


def translate_os_error(exc: OSError, phase: Phase, where: str) -> ClientError:
    """Return the ``ClientError`` for an ``OSError`` (``ssl.SSLError`` and ``socket.gaierror``
    included); the caller raises it ``from exc`` so the OS error stays the cause.

    Args:
        phase: what the failed call did; decides between e.g. ``ConnectTimeout`` and
            ``ReadTimeout``.
        where: ``host:port`` for the message.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateError(f"{where}: certificate verification failed: "
                                f"{exc.verify_message or exc.reason}")
    if isinstance(exc, ssl.CertificateError):  # hostname mismatch on older OpenSSL paths
        return CertificateError(f"{where}: {exc}")
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"{where}: TLS error: {exc.reason or exc}")
    if isinstance(exc, socket.gaierror):
        return NameResolutionError(f"could not resolve host {where}: {exc.strerror}")
    if isinstance(exc, builtins.TimeoutError):  # socket.timeout is this class since 3.10
        return _TIMEOUTS[phase](f"{where}: {phase.value} timed out")
    return _os_error(phase, where, exc)


@contextmanager
def translate_os_errors(phase: Phase, where: str) -> Iterator[None]:
    """Raise the ``translate_os_error`` of an ``OSError`` raised inside the block."""
    try:
        yield
    except OSError as exc:
        raise translate_os_error(exc, phase, where) from exc


def _os_error(phase: Phase, where: str, exc: OSError) -> ClientError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if phase is Phase.CONNECT:
        return ConnectError(f"failed to connect to {where}: {reason}")
    if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED) \
            and phase is Phase.WRITE:
        return WriteError(f"{where}: connection closed by the server while sending: {reason}")
    return _FAILURES[phase](f"{where}: {phase.value} failed: {reason}")
