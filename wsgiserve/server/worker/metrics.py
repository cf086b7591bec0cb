"""The worker's gauges: its open connections by protocol and state, and its requests in
the app, sampled by the main thread each housekeeping tick into the shared gauge block.

Counting every state change on the request path would cost each request a few slot
updates; a sample four times a second costs the request path nothing, and a gauge is a
point-in-time reading anyway (Prometheus scrapes every 15 s or so).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol

from wsgiserve.server.counters import (
    CONNECTION_PROTOCOLS,
    CONNECTION_STATES,
    LAYOUT,
    PROTOCOLS,
    Recorder,
)
from wsgiserve.server.worker.states import ConnState

__all__ = ["sample_gauges"]

_STATE_INDEX: Final = {name: i for i, name in enumerate(CONNECTION_STATES)}
# A connection's state as the ``state`` label says it.
STATE_LABELS: Final[dict[ConnState, str]] = {
    ConnState.READING_PROXY_HEADER: "handshaking",
    ConnState.HANDSHAKING: "handshaking",
    ConnState.NEW: "reading",  # its header timeout runs from the accept
    ConnState.READING_HEAD: "reading",
    ConnState.READING_BODY: "reading",
    ConnState.IN_APP: "active",
    ConnState.WRITING: "active",
    ConnState.IDLE: "idle",
    ConnState.CLOSING: "closing",
    ConnState.CLOSED: "closing",
    ConnState.SWITCHED: "active",
}
_SLOT_BY_STATE: Final = {
    (protocol, state): LAYOUT.connection_slot(p, _STATE_INDEX[STATE_LABELS[state]])
    for p, protocol in enumerate(CONNECTION_PROTOCOLS) for state in ConnState
}
_IN_APP_SLOT: Final = {name: LAYOUT.in_app + p for p, name in enumerate(PROTOCOLS)}


class _Hosted(Protocol):
    """What the sampler reads of a protocol object (``worker.protocol.Protocol``)."""

    protocol_name: str
    state: ConnState


class _Connection(Protocol):
    @property
    def protocol(self) -> _Hosted: ...


def sample_gauges(recorder: Recorder, connections: Iterable[_Connection],
                  in_app: Iterable[object]) -> None:
    """Count ``connections`` by protocol and state, and ``in_app`` (the keys of the
    context's ``in_app``: protocol objects, or streams, with a ``protocol_name``) by
    protocol, and store both in the gauge block. Call from the worker's main thread with
    copies (``list(...)``) of the live collections."""
    recorder.flush()  # the sums of the requests since the last tick
    values = [0] * LAYOUT.gauge_slots
    for conn in connections:
        protocol = conn.protocol
        slot = _SLOT_BY_STATE.get((protocol.protocol_name, protocol.state))
        if slot is not None:
            values[slot] += 1
    for key in in_app:
        slot = _IN_APP_SLOT.get(getattr(key, "protocol_name", ""))
        if slot is not None:
            values[slot] += 1
    recorder.set_gauges(values)
