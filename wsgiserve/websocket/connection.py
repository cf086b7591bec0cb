"""One WebSocket connection (RFC 6455 §5-7) for either role, after the opening handshake.

Bytes in: ``receive_data(data)`` (``b""`` when the peer closed the transport), then
``next_event()`` until ``NEED_DATA``. Messages come out whole (fragments reassembled,
permessage-deflate undone, text checked as UTF-8 as it arrives, so bad bytes fail before
the message ends). Bytes out: the ``send_*`` methods and ``close`` queue frames, and
``data_to_send()`` takes them. A received Ping is answered and a received Close echoed
without the caller's help. A protocol violation queues a Close with its code, leaves the
connection FAILED, and raises (``errors.ProtocolViolation``, ``exc.close_code``).

State machine (``ConnectionState``); a transition not in ``TRANSITIONS`` raises::

    OPEN ──close()──────────> CLOSING ──peer's Close──> CLOSED
      │ ──peer's Close (echoed)─────────────────────────> CLOSED
      │ ──violation (Close queued)──> FAILED  <──violation── CLOSING
      └ ──transport closed first──> LOST      <──────────── CLOSING

In CLOSING, frames are still read (and checked) until the peer's Close: data messages
are dropped (or returned, with ``should_deliver_while_closing``: what the peer sent before
it saw our Close), and Pings are reported but not answered. After the close handshake the
server closes the transport first; a client waits for the server to do it
(``should_close_transport``; RFC 6455 §7.1.1).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from enum import Enum
from typing import Final

from wsgiserve.websocket.deflate import DeflateParameters, PerMessageDeflate
from wsgiserve.websocket.errors import (
    InvalidPayload,
    LocalProtocolError,
    MessageTooBig,
    ProtocolViolation,
)
from wsgiserve.websocket.events import (
    NEED_DATA,
    BytesMessage,
    CloseReceived,
    ConnectionClosed,
    Event,
    Ping,
    Pong,
    Sentinel,
    TextMessage,
)
from wsgiserve.websocket.frames import (
    ABNORMAL_CLOSURE_CODE,
    MAX_CLOSE_REASON_BYTES,
    MAX_CONTROL_PAYLOAD_BYTES,
    RSV1,
    FrameHeader,
    Opcode,
    apply_mask,
    encode_close_payload,
    encode_header,
    parse_close_payload,
    parse_header,
)
from wsgiserve.websocket.messages import MessageAssembler

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "TRANSITIONS", "ConnectionState", "Role",
           "WebSocketConnection"]

# The default max_size of websockets (the Python library): 1 MiB per message.
DEFAULT_MAX_MESSAGE_BYTES: Final = 1 << 20
# Consumed bytes are dropped from the front of the input buffer once past this size.
_COMPACT_BYTES: Final = 65536
_CONTINUATION: Final = int(Opcode.CONTINUATION)
_TEXT: Final = int(Opcode.TEXT)
_CLOSE: Final = int(Opcode.CLOSE)
_PING: Final = int(Opcode.PING)
_PONG: Final = int(Opcode.PONG)


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class ConnectionState(Enum):
    # Identity hashing keeps the table lookups at C speed (as http.reader's states).
    __hash__ = object.__hash__

    OPEN = "open"
    CLOSING = "closing"      # we sent Close and wait for the peer's
    CLOSED = "closed"        # Close sent and received: the close handshake is done
    FAILED = "failed"        # we failed the connection (a protocol violation)
    LOST = "lost"            # the transport closed before the close handshake finished


_S = ConnectionState
TRANSITIONS: Final[dict[ConnectionState, frozenset[ConnectionState]]] = {
    _S.OPEN: frozenset({_S.CLOSING, _S.CLOSED, _S.FAILED, _S.LOST}),
    _S.CLOSING: frozenset({_S.CLOSED, _S.FAILED, _S.LOST}),
    _S.CLOSED: frozenset(),
    _S.FAILED: frozenset(),
    _S.LOST: frozenset(),
}


class WebSocketConnection:
    """The frame and message layer of one connection, for one role.

    Args:
        role: ``Role.SERVER`` (expects masked frames, sends unmasked) or ``Role.CLIENT``.
        deflate: the agreed permessage-deflate parameters, or None.
        max_message_bytes: the largest message accepted, counted after decompression
            (and on the wire); a bigger one fails the connection with 1009.
        max_frame_bytes: the largest frame accepted (1009); None: ``max_message_bytes``.
        max_send_frame_bytes: cut sent messages into frames of at most this many
            payload bytes; 0 sends each message as one frame.
        should_deliver_while_closing: return the data messages that arrive after our
            Close (RFC 6455 §7.1.2 leaves them to the endpoint; a command line echoing
            stdin wants the answers to its last lines); by default they are dropped.
    Raises:
        ValueError: a limit out of range, or ``deflate`` parameters that would have us
            compress with an 8-bit window (zlib cannot; see ``deflate``).
    """

    __slots__ = ("role", "max_frame_bytes", "max_send_frame_bytes", "_is_client", "_deflate",
                 "_message", "_state", "_error", "_buffer", "_pos", "_peer_closed", "_header",
                 "_remaining", "_mask_offset", "_outgoing", "_close_code", "_close_reason",
                 "_delivers_while_closing")

    def __init__(self, role: Role, *, deflate: DeflateParameters | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_frame_bytes: int | None = None, max_send_frame_bytes: int = 0,
                 should_deliver_while_closing: bool = False) -> None:
        if max_message_bytes <= 0 or (max_frame_bytes is not None and max_frame_bytes <= 0):
            raise ValueError("the message and frame limits must be > 0")
        if max_send_frame_bytes < 0:
            raise ValueError("max_send_frame_bytes must be >= 0")
        self.role = role
        self.max_frame_bytes = max_frame_bytes or max_message_bytes
        self.max_send_frame_bytes = max_send_frame_bytes
        self._is_client = role is Role.CLIENT
        self._deflate = (PerMessageDeflate(deflate, is_client=self._is_client)
                         if deflate is not None else None)
        self._message = MessageAssembler(self._deflate, max_message_bytes)
        self._state = _S.OPEN
        self._error: ProtocolViolation | None = None
        self._buffer: bytes | bytearray = b""
        self._pos = 0
        self._peer_closed = False
        self._header: FrameHeader | None = None     # the frame whose payload is being read
        self._remaining = 0                         # payload bytes of it still to come
        self._mask_offset = 0                       # payload bytes of it already read
        self._outgoing: list[bytes] = []
        self._close_code: int | None = None
        self._close_reason = ""
        self._delivers_while_closing = should_deliver_while_closing

    # -- state ----------------------------------------------------------------------------
    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def max_message_bytes(self) -> int:
        return self._message.max_message_bytes

    @property
    def should_close_transport(self) -> bool:
        """Whether to close the transport once ``data_to_send()`` is written.

        True when the connection failed, when the peer closed its side, and for a server
        once the close handshake is done. A client whose handshake is done waits for the
        server to close (with a timeout of its own) before closing (RFC 6455 §7.1.1).
        """
        state = self._state
        return (state is _S.FAILED or state is _S.LOST or self._peer_closed
                or (state is _S.CLOSED and not self._is_client))

    @property
    def buffered_bytes(self) -> int:
        """Received bytes not read yet: at most a frame header and a control frame's
        payload once ``next_event`` has returned ``NEED_DATA``."""
        return len(self._buffer) - self._pos

    @property
    def close_code(self) -> int | None:
        """The code of the peer's Close frame (1005 if it had none), or None."""
        return self._close_code

    @property
    def close_reason(self) -> str:
        return self._close_reason

    def _set_state(self, new: ConnectionState) -> None:
        if new not in TRANSITIONS[self._state]:
            raise AssertionError(f"connection transition {self._state} -> {new} is not in the table")
        self._state = new

    # -- bytes in ---------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed the transport.

        Bytes that arrive once nothing more will be read (CLOSED, FAILED, LOST) are dropped.

        Raises:
            LocalProtocolError: data after ``b""``.
        """
        if self._peer_closed:
            if data:
                raise LocalProtocolError("receive_data() after the transport closed")
            return
        if not data:
            self._peer_closed = True
            return
        state = self._state
        if state is not _S.OPEN and state is not _S.CLOSING:
            return
        buffer = self._buffer
        pos = self._pos
        if pos == len(buffer):
            self._buffer = data     # everything before was read: keep the caller's bytes
            self._pos = 0
            return
        if isinstance(buffer, bytes):
            buffer = bytearray(buffer)
        if pos > _COMPACT_BYTES and pos * 2 > len(buffer):
            del buffer[:pos]
            self._pos = 0
        buffer += data
        self._buffer = buffer

    def events(self) -> Iterator[Event]:
        """Yield events until ``NEED_DATA`` (not yielded), or up to ``ConnectionClosed``."""
        while (event := self.next_event()) is not NEED_DATA:
            yield event
            if isinstance(event, ConnectionClosed):
                return

    def next_event(self) -> Event | Sentinel:
        """Return the next event, or ``NEED_DATA``.

        Raises:
            ProtocolViolation: the peer broke the protocol or a limit (``exc.close_code``).
                Its Close frame is queued (unless we had sent ours), the state is FAILED,
                and every later call raises the same kind of error.
        """
        state = self._state
        if state is not _S.OPEN and state is not _S.CLOSING:
            return self._after_close()
        try:
            while True:
                header = self._header
                if header is None:
                    header = parse_header(self._buffer, self._pos)
                    if header is None:
                        return self._need_data()
                    self._start_frame(header)
                event: Event | Sentinel | None
                if header.opcode >= 8:
                    event = self._read_control_frame(header)
                else:
                    event = self._read_data(header)
                if event is not None:
                    return event if event is not NEED_DATA else self._need_data()
        except ProtocolViolation as exc:
            self._fail(exc)
            raise

    def _after_close(self) -> Event | Sentinel:
        if self._state is _S.FAILED:
            error = self._error
            assert error is not None
            raise type(error)(f"the connection already failed: {error}")
        if not self._peer_closed:
            return NEED_DATA
        if self._close_code is None:
            return ConnectionClosed(ABNORMAL_CLOSURE_CODE)
        return ConnectionClosed(self._close_code, self._close_reason)

    def _need_data(self) -> Event | Sentinel:
        if not self._peer_closed:
            return NEED_DATA
        # RFC 6455 §7.1.5: closed with no Close frame received is 1006.
        self._set_state(_S.LOST)
        self._drop_input()
        return ConnectionClosed(ABNORMAL_CLOSURE_CODE)

    def _fail(self, exc: ProtocolViolation) -> None:
        """_Fail the WebSocket Connection_ (RFC 6455 §7.1.7): send Close if we may, stop."""
        if self._state is _S.OPEN:
            reason = str(exc).encode("utf-8")[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")
            self._queue_frame(_CLOSE, encode_close_payload(exc.close_code, reason))
        self._set_state(_S.FAILED)
        self._error = exc
        self._drop_input()

    def _drop_input(self) -> None:
        self._buffer = b""
        self._pos = 0
        self._header = None
        self._message.abandon()

    def _start_frame(self, header: FrameHeader) -> None:
        """Check a new frame header against the connection (RFC 6455 §5.1-5.4)."""
        if (header.mask is None) is not self._is_client:
            raise ProtocolViolation("a client's frames must be masked" if not self._is_client
                                    else "a server's frames must not be masked")
        opcode = header.opcode
        rsv = header.rsv
        if opcode >= 8:
            if rsv:
                raise ProtocolViolation("RSV bits set on a control frame")
        else:
            message = self._message
            if opcode == _CONTINUATION:
                if not message.opcode:
                    raise ProtocolViolation("a continuation frame with no message started")
                if rsv:
                    # RFC 7692 §6.1: RSV1 marks the first frame of a message only.
                    raise ProtocolViolation("RSV bits set on a continuation frame")
            else:
                if message.opcode:
                    raise ProtocolViolation("a new message inside a fragmented message")
                if rsv and (rsv != RSV1 or self._deflate is None):
                    raise ProtocolViolation(f"RSV bits {rsv >> 4:03b} set without an extension")
                message.start(opcode, rsv == RSV1)
            length = header.length
            if length > self.max_frame_bytes:
                raise MessageTooBig(f"a frame of {length} bytes (limit {self.max_frame_bytes})")
            message.count_frame(length)
        self._pos += header.size
        self._header = header
        self._remaining = header.length
        self._mask_offset = 0

    def _read_data(self, header: FrameHeader) -> Event | Sentinel | None:
        """Take what has arrived of a data frame's payload; return the message when done
        (None: read on, nothing to return yet)."""
        buffer = self._buffer
        pos = self._pos
        take = min(len(buffer) - pos, self._remaining)
        if take == header.length and header.fin and header.opcode and not self._message.is_compressed:
            return self._read_whole_message(header)
        if take:
            chunk = buffer[pos:pos + take]
            if header.mask is not None:
                chunk = apply_mask(chunk, header.mask, self._mask_offset)
            self._pos = pos + take
            self._remaining -= take
            self._mask_offset += take
            self._message.add(chunk)
        if self._remaining:
            return NEED_DATA
        self._header = None
        if not header.fin:
            return None
        event = self._message.finish()
        return event if self._state is _S.OPEN or self._delivers_while_closing else None

    def _read_whole_message(self, header: FrameHeader) -> Event | None:
        """The fast path: an uncompressed message in one frame that has fully arrived."""
        pos = self._pos
        end = pos + header.length
        payload = self._buffer[pos:end]
        if header.mask is not None:
            payload = apply_mask(payload, header.mask)
        self._pos = end
        self._header = None
        self._message.end_unfragmented()
        event: Event
        if header.opcode == _TEXT:
            try:
                event = TextMessage(payload.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InvalidPayload(f"a text message that is not UTF-8: {exc.reason}") from None
        else:
            event = BytesMessage(bytes(payload))
        return event if self._state is _S.OPEN or self._delivers_while_closing else None

    def _read_control_frame(self, header: FrameHeader) -> Event | Sentinel:
        pos = self._pos
        end = pos + header.length
        if len(self._buffer) < end:
            return NEED_DATA
        payload = bytes(self._buffer[pos:end])
        if header.mask is not None:
            payload = apply_mask(payload, header.mask)
        self._pos = end
        self._header = None
        opcode = header.opcode
        if opcode == _PING:
            if self._state is _S.OPEN:
                self._queue_frame(_PONG, payload)
            return Ping(payload)
        if opcode == _PONG:
            return Pong(payload)
        return self._receive_close(payload)

    def _receive_close(self, payload: bytes) -> Event:
        """The peer's Close (RFC 6455 §5.5.1): check it, echo it if we had not sent ours."""
        code, reason = parse_close_payload(payload)
        if self._state is _S.OPEN:
            # Echo the code (RFC 6455 §5.5.1 "typically echos the status code it
            # received"); a Close without a code is answered by one without.
            self._queue_frame(_CLOSE, payload[:2])
        self._set_state(_S.CLOSED)
        self._close_code = code
        self._close_reason = reason
        self._drop_input()
        return CloseReceived(code, reason)

    # -- bytes out --------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes queued for the peer."""
        outgoing = self._outgoing
        if not outgoing:
            return b""
        data = b"".join(outgoing)
        outgoing.clear()
        return data

    def _check_open(self, what: str) -> None:
        if self._state is not _S.OPEN:
            raise LocalProtocolError(f"cannot {what}: the connection is {self._state.value}")

    def send_text(self, text: str, *, compress: bool = True) -> None:
        """Queue a text message (compressed when permessage-deflate was agreed, unless
        ``compress`` is False).

        Raises:
            LocalProtocolError: the connection is not OPEN, or ``text`` has a lone
                surrogate (it cannot be UTF-8).
        """
        self._check_open("send a message")
        try:
            payload = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise LocalProtocolError(f"text that cannot be UTF-8: {exc.reason}") from None
        self._send_message(_TEXT, payload, compress)

    def send_bytes(self, data: bytes, *, compress: bool = True) -> None:
        """Queue a binary message (see ``send_text``)."""
        self._check_open("send a message")
        self._send_message(int(Opcode.BINARY), bytes(data), compress)

    def _send_message(self, opcode: int, payload: bytes, compress: bool) -> None:
        rsv = 0
        if compress and self._deflate is not None:
            payload = self._deflate.compress(payload)
            rsv = RSV1
        limit = self.max_send_frame_bytes
        size = len(payload)
        if not limit or size <= limit:
            self._queue_frame(opcode, payload, rsv=rsv)
            return
        for start in range(0, size, limit):
            self._queue_frame(opcode if start == 0 else _CONTINUATION,
                              payload[start:start + limit], fin=start + limit >= size,
                              rsv=rsv if start == 0 else 0)

    def send_ping(self, payload: bytes = b"") -> None:
        """Queue a Ping.

        Raises:
            LocalProtocolError: not OPEN, or a payload over 125 bytes.
        """
        self._send_control(_PING, payload, "send a Ping")

    def send_pong(self, payload: bytes = b"") -> None:
        """Queue an unsolicited Pong (a heartbeat; Pings are answered already)."""
        self._send_control(_PONG, payload, "send a Pong")

    def _send_control(self, opcode: int, payload: bytes, what: str) -> None:
        self._check_open(what)
        if len(payload) > MAX_CONTROL_PAYLOAD_BYTES:
            raise LocalProtocolError(f"cannot {what} of {len(payload)} bytes (over 125)")
        self._queue_frame(opcode, bytes(payload))

    def close(self, code: int | None = 1000, reason: str = "") -> None:
        """Queue our Close frame and go to CLOSING (then wait for the peer's Close).

        Args:
            code: a code that may be sent (``frames.is_valid_close_code``), or None for a
                Close without a code (and then without a reason).
            reason: at most 123 bytes once UTF-8.
        Raises:
            LocalProtocolError: not OPEN, or an invalid code or reason.
        """
        self._check_open("close")
        self._queue_frame(_CLOSE, encode_close_payload(code, reason))
        self._set_state(_S.CLOSING)

    def _queue_frame(self, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> None:
        if self._is_client:
            # RFC 6455 §5.3: a fresh, unpredictable masking key for every frame.
            mask = os.urandom(4)
            self._outgoing.append(encode_header(opcode, len(payload), fin=fin, rsv=rsv, mask=mask))
            payload = apply_mask(payload, mask)
        else:
            self._outgoing.append(encode_header(opcode, len(payload), fin=fin, rsv=rsv))
        if payload:
            self._outgoing.append(payload)
