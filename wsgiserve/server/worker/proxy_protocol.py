"""PROXY protocol v1 (text) and v2 (binary) header parsing, sans-IO.

HAProxy, nginx (``proxy_protocol on``), AWS NLB and others send this header first on a
connection to say who the real client is. ``ProxyHeaderParser.feed`` takes bytes and
consumes only the header's own bytes, never what follows (HTTP, or a TLS ClientHello), so the
caller can peek at the socket and drop exactly what was consumed. Strict and bounded: any
deviation from the spec (haproxy.org/download/2.9/doc/proxy-protocol.txt) raises
``ProxyProtocolError``. Sans-IO: it imports only the standard library.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["V1_MAX_BYTES", "V2_MAX_BYTES", "ProxyHeader", "ProxyHeaderParser",
           "ProxyProtocolError"]

# Spec §2.1: a v1 line is at most 107 bytes, CRLF included.
V1_MAX_BYTES: Final = 107
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED_BYTES: Final = 16
# Spec §2.2 allows up to 65535 bytes of addresses and TLVs; HAProxy, AWS and GCP send a few
# hundred at most. 4 KiB bounds what an allowed peer can make us buffer.
V2_MAX_BYTES: Final = _V2_FIXED_BYTES + 4096
_V1_PREFIX: Final = b"PROXY "
# v2 address block sizes (spec §2.2): TCP/UDP over IPv4, over IPv6, and AF_UNIX.
# Family 1 (AF_INET) and 2 (AF_INET6): the address type, its size, its name in errors.
_V2_INET_FAMILIES: Final[dict[int, tuple[type[ipaddress.IPv4Address | ipaddress.IPv6Address],
                                         int, str]]] = {
    1: (ipaddress.IPv4Address, 4, "IPv4"), 2: (ipaddress.IPv6Address, 16, "IPv6")}
_V2_UNIX_BYTES: Final = 216


class ProxyProtocolError(Exception):
    """The bytes are not a valid PROXY protocol header: close the connection."""


@dataclass(frozen=True)
class ProxyHeader:
    """A parsed header. ``source``/``destination`` are None when the sender does not
    relay an address (v1 ``UNKNOWN``, v2 ``LOCAL``, v2 unspecified or AF_UNIX): keep the
    connection's own peer then."""

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    tlvs: bytes = b""


class ProxyHeaderParser:
    """Incremental parser: ``feed`` until ``result`` is set; one header per connection."""

    __slots__ = ("_buffer", "result")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.result: ProxyHeader | None = None

    def feed(self, data: bytes) -> int:
        """Consume the leading bytes of ``data`` that belong to the header.

        Returns:
            How many bytes of ``data`` were consumed; all of them while the header is
            incomplete, fewer once ``result`` is set (the rest is the next protocol's).

        Raises:
            ProxyProtocolError: the bytes cannot start or form a valid header, or the header
                would pass its size bound. The parser is then unusable.
            EOFError: ``data`` is empty (the peer closed) before the header was complete.
        """
        if self.result is not None:
            return 0
        if not data:
            raise EOFError("connection closed inside the PROXY protocol header")
        buffer = self._buffer
        first = (buffer[:1] or data[:1])[0]
        if first == _V1_PREFIX[0]:
            return self._feed_v1(data)
        if first == V2_SIGNATURE[0]:
            return self._feed_v2(data)
        raise ProxyProtocolError("not a PROXY protocol header")

    # -- version 1 -----------------------------------------------------------------------
    def _feed_v1(self, data: bytes) -> int:
        buffer = self._buffer
        end = data.find(b"\n")
        taken = len(data) if end < 0 else end + 1
        if len(buffer) + taken > V1_MAX_BYTES:
            raise ProxyProtocolError("PROXY v1 line longer than 107 bytes")
        buffer += data[:taken]
        known = bytes(buffer[:len(_V1_PREFIX)])
        if not _V1_PREFIX.startswith(known):
            raise ProxyProtocolError("not a PROXY protocol header")
        if end >= 0:
            self.result = _parse_v1(bytes(buffer))
        return taken

    # -- version 2 -----------------------------------------------------------------------
    def _feed_v2(self, data: bytes) -> int:
        buffer = self._buffer
        consumed = 0
        while True:
            need = _V2_FIXED_BYTES if len(buffer) < _V2_FIXED_BYTES \
                else _V2_FIXED_BYTES + struct.unpack_from("!H", buffer, 14)[0]
            take = min(need - len(buffer), len(data) - consumed)
            buffer += data[consumed:consumed + take]
            consumed += take
            signature = bytes(buffer[:len(V2_SIGNATURE)])
            if not V2_SIGNATURE.startswith(signature):
                raise ProxyProtocolError("bad PROXY v2 signature")
            if len(buffer) == _V2_FIXED_BYTES and need == _V2_FIXED_BYTES:
                length = struct.unpack_from("!H", buffer, 14)[0]
                if _V2_FIXED_BYTES + length > V2_MAX_BYTES:
                    raise ProxyProtocolError(f"PROXY v2 header of {length} bytes is over the "
                                             f"{V2_MAX_BYTES - _V2_FIXED_BYTES}-byte limit")
                _check_v2_fixed(bytes(buffer))
                if length:
                    continue
            if len(buffer) < need:
                return consumed  # all of data was header; wait for more
            self.result = _parse_v2(bytes(buffer))
            return consumed


