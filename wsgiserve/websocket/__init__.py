"""Sans-IO WebSocket (RFC 6455) with permessage-deflate (RFC 7692), for both roles.

Imports only the standard library and ``wsgiserve.http``'s header helpers, and never
``socket``, ``ssl``, ``selectors``, ``threading`` or ``logging``. The server and the
client drive it: the handshake functions check and build header fields, and a
``WebSocketConnection`` turns bytes into events and calls into bytes.
"""
from __future__ import annotations

from wsgiserve.websocket.connection import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ConnectionState,
    Role,
    WebSocketConnection,
)
from wsgiserve.websocket.deflate import DeflateOptions, DeflateParameters
from wsgiserve.websocket.errors import (
    HandshakeError,
    InvalidHandshakeResponse,
    InvalidPayload,
    LocalProtocolError,
    MessageTooBig,
    PolicyViolation,
    ProtocolViolation,
    UnsupportedVersion,
    WebSocketError,
)
from wsgiserve.websocket.events import (
    NEED_DATA,
    BytesMessage,
    CloseReceived,
    ConnectionClosed,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from wsgiserve.websocket.frames import is_valid_close_code
from wsgiserve.websocket.handshake import (
    Acceptance,
    ClientHandshake,
    ExtensionOffer,
    Negotiated,
    UpgradeRequest,
    accept_key,
    accept_upgrade,
    build_upgrade_request,
    check_upgrade_response,
    parse_upgrade_request,
    wants_websocket,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES", "NEED_DATA", "Acceptance", "BytesMessage", "ClientHandshake",
    "CloseReceived", "ConnectionClosed", "ConnectionState", "DeflateOptions",
    "DeflateParameters", "Event", "ExtensionOffer", "HandshakeError",
    "InvalidHandshakeResponse", "InvalidPayload", "LocalProtocolError", "MessageTooBig",
    "Negotiated", "Ping", "PolicyViolation", "Pong", "ProtocolViolation", "Role",
    "TextMessage", "UnsupportedVersion", "UpgradeRequest", "WebSocketConnection",
    "WebSocketError", "accept_key", "accept_upgrade", "build_upgrade_request",
    "check_upgrade_response", "is_valid_close_code", "parse_upgrade_request",
    "wants_websocket",
]
