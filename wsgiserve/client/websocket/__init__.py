"""wsgiserve's WebSocket client (RFC 6455, permessage-deflate): blocking, on the HTTP
client's transport and the sans-IO core in ``wsgiserve.websocket``::

    with connect("wss://example.org/chat", subprotocols=["chat.v1"]) as ws:
        ws.send("hello")
        for message in ws:              # str for text, bytes for binary
            ...

The public API is what ``__all__`` names; ``cli`` is the ``wsgiserve-ws`` command line.
"""
from __future__ import annotations

from wsgiserve.client.websocket.errors import (
    OK_CLOSE_CODES,
    HandshakeRefused,
    InvalidHandshake,
    WebSocketClosed,
    WebSocketClosedOK,
    WebSocketConnectionLost,
    WebSocketProtocolError,
)
from wsgiserve.client.websocket.opening import MAX_BODY_EXCERPT_BYTES, connect
from wsgiserve.client.websocket.session import Message, WebSocket
from wsgiserve.websocket import DEFAULT_MAX_MESSAGE_BYTES, DeflateOptions, DeflateParameters

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES", "MAX_BODY_EXCERPT_BYTES", "OK_CLOSE_CODES", "DeflateOptions",
    "DeflateParameters", "HandshakeRefused", "InvalidHandshake", "Message", "WebSocket",
    "WebSocketClosed", "WebSocketClosedOK", "WebSocketConnectionLost",
    "WebSocketProtocolError", "connect",
]
