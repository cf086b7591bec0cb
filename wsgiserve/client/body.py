"""Request bodies: bytes, binary file objects or iterables of bytes, streamed in pieces.

``RequestBody.from_value`` learns the length when it can (Content-Length is then sent,
chunked otherwise) and whether the body can be sent again (a 307/308 redirect, a retry).
"""
from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable, Iterator
from typing import Final, Protocol

from wsgiserve.client.errors import InvalidRequest

# Pieces read from a file per send(); 64 KiB matches the socket buffers on Linux.
READ_PIECE_BYTES: Final = 65536


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


BodyValue = bytes | bytearray | memoryview | str | _Readable | Iterable[bytes] | None


class RequestBody:
    """One request body and what is known of it.

    Attributes:
        content_length: the byte count, or None when it is not known in advance.
        is_replayable: the same bytes can be produced again by ``pieces()``.
    """

    __slots__ = ("content_length", "is_replayable", "_data", "_file", "_start", "_iterable",
                 "_used")

    def __init__(self, *, data: bytes | None = None, file: _Readable | None = None,
                 iterable: Iterable[bytes] | None = None, content_length: int | None = None):
        self._data = data
        self._file = file
        self._iterable = iterable
        self._start = 0
        self._used = False
        self.content_length = len(data) if data is not None else content_length
        self.is_replayable = data is not None
        if file is not None:
            self._start, length, seekable = _file_facts(file)
            self.is_replayable = seekable
            if content_length is None:
                self.content_length = length

    @classmethod
    def from_value(cls, value: BodyValue | RequestBody,
                   content_length: int | None = None) -> RequestBody | None:
        """Wrap what a caller passed as ``body``; None stays None (no body at all).

        Raises:
            InvalidRequest: the value is of no supported type.
        """
        if value is None or isinstance(value, RequestBody):
            return value
        if isinstance(value, str):
            return cls(data=value.encode("utf-8"))
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls(data=bytes(value))
        if hasattr(value, "read"):
            return cls(file=value, content_length=content_length)  # type: ignore[arg-type]
        if isinstance(value, Iterable):
            return cls(iterable=value, content_length=content_length)
        raise InvalidRequest(f"unsupported request body type {type(value).__name__}")

    @property
    def can_send(self) -> bool:
        """True when ``pieces()`` can still give the whole body (not consumed, or
        replayable)."""
        return self.is_replayable or not self._used

    def pieces(self) -> Iterator[bytes]:
        """Yield the body from its start (rewinding a seekable file).

        Raises:
            InvalidRequest: a body that cannot be replayed is asked for a second time.
        """
        if self._used and not self.is_replayable:
            raise InvalidRequest("the request body is an iterator and was already sent")
        self._used = True
        if self._data is not None:
            if self._data:
                yield self._data
            return
        if self._file is not None:
            if self.is_replayable:
                self._file.seek(self._start)  # type: ignore[attr-defined]
            while piece := self._file.read(READ_PIECE_BYTES):
                yield bytes(piece)
            return
        if self._iterable is not None:
            for piece in self._iterable:
                if piece:
                    yield bytes(piece)


def _file_facts(file: _Readable) -> tuple[int, int | None, bool]:
    """Return (position, bytes from there to the end or None, seekable) for a file object."""
    try:
        seekable = bool(file.seekable())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        seekable = False
    position = 0
    if seekable:
        try:
            position = file.tell()  # type: ignore[attr-defined]
        except OSError:
            seekable = False
    if isinstance(file, io.BytesIO):
        return position, len(file.getbuffer()) - position, True
    try:
        info = os.fstat(file.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        info = None
    if info is not None and stat.S_ISREG(info.st_mode) and seekable:
        return position, max(0, info.st_size - position), True
    if seekable:
        end = file.seek(0, io.SEEK_END)  # type: ignore[attr-defined]
        file.seek(position)  # type: ignore[attr-defined]
        return position, end - position, True
    return position, None, False
