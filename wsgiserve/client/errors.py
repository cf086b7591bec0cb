"""The client's error tree, and its one translator: ``translate_error``.

Every class carries the curl exit status the command line answers with, so ``cli.py``
needs one ``except ClientError``. Socket, ``ssl`` and protocol-core errors become client
errors in ``translate_error`` only; the original exception is kept as ``__cause__``.
"""
from __future__ import annotations

import builtins
import errno
import socket
import ssl
import time
import warnings
from enum import Enum
from typing import TYPE_CHECKING, ClassVar, Final

from wsgiserve.http.errors import IncompleteMessage, LocalProtocolError
from wsgiserve.http.errors import ProtocolError as HttpProtocolError

if TYPE_CHECKING:
    from wsgiserve.http2.errors import Http2Error


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


class RequestTimeout(ClientError, builtins.TimeoutError):
    """A time limit ran out.

    Also a builtin ``TimeoutError`` (so an ``OSError``), as ``socket.timeout`` is: an
    ``except TimeoutError`` around a request catches it. Named ``TimeoutError`` up to 0.1.0;
    that name stays importable from ``wsgiserve.client``, deprecated, for one release.
    """

    exit_code = 28


class ConnectTimeout(RequestTimeout, ConnectError):
    exit_code = 28


class ReadTimeout(RequestTimeout):
    """No byte arrived for ``read_s`` seconds."""


class WriteTimeout(RequestTimeout):
    """The peer accepted no byte for ``write_s`` seconds."""


class TotalTimeout(RequestTimeout):
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


class StreamError(TransportError):
    """The server reset the request's HTTP/2 stream (RST_STREAM), or did not take it.

    ``error_code`` is the RFC 9113 §7 code. ``is_unprocessed``: the server did not process
    the request (REFUSED_STREAM before any response, a stream above the last id of its
    GOAWAY, a connection that takes no more streams), so the pool sends it again on
    another connection, whatever its method, a bounded number of times.
    """

    exit_code = 92  # curl: "Stream error in the HTTP/2 framing layer"

    def __init__(self, message: str, error_code: int, *, is_unprocessed: bool = False):
        super().__init__(message)
        self.error_code = error_code
        self.is_unprocessed = is_unprocessed


class ProtocolError(ClientError):
    """The server's bytes are not valid HTTP/1.1 or HTTP/2; ``__cause__`` is the core's
    error."""

    exit_code = 8  # curl: "Weird server reply"


class IncompleteResponse(ProtocolError):
    """The server closed the connection before the end of the response body."""

    exit_code = 18  # curl: "Partial file"


class TruncatedResponse(IncompleteResponse):
    """A body delimited by the close ended with a TCP close but no TLS close_notify.

    RFC 9112 §9.8: without close_notify the end cannot be told from a truncation attack,
    so the body is not known to be complete.
    """

    exit_code = 56  # recent curl on OpenSSL 3: "unexpected eof while reading", a receive failure


class TooManyRedirects(ClientError):
    exit_code = 47


class HTTPStatusError(ClientError):
    """Raised only when asked (``raise_for_status``, ``--fail``): status 400 or more."""

    exit_code = 22

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class Phase(Enum):
    """What the call that failed was doing: it picks the error class and the message."""

    REQUEST = "request"        # turning the caller's values into bytes: nothing was sent
    TLS_FILES = "load TLS files"
    CONNECT = "connect"
    TLS = "TLS handshake"
    WRITE = "write"
    AWAIT = "await"            # reading, before the first byte of the response
    READ = "read"


_TIMEOUTS: Final[dict[Phase, type[RequestTimeout]]] = {
    Phase.CONNECT: ConnectTimeout, Phase.TLS: ConnectTimeout,
    Phase.WRITE: WriteTimeout, Phase.AWAIT: ReadTimeout, Phase.READ: ReadTimeout,
}
# The class and message of any other OSError, by phase.
_FAILURES: Final[dict[Phase, tuple[type[ClientError], str]]] = {
    Phase.REQUEST: (InvalidRequest, "{where}: {reason}"),
    Phase.TLS_FILES: (TLSError, "cannot load TLS files ({where}): {reason}"),
    Phase.CONNECT: (ConnectError, "failed to connect to {where}: {reason}"),
    Phase.TLS: (TLSError, "{where}: TLS handshake failed: {reason}"),
    Phase.WRITE: (WriteError, "{where}: write failed: {reason}"),
    # On a reused keep-alive connection this is the server's idle timeout (a reset):
    # the pool may retry.
    Phase.AWAIT: (ServerDisconnected, "{where}: the server closed the connection without "
                                      "a response: {reason}"),
    Phase.READ: (ReadError, "{where}: read failed: {reason}"),
}
_CLOSED_WHILE_SENDING: Final = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


