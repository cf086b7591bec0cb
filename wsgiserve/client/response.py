"""The response a caller holds: status and head at once, the body streamed on demand.

``Response`` pulls body events from a ``BodyStream`` only when iterated or read. The
stream belongs to whoever read the head (a connection): it knows how to read the rest,
and what to do with the connection once the body has ended (reuse it, or close it).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from wsgiserve.client.errors import ClientError, HTTPStatusError
from wsgiserve.client.redirects import REDIRECT_STATUSES
from wsgiserve.http.events import Data, EndOfMessage, InformationalResponse
from wsgiserve.http.events import Response as ResponseHead
from wsgiserve.http.headers import Headers


class BodyStream(Protocol):
    """Where a response's body comes from, one event at a time."""

    def read_event(self) -> Data | EndOfMessage:
        """Return the next piece of the body, or its end (after which it is not called
        again: the connection behind the stream may already carry another exchange).

        Raises:
            ClientError: the body cannot be read (the stream is then closed).
        """
        ...

    def close(self) -> None:
        """Give up the rest of the body (its connection cannot be reused); idempotent."""
        ...


class Response:
    """A final response: status, reason, headers; then the body, streamed; then trailers.

    Attributes:
        status, reason, http_version, headers: from the head (``headers`` is the core's
            ``Headers``: bytes values, lookups by lowercase bytes name; ``header(name)``
            is the str convenience).
        url: the URL this response answers (after redirects, the last one).
        interim: the 1xx responses (100, 103...) received before this one.
        history: the redirect responses that led here, oldest first (bodies discarded).
        trailers: fields of a chunked body's trailer section, once the body has ended.
    """

    def __init__(self, head: ResponseHead, body: BodyStream, *, url: str,
                 interim: list[InformationalResponse]):
        self.status = head.status
        self.reason = head.reason.decode("latin-1")
        self.http_version = head.http_version.decode("ascii")
        self.headers = head.headers
        self.url = url
        self.interim = interim
        self.history: list[Response] = []
        self.trailers: Headers | None = None
        self._head = head
        self._body: BodyStream | None = body
        self._content: bytes | None = None

    def __repr__(self) -> str:
        return f"<Response [{self.status} {self.reason}] {self.url}>"

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- head -----------------------------------------------------------------------------
    @property
    def framing(self) -> object:
        return self._head.framing

    @property
    def keep_alive(self) -> bool:
        return self._head.keep_alive

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header ``name`` (any case) as latin-1 text."""
        value = self.headers.get(name.lower().encode("latin-1"))
        return default if value is None else value.decode("latin-1")

    def header_items(self) -> list[tuple[str, str]]:
        """Return every field as received, ``(name, value)`` latin-1 text, in order."""
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.headers.fields]

    @property
    def is_redirect(self) -> bool:
        return self.status in REDIRECT_STATUSES and b"location" in self.headers

    def raise_for_status(self) -> None:
        """Raise ``HTTPStatusError`` for a status of 400 or more."""
        if self.status >= 400:
            raise HTTPStatusError(f"{self.url}: the server answered {self.status} {self.reason}",
                                  self.status)

    # -- body -----------------------------------------------------------------------------
    @property
    def is_complete(self) -> bool:
        """True once the whole body was received (trailers are then set)."""
        return self.trailers is not None

    def iter_bytes(self) -> Iterator[bytes]:
        """Yield the body in the pieces it arrives in; the trailers are set at the end.

        Raises:
            IncompleteResponse: the server closed before the end of the body.
            ProtocolError, ReadTimeout, TotalTimeout, ReadError: the connection is closed.
        """
        if self._content is not None:
            if self._content:
                yield self._content
            return
        body = self._body
        if body is None:
            if self.trailers is None:
                raise ClientError("the response was closed before its body was read")
            return
        try:
            while True:
                event = body.read_event()
                if type(event) is Data:
                    yield event.data
                    continue
                assert isinstance(event, EndOfMessage)
                self._body = None
                self.trailers = event.trailers
                return
        except BaseException:
            self.close()
            raise

    __iter__ = iter_bytes

    def read(self) -> bytes:
        """Return the whole body (read once, then kept)."""
        if self._content is None:
            self._content = b"".join(self.iter_bytes())
        return self._content

    @property
    def content(self) -> bytes:
        return self.read()

    def text(self, encoding: str | None = None) -> str:
        """The body decoded with ``encoding``, the Content-Type charset, or UTF-8."""
        if encoding is None:
            content_type = self.header("content-type", "") or ""
            for parameter in content_type.split(";")[1:]:
                key, _, value = parameter.strip().partition("=")
                if key.lower() == "charset":
                    encoding = value.strip('"') or None
        return self.read().decode(encoding or "utf-8", errors="replace")

    def close(self) -> None:
        """Stop reading. A body not read to the end costs the connection (it is closed)."""
        body, self._body = self._body, None
        if body is not None:
            body.close()
