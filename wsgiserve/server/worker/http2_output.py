"""The side of an HTTP/2 connection that its streams' threads call (``StreamOutput``):
sending with flow control and socket backpressure, reading a request body, and waiting
for the client or the socket while reading and writing for the connection (``_wait``).
One lock guards the core, the output not yet sent and the socket's I/O; the loop's side
(``Http2``, the frames read and the connection's states) works under the same lock.
"""
from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Final

from wsgiserve.http2 import (
    Connection,
    ConnectionClosedError,
    ErrorCode,
    Http2UsageError,
    StreamClosedError,
)
from wsgiserve.server.worker.context import ServerContext
from wsgiserve.server.worker.states import CLOSED, CLOSING, ConnState
from wsgiserve.server.worker.stream import Fields, Http2Stream, StreamBody, StreamGone
from wsgiserve.server.worker.transport import Transport

__all__ = ["Http2Output"]

_log = logging.getLogger(__name__)

# Output the socket has not taken yet, past which a writing stream waits (nginx's
# http2_chunk_size is 8 KiB per write; we let a few windows' worth queue up).
OUTPUT_HIGH_WATER_BYTES: Final = 256 * 1024
# A stream's thread reading for the connection (``_wait``) looks up at least this often:
# what it waits for may have come another way (a reset, the connection's close).
READER_POLL_MAX_S: Final = 0.5


