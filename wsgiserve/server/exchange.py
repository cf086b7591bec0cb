"""One request and the response being produced for it, on a ``Connection``.

``Exchange`` is PEP 3333's side of a request: ``start_response`` and ``write`` (bound
methods, so no closure per request), the response head decided once from a cached
template (``server.response``), the body framed by the ``BodyWriter`` and pumped to the
socket as it takes it (``pump``: when the socket is full the connection parks as WRITING
and the loop resumes the pump on writability, so a slow reader never holds a thread),
``sendfile`` for ``wsgi.file_wrapper`` on plain sockets, the iterable's ``close()`` and
the access-log line. The connection decides what happens around it: keep-alive, errors,
closing. Imported by ``server.connection`` only.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from wsgiserve.http import BodyKind, Request
from wsgiserve.http.writer import BodyWriter
from wsgiserve.log import AccessRecord
from wsgiserve.server.context import WOULD_BLOCK
from wsgiserve.server.response import head_template
from wsgiserve.server.states import ConnState, Outcome
from wsgiserve.wsgi import EmptyInput, FileWrapper, RequestBody, check_response_headers

if TYPE_CHECKING:
    from wsgiserve.server.connection import Connection

__all__ = ["AppError", "Exchange"]

_log = logging.getLogger(__name__)

_EXHAUSTED: Final[Iterator[bytes]] = iter(())  # stays exhausted: safe to share


class AppError(Exception):
    """The application broke the WSGI contract (raised to our own handler, logged)."""


class Exchange:
    """One request and the response being produced for it."""

    __slots__ = ("request", "environ", "body", "status", "headers", "head_sent", "writer",
                 "result", "iterator", "should_close", "started", "is_finished",
                 "head_bytes", "status_code", "sendfile", "file_remaining", "connection")

    def __init__(self, request: Request, connection: Connection) -> None:
        self.request = request
        self.connection = connection
        self.environ: dict[str, Any] = {}
        self.body: RequestBody | EmptyInput | None = None
        self.status = ""
        self.status_code = 0
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.head_bytes = b""
        self.writer: BodyWriter | None = None
        self.result: Any = None
        self.iterator: Iterator[bytes] | None = None
        self.should_close = not request.keep_alive
        self.started = time.monotonic()
        self.is_finished = False
        self.sendfile: FileWrapper | None = None
        self.file_remaining = -1

    # -- PEP 3333 ----------------------------------------------------------------------------
    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], object]:
        """PEP 3333 start_response (a bound method: no closure per request)."""
        if exc_info is not None:
            try:
                if self.head_sent:
                    # PEP 3333: too late to change the response: re-raise.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status:
            raise AppError("start_response called twice without exc_info")
        check_response_headers(status, headers)
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy imperative write(): PEP 3333 requires the data to be sent (or
        buffered for sending) before it returns, so this waits for the socket."""
        if type(data) is not bytes:
            raise AppError(f"write() takes bytes, got {type(data).__name__}")
        if data:
            self.connection.send_blocking(self.frame(data))

    # -- the response ------------------------------------------------------------------------
    def _prepare_head(self) -> BodyWriter:
        """Decide the framing and build the head; called once, before the first body byte.
        Returns the body's writer (callers use ``self.writer or self._prepare_head()``)."""
        if not self.status:
            raise AppError("the application did not call start_response")
        connection = self.connection
        context = connection.context
        request = self.request
        template = head_template(self.status, self.headers, request.method,
                                 request.http_version)
        self.status_code = template.status_code
        should_close = self.should_close or template.forces_close or context.is_stopping
        if not should_close and request.expects_continue and not connection.continue_sent:
            body = self.body
            if body is not None and not body.is_finished:
                # The app answers without having asked for the body of an Expect:
                # 100-continue request: the client may still be waiting to send it, so
                # close rather than guess (RFC 9110 §10.1.1).
                should_close = True
        self.should_close = should_close
        writer = self.writer = BodyWriter(template.framing)
        self.head_bytes = template.render(context.dates.line(), should_close,
                                          request.http_version == b"1.0")
        self.headers = template.fields
        return writer

    def frame(self, data: bytes) -> bytes:
        """``data`` as it goes on the wire: transfer-coded, after the head the first time."""
        writer = self.writer or self._prepare_head()
        if writer.framing.kind is BodyKind.LENGTH and len(data) > writer.remaining:
            # More than the app declared: send what was declared, then close, so the
            # extra bytes can never be read as the next response.
            self.should_close = True
            data = data[:writer.remaining]
        framed = writer.write(data)
        if not self.head_sent:
            self.head_sent = True
            framed = self.head_bytes + framed
        return framed

    def pump(self) -> Outcome | None:
        """Send the app's body as the socket takes it; None when the exchange is over.

        The caller has put the connection in ``context.in_app``; it is removed here.
        """
        connection = self.connection
        first = b""
        try:
            if self.iterator is None:
                result = self.result
                if type(result) is list and len(result) == 1 and type(result[0]) is bytes:
                    # The most common shape: one piece. Head, body and end in one send.
                    self.iterator = _EXHAUSTED
                    if result[0]:
                        first = self.frame(result[0])
                elif isinstance(result, FileWrapper) and not connection.is_tls \
                        and connection.context.use_sendfile and result.fileno() is not None:
                    self.sendfile = result
                    self.iterator = _EXHAUSTED
                else:
                    self.iterator = iter(result)
            for data in self.iterator:
                if type(data) is not bytes:
                    raise AppError(f"the app yielded {type(data).__name__}, not bytes")
                if data:
                    if not connection.send_or_park(self.frame(data)):
                        return Outcome.WAIT_WRITABLE
            if self.sendfile is not None:
                outcome = self._send_file()
                if outcome is not None or connection.exchange is not self:
                    # Waiting to write, or _send_file's fallback (pump over the file's
                    # blocks: HEAD, chunked, HTTP/1.0) already finished the exchange.
                    return outcome
            if not self.is_finished:
                self.is_finished = True
                writer = self.writer or self._prepare_head()
                if writer.framing.kind is BodyKind.LENGTH and writer.remaining:
                    # Fewer bytes than declared: the client will see a short body; close
                    # so that the next response is never read as the rest of this one.
                    self.should_close = True
                    tail = b""
                else:
                    tail = writer.end()
                if not self.head_sent:
                    self.head_sent = True
                    tail = self.head_bytes + tail
                elif first:
                    tail = first + tail
                if self.result is not None:
                    self.close_result()
                if tail and not connection.send_or_park(tail):
                    return Outcome.WAIT_WRITABLE
        except Exception as exc:  # noqa: BLE001 - the app boundary
            return connection.app_failed(self, exc)
        finally:
            connection.context.in_app.pop(connection, None)
        return connection.finish_exchange(self)

    def _send_file(self) -> Outcome | None:
        wrapper = self.sendfile
        assert wrapper is not None
        fileno = wrapper.fileno()
        assert fileno is not None
        connection = self.connection
        writer = self.writer or self._prepare_head()
        if not self.head_sent:
            self.head_sent = True
            if not connection.send_or_park(self.head_bytes):
                return Outcome.WAIT_WRITABLE
        if writer.framing.kind is not BodyKind.LENGTH:
            # Chunked or close-delimited: frame the file's blocks ourselves.
            self.sendfile = None
            self.iterator = iter(wrapper)
            return self.pump()
        if self.file_remaining < 0:
            self.file_remaining = writer.remaining
        while self.file_remaining:
            try:
                offset = os.lseek(fileno, 0, os.SEEK_CUR)
                sent = os.sendfile(connection.fileno, fileno, offset,
                                   min(self.file_remaining, 1 << 20))
            except WOULD_BLOCK:
                # Park as WRITING, like send_or_park: on_writable resumes from there.
                connection.set_state(ConnState.WRITING)
                return Outcome.WAIT_WRITABLE
            if sent == 0:
                break  # the file is shorter than the declared length
            os.lseek(fileno, offset + sent, os.SEEK_SET)
            self.file_remaining -= sent
        if self.file_remaining:
            self.should_close = True
        else:
            writer.account(writer.remaining)
        self.sendfile = None
        return None

    def close_result(self) -> None:
        """Call the iterable's ``close()`` (PEP 3333: always, whatever happened)."""
        result = self.result
        self.result = None
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - the app boundary
                _log.exception("the application's close() failed")

    def log_access(self) -> None:
        connection = self.connection
        access_log = connection.context.access_log
        if access_log is None:
            return
        request = self.request
        writer = self.writer
        # REMOTE_ADDR as the app saw it: the client named by a trusted proxy, else the peer
        # (gunicorn's %(h)s is REMOTE_ADDR too). Behind nginx on a unix socket the peer has
        # no address at all.
        environ = self.environ
        duration_s = time.monotonic() - self.started
        access_log.log(AccessRecord(
            remote_addr=str(environ.get("REMOTE_ADDR") or connection.remote_addr),
            remote_port=connection.remote_port,
            method=request.method.decode("ascii"), target=request.target.decode("latin-1"),
            version="HTTP/1.0" if request.http_version == b"1.0" else "HTTP/1.1",
            status=self.status_code, response_bytes=writer.bytes_written if writer else 0,
            start_time=time.time() - duration_s, duration_s=duration_s,
            request_headers=request.headers.lowered(), response_headers=self.headers,
            pid=connection.context.pid, remote_user=_remote_user(environ)))


def _remote_user(environ: dict[str, Any]) -> str:
    user = environ.get("REMOTE_USER")
    return str(user) if user else "-"
