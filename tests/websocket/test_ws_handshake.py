"""The opening handshake (RFC 6455 §4): the server's checks of an upgrade request, the 101
fields it builds, the client's request and its checks of the response."""
from __future__ import annotations

import base64

import pytest

from wsgiserve.websocket import (
    ClientHandshake,
    DeflateOptions,
    DeflateParameters,
    ExtensionOffer,
    HandshakeError,
    InvalidHandshakeResponse,
    LocalProtocolError,
    Negotiated,
    UnsupportedVersion,
    UpgradeRequest,
    accept_key,
    accept_upgrade,
    build_upgrade_request,
    check_upgrade_response,
    parse_upgrade_request,
    wants_websocket,
)
from wsgiserve.websocket.handshake import parse_extensions

# RFC 6455 §1.3's example key and accept value.
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
Fields = list[tuple[bytes, bytes]]


def upgrade(*extra: tuple[bytes, bytes], drop: tuple[bytes, ...] = ()) -> Fields:
    fields = [(b"Host", b"example.com"), (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
              (b"Sec-WebSocket-Key", KEY), (b"Sec-WebSocket-Version", b"13")]
    return [(name, value) for name, value in fields if name.lower() not in drop] + list(extra)


def test_accept_key_rfc_example() -> None:
    assert accept_key(KEY) == ACCEPT


REQUEST_CASES = [
    pytest.param(b"GET", b"1.1", upgrade(), UpgradeRequest(KEY), id="minimal"),
    pytest.param(b"GET", b"2.0", upgrade(), UpgradeRequest(KEY), id="later-http-version"),
    pytest.param(b"GET", b"1.1",
                 upgrade(drop=(b"connection", b"upgrade"))
                 + [(b"connection", b"keep-alive, Upgrade"), (b"UPGRADE", b"WebSocket")],
                 UpgradeRequest(KEY), id="token-lists-any-case"),
    pytest.param(b"GET", b"1.1",
                 upgrade(drop=(b"connection",)) + [(b"Connection", b"keep-alive"),
                                                   (b"Connection", b"upgrade")],
                 UpgradeRequest(KEY), id="connection-over-two-lines"),
    pytest.param(b"GET", b"1.1", upgrade(drop=(b"upgrade",)) + [(b"Upgrade", b"h2c, websocket")],
                 UpgradeRequest(KEY), id="upgrade-list"),
    pytest.param(b"GET", b"1.1",
                 upgrade((b"Sec-WebSocket-Protocol", b"chat, superchat"),
                         (b"Sec-WebSocket-Protocol", b"Wamp.2.JSON")),
                 UpgradeRequest(KEY, ("chat", "superchat", "Wamp.2.JSON")), id="subprotocols"),
    pytest.param(b"GET", b"1.1",
                 upgrade((b"Sec-WebSocket-Extensions",
                          b"permessage-deflate; client_max_window_bits, foo; bar=\"1\""),
                         (b"Sec-WebSocket-Extensions", b"permessage-deflate")),
                 UpgradeRequest(KEY, (), (
                     ExtensionOffer("permessage-deflate", (("client_max_window_bits", None),)),
                     ExtensionOffer("foo", (("bar", "1"),)),
                     ExtensionOffer("permessage-deflate"))), id="extensions"),
    # --- refused: 400 ---------------------------------------------------------------------
    pytest.param(b"POST", b"1.1", upgrade(), HandshakeError, id="post"),
    pytest.param(b"get", b"1.1", upgrade(), HandshakeError, id="lowercase-method"),
    pytest.param(b"GET", b"1.0", upgrade(), HandshakeError, id="http-1.0"),
    pytest.param(b"GET", b"1.1", upgrade(drop=(b"connection",)), HandshakeError,
                 id="no-connection-upgrade"),
    pytest.param(b"GET", b"1.1", upgrade(drop=(b"connection",)) + [(b"Connection", b"keep-alive")],
                 HandshakeError, id="connection-without-upgrade"),
    pytest.param(b"GET", b"1.1", upgrade(drop=(b"upgrade",)), HandshakeError, id="no-upgrade"),
    pytest.param(b"GET", b"1.1", upgrade(drop=(b"upgrade",)) + [(b"Upgrade", b"h2c")],
                 HandshakeError, id="upgrade-to-something-else"),
    pytest.param(b"GET", b"1.1", upgrade(drop=(b"sec-websocket-key",)), HandshakeError,
                 id="no-key"),
    *[pytest.param(b"GET", b"1.1", upgrade((b"Sec-WebSocket-Key", key), drop=(b"sec-websocket-key",)),
                   HandshakeError, id=f"bad-key-{name}")
      for name, key in [("15-bytes", base64.b64encode(b"x" * 15)),
                        ("17-bytes", base64.b64encode(b"x" * 17)),
                        ("not-base64", b"!" * 24), ("unpadded", KEY.rstrip(b"=")),
                        ("empty", b"")]],
    pytest.param(b"GET", b"1.1", upgrade((b"Sec-WebSocket-Key", KEY)), HandshakeError,
                 id="repeated-key"),
    pytest.param(b"GET", b"1.1", upgrade((b"Sec-WebSocket-Version", b"13")), HandshakeError,
                 id="repeated-version"),
    pytest.param(b"GET", b"1.1", upgrade((b"Sec-WebSocket-Protocol", b"a b")), HandshakeError,
                 id="subprotocol-not-a-token"),
    pytest.param(b"GET", b"1.1", upgrade((b"Sec-WebSocket-Extensions", b"permessage-deflate; =1")),
                 HandshakeError, id="extensions-malformed"),
    # --- refused: 426 with the version we speak --------------------------------------------
    pytest.param(b"GET", b"1.1", upgrade((b"Sec-WebSocket-Version", b"8"),
                                         drop=(b"sec-websocket-version",)),
                 UnsupportedVersion, id="version-8"),
    pytest.param(b"GET", b"1.1", upgrade(drop=(b"sec-websocket-version",)), UnsupportedVersion,
                 id="no-version"),
    pytest.param(b"GET", b"1.1", upgrade((b"Sec-WebSocket-Version", b"13, 8"),
                                         drop=(b"sec-websocket-version",)),
                 UnsupportedVersion, id="version-list"),
]


@pytest.mark.parametrize("method, version, fields, expected", REQUEST_CASES)
def test_parse_upgrade_request(method: bytes, version: bytes, fields: Fields,
                               expected: UpgradeRequest | type[HandshakeError]) -> None:
    if isinstance(expected, UpgradeRequest):
        assert wants_websocket(fields)
        assert parse_upgrade_request(method, version, fields) == expected
        return
    with pytest.raises(HandshakeError) as info:
        parse_upgrade_request(method, version, fields)
    assert type(info.value) is expected
    if expected is UnsupportedVersion:
        assert info.value.status == 426
        assert info.value.headers == ((b"Sec-WebSocket-Version", b"13"),)
    else:
        assert info.value.status == 400 and info.value.headers == ()


def test_wants_websocket() -> None:
    assert wants_websocket([(b"Upgrade", b"WebSocket")])
    assert not wants_websocket([(b"Upgrade", b"h2c")])
    assert not wants_websocket([(b"Connection", b"upgrade")])


@pytest.mark.parametrize("value, expected", [
    (b"", []),
    (b" , ,", []),
    (b"a", [ExtensionOffer("a")]),
    (b"A;B", [ExtensionOffer("a", (("b", None),))]),
    (b"a ; b = 1 ;c;d=\"x\\y\" , e", [ExtensionOffer("a", (("b", "1"), ("c", None), ("d", "xy"))),
                                       ExtensionOffer("e")]),
])
def test_parse_extensions(value: bytes, expected: list[ExtensionOffer]) -> None:
    assert parse_extensions(value) == expected


@pytest.mark.parametrize("value", [b"a;", b"a b", b"a;b=", b"a;b=\"1 2\"", b"a;b=\"x", b"=a",
                                   b"a;b=1 c", b"a,,;b"])
def test_parse_extensions_refuses(value: bytes) -> None:
    with pytest.raises(ValueError):
        parse_extensions(value)


def test_accept_upgrade_fields() -> None:
    request = parse_upgrade_request(b"GET", b"1.1", upgrade(
        (b"Sec-WebSocket-Protocol", b"chat, superchat"),
        (b"Sec-WebSocket-Extensions", b"x-unknown, permessage-deflate; server_max_window_bits=10")))
    acceptance = accept_upgrade(request, subprotocol="superchat", deflate=DeflateOptions(),
                                extra_headers=[(b"Set-Cookie", b"a=b")])
    assert acceptance.headers == [
        (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Accept", ACCEPT),
        (b"Sec-WebSocket-Protocol", b"superchat"),
        (b"Sec-WebSocket-Extensions", b"permessage-deflate; server_max_window_bits=10"),
        (b"Set-Cookie", b"a=b")]
    assert acceptance.subprotocol == "superchat"
    assert acceptance.deflate == DeflateParameters(server_max_window_bits=10)
    # Without deflate options, the offer is ignored; without a choice, no subprotocol.
    plain = accept_upgrade(request)
    assert plain.headers == acceptance.headers[:3] and plain.deflate is None
    with pytest.raises(LocalProtocolError):
        accept_upgrade(request, subprotocol="other")


def test_client_request_fields() -> None:
    handshake = build_upgrade_request(subprotocols=["chat", "v2.json"], deflate=DeflateOptions(),
                                      extra_headers=[(b"Origin", b"http://a")])
    assert len(base64.b64decode(handshake.key, validate=True)) == 16
    assert handshake.headers == [
        (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", handshake.key), (b"Sec-WebSocket-Version", b"13"),
        (b"Sec-WebSocket-Protocol", b"chat, v2.json"),
        (b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits"),
        (b"Origin", b"http://a")]
    assert build_upgrade_request().key != build_upgrade_request().key
    with pytest.raises(LocalProtocolError):
        build_upgrade_request(subprotocols=["a b"])


def response(*extra: tuple[bytes, bytes], accept: bytes = ACCEPT) -> Fields:
    return [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", accept), *extra]


OFFER = build_upgrade_request(subprotocols=["chat", "superchat"], deflate=DeflateOptions(), key=KEY)
PLAIN = build_upgrade_request(key=KEY)

RESPONSE_CASES = [
    pytest.param(OFFER, 101, response(), Negotiated(), id="nothing-chosen"),
    pytest.param(OFFER, 101, response((b"Sec-WebSocket-Protocol", b"superchat")),
                 Negotiated("superchat"), id="subprotocol"),
    pytest.param(OFFER, 101, response((b"Sec-WebSocket-Extensions",
                                       b"permessage-deflate; client_max_window_bits=10")),
                 Negotiated(None, DeflateParameters(client_max_window_bits=10)), id="deflate"),
    pytest.param(OFFER, 101, [(b"upgrade", b"WebSocket"), (b"connection", b"keep-alive, upgrade"),
                              (b"sec-websocket-accept", ACCEPT)], Negotiated(), id="any-case"),
    pytest.param(OFFER, 200, response(), None, id="not-101"),
    pytest.param(OFFER, 101, response(accept=b"x" + ACCEPT[1:]), None, id="wrong-accept"),
    pytest.param(OFFER, 101, response()[:2], None, id="no-accept"),
    pytest.param(OFFER, 101, response((b"Sec-WebSocket-Accept", ACCEPT)), None,
                 id="repeated-accept"),
    pytest.param(OFFER, 101, response()[1:], None, id="no-upgrade"),
    pytest.param(OFFER, 101, response()[:1] + response()[2:], None, id="no-connection"),
    pytest.param(OFFER, 101, response((b"Sec-WebSocket-Protocol", b"other")), None,
                 id="subprotocol-not-offered"),
    pytest.param(OFFER, 101, response((b"Sec-WebSocket-Protocol", b"chat, superchat")), None,
                 id="two-subprotocols"),
    pytest.param(PLAIN, 101, response((b"Sec-WebSocket-Protocol", b"chat")), None,
                 id="subprotocol-when-none-offered"),
    pytest.param(PLAIN, 101, response((b"Sec-WebSocket-Extensions", b"permessage-deflate")), None,
                 id="deflate-not-offered"),
    pytest.param(OFFER, 101, response((b"Sec-WebSocket-Extensions", b"x-other")), None,
                 id="unknown-extension"),
    pytest.param(OFFER, 101, response((b"Sec-WebSocket-Extensions",
                                       b"permessage-deflate, permessage-deflate")), None,
                 id="deflate-twice"),
    pytest.param(OFFER, 101, response((b"Sec-WebSocket-Extensions",
                                       b"permessage-deflate; client_max_window_bits=8")), None,
                 id="deflate-8-bit-client-window"),
]


@pytest.mark.parametrize("handshake, status, fields, expected", RESPONSE_CASES)
def test_check_upgrade_response(handshake: ClientHandshake, status: int, fields: Fields,
                                expected: Negotiated | None) -> None:
    if expected is None:
        with pytest.raises(InvalidHandshakeResponse):
            check_upgrade_response(handshake, status, fields)
    else:
        assert check_upgrade_response(handshake, status, fields) == expected


def test_both_roles_agree() -> None:
    options = DeflateOptions(server_no_context_takeover=True, client_max_window_bits=11)
    handshake = build_upgrade_request(subprotocols=["v1", "v2"], deflate=options)
    request = parse_upgrade_request(b"GET", b"1.1", handshake.headers)
    acceptance = accept_upgrade(request, subprotocol="v2",
                                deflate=DeflateOptions(client_max_window_bits=10))
    negotiated = check_upgrade_response(handshake, 101, acceptance.headers)
    assert negotiated.subprotocol == acceptance.subprotocol == "v2"
    assert negotiated.deflate == acceptance.deflate == DeflateParameters(
        server_no_context_takeover=True, client_max_window_bits=10)