class Http2Output:
    """The output of an HTTP/2 connection (server role) and the streams' threads' calls.

    Streams write from their own threads: one lock guards the core, the output not yet
    sent and the socket's I/O. A stream that has to wait for the client (its request
    body, flow-control credit) or for the socket (output not yet taken) waits with the
    body timeout, and while it waits its thread reads and writes for the connection
    itself (``_wait``: one thread at a time, the loop's reads stand aside meanwhile):
    every serving thread may be in the app, and then no thread would be left to run the
    loop's reads. Nothing a slow client does holds a thread for longer than the body
    timeout. What it reads goes through the loop's side, ``_read_for_streams``.
    """

    __slots__ = ("transport", "context", "core", "_lock", "_changed", "_out", "_streams",
                 "_waiting", "_is_broken", "_queued", "_flush_later", "_has_reader",
                 "_is_event_left", "_waiters")

    state: ConnState  # the connection's (the loop's side sets it): none reads once CLOSING

    def __init__(self, transport: Transport, context: ServerContext) -> None:
        self.transport = transport
        self.context = context
        self.core = Connection(is_client=False, limits=context.http2_limits)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # windows grew, output drained
        self._out = bytearray(self.core.data_to_send())  # our preface: SETTINGS first
        self._streams: dict[int, Http2Stream] = {}
        self._waiting: deque[Http2Stream] = deque()  # streams waiting for an app slot
        self._is_broken = False  # the socket failed: streams' output is dropped
        # Streams handed to the pool that have sent nothing yet: while there are some, a
        # finished response waits for them (or the housekeeping tick) to share a write.
        # Streams waiting for an app slot are not counted: they answer after a thread
        # is free, however long that takes.
        self._queued = 0
        self._flush_later = self._flush_deferred  # one bound method: a set member
        self._has_reader = False  # a stream's thread reads for the connection (_wait)
        self._is_event_left = False  # the loop left it an event meanwhile (on_readable)
        self._waiters = 0  # streams' threads waiting on _changed (in _wait)

    # -- both sides (under the lock) --------------------------------------------------------
    def _guard(self, method: Any, *args: Any) -> None:
        """Call a core method that fails only once the connection is closed."""
        try:
            method(*args)
        except (ConnectionClosedError, StreamClosedError):
            pass

    def _end_streams(self, error: BaseException) -> None:
        for stream in list(self._streams.values()):
            stream.on_reset(error)
        for stream in self._waiting:
            self._streams.pop(stream.stream_id, None)
        self._waiting.clear()
        self._changed.notify_all()

    # -- writing (under the lock) -----------------------------------------------------------
    def _send_queued(self) -> None:
        data = self.core.data_to_send()
        if data:
            self._out += data
        self._flush()

    def _flush(self) -> None:
        out = self._out
        if self._is_broken:
            out.clear()
            return
        if self._waiters and out:
            # Whoever sends wakes the streams waiting for the socket to take more: with
            # edge-triggered polling, the writable edge may come with a readable one and
            # be handled by on_readable, which flushes too.
            self._changed.notify_all()
        while out:
            try:
                sent = self.transport.send_partial(out)
            except OSError as exc:
                _log.debug("send to %s failed: %s", self.transport.remote_addr, exc)
                self._is_broken = True
                out.clear()
                self._end_streams(StreamGone("the connection failed"))
                return
            if not sent:
                return  # the socket is full: its writable edge calls on_writable
            del out[:sent]

    # -- waiting: a stream's thread reads and writes for the connection -----------------------
    def _wait(self, deadline: float, what: str) -> None:
        """Wait (once: the caller looks again) for the client or the socket, by reading
        and writing for the connection when no other stream's thread does.

        Called with the lock held, by a stream's thread that cannot go on: it may be the
        only serving thread not in the app, and the loop's reads need one. While it polls
        the socket (the lock released), the loop's reads stand aside (``_has_reader``);
        it reads all the socket holds before it lets go (and it reads once more when the
        loop stood aside after its poll had ended), so nothing is left unread behind an
        edge the loop was told about.

        Raises:
            TimeoutError: ``deadline`` passed.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out waiting for {what}")
        if self._has_reader or self._is_broken or self.state is CLOSING \
                or self.state is CLOSED:
            self._waiters += 1
            try:
                self._changed.wait(min(remaining, READER_POLL_MAX_S))
            finally:
                self._waiters -= 1
            return
        self._has_reader = True
        self._is_event_left = False
        try:
            ready = self._poll(min(remaining, READER_POLL_MAX_S))
            if self._is_event_left:
                # The loop left us an event while the lock was free, perhaps after our
                # poll had ended (timed out, or saw only POLLOUT) but before we took the
                # lock back: act on it both ways. No event comes for those bytes again
                # (edge-triggered), so unread now they could wait for good.
                ready |= select.POLLIN | select.POLLOUT
            if ready and not self._is_broken and self.state is not CLOSED \
                    and self.state is not CLOSING:
                if ready & select.POLLOUT:
                    self._flush()
                if ready & ~select.POLLOUT:
                    self._read_for_streams()
        finally:
            self._has_reader = False
            self._changed.notify_all()

    def _poll(self, timeout_s: float) -> int:
        """Wait for the socket to be readable (or writable, while output waits) with the
        lock released; the events seen."""
        poller = select.poll()
        poller.register(self.transport.fileno,
                        select.POLLIN | select.POLLOUT if self._out else select.POLLIN)
        self._lock.release()
        try:
            ready = poller.poll(timeout_s * 1000)
        finally:
            self._lock.acquire()
        mask = 0
        for _, events in ready:
            mask |= events
        return mask

    def _read_for_streams(self) -> None:
        """Read what the socket holds, as the loop does, from a stream's thread (``_wait``,
        the lock held); the loop's side reads the frames."""
        raise NotImplementedError

    def _check(self, stream_id: int) -> Http2Stream:
        stream = self._streams.get(stream_id)
        if stream is None or stream.is_reset or self._is_broken:
            raise StreamGone("the stream was reset or the connection closed")
        return stream

    # -- StreamOutput: called by the streams' threads ----------------------------------------
    def send_informational(self, stream_id: int, fields: Fields) -> None:
        with self._lock:
            self._check(stream_id)
            try:
                self.core.send_informational(stream_id, fields)
            except (StreamClosedError, ConnectionClosedError) as exc:
                raise StreamGone(str(exc)) from exc
            except Http2UsageError:
                return  # the final head went first: too late for hints
            self._send_queued()

    def send_trailers(self, stream_id: int, fields: Fields) -> None:
        with self._lock:
            self._check(stream_id)
            try:
                self.core.send_trailers(stream_id, fields)
            except (StreamClosedError, ConnectionClosedError) as exc:
                raise StreamGone(str(exc)) from exc
            self._send_soon(True)

    def send(self, stream_id: int, head: Fields | None, data: bytes, *,
             end_stream: bool) -> None:
        core = self.core
        with self._lock:
            stream = self._check(stream_id)
            try:
                if head is not None:
                    if not stream.has_sent:
                        stream.has_sent = True
                        self._queued -= 1
                    core.send_headers(stream_id, head, end_stream=end_stream and not data)
                    if not data:
                        self._send_soon(end_stream)
                        return
                if len(data) <= core.local_flow_control_window(stream_id) \
                        and len(self._out) <= OUTPUT_HIGH_WATER_BYTES:
                    core.send_data(stream_id, data, end_stream=end_stream)
                    self._send_soon(end_stream)
                    return
                self._send_waiting(stream_id, memoryview(data), end_stream)
            except (StreamClosedError, ConnectionClosedError) as exc:
                raise StreamGone(str(exc)) from exc

    def _send_soon(self, is_response_end: bool) -> None:
        """Send what is queued; a finished response whose connection has streams about to
        answer too waits for them (or the housekeeping tick), so they share one write."""
        if is_response_end and self._queued > 0:
            data = self.core.data_to_send()
            if data:
                self._out += data
            self.context.deferred_flushes.add(self._flush_later)
            return
        self._send_queued()

    def _send_waiting(self, stream_id: int, view: memoryview, end_stream: bool) -> None:
        """Send ``view`` as flow-control credit and the socket allow, waiting for both
        with the body timeout; when it passes, the stream is reset (CANCEL)."""
        core = self.core
        deadline = time.monotonic() + self.context.body_timeout_s
        with self._waiting_for_the_client(stream_id):
            try:
                while True:
                    if len(self._out) > OUTPUT_HIGH_WATER_BYTES:
                        self._send_queued()
                        self._wait(deadline, "the client to read the response")
                        self._check(stream_id)
                        continue
                    window = core.local_flow_control_window(stream_id)
                    if len(view) <= window:
                        core.send_data(stream_id, bytes(view), end_stream=end_stream)
                        self._send_queued()
                        return
                    if window:
                        core.send_data(stream_id, bytes(view[:window]))
                        view = view[window:]
                        continue
                    self._send_queued()
                    self._wait(deadline, "flow-control credit from the client")
                    self._check(stream_id)
            except TimeoutError:
                self._guard(core.reset_stream, stream_id, ErrorCode.CANCEL)
                self._send_queued()
                raise

    @contextlib.contextmanager
    def _waiting_for_the_client(self, stream_id: int) -> Iterator[None]:
        """Time a stream waits for its client is not app time: its start in
        ``context.in_app`` (the heartbeat withholds beats for an app running past the
        timeout) moves on by the time waited."""
        stream = self._streams.get(stream_id)
        in_app = self.context.in_app
        started = in_app.pop(stream, None) if stream is not None else None
        since = time.monotonic()
        try:
            yield
        finally:
            if started is not None:
                in_app[stream] = started + (time.monotonic() - since)

    def _flush_deferred(self) -> None:
        with self._lock:
            self._flush()

    def reset(self, stream_id: int, error_code: int) -> None:
        with self._lock:
            if not self._is_broken:
                self._guard(self.core.reset_stream, stream_id, error_code)
                self._send_queued()

    def read_body(self, stream_id: int, body: StreamBody, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            if (piece := body.take()) is None:
                with self._waiting_for_the_client(stream_id):
                    while (piece := body.take()) is None:
                        self._wait(deadline, "the request body")
            if piece and not self._is_broken:
                self._guard(self.core.acknowledge_received_data, len(piece), stream_id)
                self._send_queued()
            return piece

