"""One WSGI request and the response being produced for it.

``Exchange`` is PEP 3333's side of a request: ``start_response`` and ``write`` (bound
methods, so no closure per request), the response head decided once from a cached template
(``heads``), the body framed by the ``BodyWriter`` and pumped to the transport as it takes
it, ``sendfile`` for ``wsgi.file_wrapper`` on plain sockets, the iterable's ``close()`` and
the access-log line. ``pump()`` reports to its caller (the protocol) whether the exchange is
waiting for the socket, finished or failed; the caller decides what happens around it
(keep-alive, error answers, closing).

States (``ExchangeState``), a transition not in ``TRANSITIONS`` raises::

    AWAITING_HEAD ──> SENDING_BODY ──> COMPLETE
          │  │            │  ^   └────> ABORTED  (an error after the head: close)
          │  │            v  │
          │  └───────> SENDING_FILE ──> COMPLETE / ABORTED
          ├──────────> COMPLETE  (the head and the whole body in one send)
          └──────────> FAILED    (an error before the head: a 500 can still go out)
    COMPLETE ──> ABORTED (the transport failed to send its last bytes)
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import Any, Final

from wsgiserve.http import BodyKind, Request
from wsgiserve.http.writer import BodyWriter, encode_response_head
from wsgiserve.log import AccessRecord
from wsgiserve.server.worker.context import ServerContext
from wsgiserve.server.worker.transport import Transport
from wsgiserve.wsgi import (
    HOP_BY_HOP,
    AppError,
    EmptyInput,
    FileWrapper,
    InputStream,
    reraise_if_head_sent,
)

__all__ = ["TRANSITIONS", "AppError", "Exchange", "ExchangeState", "Pump"]  # and members

_log = logging.getLogger(__name__)

# sendfile() takes at most this much per call, so one response does not hog the thread.
SENDFILE_BYTES: Final = 1 << 20


class ExchangeState(Enum):
    __hash__ = object.__hash__  # identity hashing: C-speed lookups in the table

    AWAITING_HEAD = "awaiting-head"  # nothing sent yet
    SENDING_BODY = "sending-body"    # the head is out; the result is being iterated
    SENDING_FILE = "sending-file"    # the head is out; the file goes by sendfile
    COMPLETE = "complete"            # all handed to the transport; the result closed
    FAILED = "failed"                # an error before the head; the result closed
    ABORTED = "aborted"              # an error after the head; the result closed


class Pump(Enum):
    """What ``Exchange.pump`` reports to its caller."""

    WAITING = "waiting"    # the transport holds output: call pump again once it is sent
    FINISHED = "finished"  # the whole response is with the transport
    FAILED = "failed"      # ``error`` says why; ``head_sent`` says whether a 500 can go


# The members as module names (on Python 3.11 an Enum class attribute takes a slow
# lookup hook: see states.py).
AWAITING_HEAD, SENDING_BODY, SENDING_FILE, COMPLETE, FAILED, ABORTED = ExchangeState
WAITING, FINISHED, PUMP_FAILED = Pump
_NONE, _LENGTH = BodyKind.NONE, BodyKind.LENGTH

_X = ExchangeState
TRANSITIONS: Final[dict[ExchangeState, frozenset[ExchangeState]]] = {
    _X.AWAITING_HEAD: frozenset({_X.SENDING_BODY, _X.SENDING_FILE, _X.COMPLETE, _X.FAILED}),
    _X.SENDING_BODY: frozenset({_X.SENDING_FILE, _X.COMPLETE, _X.ABORTED}),
    _X.SENDING_FILE: frozenset({_X.SENDING_BODY, _X.COMPLETE, _X.ABORTED}),
    _X.COMPLETE: frozenset({_X.ABORTED}),  # its last bytes could not be sent
    _X.FAILED: frozenset(),
    _X.ABORTED: frozenset(),
}
_HEAD_SENT: Final = frozenset({SENDING_BODY, SENDING_FILE, COMPLETE, ABORTED})


class Exchange:
    """One request and the response being produced for it."""

    __slots__ = ("request", "transport", "context", "environ", "body", "status", "headers",
                 "writer", "result", "iterator", "should_close", "started", "state",
                 "head_bytes", "status_code", "file", "continue_sent", "error")

    def __init__(self, request: Request, transport: Transport, context: ServerContext) -> None:
        self.request = request
        self.transport = transport
        self.context = context
        self.environ: dict[str, Any] = {}
        self.body: InputStream | EmptyInput | None = None
        self.status = ""
        self.status_code = 0
        self.headers: list[tuple[str, str]] = []
        self.state = AWAITING_HEAD
        self.head_bytes = b""
        self.writer: BodyWriter | None = None
        self.result: Any = None
        self.iterator: Iterator[bytes] | None = None
        self.file: FileWrapper | None = None
        self.should_close = not request.keep_alive
        self.started = time.monotonic()
        self.continue_sent = False  # a 100 Continue went out for this request's body
        self.error: BaseException | None = None

    def _set_state(self, new: ExchangeState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise AssertionError(f"exchange transition {self.state} -> {new} not in table")
        self.state = new

    @property
    def head_sent(self) -> bool:
        return self.state in _HEAD_SENT

    # -- PEP 3333 ----------------------------------------------------------------------------
    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], object]:
        """PEP 3333 start_response (a bound method: no closure per request)."""
        if exc_info is not None:
            reraise_if_head_sent(exc_info, self.state is not AWAITING_HEAD)
        elif self.status:
            raise AppError("start_response called twice without exc_info")
        # The types are checked when the head is built (heads.HeadCache: once per list).
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy imperative write(): PEP 3333 requires the data to be sent (or
        buffered for sending) before it returns, so this waits for the socket."""
        if type(data) is not bytes:
            raise AppError(f"write() takes bytes, got {type(data).__name__}")
        if data:
            self.transport.send_blocking(self.frame(data), self.context.body_timeout_s)

    def early_hints(self, headers: Sequence[tuple[str, str]]) -> None:
        """``environ["wsgi.early_hints"]`` (gunicorn 27's name): send a 103 Early Hints
        response (RFC 8297) before the final one, e.g. ``[("Link", "</app.css>;
        rel=preload; as=style")]``. Nothing for HTTP/1.0 clients (RFC 9110 §15.2: no 1xx to
        them) or once the final head went.

        Raises:
            LocalProtocolError: an invalid field (an app bug).
        """
        if self.state is not AWAITING_HEAD or self.request.http_version != b"1.1":
            return
        kept = [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP]
        self.transport.send_blocking(encode_response_head("103 Early Hints", kept),
                                     self.context.body_timeout_s)

    # -- the response ------------------------------------------------------------------------
    def _prepare_head(self) -> BodyWriter:
        """Decide the framing and build the head; called once, before the first body byte.
        Returns the body's writer (callers use ``self.writer or self._prepare_head()``)."""
        if not self.status:
            raise AppError("the application did not call start_response")
        context = self.context
        request = self.request
        template = context.heads.get(self.status, self.headers, request.method,
                                  request.http_version)
        self.status_code = template.status_code
        should_close = self.should_close or template.forces_close or context.is_stopping
        if not should_close and request.expects_continue and not self.continue_sent:
            body = self.body
            if body is not None and not body.is_finished:
                # The app answers without having asked for the body of an Expect:
                # 100-continue request: the client may still be waiting to send it, so
                # close rather than guess (RFC 9110 §10.1.1).
                should_close = True
        self.should_close = should_close
        writer = self.writer = BodyWriter(template.framing, keep_declared_length=True)
        self.head_bytes = template.render(context.dates.line(), should_close,
                                          request.http_version == b"1.0")
        self.headers = template.fields
        return writer

    def frame(self, data: bytes) -> bytes:
        """``data`` as it goes on the wire: transfer-coded, after the head the first time."""
        writer = self.writer or self._prepare_head()
        framed = writer.write(data)
        if self.state is AWAITING_HEAD:
            self._set_state(SENDING_BODY)
            return self.head_bytes + framed
        return framed

    def pump(self) -> Pump:
        """Send the app's body as the transport takes it. Call again after ``WAITING`` once
        the transport's pending output is sent."""
        transport = self.transport
        try:
            state = self.state
            if state is COMPLETE:
                return FINISHED
            if state is SENDING_FILE:
                return self._send_file()
            iterator = self.iterator
            if iterator is None:
                result = self.result
                if type(result) is list and len(result) == 1 and type(result[0]) is bytes:
                    # The most common shape: one piece. Head, body and end in one send.
                    return self._finish(result[0])
                if isinstance(result, FileWrapper):
                    started = self._start_file(result)
                    if started is not None:
                        return started
                iterator = self.iterator = iter(result)
            for data in iterator:
                if type(data) is not bytes:
                    raise AppError(f"the app yielded {type(data).__name__}, not bytes")
                if data and not transport.send_or_park(self.frame(data)):
                    return WAITING
            return self._finish(b"")
        except Exception as exc:  # noqa: BLE001 - the app boundary
            return self.fail(exc)

    def _finish(self, last: bytes) -> Pump:
        """End the body: its ``last`` piece (not yet framed) and the closing bytes go out
        together, after the head if it has not gone yet."""
        writer = self.writer or self._prepare_head()
        out = writer.write(last) + writer.end() if last else writer.end()
        if writer.has_broken_length:
            self.should_close = True
            self.context.note_app_bug(
                "a response body did not match its Content-Length of %d: what was declared "
                "is sent (cut or short), then the connection is closed",
                writer.framing.length)
        if self.state is AWAITING_HEAD:
            out = self.head_bytes + out
        if type(self.result) is list:
            self.result = None  # nothing to close
        else:
            self.close_result()
        self._set_state(COMPLETE)
        if out and not self.transport.send_or_park(out):
            return WAITING
        return FINISHED

    def fail(self, exc: BaseException) -> Pump:
        """End the exchange with ``exc`` (the app raised, or broke the contract)."""
        self.error = exc
        self.close_result()
        self._set_state(ABORTED if self.state in _HEAD_SENT else FAILED)
        return PUMP_FAILED

    # -- wsgi.file_wrapper -------------------------------------------------------------------
    def _start_file(self, wrapper: FileWrapper) -> Pump | None:
        """Send a file wrapper's file by sendfile when its body is a plain Content-Length;
        None: iterate it like any result (TLS, chunked, HTTP/1.0 close-delimited)."""
        if self.transport.is_tls or not self.context.use_sendfile or wrapper.fileno() is None:
            return None
        writer = self.writer or self._prepare_head()
        kind = writer.framing.kind
        if kind is _NONE:
            return self._finish(b"")  # HEAD, 204, 304: no need to read the file at all
        if kind is not _LENGTH:
            return None
        self.file = wrapper
        self._set_state(SENDING_FILE)
        if not self.transport.send_or_park(self.head_bytes):
            return WAITING
        return self._send_file()

    def _send_file(self) -> Pump:
        wrapper = self.file
        writer = self.writer
        assert wrapper is not None and writer is not None
        fileno = wrapper.fileno()
        assert fileno is not None
        transport = self.transport
        while writer.remaining:
            offset = os.lseek(fileno, 0, os.SEEK_CUR)
            sent = transport.sendfile(fileno, offset, min(writer.remaining, SENDFILE_BYTES))
            if sent is None:
                return WAITING
            if sent == 0:
                break  # the file is shorter than the declared length
            os.lseek(fileno, offset + sent, os.SEEK_SET)
            writer.account(sent)
        return self._finish(b"")

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
        context = self.context
        access_log = context.access_log
        if access_log is None:
            return
        request = self.request
        writer = self.writer
        transport = self.transport
        # REMOTE_ADDR as the app saw it: the client named by a trusted proxy, else the peer
        # (gunicorn's %(h)s is REMOTE_ADDR too). Behind nginx on a unix socket the peer has
        # no address at all.
        environ = self.environ
        duration_s = time.monotonic() - self.started
        access_log.log(AccessRecord(
            remote_addr=str(environ.get("REMOTE_ADDR") or transport.remote_addr),
            remote_port=transport.remote_port,
            method=request.method.decode("ascii"), target=request.target.decode("latin-1"),
            version="HTTP/1.0" if request.http_version == b"1.0" else "HTTP/1.1",
            status=self.status_code, response_bytes=writer.bytes_written if writer else 0,
            start_time=time.time() - duration_s, duration_s=duration_s,
            request_headers=request.headers.lowered(), response_headers=self.headers,
            pid=context.pid, remote_user=_remote_user(environ)))


def _remote_user(environ: dict[str, Any]) -> str:
    user = environ.get("REMOTE_USER")
    return str(user) if user else "-"
