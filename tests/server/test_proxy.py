"""Trusted proxies: X-Forwarded-*, RFC 7239 Forwarded and X-Forwarded-Prefix, honoured from
trusted peers and removed from untrusted ones; then end to end on a real server, including
PROXY protocol v1/v2 from allowed and disallowed peers."""
from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from tls_servers import Server, read_response

from wsgiserve.http import Request, RequestParser
from wsgiserve.server.worker.connection import make_base_environ
from wsgiserve.server.worker.forwarded import AddressMatcher, ProxySettings
from wsgiserve.server.worker.proxy_protocol import V2_SIGNATURE
from wsgiserve.wsgi import build_environ

PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_SSL",
                 "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX",
                 "HTTP_FORWARDED")


def environ_after(headers: list[tuple[str, str]], *, peer: str = "127.0.0.1",
                  trusted: tuple[str, ...] = ("127.0.0.1", "::1"), target: str = "/x/y",
                  script_name: str = "") -> dict[str, Any]:
    raw = f"GET {target} HTTP/1.1\r\nHost: internal:8000\r\n".encode("latin-1")
    raw += b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)
    parser = RequestParser()
    parser.feed(raw + b"\r\n")
    request = parser.next_event()
    assert type(request) is Request
    base = make_base_environ("internal", "8000", "http", multithread=False,
                             multiprocess=False)
    base["REMOTE_ADDR"], base["REMOTE_PORT"] = peer, "5555"
    environ = build_environ(request, base, script_name)
    ProxySettings(trusted).apply(environ, request, peer)
    return environ


def view(environ: dict[str, Any]) -> dict[str, Any]:
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME",
            "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO")
    return {key: environ.get(key) for key in keys}


UNCHANGED = {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5555", "wsgi.url_scheme": "http",
             "HTTP_HOST": "internal:8000", "SERVER_NAME": "internal", "SERVER_PORT": "8000",
             "SCRIPT_NAME": "", "PATH_INFO": "/x/y"}