def _parse_v1(line: bytes) -> ProxyHeader:
    if not line.endswith(b"\r\n"):
        raise ProxyProtocolError("PROXY v1 line not terminated by CRLF")
    parts = line[:-2].split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        # Spec §2.1: the receiver must ignore anything after UNKNOWN.
        return ProxyHeader(1, None, None)
    if len(parts) != 6:
        raise ProxyProtocolError("PROXY v1 line needs protocol, two addresses, two ports")
    _, protocol, source, destination, source_port, destination_port = parts
    if protocol == b"TCP4":
        version = 4
    elif protocol == b"TCP6":
        version = 6
    else:
        raise ProxyProtocolError("PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN")
    return ProxyHeader(1, (_v1_address(source, version), _v1_port(source_port)),
                       (_v1_address(destination, version), _v1_port(destination_port)))


def _v1_address(raw: bytes, version: int) -> str:
    try:
        address = ipaddress.ip_address(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyProtocolError("invalid address in PROXY v1 line") from None
    if address.version != version:
        raise ProxyProtocolError(f"PROXY v1 TCP{version} with an IPv{address.version} address")
    return str(address)


def _v1_port(raw: bytes) -> int:
    # Spec §2.1: decimal 0..65535; we also refuse leading zeros and signs, as HAProxy does.
    if not raw.isdigit() or (len(raw) > 1 and raw[:1] == b"0") or len(raw) > 5 \
            or int(raw) > 65535:
        raise ProxyProtocolError("invalid port in PROXY v1 line")
    return int(raw)


def _check_v2_fixed(header: bytes) -> None:
    version_command = header[12]
    if version_command >> 4 != 2:
        raise ProxyProtocolError("PROXY v2 header with a version other than 2")
    if version_command & 0x0F not in (0, 1):
        raise ProxyProtocolError("PROXY v2 command must be LOCAL or PROXY")
    family, transport = header[13] >> 4, header[13] & 0x0F
    if family > 3 or transport > 2:
        raise ProxyProtocolError("PROXY v2 unknown address family or transport")


def _parse_v2(header: bytes) -> ProxyHeader:
    command = header[12] & 0x0F
    family, transport = header[13] >> 4, header[13] & 0x0F
    block = header[_V2_FIXED_BYTES:]
    if command == 0 or family == 0:
        # LOCAL (health checks from the proxy itself) or AF_UNSPEC: keep the real peer.
        return ProxyHeader(2, None, None, block)
    if transport != 1:
        # Only STREAM makes sense in front of HTTP/1.1 over TCP.
        raise ProxyProtocolError("PROXY v2 header for a non-stream transport")
    if family == 3:
        if len(block) < _V2_UNIX_BYTES:
            raise ProxyProtocolError("PROXY v2 AF_UNIX address block too short")
        return ProxyHeader(2, None, None, block[_V2_UNIX_BYTES:])
    address_type, size, name = _V2_INET_FAMILIES[family]
    if len(block) < 2 * size + 4:  # source, destination, then their two ports
        raise ProxyProtocolError(f"PROXY v2 {name} address block too short")
    source = str(address_type(block[0:size]))
    destination = str(address_type(block[size:2 * size]))
    source_port, destination_port = struct.unpack_from("!HH", block, 2 * size)
    tlvs = block[2 * size + 4:]
    _check_tlvs(tlvs)
    return ProxyHeader(2, (source, source_port), (destination, destination_port), tlvs)


def _check_tlvs(tlvs: bytes) -> None:
    """Spec §2.2.7: type (1 byte), length (2 bytes), value; they must tile the rest."""
    offset = 0
    while offset < len(tlvs):
        if offset + 3 > len(tlvs):
            raise ProxyProtocolError("truncated PROXY v2 TLV")
        length = struct.unpack_from("!H", tlvs, offset + 1)[0]
        offset += 3 + length
        if offset > len(tlvs):
            raise ProxyProtocolError("PROXY v2 TLV runs past the header")
