"""wsproto as a differential oracle: handshakes between our code and wsproto in both roles,
with and without permessage-deflate, then messages each way must give the same events.

The HTTP heads go through our own HTTP/1.1 parser and writer on our side and through h11
(inside wsproto) on the other.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto import events as wse
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import generate_accept_token

from wsgiserve.http import RequestParser, ResponseParser, encode_request_head, encode_response_head
from wsgiserve.http.events import Request, Response
from wsgiserve.websocket import (
    BytesMessage,
    CloseReceived,
    DeflateOptions,
    Ping,
    Pong,
    Role,
    TextMessage,
    WebSocketConnection,
    accept_key,
    accept_upgrade,
    build_upgrade_request,
    check_upgrade_response,
    parse_upgrade_request,
)
from wsgiserve.websocket.events import Event

# A message sent in the tests: text or bytes, and how many frames it is cut into.
Message = tuple[str | bytes, int]


def _str_fields(fields: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in fields]


def with_wsproto_client(deflate: DeflateOptions | None, wsproto_deflate: bool,
                        subprotocols: list[str]) -> tuple[WSConnection, WebSocketConnection]:
    """A wsproto client's handshake with our server code; return both ends, open."""
    client = WSConnection(ConnectionType.CLIENT)
    extensions = [PerMessageDeflate()] if wsproto_deflate else []
    wire = client.send(wse.Request(host="example.com", target="/chat", extensions=extensions,
                                   subprotocols=subprotocols))
    parser = RequestParser()
    parser.feed(wire)
    request = parser.next_event()
    assert isinstance(request, Request)
    upgrade = parse_upgrade_request(request.method, request.http_version, request.headers)
    assert upgrade.subprotocols == tuple(subprotocols)
    acceptance = accept_upgrade(upgrade, subprotocol=subprotocols[-1] if subprotocols else None,
                                deflate=deflate)
    client.receive_data(encode_response_head("101 Switching Protocols",
                                             _str_fields(acceptance.headers)))
    [accepted] = list(client.events())
    assert isinstance(accepted, wse.AcceptConnection)
    assert accepted.subprotocol == acceptance.subprotocol
    assert bool(accepted.extensions) == (acceptance.deflate is not None)
    return client, WebSocketConnection(Role.SERVER, deflate=acceptance.deflate)


def with_wsproto_server(deflate: DeflateOptions | None, wsproto_deflate: bool,
                        subprotocols: list[str]) -> tuple[WSConnection, WebSocketConnection]:
    """Our client code's handshake with a wsproto server; return both ends, open."""
    handshake = build_upgrade_request(subprotocols=subprotocols, deflate=deflate)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(encode_request_head("GET", "/chat", [("Host", "example.com"),
                                                             *_str_fields(handshake.headers)]))
    [request] = list(server.events())
    assert isinstance(request, wse.Request)
    assert request.subprotocols == subprotocols
    extensions: list[Extension] = [PerMessageDeflate()] if wsproto_deflate else []
    wire = server.send(wse.AcceptConnection(subprotocol=subprotocols[0] if subprotocols else None,
                                            extensions=extensions))
    parser = ResponseParser()
    parser.expect_response(b"GET")
    parser.feed(wire)
    response = parser.next_event()
    assert isinstance(response, Response) and response.status == 101
    negotiated = check_upgrade_response(handshake, response.status, response.headers)
    assert negotiated.subprotocol == (subprotocols[0] if subprotocols else None)
    assert (negotiated.deflate is not None) == (deflate is not None and wsproto_deflate)
    return server, WebSocketConnection(Role.CLIENT, deflate=negotiated.deflate)