TRUSTED = [
    pytest.param([("X-Forwarded-For", "203.0.113.9")], {"REMOTE_ADDR": "203.0.113.9",
                                                        "REMOTE_PORT": "0"}, id="xff-one"),
    pytest.param([("X-Forwarded-For", "1.1.1.1, 203.0.113.9, 127.0.0.1")],
                 {"REMOTE_ADDR": "203.0.113.9", "REMOTE_PORT": "0"},
                 id="xff-right-most-untrusted-not-left-most-spoof"),
    pytest.param([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "203.0.113.9")],
                 {"REMOTE_ADDR": "203.0.113.9", "REMOTE_PORT": "0"}, id="xff-repeated-field"),
    pytest.param([("X-Forwarded-For", "127.0.0.1, ::1")], {"REMOTE_ADDR": "127.0.0.1",
                                                           "REMOTE_PORT": "0"},
                 id="xff-all-trusted-left-most"),
    pytest.param([("X-Forwarded-For", "203.0.113.9:4711")], {"REMOTE_ADDR": "203.0.113.9",
                                                             "REMOTE_PORT": "4711"},
                 id="xff-with-port"),
    pytest.param([("X-Forwarded-For", "[2001:db8::9]:4711")],
                 {"REMOTE_ADDR": "2001:db8::9", "REMOTE_PORT": "4711"}, id="xff-ipv6-port"),
    pytest.param([("X-Forwarded-For", "2001:db8::9")], {"REMOTE_ADDR": "2001:db8::9",
                                                        "REMOTE_PORT": "0"}, id="xff-ipv6"),
    pytest.param([("X-Forwarded-For", "evil, 127.0.0.1")], {"REMOTE_ADDR": "127.0.0.1",
                                                            "REMOTE_PORT": "0"},
                 id="xff-garbage-stops-at-last-known"),
    pytest.param([("X-Forwarded-For", "<script>")], {}, id="xff-garbage-only-keeps-peer"),
    pytest.param([("X-Forwarded-Proto", "https")], {"wsgi.url_scheme": "https"}, id="xfp"),
    pytest.param([("X-Forwarded-Proto", "HTTPS")], {"wsgi.url_scheme": "https"},
                 id="xfp-case"),
    pytest.param([("X-Forwarded-Proto", "https, http")], {"wsgi.url_scheme": "http"},
                 id="xfp-right-most"),
    pytest.param([("X-Forwarded-Proto", "gopher")], {}, id="xfp-unknown-ignored"),
    pytest.param([("X-Forwarded-Ssl", "on")], {"wsgi.url_scheme": "https"}, id="xfssl"),
    pytest.param([("X-Forwarded-Host", "example.com")],
                 {"HTTP_HOST": "example.com", "SERVER_NAME": "example.com",
                  "SERVER_PORT": "80"}, id="xfhost"),
    pytest.param([("X-Forwarded-Host", "example.com:8443"), ("X-Forwarded-Proto", "https")],
                 {"HTTP_HOST": "example.com:8443", "SERVER_NAME": "example.com",
                  "SERVER_PORT": "8443", "wsgi.url_scheme": "https"}, id="xfhost-port"),
    pytest.param([("X-Forwarded-Host", "example.com"), ("X-Forwarded-Port", "443"),
                  ("X-Forwarded-Proto", "https")],
                 {"HTTP_HOST": "example.com", "SERVER_NAME": "example.com",
                  "SERVER_PORT": "443", "wsgi.url_scheme": "https"}, id="xfhost-xfport"),
    pytest.param([("X-Forwarded-Host", "example.com"), ("X-Forwarded-Port", "8080")],
                 {"HTTP_HOST": "example.com:8080", "SERVER_NAME": "example.com",
                  "SERVER_PORT": "8080"}, id="xfhost-xfport-nondefault"),
    pytest.param([("X-Forwarded-Port", "9000")],
                 {"HTTP_HOST": "internal:9000", "SERVER_PORT": "9000"}, id="xfport-alone"),
    pytest.param([("X-Forwarded-Host", "[2001:db8::1]:8443")],
                 {"HTTP_HOST": "[2001:db8::1]:8443", "SERVER_NAME": "[2001:db8::1]",
                  "SERVER_PORT": "8443"}, id="xfhost-ipv6"),
    pytest.param([("X-Forwarded-Host", "evil.com/path?x")], {}, id="xfhost-invalid-ignored"),
    pytest.param([("X-Forwarded-Host", "a@evil.com")], {}, id="xfhost-userinfo-ignored"),
    pytest.param([("Forwarded", 'for=203.0.113.60;proto=https;host=example.com')],
                 {"REMOTE_ADDR": "203.0.113.60", "REMOTE_PORT": "0",
                  "wsgi.url_scheme": "https", "HTTP_HOST": "example.com",
                  "SERVER_NAME": "example.com", "SERVER_PORT": "443"}, id="forwarded"),
    pytest.param([("Forwarded", 'for="[2001:db8:cafe::17]:4711"')],
                 {"REMOTE_ADDR": "2001:db8:cafe::17", "REMOTE_PORT": "4711"},
                 id="forwarded-quoted-ipv6"),
    pytest.param([("Forwarded", 'For="203.0.113.1:80", for=10.9.9.9;proto=https, '
                                'for=127.0.0.1;proto=http')],
                 {"REMOTE_ADDR": "10.9.9.9", "REMOTE_PORT": "0", "wsgi.url_scheme": "https"},
                 id="forwarded-chain-element-of-nearest-untrusted"),
    pytest.param([("Forwarded", 'for=unknown;proto=https')], {"wsgi.url_scheme": "https"},
                 id="forwarded-unknown"),
    pytest.param([("Forwarded", 'for=_hidden, for=127.0.0.1')],
                 {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "0"},
                 id="forwarded-obfuscated"),
    pytest.param([("Forwarded", 'for=1.2.3.4;;proto=https')], {}, id="forwarded-malformed"),
    pytest.param([("Forwarded", 'for="1.2.3.4')], {}, id="forwarded-unterminated-quote"),
    pytest.param([("Forwarded", 'for=1.2.3.4;for=5.6.7.8')], {}, id="forwarded-duplicate"),
    pytest.param([("Forwarded", 'for=9.9.9.9;proto=https'), ("X-Forwarded-For", "8.8.8.8"),
                  ("X-Forwarded-Proto", "http")],
                 {"REMOTE_ADDR": "8.8.8.8", "REMOTE_PORT": "0"}, id="x-forwarded-wins"),
    pytest.param([("X-Forwarded-Prefix", "/app")],
                 {"SCRIPT_NAME": "/app", "PATH_INFO": "/x/y"}, id="prefix-path-rewritten"),
    pytest.param([("X-Forwarded-Prefix", "/x/")], {"SCRIPT_NAME": "/x", "PATH_INFO": "/y"},
                 id="prefix-stripped-from-path"),
    pytest.param([("X-Forwarded-Prefix", "/x%20y")], {"SCRIPT_NAME": "/x y"},
                 id="prefix-percent-decoded"),
    pytest.param([("X-Forwarded-Prefix", "app")], {}, id="prefix-relative-ignored"),
    pytest.param([("X-Forwarded-Prefix", "/a?b")], {}, id="prefix-query-ignored"),
]


@pytest.mark.parametrize(("headers", "changes"), TRUSTED)
def test_trusted_peer(headers: list[tuple[str, str]], changes: dict[str, str]) -> None:
    assert view(environ_after(headers)) == {**UNCHANGED, **changes}


