"""One HTTP/2 request stream as a WSGI call, run on a serving thread of the worker.

``Http2Stream.run`` builds the environ, calls the app and sends its response through a
``StreamOutput`` (the HTTP/2 protocol of the connection, which owns the shared HTTP/2
state, the flow-control windows and the socket). The request body arrives from the
connection's reading thread into a bounded ``StreamBody`` (bounded by the stream's
receive window: credit goes back as the app reads, not on receipt); the app's reads wait
through the connection, which reads for them when no other thread does. The same PEP 3333
rules as HTTP/1.1: ``start_response`` with ``exc_info``, ``write()``, the iterable's
``close()``, connection-specific headers the app sets are dropped, and a body that breaks
its Content-Length is cut at what was declared (the stream is then reset).

Beyond PEP 3333: ``wsgi.early_hints`` (gunicorn 27's name) sends 103 Early Hints;
``wsgiserve.request_trailers`` is the list of the request's trailer fields, as (name,
value) str pairs, complete once ``wsgi.input`` was read to its end; calling
``wsgiserve.response_trailers(headers)`` before the response body ends sends those
fields as the response's trailers.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

from wsgiserve.http import Headers, Request
from wsgiserve.http.framing import CHUNKED, NO_BODY, Framing
from wsgiserve.http.writer import check_fields
from wsgiserve.http2 import ErrorCode, RequestReceived
from wsgiserve.log import AccessRecord
from wsgiserve.server.counters import H2
from wsgiserve.server.worker.context import ServerContext
from wsgiserve.server.worker.heads import CONNECTION_SPECIFIC, SERVER_HEADER, Http2HeadTemplate
from wsgiserve.wsgi import AppError, EmptyInput, FileWrapper, InputStream, reraise_if_head_sent

__all__ = ["SERVER_FIELD", "Http2Stream", "StreamBody", "StreamGone", "StreamOutput"]

_log = logging.getLogger(__name__)

Fields = list[tuple[bytes, bytes]]
SERVER_FIELD: Final = (b"server", SERVER_HEADER.encode("latin-1"))
_EMPTY_INPUT: Final = EmptyInput()


class StreamGone(ConnectionError):
    """The client reset the stream (or the connection went away): stop answering."""


class StreamOutput(Protocol):
    """What a stream asks of its connection (the HTTP/2 protocol implements it)."""

    def send(self, stream_id: int, head: Fields | None, data: bytes, *,
             end_stream: bool) -> None:
        """Send the response head (when given), then ``data`` (maybe empty), waiting for
        flow-control credit with the body timeout. Raises StreamGone, TimeoutError."""

    def send_informational(self, stream_id: int, fields: Fields) -> None:
        """A 1xx head (103 Early Hints). Raises StreamGone."""

    def send_trailers(self, stream_id: int, fields: Fields) -> None:
        """Raises StreamGone."""

    def reset(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM (nothing if the stream is already closed)."""

    def read_body(self, stream_id: int, body: StreamBody, timeout_s: float) -> bytes:
        """The next piece of ``body`` (b"" at its end), its window given back; waits for
        the client up to ``timeout_s``. Raises TimeoutError, or the body's error."""

    def stream_done(self, stream: Http2Stream) -> None:
        """The WSGI call ended (whatever happened)."""


def _request_of(event: RequestReceived) -> Request:
    """The HTTP request an HTTP/2 request head stands for, as the environ is built from it:
    the pseudo-header fields become the method and target, and :authority the Host
    (RFC 9113 §8.3.1)."""
    fields = [field for field in event.headers if field[0][:1] != b":"]
    if event.authority is not None:
        fields = [field for field in fields if field[0] != b"host"]
        fields.append((b"host", event.authority))
    framing: Framing = NO_BODY if event.end_stream else CHUNKED
    return Request(event.method, event.path or b"/", b"2", Headers(fields), framing, True)


