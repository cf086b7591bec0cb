"""WebSocketConnection's sending side, close handshake and states (RFC 6455 §5.4-5.5, §7),
checked on the bytes it queues."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from ws_replay import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    RSV1,
    TEXT,
    close_payload,
    frame,
    read_frames,
    server_frame,
)

from wsgiserve.websocket import (
    NEED_DATA,
    BytesMessage,
    CloseReceived,
    ConnectionClosed,
    ConnectionState,
    DeflateParameters,
    InvalidPayload,
    LocalProtocolError,
    Ping,
    Pong,
    ProtocolViolation,
    Role,
    TextMessage,
    WebSocketConnection,
)


def open_server(**kwargs: object) -> WebSocketConnection:
    return WebSocketConnection(Role.SERVER, **kwargs)  # type: ignore[arg-type]


def test_server_sends_unmasked_frames() -> None:
    server = open_server()
    server.send_text("Hello")
    server.send_bytes(b"\x00" * 300)
    server.send_ping(b"p")
    server.send_pong(b"q")
    wire = server.data_to_send()
    assert wire.startswith(b"\x81\x05Hello\x82\x7e\x01\x2c")
    assert read_frames(wire) == [(TEXT, True, 0, b"Hello"), (BINARY, True, 0, b"\x00" * 300),
                                 (PING, True, 0, b"p"), (PONG, True, 0, b"q")]
    assert server.data_to_send() == b""


def test_client_sends_masked_frames() -> None:
    client = WebSocketConnection(Role.CLIENT)
    client.send_text("Hello")
    wire = client.data_to_send()
    assert wire[:2] == b"\x81\x85" and len(wire) == 2 + 4 + 5
    assert read_frames(wire) == [(TEXT, True, 0, b"Hello")]


@pytest.mark.parametrize("compress", [False, True])
def test_messages_cut_into_frames(compress: bool) -> None:
    deflate = DeflateParameters() if compress else None
    server = open_server(max_send_frame_bytes=4, deflate=deflate)
    server.send_text("Hello, world", compress=compress)
    frames = read_frames(server.data_to_send())
    assert all(len(payload) <= 4 for *_, payload in frames) and len(frames) > 1
    assert [(opcode, fin, rsv) for opcode, fin, rsv, _ in frames] == \
        [(TEXT, False, RSV1 if compress else 0)] + [(CONT, False, 0)] * (len(frames) - 2) + [(CONT, True, 0)]
    client = WebSocketConnection(Role.CLIENT, deflate=deflate)
    client.receive_data(b"".join(server_frame(op, payload, fin=fin, rsv=rsv)
                                 for op, fin, rsv, payload in frames))
    assert list(client.events()) == [TextMessage("Hello, world")]


def test_compress_false_sends_a_plain_message() -> None:
    server = open_server(deflate=DeflateParameters())
    server.send_bytes(b"abc", compress=False)
    server.send_bytes(b"abc")
    plain, compressed = read_frames(server.data_to_send())
    assert plain == (BINARY, True, 0, b"abc") and compressed[2] == RSV1


@pytest.mark.parametrize("call", [
    pytest.param(lambda c: c.send_ping(b"x" * 126), id="ping-over-125"),
    pytest.param(lambda c: c.send_pong(b"x" * 126), id="pong-over-125"),
    pytest.param(lambda c: c.send_text("\ud800"), id="lone-surrogate"),
    *[pytest.param(lambda c, code=code: c.close(code), id=f"close-{code}")
      for code in (999, 1004, 1005, 1006, 1015, 1016, 2999, 5000)],
    pytest.param(lambda c: c.close(1000, "r" * 124), id="reason-over-123-bytes"),
    pytest.param(lambda c: c.close(1000, "é" * 62), id="reason-over-123-bytes-utf8"),
    pytest.param(lambda c: c.close(None, "reason"), id="reason-without-code"),
    pytest.param(lambda c: c.close(1000, "\udc80"), id="reason-lone-surrogate"),
])
def test_local_errors_queue_nothing(call: object) -> None:
    server = open_server()
    with pytest.raises(LocalProtocolError):
        call(server)  # type: ignore[operator]
    assert server.data_to_send() == b"" and server.state is ConnectionState.OPEN


@pytest.mark.parametrize("code, reason, payload", [
    (1000, "", close_payload(1000)),
    (4000, "r" * 123, close_payload(4000, b"r" * 123)),
    (1001, "κόσμε", close_payload(1001, "κόσμε".encode())),
    (None, "", b""),
])
def test_close_payload(code: int | None, reason: str, payload: bytes) -> None:
    server = open_server()
    server.close(code, reason)
    assert read_frames(server.data_to_send()) == [(CLOSE, True, 0, payload)]
    assert server.state is ConnectionState.CLOSING


def test_server_initiated_close_handshake() -> None:
    server = open_server()
    server.close(1000, "done")
    server.data_to_send()
    sends: list[Callable[[], None]] = [lambda: server.send_text("x"), server.send_ping, server.close]
    for send in sends:
        with pytest.raises(LocalProtocolError):
            send()
    # Until the client's Close: messages are read and dropped, Pings reported, not answered.
    server.receive_data(frame(TEXT, b"late") + frame(PING, b"p") + frame(BINARY, b"a", fin=False)
                        + frame(CONT, b"b"))
    assert list(server.events()) == [Ping(b"p")]
    assert server.data_to_send() == b"" and not server.should_close_transport
    server.receive_data(frame(CLOSE, close_payload(1000)) + frame(TEXT, b"after"))
    assert list(server.events()) == [CloseReceived(1000)]
    assert server.state is ConnectionState.CLOSED and server.data_to_send() == b""
    assert server.should_close_transport and server.close_code == 1000
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed(1000)


def test_client_initiated_close_handshake() -> None:
    client = WebSocketConnection(Role.CLIENT)
    client.close(1001)
    assert read_frames(client.data_to_send()) == [(CLOSE, True, 0, close_payload(1001))]
    client.receive_data(server_frame(CLOSE, close_payload(1001)))
    assert list(client.events()) == [CloseReceived(1001)]
    assert client.state is ConnectionState.CLOSED
    # RFC 6455 §7.1.1: the client waits for the server to close the TCP connection.
    assert not client.should_close_transport
    client.receive_data(b"")
    assert client.should_close_transport
    assert list(client.events()) == [ConnectionClosed(1001)]


def test_close_received_is_echoed_once() -> None:
    server = open_server()
    server.receive_data(frame(CLOSE, close_payload(3001, b"why")))
    assert list(server.events()) == [CloseReceived(3001, "why")]
    assert read_frames(server.data_to_send()) == [(CLOSE, True, 0, close_payload(3001))]
    assert server.state is ConnectionState.CLOSED and server.should_close_transport
    with pytest.raises(LocalProtocolError):
        server.close()
    assert (server.close_code, server.close_reason) == (3001, "why")


def test_failure_is_final() -> None:
    server = open_server()
    server.receive_data(frame(TEXT, b"\xff") + frame(TEXT, b"never read"))
    with pytest.raises(InvalidPayload) as info:
        server.next_event()
    assert info.value.close_code == 1007
    assert read_frames(server.data_to_send())[0][3][:2] == close_payload(1007)
    assert server.state is ConnectionState.FAILED and server.should_close_transport
    with pytest.raises(InvalidPayload):
        server.next_event()
    server.receive_data(frame(TEXT, b"ignored"))
    assert server.buffered_bytes == 0
    with pytest.raises(LocalProtocolError):
        server.send_text("x")
    assert server.data_to_send() == b""


def test_failure_while_closing_sends_no_second_close() -> None:
    server = open_server()
    server.close()
    server.data_to_send()
    server.receive_data(frame(5, b""))
    with pytest.raises(ProtocolViolation):
        server.next_event()
    assert server.state is ConnectionState.FAILED and server.data_to_send() == b""


def test_transport_lost() -> None:
    server = open_server()
    server.receive_data(frame(TEXT, b"Hello")[:-2])
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    assert server.should_close_transport
    assert server.next_event() == ConnectionClosed(1006)
    assert server.state is ConnectionState.LOST
    assert server.next_event() == ConnectionClosed(1006)
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"more")
    with pytest.raises(LocalProtocolError):
        server.send_text("x")


def test_unread_bytes_stay_small() -> None:
    # After NEED_DATA at most a header (14 bytes) and a control payload (125) wait unread;
    # a data frame's payload is taken as it arrives.
    server = open_server()
    big = frame(BINARY, b"z" * 100_000)
    server.receive_data(big[:50_000])
    assert server.next_event() is NEED_DATA and server.buffered_bytes == 0
    server.receive_data(big[50_000:] + frame(PING, b"p" * 125)[:-1])
    assert server.next_event() == BytesMessage(b"z" * 100_000)
    # The Ping's header is read; its payload waits until all 125 bytes are there.
    assert server.next_event() is NEED_DATA and server.buffered_bytes == 124


def test_many_small_frames_in_one_buffer() -> None:
    server = open_server()
    count = 20_000
    server.receive_data(frame(TEXT, b"hi") * count + frame(BINARY, b"end"))
    events = list(server.events())
    assert len(events) == count + 1 and events[-1] == BytesMessage(b"end")
    assert server.buffered_bytes == 0


def test_pong_event_and_unsolicited_pong_are_not_answered() -> None:
    server = open_server()
    server.receive_data(frame(PONG, b"hb"))
    assert list(server.events()) == [Pong(b"hb")]
    assert server.data_to_send() == b""


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        open_server(max_message_bytes=0)
    with pytest.raises(ValueError):
        open_server(max_frame_bytes=0)
    with pytest.raises(ValueError):
        open_server(max_send_frame_bytes=-1)


@pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER])
def test_messages_while_closing_are_delivered_when_asked(role: Role) -> None:
    """should_deliver_while_closing: what the peer sent before it saw our Close comes out
    (whole and fragmented, plain and compressed); the rest of the closing is unchanged."""
    peer_frame = server_frame if role is Role.CLIENT else frame
    connection = WebSocketConnection(role, should_deliver_while_closing=True,
                                     deflate=DeflateParameters())
    connection.close(1000)
    connection.data_to_send()
    compressed = bytes.fromhex("f248cdc9c90700")   # "Hello", RFC 7692 §7.2.3.1
    connection.receive_data(peer_frame(TEXT, b"late") + peer_frame(BINARY, b"a", fin=False)
                            + peer_frame(PING, b"p") + peer_frame(CONT, b"b")
                            + peer_frame(TEXT, compressed, rsv=RSV1)
                            + peer_frame(CLOSE, close_payload(1000)) + peer_frame(TEXT, b"after"))
    assert list(connection.events()) == [TextMessage("late"), Ping(b"p"), BytesMessage(b"ab"),
                                         TextMessage("Hello"), CloseReceived(1000)]
    assert connection.data_to_send() == b"" and connection.state is ConnectionState.CLOSED
