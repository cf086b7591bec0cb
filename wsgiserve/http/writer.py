"""Bytes for heads and bodies we send, in either role, framed by ``framing.Framing``.

The writer refuses to emit invalid bytes: a CR, LF, NUL or other control character in a
header name or value handed over by an application is a ``LocalProtocolError``, never a
header injection on the wire. Both roles: responses and requests.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from wsgiserve.http.errors import LocalProtocolError
from wsgiserve.http.framing import BodyKind, Framing
from wsgiserve.http.headers import BAD_VALUE_STR_RE, NOT_FIELD_VALUE, TCHAR, TOKEN_STR_RE

_NAMES_RE: Final = re.compile("(?:[" + TCHAR.decode("ascii") + "]+\x00)*")
_VALUE_STR: Final = "[^" + NOT_FIELD_VALUE.decode("ascii") + "]"
_STATUS_RE: Final = re.compile(r"[1-9][0-9][0-9](?: " + _VALUE_STR + "*)?")
_TARGET_RE: Final = re.compile(r"[^\x00-\x20\x7f-\uffff]+")

Fields = Sequence[tuple[str, str]]
# Enum members as module names (Python 3.11's Enum attribute lookup is slow: see reader.py).
_NONE, _LENGTH, _CHUNKED = BodyKind.NONE, BodyKind.LENGTH, BodyKind.CHUNKED


def check_fields(headers: Fields) -> None:
    """Raise ``LocalProtocolError`` unless every name is a token and every value clean."""
    names = "\x00".join([name for name, _ in headers])
    if headers and _NAMES_RE.fullmatch(names + "\x00") is None:
        bad = next(name for name, _ in headers if TOKEN_STR_RE.fullmatch(name) is None)
        raise LocalProtocolError(f"invalid header name {bad!r}")
    values = "".join([value for _, value in headers])
    if BAD_VALUE_STR_RE.search(values) is not None:
        bad = next(v for _, v in headers if BAD_VALUE_STR_RE.search(v) is not None)
        raise LocalProtocolError(f"invalid character in header value {bad[:60]!r}")


# One line per field; the value class excludes CR and LF one by one, so a value that
# smuggles "\r\nX: y" can only pass as an extra line, which the line count then catches.
_FIELD_BLOCK_STR_RE: Final = re.compile(
    "(?:[" + TCHAR.decode("ascii") + "]+: " + _VALUE_STR + "*\r\n)*")


def _encode_fields(headers: Fields) -> str:
    block = "".join([f"{name}: {value}\r\n" for name, value in headers])
    # The block check cannot tell a name "X-A: b" from a name "X-A" with a value starting
    # "b: ", so the names are checked on their own too.
    names = "".join([name + "\x00" for name, _ in headers])
    if block.count("\r\n") != len(headers) or _FIELD_BLOCK_STR_RE.fullmatch(block) is None \
            or _NAMES_RE.fullmatch(names) is None:
        check_fields(headers)  # says which field is wrong
        raise LocalProtocolError("invalid header field")
    return block


def encode_response_head(status: str, headers: Fields, http_version: str = "1.1") -> bytes:
    """Return the head of a response: status line, fields, blank line.

    Args:
        status: a WSGI status string, ``"200 OK"``.
        headers: (name, value) pairs of latin-1 str, as WSGI hands them over.

    Raises:
        LocalProtocolError: the status or a field is invalid; nothing was produced.
    """
    if _STATUS_RE.fullmatch(status) is None:
        raise LocalProtocolError(f"invalid status {status[:60]!r}")
    if len(status) == 3:
        status += " "  # RFC 9112 §4: the SP after the status code is not optional
    try:
        return f"HTTP/{http_version} {status}\r\n{_encode_fields(headers)}\r\n".encode("latin-1")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError("a header is not latin-1 text") from exc


def encode_request_head(method: str, target: str, headers: Fields,
                        http_version: str = "1.1") -> bytes:
    """Return the head of a request: request line, fields, blank line.

    Raises:
        LocalProtocolError: the method, target or a field is invalid.
    """
    if TOKEN_STR_RE.fullmatch(method) is None:
        raise LocalProtocolError(f"invalid method {method[:40]!r}")
    if _TARGET_RE.fullmatch(target) is None:
        raise LocalProtocolError(f"invalid request target {target[:60]!r}")
    text = f"{method} {target} HTTP/{http_version}\r\n{_encode_fields(headers)}\r\n"
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError("a header is not latin-1 text") from exc


class BodyWriter:
    """Frames body bytes for one message.

    ``write`` returns the bytes to send for a piece of body (with NONE framing, nothing:
    a body for HEAD, 204 or 304 is dropped); ``end`` returns the closing bytes.

    A Content-Length body that gets more bytes than declared, or ends short, is a bug of
    whoever produces the body. By default that raises ``LocalProtocolError`` (nothing is
    produced for that call). With ``keep_declared_length`` the writer applies the server's
    policy instead: send what was declared, then close. Excess bytes are dropped and a short
    body is left short; ``has_broken_length`` then tells the caller to close the
    connection, so the bytes that follow can never be read as the next message.
    """

    __slots__ = ("framing", "_kind", "_remaining", "bytes_written", "_keep_declared_length",
                 "has_broken_length")

    def __init__(self, framing: Framing, *, keep_declared_length: bool = False):
        self.framing = framing
        self._kind = framing.kind
        self._remaining = framing.length
        self.bytes_written = 0      # body bytes, before framing
        self._keep_declared_length = keep_declared_length
        self.has_broken_length = False

    @property
    def remaining(self) -> int:
        """Bytes still owed to a Content-Length body."""
        return self._remaining

    def write(self, data: bytes) -> bytes:
        size = len(data)
        if not size:
            return b""
        kind = self._kind
        if kind is _CHUNKED:
            self.bytes_written += size
            return b"%x\r\n%b\r\n" % (size, data)
        if kind is _NONE:
            return b""
        if kind is _LENGTH and size > self._remaining and self._keep_declared_length:
            self.has_broken_length = True
            data = data[:self._remaining]
            size = len(data)
        self.account(size)  # Content-Length or close-delimited: the bytes go out as they are
        return data

    def account(self, size: int) -> None:
        """Count ``size`` body bytes the caller sent by other means (``os.sendfile``).

        Only for Content-Length and close-delimited bodies, whose bytes go out unframed.

        Raises:
            LocalProtocolError: more than the Content-Length, or a chunked body.
        """
        if self._kind is _CHUNKED:
            raise LocalProtocolError("a chunked body cannot be sent unframed")
        if self._kind is _LENGTH:
            if size > self._remaining:
                raise LocalProtocolError(
                    f"body is longer than its Content-Length ({self.framing.length})")
            self._remaining -= size
        self.bytes_written += size

    def end(self, trailers: Fields = ()) -> bytes:
        """Return the bytes that end the body (the last chunk and trailers, if chunked)."""
        kind = self._kind
        if kind is _LENGTH and self._remaining:
            if self._keep_declared_length:
                self.has_broken_length = True
                return b""
            raise LocalProtocolError(
                f"body ended {self._remaining} bytes short of its Content-Length")
        if kind is _CHUNKED:
            if trailers:
                return ("0\r\n" + _encode_fields(trailers) + "\r\n").encode("latin-1")
            return b"0\r\n\r\n"
        return b""
