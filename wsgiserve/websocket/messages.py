"""Reassembling one incoming message from its frames' payloads (RFC 6455 §5.4, §5.6).

A ``MessageAssembler`` takes payload pieces in order, as they arrive: it undoes
permessage-deflate within the size limit, checks text as UTF-8 piece by piece (invalid
bytes fail at once, before the message ends), and joins the pieces when the last frame
ends. It counts the message both on the wire and after decompression.
"""
from __future__ import annotations

import codecs
from typing import Final

from wsgiserve.websocket.deflate import PerMessageDeflate
from wsgiserve.websocket.errors import InvalidPayload, MessageTooBig
from wsgiserve.websocket.events import BytesMessage, TextMessage
from wsgiserve.websocket.frames import Opcode

__all__ = ["MessageAssembler"]

_TEXT: Final = int(Opcode.TEXT)
_UTF8_DECODER: Final = codecs.getincrementaldecoder("utf-8")


class MessageAssembler:
    """The message being received, if any (``opcode`` is 0 between messages).

    Args:
        deflate: the connection's codec, or None without permessage-deflate.
        max_message_bytes: the limit, counted on the wire and after decompression.
    """

    __slots__ = ("opcode", "max_message_bytes", "_deflate", "_is_compressed", "_parts",
                 "_text_parts", "_decoder", "_message_bytes", "_wire_bytes")

    def __init__(self, deflate: PerMessageDeflate | None, max_message_bytes: int) -> None:
        self.opcode = 0
        self.max_message_bytes = max_message_bytes
        self._deflate = deflate
        self._is_compressed = False
        self._parts: list[bytes] = []
        self._text_parts: list[str] = []
        self._decoder: codecs.IncrementalDecoder | None = None
        self._message_bytes = 0          # after decompression
        self._wire_bytes = 0

    @property
    def is_compressed(self) -> bool:
        return self._is_compressed

    def start(self, opcode: int, is_compressed: bool) -> None:
        """Begin a message (TEXT or BINARY) whose first frame has RSV1 = ``is_compressed``."""
        self.opcode = opcode
        self._is_compressed = is_compressed
        self._message_bytes = self._wire_bytes = 0

    def count_frame(self, length: int) -> None:
        """Count a frame's payload length against the limit before reading it.

        Raises:
            MessageTooBig: the message would pass the limit on the wire.
        """
        self._wire_bytes += length
        if self._wire_bytes > self.max_message_bytes:
            raise MessageTooBig(f"a message over {self.max_message_bytes} bytes")

    def add(self, data: bytes | bytearray) -> None:
        """Add the next unmasked payload piece.

        Raises:
            MessageTooBig: it inflates past the limit.
            InvalidPayload: a text message whose bytes so far cannot be UTF-8.
            ProtocolViolation: invalid compressed data.
        """
        if self._is_compressed:
            assert self._deflate is not None
            data = self._deflate.decompress(bytes(data), self.max_message_bytes - self._message_bytes)
        self._message_bytes += len(data)
        decoder = self._decoder
        if decoder is None and self.opcode == _TEXT:
            decoder = self._decoder = _UTF8_DECODER()
        if decoder is not None:
            try:
                self._text_parts.append(decoder.decode(data))
            except UnicodeDecodeError as exc:
                raise InvalidPayload(f"a text message that is not UTF-8: {exc.reason}") from None
        elif data:
            self._parts.append(bytes(data))

    def finish(self) -> TextMessage | BytesMessage:
        """End the message (its last frame has been added) and return it.

        Raises the errors of ``add``; an unfinished UTF-8 sequence is ``InvalidPayload``.
        """
        if self._is_compressed:
            assert self._deflate is not None
            self.add(self._deflate.finish_message(self.max_message_bytes - self._message_bytes))
        event: TextMessage | BytesMessage
        if self.opcode == _TEXT:
            if self._decoder is not None:
                try:
                    self._decoder.decode(b"", True)
                except UnicodeDecodeError as exc:
                    raise InvalidPayload(f"a text message that is not UTF-8: {exc.reason}") from None
            event = TextMessage("".join(self._text_parts))
        else:
            event = BytesMessage(b"".join(self._parts))
        self._reset()
        return event

    def end_unfragmented(self) -> None:
        """The message was read whole by the caller (one uncompressed frame): forget it."""
        self.opcode = 0

    def abandon(self) -> None:
        """Forget an unfinished message: the connection stops reading."""
        if self.opcode and self._is_compressed and self._deflate is not None:
            self._deflate.abandon_message()
        self._reset()

    def _reset(self) -> None:
        self.opcode = 0
        self._parts = []
        self._text_parts = []
        self._decoder = None
