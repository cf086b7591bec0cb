"""Scripted WebSocket servers for the WebSocket client's tests, on ``client_peers.Peer``.

Two kinds: raw scripts that answer the upgrade by hand and send frames built here (a
deliberately naive encoder, independent of ``wsgiserve.websocket``), and ``wsproto_echo``,
an echo server on wsproto (pinned in the test extra): a second implementation, so that a
bug shared by our client and our core cannot pass unnoticed.
"""
from __future__ import annotations

import base64
import hashlib
import socket
import threading
from collections.abc import Callable
from typing import Final

from client_peers import PeerConnection, RecordedRequest, Script
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState as WsprotoState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 mask: bytes | None = None) -> bytes:
    """A frame as a server sends it (unmasked unless ``mask`` is given, which is wrong)."""
    length = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 65536:
        head += bytes([mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + length.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def read_client_frame(connection: PeerConnection) -> tuple[int, bool, bytes] | None:
    """One frame from the client (which must mask): (opcode, fin, unmasked payload)."""
    head = connection.read_exactly(2)
    if head is None:
        return None
    assert head[1] & 0x80, "a client frame must be masked"
    length = head[1] & 0x7F
    if length >= 126:
        extended = connection.read_exactly(2 if length == 126 else 8)
        assert extended is not None
        length = int.from_bytes(extended, "big")
    mask = connection.read_exactly(4)
    payload = connection.read_exactly(length)
    assert mask is not None and payload is not None
    return head[0] & 0x0F, bool(head[0] & 0x80), bytes(b ^ mask[i % 4]
                                                        for i, b in enumerate(payload))


def accept_value(request: RecordedRequest) -> str:
    key = (request.header("sec-websocket-key") or "").encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def switching(request: RecordedRequest, *extra_fields: str, accept: str | None = None) -> bytes:
    """A 101 accepting ``request`` (no extension), with ``extra_fields`` lines added;
    ``accept`` replaces the right Sec-WebSocket-Accept."""
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept or accept_value(request)}", *extra_fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def raw_script(play: Callable[[PeerConnection, RecordedRequest], object]) -> Script:
    """Read the upgrade request, then ``play(connection, request)``: it sends the 101."""
    def script(connection: PeerConnection) -> None:
        request = connection.read_request(read_body=False)
        if request is not None:
            play(connection, request)
    return script


def close_after_echo(connection: PeerConnection, code: int = 1000) -> None:
    """Answer the client's Close with ``code`` and close the TCP connection first, as a
    server does (RFC 6455 §7.1.1)."""
    while (frame := read_client_frame(connection)) is not None:
        if frame[0] == CLOSE:
            connection.send(server_frame(CLOSE, close_payload(code)))
            return


def wsproto_echo(*, subprotocol: str | None = None, deflate: bool = True,
                 seen: list[Request] | None = None) -> Script:
    """An echo server on wsproto: accepts (choosing ``subprotocol`` if the client offered
    it), echoes each message whole, answers Pings and Close, then closes the TCP
    connection. ``seen`` collects the upgrade requests."""
    def script(connection: PeerConnection) -> None:
        server = WSConnection(ConnectionType.SERVER)
        sock = connection.sock
        texts: list[str] = []
        pieces: list[bytes] = []
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            server.receive_data(data or None)
            out = b""
            for event in server.events():
                if isinstance(event, Request):
                    if seen is not None:
                        seen.append(event)
                    chosen = subprotocol if subprotocol in event.subprotocols else None
                    out += server.send(AcceptConnection(
                        subprotocol=chosen, extensions=[PerMessageDeflate()] if deflate else []))
                elif isinstance(event, TextMessage):
                    texts.append(event.data)
                    if event.message_finished:
                        out += server.send(TextMessage("".join(texts)))
                        texts.clear()
                elif isinstance(event, BytesMessage):
                    pieces.append(bytes(event.data))
                    if event.message_finished:
                        out += server.send(BytesMessage(b"".join(pieces)))
                        pieces.clear()
                elif isinstance(event, Ping):
                    out += server.send(event.response())
                elif isinstance(event, CloseConnection):
                    if server.state is WsprotoState.REMOTE_CLOSING:   # not a TCP close
                        out += server.send(event.response())
                    connection.send(out)
                    return
            if out and not connection.send(out):
                return
            if not data:
                return
    return script


def tunnel(target_port: int) -> Script:
    """An HTTP proxy's CONNECT tunnel to 127.0.0.1:``target_port``."""
    def script(connection: PeerConnection) -> None:
        request = connection.read_request(read_body=False)
        if request is None:
            return
        connection.send(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        upstream = socket.create_connection(("127.0.0.1", target_port), timeout=5)

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        back = threading.Thread(target=pump, args=(upstream, connection.sock), daemon=True)
        back.start()
        pump(connection.sock, upstream)
        back.join(5)
        upstream.close()
    return script