def translate_error(exc: OSError | HttpProtocolError | Http2Error, phase: Phase,
                    where: str = "", deadline: float | None = None) -> ClientError:
    """Return the ``ClientError`` for an error of a socket call or of the protocol core.

    The caller raises it ``from exc``, so the original error stays the ``__cause__``.

    Args:
        exc: an ``OSError`` (``ssl.SSLError``, ``socket.gaierror`` and ``socket.timeout``
            included), a ``LocalProtocolError`` (the request would be invalid on the wire)
            or a ``RemoteProtocolError`` (the response is invalid; in ``Phase.REQUEST``, a
            value the caller gave is); the HTTP/2 core's ``Http2UsageError`` (the request
            breaks RFC 9113) or other ``Http2Error`` (the server broke it).
        phase: what the failed call did: it decides between e.g. ``ConnectTimeout`` and
            ``ReadTimeout``.
        where: ``host:port`` (or the files) for the message; empty for protocol errors.
        deadline: the exchange's ``time.monotonic()`` deadline: a timeout at or after it
            is a ``TotalTimeout``.
    """
    prefix = f"{where}: " if where else ""
    if isinstance(exc, LocalProtocolError) or (isinstance(exc, HttpProtocolError)
                                               and phase is Phase.REQUEST):
        return InvalidRequest(prefix + str(exc))
    if not isinstance(exc, (OSError, HttpProtocolError)):
        # The HTTP/2 core's errors; it loads with the first HTTP/2 connection only.
        from wsgiserve.http2.errors import Http2UsageError
        if isinstance(exc, Http2UsageError):
            return InvalidRequest(prefix + str(exc))
        return ProtocolError(f"{prefix}HTTP/2 {exc.code.name}: {exc}")
    if isinstance(exc, IncompleteMessage):
        return IncompleteResponse(prefix + str(exc))
    if isinstance(exc, HttpProtocolError):
        return ProtocolError(prefix + str(exc))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateError(f"{prefix}certificate verification failed: "
                                f"{exc.verify_message or exc.reason}")
    if isinstance(exc, ssl.SSLError) and phase is not Phase.TLS_FILES:
        # reason is set by the ssl module's C code only (not on an SSLError built in Python).
        return TLSError(f"{prefix}TLS error: {getattr(exc, 'reason', None) or exc}")
    if isinstance(exc, socket.gaierror):
        return NameResolutionError(f"could not resolve host {where}: {exc.strerror}")
    if isinstance(exc, builtins.TimeoutError):  # socket.timeout is this class since 3.10
        if deadline is not None and time.monotonic() >= deadline - 0.001:
            return TotalTimeout("the total time limit was reached")
        return _TIMEOUTS.get(phase, RequestTimeout)(f"{prefix}{phase.value} timed out")
    reason = exc.strerror or str(exc) or type(exc).__name__
    if phase is Phase.WRITE and exc.errno in _CLOSED_WHILE_SENDING:
        return WriteError(f"{where}: connection closed by the server while sending: {reason}")
    cls, message = _FAILURES[phase]
    return cls(message.format(where=where, reason=reason))


# Names kept for one release after a rename: old name -> the class it now is.
_DEPRECATED_NAMES: Final[dict[str, type[ClientError]]] = {"TimeoutError": RequestTimeout}

if TYPE_CHECKING:
    TimeoutError = RequestTimeout  # deprecated: see deprecated_name()


def deprecated_name(module: str, name: str) -> type[ClientError]:
    """Return the class an old name stands for, with a ``DeprecationWarning`` (the module
    ``__getattr__`` of ``errors`` and of ``wsgiserve.client``).

    Raises:
        AttributeError: ``name`` is not a deprecated name either.
    """
    try:
        cls = _DEPRECATED_NAMES[name]
    except KeyError:
        raise AttributeError(f"module {module!r} has no attribute {name!r}") from None
    # stacklevel 3: the caller of the module's __getattr__ (the import or attribute access).
    warnings.warn(f"{module}.{name} is deprecated and goes in the next release: use "
                  f"{cls.__name__}", DeprecationWarning, stacklevel=3)
    return cls


def __getattr__(name: str) -> type[ClientError]:
    return deprecated_name(__name__, name)
