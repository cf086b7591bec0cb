"""Redirects (RFC 9110 §15.4) and proxies (absolute-form forwarding, CONNECT tunnels)."""
from __future__ import annotations


import pytest
from client_peers import TEST_TIMEOUTS, PeerConnection, PeerFactory, answer, respond, tunnel

from wsgiserve.client import InvalidURL, Pool, ProxyError, TooManyRedirects
from wsgiserve.client.proxy import is_excluded, parse_proxy_url, proxy_for
from wsgiserve.client.redirects import next_request
from wsgiserve.client.url import Origin, parse_url

CREDENTIALS = [("Authorization", "Basic dXNlcjpwdw=="), ("Cookie", "session=1"),
               ("Proxy-Authorization", "Basic cHJveHk=")]
CONTENT = [("Content-Type", "text/plain"), ("Content-Encoding", "identity")]


@pytest.mark.parametrize(("status", "method", "new_method", "keeps_body"), [
    (301, "GET", "GET", True), (301, "POST", "GET", False), (301, "PUT", "PUT", True),
    (302, "POST", "GET", False), (302, "DELETE", "DELETE", True),
    (303, "POST", "GET", False), (303, "PUT", "GET", False), (303, "HEAD", "HEAD", True),
    (307, "POST", "POST", True), (308, "POST", "POST", True), (308, "PATCH", "PATCH", True),
])
def test_rfc9110_15_4_method_rules(status: int, method: str, new_method: str,
                                   keeps_body: bool) -> None:
    step = next_request(method, "http://a.test/x", CONTENT + [("X-Keep", "1")], status, "/y")
    assert (step.method, step.keeps_body, step.url) == (new_method, keeps_body, "http://a.test/y")
    names = [name for name, _ in step.headers]
    assert names == (["Content-Type", "Content-Encoding", "X-Keep"] if keeps_body else ["X-Keep"])


@pytest.mark.parametrize(("base", "location", "expected"), [
    ("http://a.test/a/b/c", "../d?q=1", "http://a.test/a/d?q=1"),
    ("http://a.test/a", "/b?x=1#frag", "http://a.test/b?x=1"),
    ("http://a.test/a", "//b.test/p", "http://b.test/p"),
    ("https://a.test/a", "http://a.test/b", "http://a.test/b"),
    ("http://a.test/a#keep", "c", "http://a.test/c"),
])
def test_location_resolution(base: str, location: str, expected: str) -> None:
    assert next_request("GET", base, [], 302, location).url == expected


@pytest.mark.parametrize("target", ["http://a.test:8080/", "https://a.test/", "http://b.test/"])
def test_credentials_dropped_across_origins(target: str) -> None:
    step = next_request("GET", "http://a.test/", CREDENTIALS + [("Host", "a.test")], 302, target)
    assert step.headers == []


def test_credentials_kept_on_the_same_origin() -> None:
    step = next_request("GET", "http://a.test/", CREDENTIALS, 302, "http://A.test:80/b")
    assert step.headers == CREDENTIALS


def test_redirect_to_another_scheme_is_refused() -> None:
    with pytest.raises(InvalidURL):
        next_request("GET", "http://a.test/", [], 302, "file:///etc/passwd")


def test_redirects_followed_only_when_asked(peer: PeerFactory, pool: Pool) -> None:
    moved = respond(302, b"moved", [("Location", "/b")])
    server = peer(answer(moved, moved, respond(200, b"B")))
    response = pool.get(server.url("/a"))
    assert (response.status, response.read(), response.history) == (302, b"moved", [])
    followed = pool.get(server.url("/a"), follow_redirects=True)
    assert (followed.status, followed.read(), followed.url) == (200, b"B", server.url("/b"))
    assert [(r.status, r.url) for r in followed.history] == [(302, server.url("/a"))]
    assert server.connection_count == 1


def test_post_303_then_get_on_one_connection(peer: PeerFactory, pool: Pool) -> None:
    server = peer(answer(respond(303, b"see other", [("Location", "/done")]), respond(200, b"ok")))
    response = pool.post(server.url("/form"), b"a=1", follow_redirects=True)
    assert (response.status, response.read(), response.url) == (200, b"ok", server.url("/done"))
    assert [h.status for h in response.history] == [303]
    first, second = server.requests
    assert (first.method, first.body, second.method, second.body) == ("POST", b"a=1", "GET", b"")
    assert second.header("content-length") is None and second.header("content-type") is None
    assert server.connection_count == 1


def test_307_resends_the_body(peer: PeerFactory, pool: Pool, tmp_path: object) -> None:
    import pathlib
    assert isinstance(tmp_path, pathlib.Path)
    path = tmp_path / "body.bin"
    path.write_bytes(b"\x00\x01" * 5000)
    server = peer(answer(respond(307, b"", [("Location", "/b")]), respond(200, b"ok")))
    with open(path, "rb") as file:
        response = pool.post(server.url("/a"), file, follow_redirects=True)
        assert response.read() == b"ok"
    assert [(r.method, r.body) for r in server.requests] == [("POST", b"\x00\x01" * 5000)] * 2


def test_redirect_loop_is_cut(peer: PeerFactory, pool: Pool) -> None:
    def loop(connection: PeerConnection) -> None:
        while connection.read_request() is not None:
            connection.send(respond(302, b"", [("Location", "/loop")]))

    server = peer(loop)
    with pytest.raises(TooManyRedirects):
        pool.get(server.url("/loop"), follow_redirects=True, max_redirects=5)
    assert len(server.requests) == 6


