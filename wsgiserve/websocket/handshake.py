"""The opening handshake (RFC 6455 §4) for both roles, on header fields as byte pairs.

Server: ``parse_upgrade_request`` checks an upgrade request and returns what it offers;
``accept_upgrade`` builds the 101 response's fields for a chosen subprotocol and the
negotiated extensions. Client: ``build_upgrade_request`` makes the request's fields (a
random key, subprotocols, a permessage-deflate offer) and ``check_upgrade_response``
checks the 101 response. Nothing here reads or writes an HTTP head.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from wsgiserve.http.headers import QUOTED_STRING, TCHAR, TOKEN_STR_RE, Headers
from wsgiserve.websocket.deflate import (
    EXTENSION_NAME,
    DeflateOptions,
    DeflateParameters,
    Params,
    accept_response,
    negotiate_offers,
    offer_header,
)
from wsgiserve.websocket.errors import (
    HandshakeError,
    InvalidHandshakeResponse,
    LocalProtocolError,
    UnsupportedVersion,
)

__all__ = ["Acceptance", "ClientHandshake", "ExtensionOffer", "Negotiated", "UpgradeRequest",
           "accept_key", "accept_upgrade", "build_upgrade_request", "check_upgrade_response",
           "parse_extensions", "wants_websocket"]

HeaderPairs = Iterable[tuple[bytes, bytes]]

# RFC 6455 §1.3: the GUID appended to the key before hashing.
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 6455 §4.1 item 7 / §4.2.1 item 5: the key is 16 random bytes, base64-encoded.
_KEY_BYTES: Final = 16
# RFC 6455 §4.1 item 9: the only version this document defines.
WEBSOCKET_VERSION: Final = b"13"

_TOKEN: Final = "[" + TCHAR.decode("ascii") + "]+"
_QUOTED: Final = QUOTED_STRING.decode("ascii")
# RFC 6455 §9.1: extension = extension-token *( ";" extension-param ), where
# extension-param = token [ "=" (token | quoted-string) ].
_EXTENSION_RE: Final = re.compile(rf"[ \t]*({_TOKEN})")
_PARAM_RE: Final = re.compile(rf"[ \t]*;[ \t]*({_TOKEN})(?:[ \t]*=[ \t]*({_TOKEN}|{_QUOTED}))?")
_SEPARATOR_RE: Final = re.compile(r"[ \t]*(?:,|\Z)")
_UNESCAPE_RE: Final = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class ExtensionOffer:
    """One element of Sec-WebSocket-Extensions: a lowercased name and its parameters
    (lowercased names; values unquoted, or None when absent)."""

    name: str
    params: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A valid WebSocket upgrade request, as the server sees it."""

    key: bytes
    subprotocols: tuple[str, ...] = ()
    extensions: tuple[ExtensionOffer, ...] = ()

    def extension_params(self, name: str) -> list[Params]:
        """Return the parameters of each offer of extension ``name``, in the client's order."""
        return [offer.params for offer in self.extensions if offer.name == name]


@dataclass(frozen=True, slots=True)
class Acceptance:
    """The server's answer: the 101 response's fields, and what the connection uses."""

    headers: list[tuple[bytes, bytes]]
    subprotocol: str | None = None
    deflate: DeflateParameters | None = None


@dataclass(frozen=True, slots=True)
class ClientHandshake:
    """The client's request fields (Host, the method and target are the client's) and
    what they offered, kept to check the response."""

    key: bytes
    headers: list[tuple[bytes, bytes]]
    subprotocols: tuple[str, ...] = ()
    deflate: DeflateOptions | None = None


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What the server's response agreed to, as the client sees it."""

    subprotocol: str | None = None
    deflate: DeflateParameters | None = None


