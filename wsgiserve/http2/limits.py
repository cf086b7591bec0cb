"""What one HTTP/2 connection advertises and tolerates: our SETTINGS and the flood limits.

Built by the server and the client from their configuration; the HTTP/2 layer knows
nothing of either. The flood limits count per window of received frames, not per second:
the core reads no clock. Within each window of ``flood_window_frames`` frames, each kind
of frame that makes the server work without asking for anything has its own quota, and the
quotas add up to well under the window, so a peer that keeps the window full must send
frames that carry requests or request bodies.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from wsgiserve.http2.frames import MAX_WINDOW
from wsgiserve.http2.settings import DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT

# nginx (http2_max_concurrent_streams 128), Apache httpd and h2o (100): we take 100, the
# minimum RFC 9113 §6.5.2 recommends.
DEFAULT_MAX_CONCURRENT_STREAMS: Final = 100
# Go's server gives each connection a 1 MiB receive window
# (MaxUploadBufferPerConnection); each stream gets a quarter of it, so one request body
# that the application does not read cannot hold the whole window.
DEFAULT_CONNECTION_WINDOW_SIZE: Final = 1 << 20
DEFAULT_INITIAL_WINDOW_SIZE: Final = 1 << 18
# The same bound as an HTTP/1.1 head (HttpLimits.max_head_bytes), decoded size counted as
# RFC 9113 §6.5.2 does (32 bytes per field on top of name and value); the compressed block
# is never larger than the list it decodes to (an encoder only uses Huffman if it is
# shorter), so the same number bounds it.
DEFAULT_MAX_HEADER_LIST_SIZE: Final = 65536
# nghttp2 (since 1.61, CVE-2024-28182) allows 8 CONTINUATION frames after a HEADERS frame.
DEFAULT_MAX_CONTINUATION_FRAMES: Final = 8
# The flood window, and the quotas within it. netty closes a connection after 200
# RST_STREAM frames in its window (Http2MaxRstFrameDecoder); we count both the resets the
# peer sends (rapid reset, CVE-2023-44487) and the ones its frames make us send
# (MadeYouReset, CVE-2025-8671). A SETTINGS frame or a PING must each be answered, and
# browsers send a handful per connection; PRIORITY frames (Firefox builds a tree of them)
# need an answer from no one. "Glitches" are the frames RFC 9113 lets a peer send but no
# well-behaved one sends in bulk: empty DATA frames without END_STREAM (netty allows 2 in
# a row), unknown frame types, unsolicited PING and SETTINGS ACKs.
# WINDOW_UPDATE frames get their quota plus two for each DATA frame we sent in the window
# (one for the stream, one for the connection), and PINGs one more (gRPC-style bandwidth
# probes): a download earns its own. PRIORITY_UPDATE frames (RFC 9218) count as PRIORITY.
# Frames on a stream we reset count as glitches only past what the peer could have sent
# before it saw the reset (its window, or its END_STREAM).
DEFAULT_FLOOD_WINDOW_FRAMES: Final = 1000
DEFAULT_MAX_RESETS_PER_WINDOW: Final = 200
DEFAULT_MAX_PINGS_PER_WINDOW: Final = 50
DEFAULT_MAX_SETTINGS_PER_WINDOW: Final = 20
DEFAULT_MAX_PRIORITY_PER_WINDOW: Final = 200
DEFAULT_MAX_GLITCHES_PER_WINDOW: Final = 100
DEFAULT_MAX_WINDOW_UPDATES_PER_WINDOW: Final = 100
# nghttp2 refuses a SETTINGS frame with more than 32 entries (NGHTTP2_DEFAULT_MAX_SETTINGS).
MAX_SETTINGS_ENTRIES: Final = 32


@dataclass(frozen=True, slots=True)
class Http2Limits:
    """Limits and advertised settings of one ``Connection``; every field must be > 0.

    ``max_concurrent_streams``, ``initial_window_size``, ``max_frame_size``,
    ``header_table_size`` and ``max_header_list_size`` are sent in our SETTINGS frame;
    ``connection_window_size`` in a WINDOW_UPDATE right after it.
    """

    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    initial_window_size: int = DEFAULT_INITIAL_WINDOW_SIZE
    connection_window_size: int = DEFAULT_CONNECTION_WINDOW_SIZE
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    header_table_size: int = 4096
    max_header_list_size: int = DEFAULT_MAX_HEADER_LIST_SIZE
    max_header_block_bytes: int = DEFAULT_MAX_HEADER_LIST_SIZE
    max_continuation_frames: int = DEFAULT_MAX_CONTINUATION_FRAMES
    is_connect_protocol_enabled: bool = False       # RFC 8441, server role
    flood_window_frames: int = DEFAULT_FLOOD_WINDOW_FRAMES
    max_resets_per_window: int = DEFAULT_MAX_RESETS_PER_WINDOW
    max_pings_per_window: int = DEFAULT_MAX_PINGS_PER_WINDOW
    max_settings_per_window: int = DEFAULT_MAX_SETTINGS_PER_WINDOW
    max_priority_per_window: int = DEFAULT_MAX_PRIORITY_PER_WINDOW
    max_glitches_per_window: int = DEFAULT_MAX_GLITCHES_PER_WINDOW
    max_window_updates_per_window: int = DEFAULT_MAX_WINDOW_UPDATES_PER_WINDOW

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type != "bool" and value <= 0:
                raise ValueError(f"Http2Limits.{field.name}: must be > 0, got {value}")
        if not DEFAULT_MAX_FRAME_SIZE <= self.max_frame_size <= MAX_FRAME_SIZE_LIMIT:
            raise ValueError("Http2Limits.max_frame_size: must be within 16384..16777215, "
                             f"got {self.max_frame_size}")
        for name in ("initial_window_size", "connection_window_size"):
            if getattr(self, name) > MAX_WINDOW:
                raise ValueError(f"Http2Limits.{name}: must be <= 2^31-1")
        if self.connection_window_size < 65535:
            raise ValueError("Http2Limits.connection_window_size: must be >= 65535 (the "
                             "initial connection window cannot shrink)")
