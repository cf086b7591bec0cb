"""PEP 3333 pieces: the environ built from a ``Request`` event, ``wsgi.input``, the error
stream, ``wsgi.file_wrapper`` and the response-header checks behind ``start_response``.

Imported by ``server.connection``; imports only ``wsgiserve.http`` and the standard library.
Nothing here does socket I/O: the body is pulled through a ``read_body`` callable.
"""
from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Final
from urllib.parse import unquote_to_bytes

from wsgiserve.http import Request
from wsgiserve.http.errors import LocalProtocolError

# Environ keys computed once per distinct header name (bounded: a peer that sends many
# distinct names costs one dict entry each until the cache is full, then plain work).
_KEY_CACHE_MAX: Final = 1024
_key_cache: dict[bytes, str | None] = {}
# The parser hands out one shared tuple per sequence of field names (http.fields). For a
# sequence whose environ keys are all kept and all different (the usual case: no repeated
# field, no name with "_"), the keys are computed once and the values set in one update.
# None marks a sequence that needs the general loop. Bounded: cleared when full.
_KEYS_MAX: Final = 256
_keys_for_names: dict[tuple[bytes, ...], tuple[str, ...] | None] = {}

# RFC 9110 §7.6.1 hop-by-hop fields: PEP 3333 forbids applications to send them; the
# server frames and manages the connection itself.
HOP_BY_HOP: Final = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade",
})


def _environ_key(name: bytes) -> str | None:
    """``x-forwarded-for`` -> ``HTTP_X_FORWARDED_FOR``; None for names to leave out.

    A name with ``_`` is dropped: otherwise ``X-Auth_User`` would arrive as the same key as
    ``X-Auth-User`` and could spoof a header a trusted proxy sets (nginx, Apache and
    waitress drop them too).
    """
    key = _key_cache.get(name)
    if key is not None or name in _key_cache:
        return key
    if b"_" in name:
        key = None
    elif name == b"content-type":
        key = "CONTENT_TYPE"
    elif name == b"content-length":
        key = "CONTENT_LENGTH"
    else:
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
    if len(_key_cache) < _KEY_CACHE_MAX:
        _key_cache[name] = key
    return key


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Return (path, query) of a request target; absolute-form loses scheme and authority."""
    if target[:1] != b"/":
        if target == b"*":
            return b"*", b""
        scheme_end = target.find(b"://")
        if scheme_end > 0:
            slash = target.find(b"/", scheme_end + 3)
            query_at = target.find(b"?", scheme_end + 3)
            if slash < 0 or (0 <= query_at < slash):
                target = b"/" + (target[query_at:] if query_at >= 0 else b"")
            else:
                target = target[slash:]
    path, _, query = target.partition(b"?")
    path = path.partition(b"#")[0]
    return path, query


def decode_path(path: bytes) -> str:
    """Percent-decode a path into PEP 3333's bytes-as-latin-1 str."""
    if b"%" in path:
        path = unquote_to_bytes(path)
    return path.decode("latin-1")


def build_environ(request: Request, base: dict[str, Any], script_name: str) -> dict[str, Any]:
    """Return the environ for one request.

    Args:
        base: the per-connection part (SERVER_*, REMOTE_*, wsgi.* constants); copied.
        script_name: the mount prefix (already without a trailing slash), or "".
    """
    environ = base.copy()
    environ["REQUEST_METHOD"] = request.method.decode("ascii")
    environ["SERVER_PROTOCOL"] = "HTTP/1.0" if request.http_version == b"1.0" else "HTTP/1.1"
    raw_path, query = split_target(request.target)
    path = decode_path(raw_path)
    environ["RAW_URI"] = request.target.decode("latin-1")
    environ["QUERY_STRING"] = query.decode("latin-1")
    if script_name:
        if path == script_name or path.startswith(script_name + "/"):
            path = path[len(script_name):]
        environ["SCRIPT_NAME"] = script_name
    environ["PATH_INFO"] = path
    headers = request.headers
    names = headers.names
    if type(names) is tuple:
        try:
            keys = _keys_for_names[names]
        except KeyError:
            keys = _keys_of(names)
        if keys is not None:
            environ.update(zip(keys, [value.decode("latin-1") for _, value in headers.fields]))
            return environ
    cookie_values: list[str] | None = None
    for (_, value), name in zip(headers.fields, names):
        key = _environ_key(name)
        if key is None:
            continue
        text = value.decode("latin-1")
        if key in environ and key.startswith("HTTP_"):
            if key == "HTTP_COOKIE":
                # RFC 6265 §5.4: cookie pairs are joined with "; ", never ", ".
                if cookie_values is None:
                    cookie_values = [environ[key]]
                cookie_values.append(text)
                continue
            environ[key] = environ[key] + ", " + text
        else:
            environ[key] = text
    if cookie_values is not None:
        environ["HTTP_COOKIE"] = "; ".join(cookie_values)
    # A chunked body has no CONTENT_LENGTH (PEP 3333 has no length for it; with
    # wsgi.input_terminated, read() to the end is safe): the parser refuses Content-Length
    # with Transfer-Encoding.
    return environ