def accept_key(key: bytes) -> bytes:
    """Return the Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def parse_extensions(value: bytes) -> list[ExtensionOffer]:
    """Parse a (combined) Sec-WebSocket-Extensions value (RFC 6455 §9.1).

    Empty list elements are skipped (RFC 9110 §5.6.1). A quoted value must be a token
    once unquoted.

    Raises:
        ValueError: the value does not follow the grammar.
    """
    text = value.decode("latin-1")
    offers: list[ExtensionOffer] = []
    pos = 0
    while pos < len(text):
        separator = _SEPARATOR_RE.match(text, pos)
        if separator is not None and separator.end() > pos:
            pos = separator.end()           # an empty element
            continue
        match = _EXTENSION_RE.match(text, pos)
        if match is None:
            raise ValueError(f"invalid extension list at {text[pos:pos + 20]!r}")
        name = match.group(1).lower()
        pos = match.end()
        params: list[tuple[str, str | None]] = []
        while (match := _PARAM_RE.match(text, pos)) is not None:
            param_value = match.group(2)
            if param_value is not None and param_value.startswith('"'):
                param_value = _UNESCAPE_RE.sub(r"\1", param_value[1:-1])
                if TOKEN_STR_RE.fullmatch(param_value) is None:
                    raise ValueError(f"quoted value of {match.group(1)} is not a token")
            params.append((match.group(1).lower(), param_value))
            pos = match.end()
        separator = _SEPARATOR_RE.match(text, pos)
        if separator is None:
            raise ValueError(f"invalid extension list at {text[pos:pos + 20]!r}")
        pos = separator.end()
        offers.append(ExtensionOffer(name, tuple(params)))
    return offers


def _protocol_list(headers: Headers) -> tuple[str, ...]:
    """Sec-WebSocket-Protocol's tokens, case kept (RFC 6455 §4.1 item 10, §11.3.4)."""
    value = headers.combined(b"sec-websocket-protocol")
    if value is None:
        return ()
    items = [item.strip(" \t") for item in value.decode("latin-1").split(",")]
    protocols = tuple(item for item in items if item)
    for protocol in protocols:
        if TOKEN_STR_RE.fullmatch(protocol) is None:
            raise ValueError(f"subprotocol {protocol!r} is not a token")
    return protocols


def _single(headers: Headers, name: bytes) -> bytes | None:
    values = headers.get_all(name)
    if len(values) > 1:
        raise HandshakeError(f"{name.decode()} appears {len(values)} times")
    return values[0] if values else None


def wants_websocket(headers: HeaderPairs) -> bool:
    """Whether a request asks to upgrade to WebSocket (Upgrade's list names websocket)."""
    return b"websocket" in Headers(list(headers)).tokens(b"upgrade")


def parse_upgrade_request(method: bytes, http_version: bytes,
                          headers: HeaderPairs) -> UpgradeRequest:
    """Check a request that asks for a WebSocket upgrade (RFC 6455 §4.2.1).

    Args:
        method: the request method, e.g. b"GET".
        http_version: e.g. b"1.1".
        headers: the request's fields as (name, value) byte pairs, any case.
    Returns:
        The key, the offered subprotocols and the extension offers.
    Raises:
        UnsupportedVersion: Sec-WebSocket-Version is missing or not 13 (answer 426 with
            ``exc.headers``).
        HandshakeError: anything else that is not a valid upgrade request (answer 400).
    """
    fields = Headers(list(headers))
    if method != b"GET":
        raise HandshakeError(f"a WebSocket upgrade must use GET, not {method!r}")
    major, _, minor = http_version.partition(b".")
    if not (major.isdigit() and minor.isdigit()) or (int(major), int(minor)) < (1, 1):
        raise HandshakeError(f"a WebSocket upgrade needs HTTP/1.1, not {http_version!r}")
    if b"upgrade" not in fields.tokens(b"connection"):
        raise HandshakeError("Connection does not list upgrade")
    if b"websocket" not in fields.tokens(b"upgrade"):
        raise HandshakeError("Upgrade does not list websocket")
    version = _single(fields, b"sec-websocket-version")
    if version != WEBSOCKET_VERSION:
        raise UnsupportedVersion(f"Sec-WebSocket-Version {version!r} is not 13")
    key = _single(fields, b"sec-websocket-key")
    if key is None:
        raise HandshakeError("Sec-WebSocket-Key is missing")
    try:
        is_valid_key = len(base64.b64decode(key, validate=True)) == _KEY_BYTES
    except binascii.Error:
        is_valid_key = False
    if not is_valid_key:
        raise HandshakeError("Sec-WebSocket-Key is not the base64 of 16 bytes")
    try:
        subprotocols = _protocol_list(fields)
        extensions = parse_extensions(fields.combined(b"sec-websocket-extensions") or b"")
    except ValueError as exc:
        raise HandshakeError(str(exc)) from exc
    return UpgradeRequest(key, subprotocols, tuple(extensions))


