"""permessage-deflate (RFC 7692): parameter negotiation for both roles, and the codec.

``DeflateOptions`` are our wishes, named after the wire parameters; ``negotiate_offers``
(server) and ``accept_response`` (client) turn them and the peer's parameters into the
agreed ``DeflateParameters``, from which each connection builds a ``PerMessageDeflate``.
Decompression is capped: no message inflates past its limit, whatever its ratio.

zlib cannot compress raw deflate with an 8-bit window (deflateInit2 refuses -8, and older
versions silently used 9, which a peer inflating with 256 bytes cannot read). So we never
agree to compress with 8 bits: a server declines an offer with server_max_window_bits=8,
and a client refuses a response with client_max_window_bits=8. Inflating with 8 is fine;
we inflate with at least 9 bits, which also reads what those older zlibs wrote.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from wsgiserve.websocket.errors import InvalidHandshakeResponse, MessageTooBig, ProtocolViolation

__all__ = ["EXTENSION_NAME", "DeflateOptions", "DeflateParameters", "PerMessageDeflate",
           "accept_response", "negotiate_offers", "offer_header"]

EXTENSION_NAME: Final = "permessage-deflate"
Params = Sequence[tuple[str, str | None]]

# RFC 7692 §7.1.2: window bits are 8 to 15; 15 (32 KiB) is what a peer may use when the
# parameter is absent.
DEFAULT_WINDOW_BITS: Final = 15
_WIRE_WINDOW_BITS: Final = {str(bits): bits for bits in range(8, 16)}
# See the module docstring: the smallest window zlib compresses raw deflate with.
MIN_COMPRESS_WINDOW_BITS: Final = 9
# RFC 7692 §7.2.1: a compressed message ends with an empty stored block whose last four
# bytes the sender removes and the receiver appends back (§7.2.2).
_TAIL: Final = b"\x00\x00\xff\xff"
_SERVER_NO_CONTEXT: Final = "server_no_context_takeover"
_CLIENT_NO_CONTEXT: Final = "client_no_context_takeover"
_SERVER_BITS: Final = "server_max_window_bits"
_CLIENT_BITS: Final = "client_max_window_bits"


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """What we want from permessage-deflate, in the wire parameters' names.

    The meaning is the same in both roles: ``server_*`` limits the server's compressor,
    ``client_*`` the client's. A server imposes the two ``*_no_context_takeover`` and
    ``server_max_window_bits`` and asks for ``client_max_window_bits`` (when the client
    allows it); a client asks for all four in its offer. Window bits are 9 to 15 (module
    docstring); None leaves the window at 15. ``compression_level`` and ``memory_level``
    go to zlib (memory per compressor: 2**(bits+2) + 2**(memory_level+9) bytes).
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    compression_level: int = zlib.Z_DEFAULT_COMPRESSION
    memory_level: int = zlib.DEF_MEM_LEVEL

    def __post_init__(self) -> None:
        for name in (_SERVER_BITS, _CLIENT_BITS):
            bits = getattr(self, name)
            if bits is not None and not MIN_COMPRESS_WINDOW_BITS <= bits <= DEFAULT_WINDOW_BITS:
                raise ValueError(f"DeflateOptions.{name}: must be 9 to 15, got {bits}")
        if not -1 <= self.compression_level <= 9:
            raise ValueError(f"DeflateOptions.compression_level: must be -1 to 9, "
                             f"got {self.compression_level}")
        if not 1 <= self.memory_level <= 9:
            raise ValueError(f"DeflateOptions.memory_level: must be 1 to 9, got {self.memory_level}")


