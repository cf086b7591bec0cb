"""PROXY protocol v1/v2 parsing without sockets: whole, byte by byte, and followed by the
next protocol's bytes (which must be left unconsumed). The end-to-end cases, with allowed
and disallowed peers, are in test_proxy.py."""
from __future__ import annotations

import ipaddress
import struct

import pytest

from wsgiserve.server.worker.proxy_protocol import (
    V2_MAX_BYTES,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderParser,
    ProxyProtocolError,
)

TAIL = b"\x16\x03\x01\x02\x00GET / HTTP/1.1\r\n"  # what follows: a ClientHello or a request


def v2(command: int = 1, family: int = 1, transport: int = 1, block: bytes = b"",
       version: int = 2) -> bytes:
    return (V2_SIGNATURE + bytes([(version << 4) | command, (family << 4) | transport])
            + struct.pack("!H", len(block)) + block)


def v2_inet(source: str, destination: str, source_port: int, destination_port: int,
            tlvs: bytes = b"") -> bytes:
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = 1 if src.version == 4 else 2
    return v2(family=family, block=src.packed + dst.packed
              + struct.pack("!HH", source_port, destination_port) + tlvs)


def replay(raw: bytes) -> list[ProxyHeader]:
    """Parse ``raw + TAIL`` whole and byte by byte; both must agree and leave TAIL."""
    results = []
    whole = ProxyHeaderParser()
    assert whole.feed(raw + TAIL) == len(raw)
    results.append(whole.result)
    bytewise = ProxyHeaderParser()
    for index in range(len(raw)):
        assert bytewise.result is None
        assert bytewise.feed(raw[index:index + 1]) == 1
    assert bytewise.feed(TAIL) == 0
    results.append(bytewise.result)
    assert results[0] == results[1]
    return [result for result in results if result is not None]


VALID = [
    pytest.param(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
                 ProxyHeader(1, ("192.0.2.1", 56324), ("198.51.100.2", 443)), id="v1-tcp4"),
    pytest.param(b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n",
                 ProxyHeader(1, ("2001:db8::1", 65535), ("2001:db8::2", 0)), id="v1-tcp6"),
    pytest.param(b"PROXY UNKNOWN\r\n", ProxyHeader(1, None, None), id="v1-unknown"),
    pytest.param(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyHeader(1, None, None),
                 id="v1-unknown-rest-ignored"),
    pytest.param(b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n",
                 ProxyHeader(1, ("ffff:" * 7 + "ffff", 65535), ("ffff:" * 7 + "ffff", 65535)),
                 id="v1-longest-107-bytes"),
    pytest.param(v2_inet("203.0.113.7", "10.0.0.1", 40000, 8443),
                 ProxyHeader(2, ("203.0.113.7", 40000), ("10.0.0.1", 8443)), id="v2-tcp4"),
    pytest.param(v2_inet("2001:db8::7", "2001:db8::1", 1, 2),
                 ProxyHeader(2, ("2001:db8::7", 1), ("2001:db8::1", 2)), id="v2-tcp6"),
    pytest.param(v2_inet("203.0.113.7", "10.0.0.1", 1, 2, tlvs=b"\x01\x00\x08http/1.1"),
                 ProxyHeader(2, ("203.0.113.7", 1), ("10.0.0.1", 2), b"\x01\x00\x08http/1.1"),
                 id="v2-with-alpn-tlv"),
    pytest.param(v2(command=0, family=0, transport=0), ProxyHeader(2, None, None),
                 id="v2-local-health-check"),
    pytest.param(v2(command=0, block=b"x" * 12), ProxyHeader(2, None, None, b"x" * 12),
                 id="v2-local-ignores-addresses"),
    pytest.param(v2(family=3, block=b"\0" * 216), ProxyHeader(2, None, None),
                 id="v2-unix-keeps-peer"),
]


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_headers(raw: bytes, expected: ProxyHeader) -> None:
    assert replay(raw) == [expected, expected]


INVALID = [
    pytest.param(b"GET / HTTP/1.1\r\n", id="http-not-proxy"),
    pytest.param(b"PUT / HTTP/1.1\r\n", id="starts-with-p-but-not-proxy"),
    pytest.param(b"\x16\x03\x01", id="tls-not-proxy"),
    pytest.param(b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", id="v1-lowercase"),
    pytest.param(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", id="v1-bare-lf"),
    pytest.param(b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", id="v1-double-space"),
    pytest.param(b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", id="v1-missing-port"),
    pytest.param(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", id="v1-extra-field"),
    pytest.param(b"PROXY TCP4 ::1 ::1 1 2\r\n", id="v1-tcp4-with-ipv6"),
    pytest.param(b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n", id="v1-tcp6-with-ipv4"),
    pytest.param(b"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", id="v1-bad-address"),
    pytest.param(b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", id="v1-port-too-big"),
    pytest.param(b"PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n", id="v1-port-leading-zero"),
    pytest.param(b"PROXY TCP4 1.2.3.4 1.2.3.4 +80 2\r\n", id="v1-port-sign"),
    pytest.param(b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", id="v1-udp"),
    pytest.param(b"PROXY TCP4 " + b"1" * 100 + b"\r\n", id="v1-over-107-bytes"),
    pytest.param(V2_SIGNATURE[:5] + b"X", id="v2-bad-signature"),
    pytest.param(v2(version=1), id="v2-version-1"),
    pytest.param(v2(command=2), id="v2-unknown-command"),
    pytest.param(v2(family=4), id="v2-unknown-family"),
    pytest.param(v2(block=b"\0" * 11), id="v2-ipv4-block-short"),
    pytest.param(v2(family=2, block=b"\0" * 35), id="v2-ipv6-block-short"),
    pytest.param(v2(transport=2, block=b"\0" * 12), id="v2-udp"),
    pytest.param(v2(block=b"\0" * 12 + b"\x01\x00\x09http/1.1"), id="v2-tlv-overruns"),
    pytest.param(v2(block=b"\0" * 12 + b"\x01\x00"), id="v2-tlv-truncated"),
    pytest.param(V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_MAX_BYTES), id="v2-too-long"),
]


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_headers_raise_whole_and_bytewise(raw: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        ProxyHeaderParser().feed(raw + b"\r\n" + TAIL)
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError):
        for index in range(len(raw) + 2):
            parser.feed((raw + b"\r\n")[index:index + 1])


def test_v1_without_line_end_is_bounded() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY TCP4 " + b"1" * 90) == 101
    with pytest.raises(ProxyProtocolError):
        parser.feed(b"1" * 10)


def test_close_inside_the_header() -> None:
    parser = ProxyHeaderParser()
    parser.feed(b"PROXY TCP4")
    with pytest.raises(EOFError):
        parser.feed(b"")


def test_v2_largest_allowed_header() -> None:
    tlvs = b"\xe0" + struct.pack("!H", V2_MAX_BYTES - 16 - 12 - 3) \
        + b"z" * (V2_MAX_BYTES - 16 - 12 - 3)
    raw = v2_inet("192.0.2.9", "192.0.2.10", 9, 10, tlvs=tlvs)
    assert len(raw) == V2_MAX_BYTES
    (header, _) = replay(raw)
    assert header.source == ("192.0.2.9", 9)
