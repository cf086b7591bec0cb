"""One request and its response on an HTTP/2 connection (one stream), as the requesting
thread sees it: send the head, send the body within the flow-control windows, wait for
the response head, then hand the body out as the ``BodyStream`` of its ``Response``,
giving receive credit back as the caller reads (a slow reader slows the server down).

The connection's I/O thread appends the core's events for the stream to ``events`` and
sets ``error`` (under the connection's lock); this side pops them, so user callbacks
(1xx) run on the requesting thread. States (``ExchangeState``; others raise)::

    SENDING ──> AWAITING ──> READING_BODY ──> DONE
       │  ↑         ↑
       ↓  │         │  (a final status before 100: the body is not sent)
    EXPECTING ──────┘           any state ──> CLOSED (reset, failure, close())
"""
from __future__ import annotations

import builtins
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Final, Protocol

from wsgiserve import http2
from wsgiserve.client.body import RequestBody
from wsgiserve.client.errors import (
    ClientError,
    Phase,
    StreamError,
    TotalTimeout,
    translate_error,
)
from wsgiserve.client.h2failures import stream_reset_error
from wsgiserve.http.events import Data, EndOfMessage, InformationalResponse
from wsgiserve.http.events import Response as ResponseHead
from wsgiserve.http.framing import NO_BODY, UNTIL_CLOSE, BodyKind, Framing
from wsgiserve.http.headers import Headers

InformationalCallback = Callable[[InformationalResponse], None]
Fields = list[tuple[bytes, bytes]]

# A piece of request body goes out in DATA frames of at most this much per lock round.
_SEND_PIECE_BYTES: Final = 65536
# Body bytes the I/O thread may hold unsent before uploads wait for the socket: the
# windows bound what the server accepts, this bounds what sits in our memory.
MAX_UNSENT_BYTES: Final = 1 << 20
# read_event hands out the DATA already received in one piece, up to this size.
_READ_PIECE_BYTES: Final = 1 << 18
_HTTP_VERSION: Final = b"2"
_NO_CONTENT: Final = frozenset({204, 304})


class ExchangeState(Enum):
    SENDING = "sending"
    EXPECTING = "expecting"
    AWAITING = "awaiting"
    READING_BODY = "reading-body"
    DONE = "done"
    CLOSED = "closed"


_X = ExchangeState
_TRANSITIONS: Final[dict[ExchangeState, frozenset[ExchangeState]]] = {
    _X.SENDING: frozenset({_X.EXPECTING, _X.AWAITING, _X.CLOSED}),
    _X.EXPECTING: frozenset({_X.SENDING, _X.AWAITING, _X.CLOSED}),
    _X.AWAITING: frozenset({_X.READING_BODY, _X.CLOSED}),
    _X.READING_BODY: frozenset({_X.DONE, _X.CLOSED}),
    _X.DONE: frozenset({_X.CLOSED}),
    _X.CLOSED: frozenset({_X.CLOSED}),
}


class StreamLink(Protocol):
    """What a stream needs of its connection; every call is made holding ``lock``."""

    lock: threading.Lock
    core: http2.Connection
    where: str
    unsent_bytes: int

    def flush_locked(self) -> None:
        """Hand what the core queued to the I/O thread (and wake it)."""

    def register_locked(self, stream: Http2Stream) -> None:
        """The stream was opened: route its events to it."""

    def finish_locked(self, stream: Http2Stream) -> None:
        """The stream is over for us: forget it and free its slot."""