SPOOFS = [
    [("X-Forwarded-For", "10.0.0.1")],
    [("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")],
    [("X-Forwarded-Host", "bank.example"), ("X-Forwarded-Port", "443")],
    [("Forwarded", "for=10.0.0.1;proto=https;host=bank.example")],
    [("X-Forwarded-Prefix", "/admin")],
    [("x-FORWARDED-for", "10.0.0.1")],
]


@pytest.mark.parametrize("headers", SPOOFS)
def test_untrusted_peer_headers_removed(headers: list[tuple[str, str]]) -> None:
    environ = environ_after(headers, peer="198.51.100.7")
    assert view(environ) == {**UNCHANGED, "REMOTE_ADDR": "198.51.100.7"}
    assert not set(PROXY_HEADERS) & set(environ)
    assert environ["HTTP_HOST"] == "internal:8000"


def test_underscore_variant_never_reaches_the_app() -> None:
    environ = environ_after([("X_Forwarded_For", "10.0.0.1")], peer="198.51.100.7")
    assert "HTTP_X_FORWARDED_FOR" not in environ


def test_other_headers_untouched() -> None:
    environ = environ_after([("X-Real-Thing", "1"), ("X-Forwarded-For", "1.2.3.4")],
                            peer="198.51.100.7")
    assert environ["HTTP_X_REAL_THING"] == "1"


def test_trusted_keeps_headers_for_the_app() -> None:
    environ = environ_after([("X-Forwarded-For", "1.2.3.4, 5.6.7.8")])
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.2.3.4, 5.6.7.8"


def test_cidr_and_star_and_unix_peer() -> None:
    cidr = ("10.0.0.0/8",)
    assert view(environ_after([("X-Forwarded-For", "1.2.3.4")], peer="10.2.3.4",
                              trusted=cidr))["REMOTE_ADDR"] == "1.2.3.4"
    assert "HTTP_X_FORWARDED_FOR" not in environ_after([("X-Forwarded-For", "1.2.3.4")],
                                                       peer="11.0.0.1", trusted=cidr)
    assert view(environ_after([("X-Forwarded-Proto", "https")], peer="198.51.100.7",
                              trusted=("*",)))["wsgi.url_scheme"] == "https"
    # A Unix-socket peer has no address: trusted (the module docstring says why).
    assert view(environ_after([("X-Forwarded-For", "1.2.3.4")], peer=""))["REMOTE_ADDR"] \
        == "1.2.3.4"
    # With an empty list nobody is trusted, and the headers still go.
    assert "HTTP_X_FORWARDED_FOR" not in environ_after([("X-Forwarded-For", "1.2.3.4")],
                                                       trusted=())


