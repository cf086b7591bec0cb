"""What ``Connection.receive_data`` reports: one event per thing the peer did.

Header lists are ``list[tuple[bytes, bytes]]`` as received (lowercase names, pseudo-header
fields first), already checked against RFC 9113 §8. An event that ends its stream
(``end_stream=True``) is followed in the same list by a ``StreamEnded``.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DataReceived", "Event", "GoAwayReceived", "InformationalResponseReceived",
           "PingAcked", "PingReceived", "RequestReceived", "ResponseReceived",
           "SettingsAcknowledged", "SettingsChanged", "StreamEnded", "StreamReset",
           "TrailersReceived", "WindowUpdated"]

Fields = list[tuple[bytes, bytes]]


class Event:
    """Base of every event."""

    __slots__ = ()


@dataclass(slots=True)
class RequestReceived(Event):
    """A request head (server role). The pseudo-header fields are also given parsed;
    ``authority`` is :authority, or Host when :authority is absent; ``protocol`` is the
    RFC 8441 :protocol of an extended CONNECT. ``content_length`` is the declared length,
    which the connection enforces against the DATA received."""

    stream_id: int
    headers: Fields
    method: bytes
    scheme: bytes | None
    authority: bytes | None
    path: bytes | None
    protocol: bytes | None = None
    content_length: int | None = None
    end_stream: bool = False


@dataclass(slots=True)
class ResponseReceived(Event):
    """A final response head (client role)."""

    stream_id: int
    headers: Fields
    status: int
    content_length: int | None = None
    end_stream: bool = False


@dataclass(slots=True)
class InformationalResponseReceived(Event):
    """A 1xx response head before the final one (client role), such as 103 Early Hints."""

    stream_id: int
    headers: Fields
    status: int


@dataclass(slots=True)
class TrailersReceived(Event):
    """The trailer section; it always ends the stream."""

    stream_id: int
    headers: Fields


@dataclass(slots=True)
class DataReceived(Event):
    """Body bytes. ``flow_controlled_length`` also counts the frame's padding, which the
    connection credits back itself: acknowledge ``len(data)`` once the bytes are consumed
    (acknowledging the full ``flow_controlled_length`` is harmless: credit is clamped)."""

    stream_id: int
    data: bytes
    flow_controlled_length: int
    end_stream: bool = False


@dataclass(slots=True)
class StreamEnded(Event):
    """The peer will send nothing more on this stream (END_STREAM)."""

    stream_id: int


@dataclass(slots=True)
class StreamReset(Event):
    """The stream is closed before its end: reset by the peer (``remote=True``, its
    RST_STREAM code; or REFUSED_STREAM for our streams above the last id of a GOAWAY it
    sent), or by us because of what the peer sent (``remote=False``). Only for streams
    the application knows (a request that was reported, or a stream it opened)."""

    stream_id: int
    error_code: int
    remote: bool = True


@dataclass(slots=True)
class WindowUpdated(Event):
    """The peer gave more send credit: on a stream, or on the connection (stream 0)."""

    stream_id: int
    delta: int


@dataclass(slots=True)
class SettingsChanged(Event):
    """The peer's SETTINGS frame, applied (it is acknowledged automatically). A change of
    INITIAL_WINDOW_SIZE changes every stream's send window: recheck blocked senders."""

    changed: dict[int, int]


@dataclass(slots=True)
class SettingsAcknowledged(Event):
    """The peer acknowledged our settings; they now apply."""

    changed: dict[int, int]


@dataclass(slots=True)
class PingReceived(Event):
    """A PING from the peer (answered automatically)."""

    data: bytes


@dataclass(slots=True)
class PingAcked(Event):
    """The answer to one of our PINGs."""

    data: bytes


@dataclass(slots=True)
class GoAwayReceived(Event):
    """The peer is closing: streams we opened above ``last_stream_id`` were not processed
    (each gets a StreamReset with REFUSED_STREAM just before this event) and new streams
    cannot be opened."""

    last_stream_id: int
    error_code: int
    debug_data: bytes