def accept_upgrade(request: UpgradeRequest, *, subprotocol: str | None = None,
                   deflate: DeflateOptions | None = None,
                   extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> Acceptance:
    """Build the server's 101 response fields (RFC 6455 §4.2.2 item 5).

    Args:
        request: what ``parse_upgrade_request`` returned.
        subprotocol: the application's choice, one of ``request.subprotocols``, or None.
        deflate: our permessage-deflate options, or None not to compress; the first
            acceptable offer is taken (none acceptable: no compression).
        extra_headers: more fields for the response (Set-Cookie, ...), added last.
    Raises:
        LocalProtocolError: ``subprotocol`` was not offered.
    """
    if subprotocol is not None and subprotocol not in request.subprotocols:
        raise LocalProtocolError(f"subprotocol {subprotocol!r} was not offered")
    headers = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
               (b"Sec-WebSocket-Accept", accept_key(request.key))]
    if subprotocol is not None:
        headers.append((b"Sec-WebSocket-Protocol", subprotocol.encode("ascii")))
    parameters = None
    if deflate is not None:
        parameters = negotiate_offers(request.extension_params(EXTENSION_NAME), deflate)
        if parameters is not None:
            headers.append((b"Sec-WebSocket-Extensions", parameters.header_value()))
    headers.extend(extra_headers)
    return Acceptance(headers, subprotocol, parameters)


def build_upgrade_request(*, subprotocols: Sequence[str] = (),
                          deflate: DeflateOptions | None = None,
                          extra_headers: Sequence[tuple[bytes, bytes]] = (),
                          key: bytes | None = None) -> ClientHandshake:
    """Build a client's upgrade request fields (RFC 6455 §4.1); the caller adds Host.

    Args:
        subprotocols: offered in order of preference (tokens).
        deflate: offer permessage-deflate with these options, or None not to.
        extra_headers: more fields (Origin, Cookie, Authorization, ...), added last.
        key: a fixed Sec-WebSocket-Key, for tests; by default 16 random bytes.
    Raises:
        LocalProtocolError: a subprotocol that is not a token.
    """
    for protocol in subprotocols:
        if TOKEN_STR_RE.fullmatch(protocol) is None:
            raise LocalProtocolError(f"subprotocol {protocol!r} is not a token")
    if key is None:
        # RFC 6455 §4.1 item 7: a nonce randomly selected for each connection.
        key = base64.b64encode(os.urandom(_KEY_BYTES))
    headers = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
               (b"Sec-WebSocket-Key", key), (b"Sec-WebSocket-Version", WEBSOCKET_VERSION)]
    if subprotocols:
        headers.append((b"Sec-WebSocket-Protocol", ", ".join(subprotocols).encode("ascii")))
    if deflate is not None:
        headers.append((b"Sec-WebSocket-Extensions", offer_header(deflate)))
    headers.extend(extra_headers)
    return ClientHandshake(key, headers, tuple(subprotocols), deflate)


def check_upgrade_response(handshake: ClientHandshake, status: int,
                           headers: HeaderPairs) -> Negotiated:
    """Check the server's response to our upgrade request (RFC 6455 §4.1, the client's
    checks 1-6).

    Returns:
        The subprotocol and permessage-deflate parameters the server chose.
    Raises:
        InvalidHandshakeResponse: the response does not accept our request; the client
            must fail the connection.
    """
    if status != 101:
        raise InvalidHandshakeResponse(f"the server answered {status}, not 101")
    fields = Headers(list(headers))
    if b"websocket" not in fields.tokens(b"upgrade"):
        raise InvalidHandshakeResponse("Upgrade does not name websocket")
    if b"upgrade" not in fields.tokens(b"connection"):
        raise InvalidHandshakeResponse("Connection does not list upgrade")
    accept = fields.get_all(b"sec-websocket-accept")
    if accept != [accept_key(handshake.key)]:
        raise InvalidHandshakeResponse(f"Sec-WebSocket-Accept {accept!r} does not match our key")
    try:
        protocols = _protocol_list(fields)
        extensions = parse_extensions(fields.combined(b"sec-websocket-extensions") or b"")
    except ValueError as exc:
        raise InvalidHandshakeResponse(str(exc)) from exc
    if len(protocols) > 1 or (protocols and protocols[0] not in handshake.subprotocols):
        raise InvalidHandshakeResponse(f"subprotocol {', '.join(protocols)!r} was not offered")
    deflate = None
    for extension in extensions:
        if extension.name != EXTENSION_NAME or handshake.deflate is None or deflate is not None:
            raise InvalidHandshakeResponse(f"extension {extension.name!r} was not offered "
                                           "(or is repeated)")
        deflate = accept_response(extension.params, handshake.deflate)
    return Negotiated(protocols[0] if protocols else None, deflate)