def test_address_matcher() -> None:
    matcher = AddressMatcher(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"])
    assert "127.0.0.1" in matcher
    assert "10.255.0.1" in matcher
    assert "::ffff:10.0.0.1" in matcher  # IPv4-mapped, from a dual-stack listener
    assert "2001:db8::5" in matcher
    assert "127.0.0.2" not in matcher
    assert "2001:db9::1" not in matcher
    assert "not-an-ip" not in matcher
    assert "" in matcher


# --- end to end ------------------------------------------------------------------------

ECHO_APP = '''
def app(environ, start_response):
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME",
            "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO", "HTTP_X_FORWARDED_FOR",
            "HTTP_FORWARDED", "SSL_PROTOCOL")
    body = repr({key: environ.get(key) for key in keys}).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def echo(sock: socket.socket, headers: str = "", before: bytes = b"") -> dict[str, Any]:
    sock.sendall(before + f"GET /p HTTP/1.1\r\nHost: h\r\n{headers}\r\n".encode("latin-1"))
    status, _, body = read_response(sock)
    assert status == 200
    result: dict[str, Any] = eval(body)  # noqa: S307 - our own app's repr of a dict
    return result


@pytest.fixture
def echo_app(tmp_path: Path) -> Path:
    (tmp_path / "echo_app.py").write_text(ECHO_APP)
    return tmp_path


def test_untrusted_peer_cannot_spoof_end_to_end(echo_app: Path) -> None:
    with Server(echo_app, "echo_app:app", "--forwarded-allow-ips", "10.9.9.9") as server:
        with server.connect() as sock:
            seen = echo(sock, "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
                              "Forwarded: for=6.6.6.6;proto=https\r\n")
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["HTTP_X_FORWARDED_FOR"] is None and seen["HTTP_FORWARDED"] is None


def test_trusted_peer_end_to_end(echo_app: Path) -> None:
    with Server(echo_app, "echo_app:app") as server:  # default: 127.0.0.1 and ::1
        with server.connect() as sock:
            seen = echo(sock, "X-Forwarded-For: 6.6.6.6, 203.0.113.5\r\n"
                              "X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n"
                              "X-Forwarded-Prefix: /shop\r\n")
            # The same connection, a request without the headers: nothing carries over.
            plain = echo(sock)
    assert seen["REMOTE_ADDR"] == "203.0.113.5"
    assert seen["wsgi.url_scheme"] == "https"
    assert (seen["HTTP_HOST"], seen["SERVER_NAME"], seen["SERVER_PORT"]) == \
        ("shop.example", "shop.example", "443")
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/shop", "/p")
    assert plain["REMOTE_ADDR"] == "127.0.0.1" and plain["wsgi.url_scheme"] == "http"


def v1(source: str = "203.0.113.7", port: int = 40000) -> bytes:
    return f"PROXY TCP4 {source} 127.0.0.1 {port} 443\r\n".encode("ascii")


def v2(source: str = "2001:db8::7", port: int = 40001) -> bytes:
    src = ipaddress.ip_address(source)
    family = 0x11 if src.version == 4 else 0x21
    block = src.packed + ipaddress.ip_address("::1" if src.version == 6 else "127.0.0.1"
                                              ).packed + struct.pack("!HH", port, 443)
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(block)) + block


@pytest.mark.parametrize(("header", "address", "port"), [
    pytest.param(v1(), "203.0.113.7", "40000", id="v1"),
    pytest.param(v2(), "2001:db8::7", "40001", id="v2-ipv6"),
    pytest.param(v2("198.51.100.4", 7), "198.51.100.4", "7", id="v2-ipv4"),
    pytest.param(V2_SIGNATURE + b"\x20\x00\x00\x00", "127.0.0.1", None, id="v2-local"),
    pytest.param(b"PROXY UNKNOWN\r\n", "127.0.0.1", None, id="v1-unknown"),
])
def test_proxy_protocol_allowed_peer(echo_app: Path, header: bytes, address: str,
                                     port: str | None) -> None:
    with Server(echo_app, "echo_app:app", "--proxy-protocol") as server:
        with server.connect() as sock:
            # Header and request in one segment, as HAProxy sends them: the header's
            # bytes are consumed, the request's are not.
            sock.sendall(header + b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n")
            status, _, body = read_response(sock)
            seen = eval(body)  # noqa: S307
            again = echo(sock)  # keep-alive: the address sticks to the connection
    assert status == 200
    assert seen["REMOTE_ADDR"] == address == again["REMOTE_ADDR"]
    if port is not None:
        assert seen["REMOTE_PORT"] == port


def test_proxy_protocol_then_forwarded_headers_judge_the_real_client(echo_app: Path) -> None:
    # After PROXY, the peer is the client named in it (untrusted): its XFF goes.
    with Server(echo_app, "echo_app:app", "--proxy-protocol") as server:
        with server.connect() as sock:
            sock.sendall(v1() + b"GET /p HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n")
            seen = eval(read_response(sock)[2])  # noqa: S307
    assert seen["REMOTE_ADDR"] == "203.0.113.7"
    assert seen["HTTP_X_FORWARDED_FOR"] is None


@pytest.mark.parametrize("payload", [
    pytest.param(b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n", id="no-header"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\nGET / HTTP/1.1\r\n\r\n", id="malformed"),
    pytest.param(V2_SIGNATURE + b"\x21\x11\xff\xff", id="v2-too-long"),
])
def test_proxy_protocol_malformed_closes(echo_app: Path, payload: bytes) -> None:
    with Server(echo_app, "echo_app:app", "--proxy-protocol") as server:
        with server.connect() as sock:
            sock.sendall(payload)
            assert_closed(sock)
        with server.connect() as sock:  # and the server carries on
            assert echo(sock, "", v1())["REMOTE_ADDR"] == "203.0.113.7"


def test_proxy_protocol_disallowed_peer_closes(echo_app: Path) -> None:
    with Server(echo_app, "echo_app:app", "--proxy-protocol",
                "--proxy-allow-ips", "10.0.0.0/8") as server:
        for header in (v1(), v2()):
            with server.connect() as sock:
                sock.sendall(header + b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n")
                assert_closed(sock)


def assert_closed(sock: socket.socket) -> None:
    """Closed with nothing sent: a FIN, or a reset (unread input makes the kernel send RST
    on close, and a refused peer's bytes are never read)."""
    try:
        assert sock.recv(1024) == b""
    except ConnectionResetError:
        pass


def test_proxy_protocol_header_dribbled(echo_app: Path) -> None:
    with Server(echo_app, "echo_app:app", "--proxy-protocol") as server:
        with server.connect() as sock:
            header = v2("203.0.113.99", 5)
            for index in range(len(header)):
                sock.sendall(header[index:index + 1])
            seen = echo(sock)
    assert seen["REMOTE_ADDR"] == "203.0.113.99"