def _keys_of(names: tuple[bytes, ...]) -> tuple[str, ...] | None:
    kept = tuple(key for key in map(_environ_key, names) if key is not None)
    plain = kept if len(set(kept)) == len(names) else None  # none dropped, none repeated
    if len(_keys_for_names) >= _KEYS_MAX:
        _keys_for_names.clear()
    _keys_for_names[names] = plain
    return plain


class RequestBody(io.RawIOBase):
    """``wsgi.input``: reads the request body and never past it.

    ``read_body()`` returns the next piece of body, or ``b""`` at its end; it may block
    (with a timeout) and raise ``RemoteProtocolError`` or ``OSError``, which the app sees.
    """

    def __init__(self, read_body: Callable[[], bytes]) -> None:
        super().__init__()
        self._read_body = read_body
        self._buffer = bytearray()
        self._is_done = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        if self._is_done:
            return False
        piece = self._read_body()
        if not piece:
            self._is_done = True
            return False
        self._buffer += piece
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            while len(self._buffer) < size and self._fill():
                pass
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else sys.maxsize
        start = 0
        while True:
            newline = self._buffer.find(b"\n", start, limit)
            if newline >= 0:
                end = newline + 1
                break
            if len(self._buffer) >= limit:
                end = limit
                break
            start = len(self._buffer)
            if not self._fill():
                end = len(self._buffer)
                break
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    @property
    def is_finished(self) -> bool:
        return self._is_done and not self._buffer

    def drain(self, max_bytes: int) -> bool:
        """Read and drop what is left of the body, up to ``max_bytes``; True if it ended."""
        self._buffer.clear()
        dropped = 0
        while dropped <= max_bytes:
            piece = b"" if self._is_done else self._read_body()
            if not piece:
                self._is_done = True
                return True
            dropped += len(piece)
        return False


class EmptyInput:
    """``wsgi.input`` for a request without a body: cheaper to build than RequestBody."""

    __slots__ = ()
    is_finished: Final = True

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def drain(self, max_bytes: int) -> bool:
        return True

    def close(self) -> None:
        pass


class ErrorStream:
    """``wsgi.errors``: text written by the app goes to the error log, line by line."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("wsgiserve.app")
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._logger.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            self._logger.error("%s", self._pending)
            self._pending = ""


class FileWrapper:
    """``wsgi.file_wrapper``: an iterable over a file, which the server may ``sendfile``."""

    def __init__(self, filelike: IO[bytes], block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        while data := self.filelike.read(self.block_size):
            yield data

    def fileno(self) -> int | None:
        """The file descriptor to ``sendfile`` from, or None when it has none."""
        try:
            return self.filelike.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return None


def check_response_headers(status: str, headers: list[tuple[str, str]]) -> None:
    """The PEP 3333 type checks on ``start_response`` arguments.

    Raises:
        LocalProtocolError: not a str status, or headers not a list of (str, str).
    """
    if type(status) is not str:
        raise LocalProtocolError(f"status must be str, got {type(status).__name__}")
    if type(headers) is not list:
        raise LocalProtocolError(f"headers must be a list, got {type(headers).__name__}")
    for item in headers:
        if type(item) is not tuple or len(item) != 2 or type(item[0]) is not str \
                or type(item[1]) is not str:
            raise LocalProtocolError(f"each header must be a (str, str) tuple, got {item!r}")
