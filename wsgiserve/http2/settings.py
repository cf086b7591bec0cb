"""HTTP/2 SETTINGS parameters (RFC 9113 §6.5.2, RFC 8441 §3, RFC 9218 §2.1): identifiers,
initial values, and the checks on a received value.

Each endpoint has its own settings; the peer's apply as soon as its SETTINGS frame is
read, ours once the peer acknowledges them (RFC 9113 §6.5.3).
"""
from __future__ import annotations

from enum import IntEnum
from typing import Final

from wsgiserve.http2.errors import ErrorCode, Http2ConnectionError
from wsgiserve.http2.frames import MAX_WINDOW

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "INITIAL_SETTINGS", "MAX_FRAME_SIZE_LIMIT",
           "UNLIMITED", "Setting", "check_setting"]


class Setting(IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6
    ENABLE_CONNECT_PROTOCOL = 0x8      # RFC 8441: extended CONNECT (WebSocket over HTTP/2)
    NO_RFC7540_PRIORITIES = 0x9        # RFC 9218


# MAX_CONCURRENT_STREAMS and MAX_HEADER_LIST_SIZE have no limit until a peer sets one.
UNLIMITED: Final = 2**32 - 1
# RFC 9113 §4.2, §6.5.2: frames up to 16,384 bytes until the peer allows more, at most
# 2^24 - 1.
DEFAULT_MAX_FRAME_SIZE: Final = 16384
MAX_FRAME_SIZE_LIMIT: Final = 2**24 - 1

# RFC 9113 §6.5.2: the value of each setting before any SETTINGS frame.
INITIAL_SETTINGS: Final[dict[int, int]] = {
    Setting.HEADER_TABLE_SIZE: 4096,
    Setting.ENABLE_PUSH: 1,
    Setting.MAX_CONCURRENT_STREAMS: UNLIMITED,
    Setting.INITIAL_WINDOW_SIZE: 65535,
    Setting.MAX_FRAME_SIZE: DEFAULT_MAX_FRAME_SIZE,
    Setting.MAX_HEADER_LIST_SIZE: UNLIMITED,
    Setting.ENABLE_CONNECT_PROTOCOL: 0,
    Setting.NO_RFC7540_PRIORITIES: 0,
}

_BOOLEANS: Final = frozenset({Setting.ENABLE_PUSH, Setting.ENABLE_CONNECT_PROTOCOL,
                              Setting.NO_RFC7540_PRIORITIES})


def check_setting(identifier: int, value: int) -> None:
    """Raise the connection error RFC 9113 §6.5.2 names if ``value`` is out of range.

    Unknown identifiers are accepted (and then ignored, RFC 9113 §6.5.2).
    """
    if identifier in _BOOLEANS and value > 1:
        raise Http2ConnectionError(f"setting {identifier:#x} must be 0 or 1, got {value}")
    if identifier == Setting.INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
        raise Http2ConnectionError(f"SETTINGS_INITIAL_WINDOW_SIZE {value} over 2^31-1",
                                   ErrorCode.FLOW_CONTROL_ERROR)
    if identifier == Setting.MAX_FRAME_SIZE and not (
            DEFAULT_MAX_FRAME_SIZE <= value <= MAX_FRAME_SIZE_LIMIT):
        raise Http2ConnectionError(f"SETTINGS_MAX_FRAME_SIZE {value} out of range")