@dataclass(frozen=True, slots=True)
class DeflateParameters:
    """The agreed parameters: what the server's response says, plus our zlib settings.

    A window of None was not in the response and is 15.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    compression_level: int = zlib.Z_DEFAULT_COMPRESSION
    memory_level: int = zlib.DEF_MEM_LEVEL

    def header_value(self) -> bytes:
        """The Sec-WebSocket-Extensions element of the server's response."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append(_SERVER_NO_CONTEXT)
        if self.client_no_context_takeover:
            parts.append(_CLIENT_NO_CONTEXT)
        if self.server_max_window_bits is not None:
            parts.append(f"{_SERVER_BITS}={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            parts.append(f"{_CLIENT_BITS}={self.client_max_window_bits}")
        return "; ".join(parts).encode("ascii")


@dataclass(frozen=True, slots=True)
class _Params:
    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int | None
    client_max_window_bits: int | None
    has_client_max_window_bits: bool       # the parameter was present (maybe valueless)


def _parse_params(params: Params, *, is_offer: bool) -> _Params:
    """Check one offer's or response's parameters (RFC 7692 §7, §7.1).

    Raises:
        ValueError: an unknown or repeated parameter, or an invalid value.
    """
    seen: set[str] = set()
    flags = {_SERVER_NO_CONTEXT: False, _CLIENT_NO_CONTEXT: False}
    bits: dict[str, int | None] = {_SERVER_BITS: None, _CLIENT_BITS: None}
    for name, value in params:
        if name in seen:
            raise ValueError(f"{name} is repeated")
        seen.add(name)
        if name in flags:
            if value is not None:
                raise ValueError(f"{name} takes no value")
            flags[name] = True
        elif name in bits:
            # §7.1.2.2: only an offer's client_max_window_bits may come without a value.
            if value is None and is_offer and name == _CLIENT_BITS:
                continue
            if value not in _WIRE_WINDOW_BITS:
                raise ValueError(f"{name}={value}: not 8 to 15")
            bits[name] = _WIRE_WINDOW_BITS[value]
        else:
            raise ValueError(f"unknown parameter {name}")
    return _Params(flags[_SERVER_NO_CONTEXT], flags[_CLIENT_NO_CONTEXT], bits[_SERVER_BITS],
                   bits[_CLIENT_BITS], _CLIENT_BITS in seen)


def negotiate_offers(offers: Sequence[Params], options: DeflateOptions) -> DeflateParameters | None:
    """Server side: accept the first permessage-deflate offer we can honour.

    Args:
        offers: the parameters of each permessage-deflate offer, in the client's order.
        options: what the server wants.
    Returns:
        The agreed parameters (``header_value()`` goes in the response), or None when
        every offer is declined (RFC 7692 §7.1: an offer with an unknown, repeated or
        invalid parameter, or a configuration we do not support, is declined, not an
        error).
    """
    for params in offers:
        try:
            offer = _parse_params(params, is_offer=True)
        except ValueError:
            continue
        # §7.1.2.1: the server's window is at most what the client asked (if it did); the
        # server may name a window even when the client did not ask.
        server_bits = options.server_max_window_bits
        if offer.server_max_window_bits is not None:
            if offer.server_max_window_bits < MIN_COMPRESS_WINDOW_BITS:
                continue
            server_bits = min(server_bits or DEFAULT_WINDOW_BITS, offer.server_max_window_bits)
        # §7.1.2.2: client_max_window_bits may be answered only when it was offered, with a
        # value no larger than the offer's.
        client_bits = None
        if offer.has_client_max_window_bits and options.client_max_window_bits is not None:
            client_bits = min(options.client_max_window_bits,
                              offer.client_max_window_bits or DEFAULT_WINDOW_BITS)
        return DeflateParameters(
            server_no_context_takeover=(offer.server_no_context_takeover
                                        or options.server_no_context_takeover),
            client_no_context_takeover=(offer.client_no_context_takeover
                                        or options.client_no_context_takeover),
            server_max_window_bits=server_bits,
            client_max_window_bits=client_bits,
            compression_level=options.compression_level,
            memory_level=options.memory_level,
        )
    return None


def offer_header(options: DeflateOptions) -> bytes:
    """Client side: the Sec-WebSocket-Extensions offer for ``options``.

    ``client_max_window_bits`` is always offered (valueless when we have no limit of our
    own): it lets a server that wants to save memory ask for a smaller window.
    """
    parts = [EXTENSION_NAME]
    if options.server_no_context_takeover:
        parts.append(_SERVER_NO_CONTEXT)
    if options.client_no_context_takeover:
        parts.append(_CLIENT_NO_CONTEXT)
    if options.server_max_window_bits is not None:
        parts.append(f"{_SERVER_BITS}={options.server_max_window_bits}")
    if options.client_max_window_bits is not None:
        parts.append(f"{_CLIENT_BITS}={options.client_max_window_bits}")
    else:
        parts.append(_CLIENT_BITS)
    return "; ".join(parts).encode("ascii")


def accept_response(params: Params, options: DeflateOptions) -> DeflateParameters:
    """Client side: check the server's answer to the offer ``offer_header(options)`` made.

    Raises:
        InvalidHandshakeResponse: a parameter that is unknown, repeated, invalid, or not
            an acceptable answer to our offer (RFC 7692 §7.1: the client then fails the
            WebSocket connection).
    """
    try:
        response = _parse_params(params, is_offer=False)
    except ValueError as exc:
        raise InvalidHandshakeResponse(f"permessage-deflate response: {exc}") from exc
    if options.server_no_context_takeover and not response.server_no_context_takeover:
        raise InvalidHandshakeResponse("permessage-deflate response: server_no_context_takeover "
                                       "was requested but not accepted")
    asked = options.server_max_window_bits
    if asked is not None and (response.server_max_window_bits is None
                              or response.server_max_window_bits > asked):
        raise InvalidHandshakeResponse(f"permessage-deflate response: server_max_window_bits "
                                       f"must be at most {asked}")
    client_bits = response.client_max_window_bits
    if client_bits is not None:
        limit = options.client_max_window_bits or DEFAULT_WINDOW_BITS
        if not MIN_COMPRESS_WINDOW_BITS <= client_bits <= limit:
            raise InvalidHandshakeResponse(f"permessage-deflate response: client_max_window_bits="
                                           f"{client_bits} (we compress with 9 to {limit})")
    elif options.client_max_window_bits is not None:
        client_bits = options.client_max_window_bits   # our hint binds us (§7.1.2.2)
    return DeflateParameters(
        server_no_context_takeover=response.server_no_context_takeover,
        # §7.1.1.2: a client that offered client_no_context_takeover keeps to it.
        client_no_context_takeover=(response.client_no_context_takeover
                                    or options.client_no_context_takeover),
        server_max_window_bits=response.server_max_window_bits,
        client_max_window_bits=client_bits,
        compression_level=options.compression_level,
        memory_level=options.memory_level,
    )


class PerMessageDeflate:
    """One connection's compressor and decompressor (RFC 7692 §7.2).

    Both are created when first needed; with "no context takeover" on the receiving side
    the decompressor is dropped after each message (its ~40 KiB are freed while idle).
    """

    __slots__ = ("_compressor", "_decompressor", "_compress_bits", "_decompress_bits",
                 "_flush_mode", "_reset_decompressor", "_level", "_memory_level")

    def __init__(self, params: DeflateParameters, *, is_client: bool) -> None:
        if is_client:
            local_bits, local_reset = params.client_max_window_bits, params.client_no_context_takeover
            remote_bits, remote_reset = params.server_max_window_bits, params.server_no_context_takeover
        else:
            local_bits, local_reset = params.server_max_window_bits, params.server_no_context_takeover
            remote_bits, remote_reset = params.client_max_window_bits, params.client_no_context_takeover
        self._compress_bits = local_bits or DEFAULT_WINDOW_BITS
        if self._compress_bits < MIN_COMPRESS_WINDOW_BITS:
            raise ValueError("zlib cannot compress raw deflate with an 8-bit window")
        self._decompress_bits = max(MIN_COMPRESS_WINDOW_BITS, remote_bits or DEFAULT_WINDOW_BITS)
        # A full flush ends the message as a sync flush does (same 00 00 ff ff tail) and
        # also empties the history: no context takeover without a new compressor each time.
        self._flush_mode = zlib.Z_FULL_FLUSH if local_reset else zlib.Z_SYNC_FLUSH
        self._reset_decompressor = remote_reset
        self._level = params.compression_level
        self._memory_level = params.memory_level
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def compress(self, data: bytes) -> bytes:
        """Return the compressed payload of one whole message."""
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                self._level, zlib.DEFLATED, -self._compress_bits, self._memory_level)
        out = compressor.compress(data) + compressor.flush(self._flush_mode)
        return out[:-4] if out.endswith(_TAIL) else out

    def decompress(self, data: bytes, max_bytes: int) -> bytes:
        """Inflate the next piece of a compressed message's payload.

        Args:
            data: payload bytes (unmasked), in order; any split gives the same output.
            max_bytes: how many more bytes the message may inflate to.
        Raises:
            MessageTooBig: the output would pass ``max_bytes``; at most ``max_bytes + 1``
                bytes were produced (zlib's ``max_length``), so memory stays bounded.
            ProtocolViolation: the data is not valid deflate.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self._decompress_bits)
        elif decompressor.eof:
            # A sender may end a message with a final (BFINAL=1) block (one of RFC 7692's
            # §7.2.3 examples); what follows it in the message is padding, not data, and
            # is dropped rather than kept in zlib's unused_data.
            return b""
        try:
            out = decompressor.decompress(data, max_bytes + 1)
        except zlib.error as exc:
            raise ProtocolViolation(f"invalid compressed data: {exc}") from exc
        if len(out) > max_bytes:
            raise MessageTooBig("the message inflates past its size limit")
        return out

    def finish_message(self, max_bytes: int) -> bytes:
        """Inflate what the end of a message still holds (the tail RFC 7692 §7.2.2 adds).

        Raises the same errors as ``decompress``.
        """
        decompressor = self._decompressor
        out = b""
        if decompressor is None or not decompressor.eof:
            out = self.decompress(_TAIL, max_bytes)
            decompressor = self._decompressor
        if self._reset_decompressor or (decompressor is not None and decompressor.eof):
            # After a final block zlib's stream is over: the next message gets a new one
            # (a peer that then refers back to the previous window fails as invalid data).
            self._decompressor = None
        return out

    def abandon_message(self) -> None:
        """Forget a message that was not finished (the connection failed mid-message)."""
        self._decompressor = None