class StreamBody(InputStream):
    """``wsgi.input`` of a stream: the bytes the connection hands over, read by the app's
    thread through ``StreamOutput.read_body`` (which gives the window back). ``feed``,
    ``end``, ``fail`` and ``take`` are called under the connection's lock."""

    def __init__(self, stream_id: int, output: StreamOutput, timeout_s: float) -> None:
        super().__init__(self._next_piece)
        self._stream_id = stream_id
        self._output = output
        self._timeout_s = timeout_s
        self._pieces: deque[bytes] = deque()
        self.bytes_received = 0
        self._is_ended = False
        self._error: BaseException | None = None

    # -- the connection's side -------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._pieces.append(data)
        self.bytes_received += len(data)

    def end(self) -> None:
        self._is_ended = True

    def fail(self, error: BaseException) -> None:
        self._error = error

    def take(self) -> bytes | None:
        """The next piece, b"" at the end, None while there is none yet.

        Raises: the error the body failed with."""
        if self._pieces:
            return self._pieces.popleft()
        if self._error is not None:
            raise self._error
        return b"" if self._is_ended else None

    # -- the app's side -------------------------------------------------------------------
    def _next_piece(self) -> bytes:
        return self._output.read_body(self._stream_id, self, self._timeout_s)


class Http2Stream:
    """One request stream and the WSGI call answering it."""

    protocol_name = "h2"  # the requests-in-the-app gauge's label (server.counters)

    __slots__ = ("stream_id", "output", "context", "event", "environ", "body", "status",
                 "headers", "template", "is_head", "is_head_sent", "status_code", "sent_bytes",
                 "started", "trailers", "response_trailers", "is_reset", "has_sent",
                 "_remaining", "_base_environ")

    def __init__(self, event: RequestReceived, output: StreamOutput, context: ServerContext,
                 base_environ: dict[str, Any]) -> None:
        self.stream_id = event.stream_id
        self.output = output
        self.context = context
        self.event = event
        self.environ: dict[str, Any] = {}
        self.body: StreamBody | None = None
        if not event.end_stream:
            self.body = StreamBody(event.stream_id, output, context.body_timeout_s)
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.template: Http2HeadTemplate | None = None
        self.is_head = event.method == b"HEAD"
        self.is_head_sent = False
        self.status_code = 0
        self.sent_bytes = 0
        self.started = time.monotonic()
        # The request's trailers (the environ's list, filled when they come) and those the
        # app gave for the response.
        self.trailers: list[tuple[str, str]] = []
        self.response_trailers: Fields = []
        self.is_reset = False
        self.has_sent = False  # the connection's count: this stream has written (or ended)
        self._remaining: int | None = None  # body bytes owed to a declared Content-Length
        self._base_environ = base_environ

    # -- from the connection's reading thread ------------------------------------------------
    def on_reset(self, error: BaseException) -> None:
        self.is_reset = True
        if self.body is not None:
            self.body.fail(error)

    # -- the WSGI call (a serving thread) ----------------------------------------------------
    def run(self) -> None:
        context = self.context
        if self.is_reset:
            # Reset before it ran (rapid reset, CVE-2023-44487, or the connection went):
            # no app call, no log line, not counted towards max_requests.
            self.output.stream_done(self)
            return
        result: Any = None
        try:
            environ = self.environ = self._build_environ()
            hooks = context.hooks
            context.in_app[self] = time.monotonic()  # not its time in the queue
            if "pre_request" in hooks:
                hooks["pre_request"](context.worker, environ)
            result = context.app(environ, self.start_response)
            self._send_result(result)
        except StreamGone:
            _log.debug("stream %d was reset by the client", self.stream_id)
        except Exception as exc:  # noqa: BLE001 - the app boundary
            self._fail(exc)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - the app boundary
                    _log.exception("the application's close() failed")
            context.in_app.pop(self, None)
            self._finish()

    def _build_environ(self) -> dict[str, Any]:
        event = self.event
        context = self.context
        key = (*event.headers, event.end_stream)
        request = context.http2_requests.get(key)
        if request is None:
            request = _request_of(event)
            context.http2_requests.put(key, request,
                                       sum(len(name) + len(value) for name, value in event.headers))
        environ = context.environs.build(request, self._base_environ, context.script_name)
        if context.proxy is not None:  # as for HTTP/1.1: trusted X-Forwarded-*, Forwarded
            context.proxy.apply(environ, request, self._base_environ["REMOTE_ADDR"])
        environ["wsgi.input"] = self.body if self.body is not None else _EMPTY_INPUT
        environ["wsgi.early_hints"] = self.send_early_hints
        environ["wsgiserve.request_trailers"] = self.trailers
        environ["wsgiserve.response_trailers"] = self.set_response_trailers
        return environ

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], object]:
        """PEP 3333 start_response."""
        if exc_info is not None:
            reraise_if_head_sent(exc_info, self.is_head_sent)
        elif self.status:
            raise AppError("start_response called twice without exc_info")
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy write(): sent before it returns (waiting for flow control)."""
        if type(data) is not bytes:
            raise AppError(f"write() takes bytes, got {type(data).__name__}")
        if data:
            self._send(data, end_stream=False)

    def send_early_hints(self, headers: Sequence[tuple[str, str]]) -> None:
        """``environ["wsgi.early_hints"]``: a 103 Early Hints head before the response
        (RFC 8297), e.g. ``[("Link", "</style.css>; rel=preload; as=style")]``."""
        if self.is_head_sent:
            return  # too late: the final head went
        kept = [(name, value) for name, value in headers
                if name.lower() not in CONNECTION_SPECIFIC]
        check_fields(kept)
        fields = [(b":status", b"103")] + [(name.lower().encode("latin-1"),
                                           value.encode("latin-1")) for name, value in kept]
        self.output.send_informational(self.stream_id, fields)

    def set_response_trailers(self, headers: Sequence[tuple[str, str]]) -> None:
        """``environ["wsgiserve.response_trailers"]``: fields sent after the body, e.g.
        ``[("X-Checksum", "...")]``; called before the body ends (later calls replace
        earlier ones). Connection-specific fields are dropped; nothing is sent for a
        response without content (HEAD, 204, 304)."""
        kept = [(name, value) for name, value in headers
                if name.lower() not in CONNECTION_SPECIFIC]
        check_fields(kept)
        self.response_trailers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                                  for name, value in kept]

    def _head(self) -> Http2HeadTemplate:
        template = self.template
        if template is None:
            if not self.status:
                raise AppError("the application did not call start_response")
            template = self.template = self.context.http2_heads.get(self.status, self.headers)
            self.status_code = template.status_code
            if not self.is_head and template.status_code not in (204, 304):
                self._remaining = template.content_length
        return template

    def _head_fields(self) -> Fields:
        template = self._head()
        fields = list(template.fields)
        fields.insert(1, (b"date", self.context.dates.now().encode("ascii")))
        return fields

    def _send_result(self, result: Iterable[bytes]) -> None:
        if type(result) is list and len(result) == 1 and type(result[0]) is bytes:
            self._send(result[0], end_stream=True)  # the usual shape: one piece
            return
        if isinstance(result, FileWrapper) and self.is_head:
            self._send(b"", end_stream=True)  # no need to read the file
            return
        for data in result:
            if type(data) is not bytes:
                raise AppError(f"the app yielded {type(data).__name__}, not bytes")
            if data:
                self._send(data, end_stream=False)
        self._send(b"", end_stream=True)

    def _send(self, data: bytes, *, end_stream: bool) -> None:
        if self.is_reset:
            raise StreamGone("the client reset the stream")
        output = self.output
        if self.is_head or self._head().status_code in (204, 304):
            data = b""  # no content in this response (RFC 9110 §9.3.2, §15.3.5, §15.4.5)
        remaining = self._remaining
        is_short = False
        if remaining is not None:
            if len(data) > remaining:
                data = data[:remaining]  # send what was declared, then end
                self._note_broken_length()
                end_stream = True
            self._remaining = remaining - len(data)
            is_short = end_stream and self._remaining > 0
        head = None
        if not self.is_head_sent:
            self.is_head_sent = True
            head = self._head_fields()
        if is_short:
            output.send(self.stream_id, head, data, end_stream=False)
            self.sent_bytes += len(data)
            self._note_broken_length()
            output.reset(self.stream_id, ErrorCode.INTERNAL_ERROR)
            return
        if end_stream and self.response_trailers and not self.is_head \
                and self.status_code not in (204, 304):
            output.send(self.stream_id, head, data, end_stream=False)
            self.sent_bytes += len(data)
            output.send_trailers(self.stream_id, self.response_trailers)
        elif head is not None or data or end_stream:
            output.send(self.stream_id, head, data, end_stream=end_stream)
            self.sent_bytes += len(data)

    def _note_broken_length(self) -> None:
        self.context.note_app_bug(
            "an HTTP/2 response body did not match its Content-Length of %d: what was "
            "declared is sent, then the stream ends (cut) or is reset (short)",
            self._head().content_length or 0)

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            _log.debug("stream %d timed out: %s", self.stream_id, exc)
        else:
            _log.error("Error handling request %s %s", self.event.method.decode("ascii"),
                       (self.event.path or b"").decode("latin-1")[:200], exc_info=exc)
        if self.is_head_sent or self.is_reset:
            self.output.reset(self.stream_id, ErrorCode.INTERNAL_ERROR)
            return
        self.status_code = 500
        body = b"500 Internal Server Error\n"
        fields = [(b":status", b"500"), (b"date", self.context.dates.now().encode("ascii")),
                  SERVER_FIELD, (b"content-type", b"text/plain; charset=utf-8"),
                  (b"content-length", str(len(body)).encode("ascii"))]
        self.is_head_sent = True
        try:
            self.output.send(self.stream_id, fields, b"" if self.is_head else body,
                             end_stream=True)
            self.sent_bytes = 0 if self.is_head else len(body)
        except (StreamGone, TimeoutError):
            pass

    def _finish(self) -> None:
        context = self.context
        try:
            if context.access_log is not None:
                self._log_access()
            if "post_request" in context.hooks:
                try:
                    context.hooks["post_request"](context.worker, self.environ)
                except Exception:  # noqa: BLE001 - a hook must not take the worker down
                    _log.exception("post_request hook failed")
            if context.on_request_done is not None:
                context.on_request_done()
            metrics = context.metrics
            if metrics is not None and self.status_code:
                metrics.request_done(H2, self.event.method, time.monotonic() - self.started,
                                     self.status_code,
                                     self.body.bytes_received if self.body is not None else 0,
                                     self.sent_bytes)
        finally:
            self.environ = {}  # the environ holds our bound methods: no cycle left behind
            self.output.stream_done(self)

    def _log_access(self) -> None:
        context = self.context
        access_log = context.access_log
        assert access_log is not None
        event = self.event
        duration_s = time.monotonic() - self.started
        environ = self.environ
        access_log.log(AccessRecord(
            remote_addr=str(environ.get("REMOTE_ADDR") or ""),
            remote_port=int(environ.get("REMOTE_PORT") or 0),
            method=event.method.decode("ascii"),
            target=(event.path or b"").decode("latin-1"), version="HTTP/2.0",
            status=self.status_code, response_bytes=self.sent_bytes,
            start_time=time.time() - duration_s, duration_s=duration_s,
            request_headers=[field for field in event.headers if field[0][:1] != b":"],
            response_headers=self.template.app_headers if self.template else [],
            pid=context.pid, remote_user=str(environ.get("REMOTE_USER") or "-")))
