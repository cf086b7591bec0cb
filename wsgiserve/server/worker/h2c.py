"""Cleartext HTTP/2 by HTTP/1.1's ``Upgrade: h2c`` (RFC 7540 §3.2): which requests may
upgrade, the 101 that answers them, and the upgraded request as the first frames of the
HTTP/2 connection, which the core reads as if the client had sent them.

RFC 9113 deprecates the upgrade; it is served (gunicorn 27 does) for bodiless requests
when ``http2_cleartext`` is ``upgrade`` or ``both``.
"""
from __future__ import annotations

import base64
import binascii
from typing import Final

from wsgiserve.http import Request
from wsgiserve.http2 import CLIENT_PREFACE
from wsgiserve.http2.frames import FrameType, frame_header, headers_frames
from wsgiserve.http2.hpack import encode_integer
from wsgiserve.http2.settings import DEFAULT_MAX_FRAME_SIZE

__all__ = ["SETTINGS_ACK", "SWITCHING_PROTOCOLS", "h2c_settings", "upgraded_preface"]

SWITCHING_PROTOCOLS: Final = (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                              b"Upgrade: h2c\r\n\r\n")
# The core acknowledges the HTTP2-Settings it is given as a SETTINGS frame; the 101 did
# already (RFC 7540 §3.2.1), so the driver drops this frame.
SETTINGS_ACK: Final = frame_header(0, FrameType.SETTINGS, 0x1, 0)
# What an upgraded request's fields leave behind: hop-by-hop (RFC 9113 §8.2.2), the
# upgrade's own, and Host (its :authority). TE stays when it is "trailers".
_NOT_UPGRADED: Final = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                  b"transfer-encoding", b"upgrade", b"http2-settings",
                                  b"host", b"te"})
_NEVER_INDEXED: Final = b"\x10"  # RFC 7541 §6.2.3, with a literal name


def h2c_settings(request: Request) -> bytes | None:
    """The decoded HTTP2-Settings of a request that asks to upgrade to h2c, or None: the
    request is then answered in HTTP/1.1, its Upgrade ignored.

    It asks when it is an HTTP/1.1 request with an origin-form target, "h2c" among its
    Upgrade tokens, "upgrade" and "http2-settings" among its Connection options, and one
    HTTP2-Settings field holding base64url SETTINGS entries (RFC 7540 §3.2.1). The caller
    takes bodiless requests only (a body would have to be read in HTTP/1.1 first).
    """
    headers = request.headers
    if request.http_version != b"1.1" or request.target[:1] != b"/" \
            or b"h2c" not in headers.tokens(b"upgrade"):
        return None
    options = headers.tokens(b"connection")
    values = headers.get_all(b"http2-settings")
    if b"upgrade" not in options or b"http2-settings" not in options or len(values) != 1:
        return None
    value = values[0]
    try:
        settings = base64.b64decode(value + b"=" * (-len(value) % 4), altchars=b"-_",
                                    validate=True)
    except (binascii.Error, ValueError):
        return None
    return None if len(settings) % 6 else settings


def upgraded_preface(settings: bytes, request: Request) -> bytes:
    """What the core reads for an upgraded connection before the client's own frames:
    the preface, the HTTP2-Settings as the client's first SETTINGS, and the request as a
    HEADERS frame ending stream 1.

    The request's fields are literals never indexed: the decoder's table stays as the
    client's encoder expects it (empty).
    """
    block = b"".join(_NEVER_INDEXED + encode_integer(len(name), 7) + name +
                     encode_integer(len(value), 7) + value
                     for name, value in _upgraded_fields(request))
    return (CLIENT_PREFACE + frame_header(len(settings), FrameType.SETTINGS, 0, 0) + settings
            + headers_frames(1, block, True, DEFAULT_MAX_FRAME_SIZE))


def _upgraded_fields(request: Request) -> list[tuple[bytes, bytes]]:
    """An HTTP/1.1 request's fields as the HTTP/2 request of stream 1: pseudo-header
    fields first, Host as :authority, no connection-specific field."""
    headers = request.headers
    fields = [(b":method", request.method), (b":scheme", b"http"), (b":path", request.target)]
    host = headers.get(b"host")
    if host is not None:
        fields.append((b":authority", host))
    for name, (_, value) in zip(headers.names, headers.fields):
        if name not in _NOT_UPGRADED or (name == b"te" and value.lower() == b"trailers"):
            fields.append((name, value))
    return fields