def send_with_wsproto(peer: WSConnection, messages: list[Message]) -> bytes:
    wire = b""
    for data, pieces in messages:
        size = max(1, -(-len(data) // pieces))
        chunks = [data[i:i + size] for i in range(0, len(data), size)] or [data]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            if isinstance(chunk, str):
                wire += peer.send(wse.TextMessage(chunk, message_finished=last))
            else:
                wire += peer.send(wse.BytesMessage(chunk, message_finished=last))
    return wire


def wsproto_messages(peer: WSConnection, wire: bytes) -> list[object]:
    """Feed wsproto and join its message pieces into whole messages."""
    peer.receive_data(wire)
    out: list[object] = []
    pending: str | bytes | None = None
    for event in peer.events():
        if isinstance(event, wse.Message):
            pending = event.data if pending is None else pending + event.data
            if event.message_finished:
                out.append(pending)
                pending = None
        elif isinstance(event, wse.Ping | wse.Pong):
            out.append((type(event).__name__, bytes(event.payload)))
        elif isinstance(event, wse.CloseConnection):
            out.append(("close", event.code, event.reason or ""))
    return out


def as_wsproto_view(events: list[Event]) -> list[object]:
    out: list[object] = []
    for event in events:
        if isinstance(event, TextMessage):
            out.append(event.text)
        elif isinstance(event, BytesMessage):
            out.append(event.data)
        elif isinstance(event, Ping | Pong):
            out.append((type(event).__name__, event.payload))
        elif isinstance(event, CloseReceived):
            out.append(("close", event.code, event.reason))
    return out


MESSAGES: list[Message] = [
    ("Hello", 1), (b"\x00\xff" * 100, 1), ("", 1), (b"", 1), ("κόσμε é€😀" * 40, 3),
    (os.urandom(70_000), 2), ("x" * 200_000, 5), ("a", 1),
]
DEFLATE_PAIRS = [
    pytest.param(None, False, id="no-deflate"),
    pytest.param(DeflateOptions(), False, id="deflate-offered-only-by-us"),
    pytest.param(DeflateOptions(), True, id="deflate"),
    pytest.param(DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True),
                 True, id="deflate-no-context-takeover"),
    pytest.param(DeflateOptions(server_max_window_bits=10, client_max_window_bits=9), True,
                 id="deflate-small-windows"),
]


@pytest.mark.parametrize("deflate, wsproto_deflate", DEFLATE_PAIRS)
def test_wsproto_client_and_our_server(deflate: DeflateOptions | None, wsproto_deflate: bool) -> None:
    client, server = with_wsproto_client(deflate, wsproto_deflate, ["v1", "v2"])
    server.receive_data(send_with_wsproto(client, MESSAGES) + client.send(wse.Ping(b"hb")))
    got = list(server.events())
    assert as_wsproto_view(got) == [data for data, _ in MESSAGES] + [("Ping", b"hb")]
    # Echo everything back (cut into frames of 1000 bytes): wsproto reads the same.
    server.max_send_frame_bytes = 1000
    for event in got:
        if isinstance(event, TextMessage):
            server.send_text(event.text)
        elif isinstance(event, BytesMessage):
            server.send_bytes(event.data)
    server.close(1001, "going away")
    assert wsproto_messages(client, server.data_to_send()) == [
        ("Pong", b"hb"), *[data for data, _ in MESSAGES], ("close", 1001, "going away")]
    # wsproto's answer to our Close completes the handshake.
    server.receive_data(client.send(wse.CloseConnection(1001)))
    assert list(server.events()) == [CloseReceived(1001)]
    assert server.should_close_transport


@pytest.mark.parametrize("deflate, wsproto_deflate", DEFLATE_PAIRS)
def test_our_client_and_wsproto_server(deflate: DeflateOptions | None, wsproto_deflate: bool) -> None:
    server, client = with_wsproto_server(deflate, wsproto_deflate, ["v1", "v2"])
    client.max_send_frame_bytes = 777
    for data, _ in MESSAGES:
        if isinstance(data, str):
            client.send_text(data)
        else:
            client.send_bytes(data)
    client.send_ping(b"hb")
    assert wsproto_messages(server, client.data_to_send()) == \
        [data for data, _ in MESSAGES] + [("Ping", b"hb")]
    client.receive_data(send_with_wsproto(server, MESSAGES) + server.send(wse.CloseConnection(1000, "bye")))
    assert as_wsproto_view(list(client.events())) == \
        [data for data, _ in MESSAGES] + [("close", 1000, "bye")]
    # Our echo of the Close reaches wsproto; the client then waits for the server's FIN.
    assert wsproto_messages(server, client.data_to_send()) == [("close", 1000, "")]
    assert not client.should_close_transport


def test_accept_values_agree_with_wsproto() -> None:
    for _ in range(20):
        key = build_upgrade_request().key
        assert accept_key(key) == generate_accept_token(key)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(st.tuples(st.one_of(st.text(max_size=300), st.binary(max_size=300)),
                                   st.integers(1, 4)), max_size=6),
       deflate=st.booleans(), data=st.data())
def test_both_directions_agree_on_generated_messages(messages: list[Message], deflate: bool,
                                                     data: st.DataObject) -> None:
    options = DeflateOptions() if deflate else None
    client, server = with_wsproto_client(options, deflate, [])
    wire = send_with_wsproto(client, messages)
    # Any split of wsproto's bytes gives the same messages.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=5)))
    for start, end in zip([0, *cuts], [*cuts, len(wire)]):
        if end > start:
            server.receive_data(wire[start:end])
    got = list(server.events())
    assert as_wsproto_view(got) == [text for text, _ in messages]
    for event in got:
        if isinstance(event, TextMessage):
            server.send_text(event.text)
        elif isinstance(event, BytesMessage):
            server.send_bytes(event.data)
    assert wsproto_messages(client, server.data_to_send()) == [text for text, _ in messages]
