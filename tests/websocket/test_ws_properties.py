"""Hypothesis properties of WebSocketConnection.

- what one role sends, the other reads back as the same events, with or without
  permessage-deflate and fragmentation, in both directions;
- any split of the bytes gives the same events;
- any bytes either give events or raise ProtocolViolation (never another exception),
  and what waits unread after NEED_DATA stays under a header plus a control payload;
- every state change is in ``TRANSITIONS``.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ws_replay import CLOSE, MASK, frame, read_frames

from wsgiserve.websocket import (
    NEED_DATA,
    BytesMessage,
    CloseReceived,
    ConnectionClosed,
    ConnectionState,
    DeflateParameters,
    Ping,
    Pong,
    ProtocolViolation,
    Role,
    TextMessage,
    WebSocketConnection,
    is_valid_close_code,
)
from wsgiserve.websocket.connection import TRANSITIONS
from wsgiserve.websocket.events import Event

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])
FUZZ_SETTINGS = settings(max_examples=400, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])

control_payloads = st.binary(max_size=125)
operations = st.lists(st.one_of(
    st.tuples(st.just("text"), st.text(max_size=200), st.booleans()),
    st.tuples(st.just("bytes"), st.binary(max_size=200), st.booleans()),
    st.tuples(st.just("ping"), control_payloads, st.just(False)),
    st.tuples(st.just("pong"), control_payloads, st.just(False)),
), max_size=12)
close_codes = st.one_of(st.none(), st.integers(1000, 4999).filter(is_valid_close_code))
deflate_parameters = st.one_of(st.none(), st.builds(
    DeflateParameters, server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
    server_max_window_bits=st.one_of(st.none(), st.integers(9, 15)),
    client_max_window_bits=st.one_of(st.none(), st.integers(9, 15))))


@dataclass
class Exchange:
    sender: WebSocketConnection
    receiver: WebSocketConnection
    wire: bytes
    expected: list[Event]


@st.composite
def exchanges(draw: st.DrawFn) -> Exchange:
    sender_role = draw(st.sampled_from([Role.CLIENT, Role.SERVER]))
    receiver_role = Role.SERVER if sender_role is Role.CLIENT else Role.CLIENT
    deflate = draw(deflate_parameters)
    sender = WebSocketConnection(sender_role, deflate=deflate,
                                 max_send_frame_bytes=draw(st.integers(0, 40)))
    receiver = WebSocketConnection(receiver_role, deflate=deflate)
    expected: list[Event] = []
    for kind, data, compress in draw(operations):
        if kind == "text":
            assert isinstance(data, str)
            sender.send_text(data, compress=compress)
            expected.append(TextMessage(data))
        elif kind == "bytes":
            assert isinstance(data, bytes)
            sender.send_bytes(data, compress=compress)
            expected.append(BytesMessage(data))
        elif kind == "ping":
            assert isinstance(data, bytes)
            sender.send_ping(data)
            expected.append(Ping(data))
        else:
            assert isinstance(data, bytes)
            sender.send_pong(data)
            expected.append(Pong(data))
    if draw(st.booleans()):
        code = draw(close_codes)
        reason = draw(st.text(max_size=30)) if code is not None else ""
        sender.close(code, reason)
        expected.append(CloseReceived(1005 if code is None else code, reason))
    return Exchange(sender, receiver, sender.data_to_send(), expected)


def feed(connection: WebSocketConnection, data: bytes) -> None:
    if data:    # b"" would say the transport closed
        connection.receive_data(data)


def drain(connection: WebSocketConnection) -> list[Event]:
    events: list[Event] = []
    while (event := connection.next_event()) is not NEED_DATA:
        assert not isinstance(event, ConnectionClosed)
        events.append(event)
    return events


@PROPERTY_SETTINGS
@given(exchange=exchanges())
def test_what_one_role_writes_the_other_reads(exchange: Exchange) -> None:
    feed(exchange.receiver, exchange.wire)
    assert drain(exchange.receiver) == exchange.expected
    # The receiver's answers (Pongs, the Close echo) are read back by the sender.
    answers: list[Event] = [Pong(event.payload) for event in exchange.expected
                            if isinstance(event, Ping)]
    last = exchange.expected[-1] if exchange.expected else None
    if isinstance(last, CloseReceived):
        answers.append(CloseReceived(last.code))
    feed(exchange.sender, exchange.receiver.data_to_send())
    assert drain(exchange.sender) == answers


@PROPERTY_SETTINGS
@given(exchange=exchanges(), data=st.data())
def test_any_split_gives_the_same_events(exchange: Exchange, data: st.DataObject) -> None:
    wire = exchange.wire
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(wire) - 1)), max_size=30))))
    events: list[Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)]):
        feed(exchange.receiver, wire[start:end])
        events.extend(drain(exchange.receiver))
    assert events == exchange.expected


@st.composite
def hostile_streams(draw: st.DrawFn, role: Role) -> bytes:
    """Frames as the peer of ``role`` sends them, mostly valid: any opcode, bits and
    lengths now and then, some bytes mutated; or plain random bytes."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=300))
    peer_mask = MASK if role is Role.SERVER else None
    parts = []
    for _ in range(draw(st.integers(1, 8))):
        opcode = draw(st.sampled_from([1, 1, 2, 2, 0, 0, 0, 8, 9, 10, 3, 11]))
        payload = draw(st.one_of(st.text(max_size=80).map(str.encode), st.binary(max_size=150)))
        parts.append(frame(opcode, payload, fin=draw(st.sampled_from([True, True, False])),
                           rsv=draw(st.sampled_from([0, 0, 0, 0, 0, 0x40, 0x20, 0x10])),
                           mask=draw(st.sampled_from([peer_mask] * 9 + [MASK, None])),
                           length_form=draw(st.sampled_from([None, None, None, 2, 8]))))
    wire = bytearray(b"".join(parts))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        if wire:
            wire[draw(st.integers(0, len(wire) - 1))] = draw(st.integers(0, 255))
    return bytes(wire)


@FUZZ_SETTINGS
@given(role=st.sampled_from([Role.SERVER, Role.CLIENT]),
       deflate=st.sampled_from([None, DeflateParameters()]), data=st.data())
def test_any_bytes_parse_or_fail_with_a_close_code(role: Role, deflate: DeflateParameters | None,
                                                   data: st.DataObject) -> None:
    wire = data.draw(hostile_streams(role))
    connection = WebSocketConnection(role, deflate=deflate, max_message_bytes=200)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(wire))), max_size=8))))
    previous = connection.state
    try:
        for start, end in zip([0, *cuts], [*cuts, len(wire)]):
            if end <= start:
                continue
            connection.receive_data(wire[start:end])
            while (event := connection.next_event()) is not NEED_DATA:
                assert connection.state is previous or connection.state in TRANSITIONS[previous]
                previous = connection.state
                if isinstance(event, ConnectionClosed):
                    break
            # Unread: at most a partial header (13 bytes) or a control payload (125).
            assert connection.buffered_bytes <= 125
    except ProtocolViolation as exc:
        assert connection.state is ConnectionState.FAILED
        assert ConnectionState.FAILED in TRANSITIONS[previous]
        frames = read_frames(connection.data_to_send())
        if previous is ConnectionState.OPEN:
            # The failure's Close frame, with the error's code, is the last frame queued.
            assert frames[-1][0] == CLOSE and frames[-1][3][:2] == exc.close_code.to_bytes(2, "big")
        with pytest.raises(ProtocolViolation):
            connection.next_event()