class Http2Stream:
    """One exchange; also the ``BodyStream`` its ``Response`` reads.

    Attributes set by the I/O thread (under the lock): ``events``, ``error``,
    ``is_head_received`` (a final head arrived), ``is_sending`` (waiting for window).
    """

    __slots__ = ("stream_id", "events", "error", "cond", "is_sending", "is_head_received",
                 "is_head_request", "state", "_link", "_read_s", "_write_s", "_deadline",
                 "_trailers")

    def __init__(self, link: StreamLink, *, read_s: float | None, write_s: float | None,
                 deadline: float | None, is_head_request: bool):
        self.stream_id = 0
        self.events: deque[http2.Event] = deque()
        self.error: ClientError | None = None
        self.cond = threading.Condition(link.lock)
        self.is_sending = False
        self.is_head_received = False
        self.is_head_request = is_head_request
        self.state = ExchangeState.SENDING
        self._link = link
        self._read_s = read_s
        self._write_s = write_s
        self._deadline = deadline
        self._trailers: Headers | None = None

    def _set_state(self, new: ExchangeState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise AssertionError(f"stream transition {self.state} -> {new} is not in the table")
        self.state = new

    # -- sending ------------------------------------------------------------------------------
    def open(self, fields: Fields, end_stream: bool) -> None:
        """Send the request head on the next stream id (under the lock).

        Raises:
            StreamError: the connection takes no new stream (a GOAWAY, the server's
                concurrency limit, ids exhausted): nothing was sent, send it elsewhere.
            InvalidRequest: the fields break RFC 9113 §8.
        """
        link = self._link
        core = link.core
        try:
            stream_id = core.get_next_available_stream_id()
            core.send_headers(stream_id, fields, end_stream)
        except (http2.ConnectionClosedError, http2.TooManyStreamsError) as exc:
            raise StreamError(f"{link.where}: {exc}", http2.ErrorCode.REFUSED_STREAM,
                              is_unprocessed=True) from exc
        except http2.Http2UsageError as exc:
            raise translate_error(exc, Phase.REQUEST, link.where) from exc
        self.stream_id = stream_id
        link.register_locked(self)
        link.flush_locked()

    def request_sent(self) -> None:
        """The head ended the request (no body): wait for the response next."""
        self._set_state(ExchangeState.AWAITING)

    def send_body(self, body: RequestBody, expect_continue: bool,
                  interim: list[InformationalResponse],
                  on_informational: InformationalCallback | None,
                  expect_continue_s: float) -> None:
        """Send the body, then END_STREAM. With ``expect_continue``, wait for 100 first
        (or ``expect_continue_s``); a final response that comes first means the body is
        never sent (RFC 9110 §10.1.1), and a server that answers and resets the stream
        while the body goes out stops the upload: the response is read next, as usual.

        Raises:
            ClientError: the caller then closes the stream (RST_STREAM CANCEL).
        """
        if expect_continue:
            self._set_state(ExchangeState.EXPECTING)
            if not self._await_continue(interim, on_informational, expect_continue_s):
                self._set_state(ExchangeState.AWAITING)
                return
            self._set_state(ExchangeState.SENDING)
        link = self._link
        for piece in body.pieces():
            view = memoryview(piece)
            while view:
                with link.lock:
                    size = self._await_window(len(view))
                    if not size:
                        self._set_state(ExchangeState.AWAITING)
                        return                      # answered early: stop sending
                    self._send_data(bytes(view[:size]))
                view = view[size:]
        with link.lock:
            if self.error is None:
                try:
                    link.core.end_stream(self.stream_id)
                except http2.StreamClosedError as exc:
                    if not self.is_head_received:      # else: answered and reset early
                        raise self._reset_error(exc.reset_code) from exc
                except http2.Http2UsageError as exc:
                    raise translate_error(exc, Phase.REQUEST, link.where) from exc
                link.flush_locked()
            elif not self.is_head_received:
                raise self.error
        self._set_state(ExchangeState.AWAITING)

    def _await_window(self, wanted: int) -> int:
        """Wait (holding the lock) until some of ``wanted`` bytes may be sent; return how
        many, or 0 when the server has answered and the rest of the body is not wanted."""
        core = self._link.core
        end = _end_of_wait(self._write_s, self._deadline)
        self.is_sending = True
        try:
            while True:
                if self.error is not None:
                    if self.is_head_received:
                        return 0
                    raise self.error
                if self.is_head_received and self._has_ended_remotely():
                    return 0
                try:
                    window = core.local_flow_control_window(self.stream_id)
                except http2.StreamClosedError:
                    if self.is_head_received:
                        return 0
                    raise self._reset_error(http2.ErrorCode.STREAM_CLOSED) from None
                except http2.Http2UsageError as exc:
                    raise translate_error(exc, Phase.WRITE, self._link.where) from exc
                if window > 0 and self._link.unsent_bytes < MAX_UNSENT_BYTES:
                    return min(wanted, window, _SEND_PIECE_BYTES)
                self._wait(end, Phase.WRITE,
                           f" (send window {window}, {self._link.unsent_bytes} bytes unsent)")
        finally:
            self.is_sending = False

    def _has_ended_remotely(self) -> bool:
        return any(type(event) is http2.StreamEnded for event in self.events)

    def _await_continue(self, interim: list[InformationalResponse],
                        on_informational: InformationalCallback | None,
                        expect_continue_s: float) -> bool:
        """Wait for 100 Continue: True to send the body, False if a final head came."""
        wait_until = time.monotonic() + expect_continue_s
        while True:
            remaining = wait_until - time.monotonic()
            if remaining <= 0:
                return True
            event = self._pop_event(Phase.AWAIT, remaining, is_soft=True)
            if event is None:
                return True
            if type(event) is http2.InformationalResponseReceived:
                self._report(event, interim, on_informational)
                if event.status == 100:
                    return True
                continue
            with self._link.lock:
                self.events.appendleft(event)   # the final head: await_head takes it
            return False

    # -- the response head --------------------------------------------------------------------
    def await_head(self, interim: list[InformationalResponse],
                   on_informational: InformationalCallback | None) -> ResponseHead:
        """Wait for the final response head, reporting 1xx heads on the way.

        Raises:
            ClientError: ``ReadTimeout``, ``StreamError`` (``is_unprocessed`` for a refused
                stream), ``ServerDisconnected``...; the caller then closes the stream.
        """
        while True:
            event = self._pop_event(Phase.AWAIT, self._read_s)
            assert event is not None
            if type(event) is http2.InformationalResponseReceived:
                self._report(event, interim, on_informational)
                continue
            if type(event) is http2.ResponseReceived:
                self._set_state(ExchangeState.READING_BODY)
                return response_head(event, self.is_head_request)
            raise AssertionError(f"{event!r} before the response head")

    @staticmethod
    def _report(event: http2.InformationalResponseReceived, interim: list[InformationalResponse],
                on_informational: InformationalCallback | None) -> None:
        head = InformationalResponse(event.status, b"", _HTTP_VERSION, _headers(event.headers),
                                     NO_BODY, True)
        interim.append(head)
        if on_informational is not None:
            on_informational(head)

    # -- the response body (response.BodyStream) ---------------------------------------------
    def read_event(self) -> Data | EndOfMessage:
        """Return the next piece of the body (what has arrived, joined), or its end.

        Raises:
            ClientError: the stream is then CLOSED.
        """
        if self.state is not ExchangeState.READING_BODY:
            raise ClientError(f"{self._link.where}: no response body is being read "
                              f"(the stream is {self.state.value})")
        try:
            return self._read_event()
        except BaseException:
            self.close()
            raise

    def _read_event(self) -> Data | EndOfMessage:
        while True:
            event = self._pop_event(Phase.READ, self._read_s)
            kind = type(event)
            if kind is http2.DataReceived:
                assert isinstance(event, http2.DataReceived)
                return Data(self._take_data(event))
            if kind is http2.TrailersReceived:
                assert isinstance(event, http2.TrailersReceived)
                self._trailers = _headers(event.headers)
                continue
            if kind is http2.StreamEnded:
                self._set_state(ExchangeState.DONE)
                with self._link.lock:
                    self._link.finish_locked(self)
                return EndOfMessage(self._trailers) if self._trailers is not None \
                    else EndOfMessage()
            raise AssertionError(f"{event!r} inside a response body")

    def _take_data(self, first: http2.DataReceived) -> bytes:
        """Join the DATA already queued after ``first`` and give their credit back."""
        link = self._link
        pieces = [first.data]
        size = len(first.data)
        with link.lock:
            events = self.events
            while events and size < _READ_PIECE_BYTES and type(events[0]) is http2.DataReceived:
                event = events.popleft()
                assert isinstance(event, http2.DataReceived)
                pieces.append(event.data)
                size += len(event.data)
            if size and self.error is None:
                link.core.acknowledge_received_data(size, self.stream_id)
                link.flush_locked()
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def close(self) -> None:
        """Give up the stream: RST_STREAM(CANCEL) unless it has ended; idempotent."""
        if self.state is ExchangeState.CLOSED:
            return
        self.state = ExchangeState.CLOSED
        with self._link.lock:
            if self.stream_id:
                self._link.finish_locked(self)

    # -- waiting ------------------------------------------------------------------------------
    def _pop_event(self, phase: Phase, timeout_s: float | None,
                   is_soft: bool = False) -> http2.Event | None:
        """Pop the next event, waiting up to ``timeout_s`` (and the deadline); None when a
        soft wait times out. Raises the stream's error once its events are all taken."""
        end = _end_of_wait(timeout_s, self._deadline)
        with self._link.lock:
            while not self.events:
                if self.error is not None:
                    raise self.error
                try:
                    self._wait(end, phase)
                except ClientError:
                    if is_soft and not _is_past(self._deadline):
                        return None
                    raise
            return self.events.popleft()

    def _wait(self, end: float | None, phase: Phase, why: str = "") -> None:
        """Wait on the condition (lock held) until notified or ``end``; raise the
        timeout of ``phase`` at ``end`` (``why`` ends its message)."""
        remaining = None if end is None else end - time.monotonic()
        if remaining is not None and remaining <= 0:
            if _is_past(self._deadline):
                raise TotalTimeout("the total time limit was reached")
            error = translate_error(builtins.TimeoutError("timed out"), phase,
                                    self._link.where, self._deadline)
            raise type(error)(f"{error}{why}")
        self.cond.wait(remaining)

    def _send_data(self, data: bytes) -> None:
        """Queue DATA (lock held, within the window), translating the core's refusals."""
        link = self._link
        try:
            link.core.send_data(self.stream_id, data)
        except http2.StreamClosedError as exc:
            raise self._reset_error(exc.reset_code) from exc
        except http2.Http2UsageError as exc:
            raise translate_error(exc, Phase.REQUEST, link.where) from exc
        link.flush_locked()

    def _reset_error(self, code: int | None) -> ClientError:
        if self.error is not None:
            return self.error
        return stream_reset_error(self._link.where, code, self.is_head_received)


def _end_of_wait(timeout_s: float | None, deadline: float | None) -> float | None:
    end = None if timeout_s is None else time.monotonic() + timeout_s
    if deadline is not None and (end is None or deadline < end):
        end = deadline
    return end


def _is_past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline - 0.001


def _headers(fields: Sequence[tuple[bytes, bytes]]) -> Headers:
    regular = [(name, value) for name, value in fields if not name.startswith(b":")]
    return Headers(regular, [name for name, _ in regular])


def response_head(event: http2.ResponseReceived, is_head_request: bool) -> ResponseHead:
    """The ``Response`` head of an HTTP/2 response (no reason phrase; version ``2``).

    ``framing`` says what delimits the body: its content-length, or the end of the stream
    (``UNTIL_CLOSE``), or nothing (HEAD, 204, 304, a head that ends the stream).
    """
    status = event.status
    if event.end_stream or is_head_request or status in _NO_CONTENT:
        framing = NO_BODY
    elif event.content_length is not None:
        framing = Framing(BodyKind.LENGTH, event.content_length)
    else:
        framing = UNTIL_CLOSE
    return ResponseHead(status, b"", _HTTP_VERSION, _headers(event.headers), framing, True)


def request_fields(method: str, scheme: str, target: str, headers: Sequence[tuple[str, str]],
                   content_length: int | None) -> Fields:
    """The HTTP/2 header list of a request (RFC 9113 §8.3.1): Host becomes :authority,
    names are lowercased, connection-specific fields are dropped (§8.2.2), and TE only
    goes as ``trailers``. Values were checked by ``encode_request_head`` already."""
    authority = b""
    regular: Fields = []
    for name, value in headers:
        lowered = name.lower().encode("latin-1")
        if lowered == b"host":
            if not authority:
                authority = value.encode("latin-1")
            continue
        if lowered in http2.CONNECTION_SPECIFIC_FIELDS or \
                (lowered == b"te" and value.strip().lower() != "trailers"):
            continue
        regular.append((lowered, value.encode("latin-1")))
    if content_length is not None:
        regular.append((b"content-length", str(content_length).encode("ascii")))
    pseudo = [(b":method", method.encode("ascii")), (b":scheme", scheme.encode("ascii")),
              (b":authority", authority), (b":path", target.encode("latin-1"))]
    return pseudo + regular