def test_cross_origin_hop_drops_credentials(peer: PeerFactory, pool: Pool) -> None:
    other = peer(answer(respond(200, b"other")))
    first = peer(answer(respond(302, b"", [("Location", other.url("/t"))])))
    response = pool.get(first.url("/a"), follow_redirects=True,
                        headers=CREDENTIALS[:2] + [("X-Keep", "1")])
    assert response.read() == b"other"
    sent = other.requests[0]
    assert sent.header("authorization") is None and sent.header("cookie") is None
    assert sent.header("x-keep") == "1"
    assert sent.header_all("host") == [f"127.0.0.1:{other.port}"]
    assert first.requests[0].header("authorization") == CREDENTIALS[0][1]


# -- proxies ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("no_proxy", "host", "port", "excluded"), [
    ("*", "a.test", 80, True), ("a.test", "a.test", 80, True), ("a.test", "x.a.test", 80, True),
    (".a.test", "x.a.test", 80, True), ("a.test", "ba.test", 80, False),
    ("b.test, a.test:8080", "a.test", 8080, True), ("a.test:8080", "a.test", 80, False),
    ("10.0.0.0/8", "10.1.2.3", 80, True), ("10.0.0.0/8", "11.1.2.3", 80, False),
    ("127.0.0.1", "127.0.0.1", 5000, True), ("", "a.test", 80, False),
])
def test_no_proxy(no_proxy: str, host: str, port: int, excluded: bool) -> None:
    assert is_excluded(Origin("http", host, port), no_proxy) is excluded


def test_proxy_from_environment() -> None:
    env = {"http_proxy": "http://u%40x:p%3Aw@proxy.test:3128", "HTTPS_PROXY": "proxy2.test",
           "no_proxy": "internal.test"}
    plain = proxy_for(Origin("http", "a.test", 80), env)
    assert plain is not None and plain.origin == Origin("http", "proxy.test", 3128)
    assert plain.authorization == "Basic dUB4OnA6dw=="   # "u@x:p:w"
    tls = proxy_for(Origin("https", "a.test", 443), env)
    assert tls is not None and tls.origin == Origin("http", "proxy2.test", 1080)
    assert proxy_for(Origin("http", "internal.test", 80), env) is None
    # Uppercase HTTP_PROXY is ignored: a CGI request's "Proxy:" header sets it (httpoxy).
    assert proxy_for(Origin("http", "a.test", 80), {"HTTP_PROXY": "evil.test"}) is None
    with pytest.raises(InvalidURL):
        parse_proxy_url("socks5://proxy.test")


def test_forward_proxy_gets_absolute_form(peer: PeerFactory) -> None:
    proxy = peer(answer(respond(200, b"via proxy"), respond(200, b"again")))
    with Pool(timeouts=TEST_TIMEOUTS, proxy=f"http://user:pw@127.0.0.1:{proxy.port}") as pool:
        assert pool.get("http://origin.test/path?q=1").read() == b"via proxy"
        assert pool.get("http://other.test:8080/").read() == b"again"
    first, second = proxy.requests
    assert (first.target, first.header("host")) == ("http://origin.test/path?q=1", "origin.test")
    assert first.header("proxy-authorization") == "Basic dXNlcjpwdw=="
    assert (second.target, second.header("host")) == ("http://other.test:8080/",
                                                      "other.test:8080")
    assert proxy.connection_count == 1


def test_connect_tunnel_carries_tls(peer: PeerFactory, tls_server_context: object,
                                    ca_file: str) -> None:
    import ssl
    assert isinstance(tls_server_context, ssl.SSLContext)
    origin = peer(answer(respond(200, b"secret"), respond(200, b"twice")),
                  tls_context=tls_server_context)
    proxy = peer(tunnel(origin.port))
    from wsgiserve.client import TLSSettings
    with Pool(timeouts=TEST_TIMEOUTS, tls=TLSSettings(cafile=ca_file),
              proxy=f"127.0.0.1:{proxy.port}") as pool:
        url = f"https://localhost:{origin.port}/inside"
        assert pool.get(url).read() == b"secret"
        assert pool.get(url).read() == b"twice"
    connect = proxy.requests[0]
    assert (connect.method, connect.target) == ("CONNECT", f"localhost:{origin.port}")
    assert connect.header("host") == f"localhost:{origin.port}"
    assert origin.requests[0].target == "/inside"
    assert proxy.connection_count == 1


def test_connect_refused_by_the_proxy(peer: PeerFactory) -> None:
    proxy = peer(tunnel(1, refuse=True))
    with Pool(timeouts=TEST_TIMEOUTS, proxy=f"127.0.0.1:{proxy.port}") as pool:
        with pytest.raises(ProxyError, match="407"):
            pool.get("https://localhost:1/")


def test_url_parsing() -> None:
    url = parse_url("http://Example.TEST:8080/p%20q/a?x=1&y=%2F#frag")
    assert (url.origin, url.target) == (Origin("http", "example.test", 8080), "/p%20q/a?x=1&y=%2F")
    assert parse_url("http://[::1]:81").origin.authority == "[::1]:81"
    assert parse_url("https://a.test").target == "/"
    assert parse_url("https://a.test:443/").origin.authority == "a.test"


def test_no_proxy_option_bypasses_an_explicit_proxy(peer: PeerFactory) -> None:
    direct = peer(answer(respond(200, b"direct")))
    with Pool(timeouts=TEST_TIMEOUTS, proxy="http://127.0.0.1:1", no_proxy="127.0.0.1") as pool:
        assert pool.get(direct.url()).read() == b"direct"
