"""The client over HTTP/2 against scripted ``h2`` servers: negotiation, the request's
header list, bodies both ways with flow control, trailers, 1xx, redirects, a CONNECT
tunnel, multiplexing and the stream limit, GOAWAY and refused streams, resets, timeouts,
protocol errors and floods, and the RFC 9113 §9.2 TLS rules."""
from __future__ import annotations

import hashlib
import ssl
import threading
from collections.abc import Iterator

import h2.errors
import h2.events
import h2.settings
import pytest
import trustme
from client_peers import TEST_TIMEOUTS, PeerFactory, answer, respond, tunnel
from client_h2_peers import (
    Gate,
    H2PeerConnection,
    H2Request,
    echo,
    h2_script,
    h2_server_context,
    serve,
)

from wsgiserve.client import (
    ConnectTimeout,
    InformationalResponse,
    InvalidRequest,
    Pool,
    ProtocolError,
    ReadTimeout,
    ServerDisconnected,
    StreamError,
    Timeouts,
    TLSError,
    TLSSettings,
    TotalTimeout,
)
from wsgiserve.client.negotiation import HttpVersion
from wsgiserve.client.pool import MAX_UNPROCESSED_RETRIES

REFUSED = h2.errors.ErrorCodes.REFUSED_STREAM


@pytest.fixture(scope="module")
def h2_context(ca: trustme.CA) -> ssl.SSLContext:
    return h2_server_context(ca)


@pytest.fixture
def h2_pool(ca_file: str) -> Iterator[Pool]:
    with Pool(timeouts=TEST_TIMEOUTS, trust_env=False, tls=TLSSettings(cafile=ca_file)) as pool:
        yield pool


def _url(port: int, path: str = "/") -> str:
    return f"https://localhost:{port}{path}"


# -- negotiation ------------------------------------------------------------------------------
def test_alpn_h2_get(peer: PeerFactory, h2_context: ssl.SSLContext, h2_pool: Pool) -> None:
    log: list[H2Request] = []
    server = peer(h2_script(serve(echo), log=log), tls_context=h2_context)
    response = h2_pool.get(_url(server.port, "/a?b=1"),
                           headers=[("X-Custom", "One"), ("Connection", "keep-alive"),
                                    ("TE", "gzip"), ("Keep-Alive", "5")])
    assert (response.status, response.http_version, response.reason) == (200, "2", "")
    assert response.read() == b"GET /a?b=1 0"
    assert response.header("content-length") == "12"
    request = log[0]
    assert request.headers[:4] == [(b":method", b"GET"), (b":scheme", b"https"),
                                   (b":authority", f"localhost:{server.port}".encode()),
                                   (b":path", b"/a?b=1")]
    names = [name for name, _ in request.headers]
    assert b"x-custom" in names and b"host" not in names
    assert not {b"connection", b"te", b"keep-alive"} & set(names)   # RFC 9113 §8.2.2


def test_server_choosing_http11_gets_http11(peer: PeerFactory, ca: trustme.CA,
                                            h2_pool: Pool) -> None:
    server = peer(answer(respond(200, b"one"), respond(200, b"two")),
                  tls_context=h2_server_context(ca, ("http/1.1",)))
    for expected in (b"one", b"two"):
        response = h2_pool.get(_url(server.port))
        assert (response.http_version, response.read()) == ("1.1", expected)
    assert server.connection_count == 1


def test_http11_only_offers_no_h2(peer: PeerFactory, h2_context: ssl.SSLContext,
                                  ca_file: str) -> None:
    server = peer(answer(respond(200, b"old")), tls_context=h2_context)
    with Pool(timeouts=TEST_TIMEOUTS, trust_env=False, tls=TLSSettings(cafile=ca_file),
              http_version=HttpVersion.HTTP_1_1) as pool:
        response = pool.get(_url(server.port))
        assert (response.http_version, response.read()) == ("1.1", b"old")


def test_prior_knowledge_over_plain_http(peer: PeerFactory) -> None:
    server = peer(h2_script(serve(echo)))
    with Pool(timeouts=TEST_TIMEOUTS, trust_env=False,
              http_version=HttpVersion.HTTP_2_PRIOR_KNOWLEDGE) as pool:
        response = pool.post(server.url("/p"), b"abc")
        assert (response.http_version, response.read()) == ("2", b"POST /p 3")


def test_plain_http_stays_http11_by_default(peer: PeerFactory, pool: Pool) -> None:
    server = peer(answer(respond(200, b"h1")))
    assert pool.get(server.url()).http_version == "1.1"


def test_prior_knowledge_to_an_http11_server(peer: PeerFactory) -> None:
    server = peer(answer(respond(400, b"no"), after="close"))
    with Pool(timeouts=TEST_TIMEOUTS, trust_env=False,
              http_version=HttpVersion.HTTP_2_PRIOR_KNOWLEDGE) as pool:
        with pytest.raises(ProtocolError, match="HTTP/1.x"):
            pool.get(server.url())


def test_rfc9113_9_2_prohibited_cipher(peer: PeerFactory, ca: trustme.CA,
                                       h2_pool: Pool) -> None:
    """TLS 1.2 with a CBC suite (Python's default list allows it for HTTP/1.1): the
    client sends GOAWAY INADEQUATE_SECURITY and fails with TLSError."""
    goaways: list[int | None] = []

    def record(server: H2PeerConnection) -> None:
        server.wait_for_close()
        goaways.extend(server.goaways)
    server = peer(h2_script(record),
                  tls_context=h2_server_context(ca, ciphers="ECDHE-ECDSA-AES128-SHA256",
                                                maximum_version=ssl.TLSVersion.TLSv1_2))
    with pytest.raises(TLSError, match="prohibited"):
        h2_pool.get(_url(server.port))
    server.stop()
    assert goaways == [h2.errors.ErrorCodes.INADEQUATE_SECURITY]


# -- bodies, trailers, 1xx --------------------------------------------------------------------
def test_upload_known_length_and_streamed(peer: PeerFactory, h2_context: ssl.SSLContext,
                                          h2_pool: Pool) -> None:
    log: list[H2Request] = []
    server = peer(h2_script(serve(echo), log=log), tls_context=h2_context)
    data = bytes(range(256)) * 4096      # 1 MiB: past the server's 64 KiB initial window
    assert h2_pool.put(_url(server.port, "/f"), data).read() == b"PUT /f %d" % len(data)
    assert log[0].header(b"content-length") == b"%d" % len(data)
    pieces = (data[i:i + 10000] for i in range(0, len(data), 10000))
    assert h2_pool.post(_url(server.port, "/g"), pieces).read() == b"POST /g %d" % len(data)
    assert log[1].header(b"content-length") is None
    assert bytes(log[0].body) == bytes(log[1].body) == data
    empty = h2_pool.post(_url(server.port, "/e"))
    assert empty.read() == b"POST /e 0" and log[2].header(b"content-length") == b"0"


def test_trailers_and_early_hints(peer: PeerFactory, h2_context: ssl.SSLContext,
                                  h2_pool: Pool) -> None:
    def handler(server: H2PeerConnection, request: H2Request) -> None:
        server.conn.send_headers(request.stream_id, [(b":status", b"103"),
                                                     (b"link", b"</a.css>; rel=preload")])
        server.respond(request.stream_id, 200, b"body", trailers=[(b"x-checksum", b"42")])
    server = peer(h2_script(serve(handler)), tls_context=h2_context)
    seen: list[InformationalResponse] = []
    response = h2_pool.get(_url(server.port), on_informational=seen.append)
    assert [(event.status, event.headers.get(b"link")) for event in seen] == \
        [(103, b"</a.css>; rel=preload")]
    assert response.interim == seen
    assert response.trailers is None and response.read() == b"body"
    assert response.trailers is not None and response.trailers.get(b"x-checksum") == b"42"


def test_expect_continue_final_status_first(peer: PeerFactory, h2_context: ssl.SSLContext,
                                            h2_pool: Pool) -> None:
    log: list[H2Request] = []

    def refuse(server: H2PeerConnection) -> None:
        request = server.next_request(complete=False)
        assert request is not None
        server.respond(request.stream_id, 413, b"too big")
        server.wait_until(lambda: request.reset_code is not None or request.is_ended)
        server.wait_for_close()
    server = peer(h2_script(refuse, log=log), tls_context=h2_context)
    response = h2_pool.put(_url(server.port), b"x" * 100000, expect_continue=True)
    assert (response.status, response.read()) == (413, b"too big")
    h2_pool.close()
    server.stop()
    assert log[0].header(b"expect") == b"100-continue"
    assert bytes(log[0].body) == b"" and log[0].reset_code == h2.errors.ErrorCodes.CANCEL


def test_slow_reader_holds_the_server_to_the_window(peer: PeerFactory,
                                                    h2_context: ssl.SSLContext,
                                                    h2_pool: Pool) -> None:
    """The receive window is credited as the caller reads, not as bytes arrive."""
    size = 8 << 20
    data = hashlib.sha256(b"seed").digest() * (size // 32)
    first_burst: list[int] = []
    blocked = threading.Event()

    def stream_big(server: H2PeerConnection) -> None:
        request = server.next_request()
        assert request is not None
        server.respond(request.stream_id, 200, end=False)
        sent = 0
        while (window := server.window(request.stream_id)):
            chunk = min(window, server.conn.max_outbound_frame_size)
            server.conn.send_data(request.stream_id, data[sent:sent + chunk])
            server.flush()
            sent += chunk
        first_burst.append(sent)
        blocked.set()
        server.send_body(request.stream_id, data[sent:])
        server.wait_for_close()
    server = peer(h2_script(stream_big), tls_context=h2_context)
    response = h2_pool.get(_url(server.port))
    assert blocked.wait(10)
    assert first_burst == [1 << 20]          # CLIENT_LIMITS.initial_window_size, not more
    assert hashlib.sha256(response.read()).digest() == hashlib.sha256(data).digest()


# -- redirects, proxies ----------------------------------------------------------------------
def test_redirect_on_the_same_connection(peer: PeerFactory, h2_context: ssl.SSLContext,
                                         h2_pool: Pool) -> None:
    def handler(server: H2PeerConnection, request: H2Request) -> None:
        if request.path == b"/old":
            server.respond(request.stream_id, 301, headers=[(b"location", b"/new")])
        else:
            echo(server, request)
    server = peer(h2_script(serve(handler)), tls_context=h2_context)
    response = h2_pool.get(_url(server.port, "/old"), follow_redirects=True)
    assert response.read() == b"GET /new 0"
    assert [r.status for r in response.history] == [301]
    assert server.connection_count == 1


def test_h2_through_a_connect_tunnel(peer: PeerFactory, h2_context: ssl.SSLContext,
                                     ca_file: str) -> None:
    origin = peer(h2_script(serve(echo)), tls_context=h2_context)
    proxy = peer(tunnel(origin.port))
    with Pool(timeouts=TEST_TIMEOUTS, trust_env=False, tls=TLSSettings(cafile=ca_file),
              proxy=f"127.0.0.1:{proxy.port}") as pool:
        for path in ("/1", "/2"):
            response = pool.get(_url(origin.port, path))
            assert (response.http_version, response.read()) == ("2", b"GET %s 0" % path.encode())
    assert proxy.requests[0].method == "CONNECT" and proxy.connection_count == 1


# -- multiplexing -----------------------------------------------------------------------------
def test_100_requests_from_10_threads_share_one_connection(
        peer: PeerFactory, h2_context: ssl.SSLContext, h2_pool: Pool) -> None:
    log: list[H2Request] = []
    server = peer(h2_script(serve(echo), log=log), tls_context=h2_context)
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for number in range(10):
                path = f"/{index}/{number}"
                assert h2_pool.get(_url(server.port, path)).read() == f"GET {path} 0".encode()
        except BaseException as exc:    # reported below: a thread's failure fails the test
            failures.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == [] and len(log) == 100
    assert server.connection_count == 1


def test_past_max_concurrent_streams_another_connection(
        peer: PeerFactory, h2_context: ssl.SSLContext, h2_pool: Pool) -> None:
    """Five requests in flight at once, two streams allowed per connection: three
    connections, none carrying more than two streams at a time."""
    gate = Gate()
    open_streams: list[int] = []

    def hold(server: H2PeerConnection) -> None:
        held: list[H2Request] = []
        while len(held) < 2 and gate.count < 5 and (request := server.next_request()):
            held.append(request)
            gate.add()
        assert gate.wait_for(5, 10)
        open_streams.append(server.conn.open_inbound_streams)
        for request in held:
            echo(server, request)
        serve(echo)(server)
    server = peer(h2_script(hold, settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2}),
                  tls_context=h2_context)
    results: list[bytes] = []

    def one(index: int) -> None:
        results.append(h2_pool.get(_url(server.port, f"/{index}")).read())
    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [b"GET /%d 0" % i for i in range(5)]
    assert server.connection_count == 3
    assert sorted(open_streams) == [1, 2, 2]


# -- GOAWAY, refused and reset streams --------------------------------------------------------
def test_goaway_mid_run_retries_unprocessed_streams(
        peer: PeerFactory, h2_context: ssl.SSLContext, h2_pool: Pool) -> None:
    """Three requests in flight on a connection that served one before; the server answers
    the first of them and sends GOAWAY naming it as the last: the two others (POST
    included) go again on a new connection, and none fails."""
    def goaway_in_flight(server: H2PeerConnection) -> None:
        warm = server.next_request()
        assert warm is not None
        echo(server, warm)
        server.wait_until(lambda: sum(r.is_ended for r in server.requests.values()) >= 4)
        first = min(i for i in server.requests if i != warm.stream_id)
        echo(server, server.requests[first])
        server.goaway(last_stream_id=first)
        server.wait_for_close()
    server = peer(h2_script(goaway_in_flight), h2_script(serve(echo)),
                  tls_context=h2_context)
    assert h2_pool.get(_url(server.port, "/warm")).read() == b"GET /warm 0"
    results: list[bytes] = []
    failures: list[BaseException] = []

    def one(method: str, path: str) -> None:
        try:
            results.append(h2_pool.request(method, _url(server.port, path), body=b"xy").read())
        except BaseException as exc:    # reported below
            failures.append(exc)
    threads = [threading.Thread(target=one, args=(m, p))
               for m, p in (("POST", "/a"), ("PUT", "/b"), ("PATCH", "/c"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert sorted(results) == [b"PATCH /c 2", b"POST /a 2", b"PUT /b 2"]
    assert server.connection_count == 2


def test_refused_stream_is_sent_again(peer: PeerFactory, h2_context: ssl.SSLContext,
                                      h2_pool: Pool) -> None:
    attempts: list[int] = []

    def refuse_first(server: H2PeerConnection, request: H2Request) -> None:
        attempts.append(request.stream_id)
        if len(attempts) == 1:
            server.reset(request.stream_id, REFUSED)
        else:
            echo(server, request)
    server = peer(h2_script(serve(refuse_first)), tls_context=h2_context)
    assert h2_pool.post(_url(server.port, "/x"), b"data").read() == b"POST /x 4"
    assert attempts == [1, 3] and server.connection_count == 1


def test_a_server_refusing_everything_costs_bounded_attempts(
        peer: PeerFactory, h2_context: ssl.SSLContext, h2_pool: Pool) -> None:
    attempts: list[int] = []

    def refuse(server: H2PeerConnection, request: H2Request) -> None:
        attempts.append(request.stream_id)
        server.reset(request.stream_id, REFUSED)
    server = peer(h2_script(serve(refuse)), tls_context=h2_context)
    with pytest.raises(StreamError) as caught:
        h2_pool.get(_url(server.port))
    assert caught.value.error_code == REFUSED and caught.value.exit_code == 92
    assert len(attempts) == 1 + MAX_UNPROCESSED_RETRIES


def test_reset_after_the_head_fails_the_body(peer: PeerFactory, h2_context: ssl.SSLContext,
                                             h2_pool: Pool) -> None:
    def reset_midway(server: H2PeerConnection, request: H2Request) -> None:
        server.respond(request.stream_id, 200, b"partial", end=False)
        server.reset(request.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
    server = peer(h2_script(serve(reset_midway)), tls_context=h2_context)
    response = h2_pool.get(_url(server.port))
    with pytest.raises(StreamError, match="INTERNAL_ERROR") as caught:
        response.read()
    assert not caught.value.is_unprocessed
    # The connection goes on for the next request.
    with pytest.raises(StreamError):
        h2_pool.get(_url(server.port)).read()
    assert server.connection_count == 1


def test_closing_a_response_early_resets_its_stream(
        peer: PeerFactory, h2_context: ssl.SSLContext, h2_pool: Pool) -> None:
    log: list[H2Request] = []

    def handler(server: H2PeerConnection, request: H2Request) -> None:
        if request.path == b"/big":
            server.respond(request.stream_id, 200, end=False)
            server.conn.send_data(request.stream_id, b"x" * 1000)
            server.flush()
        else:
            echo(server, request)
    server = peer(h2_script(serve(handler), log=log), tls_context=h2_context)
    big = h2_pool.get(_url(server.port, "/big"))
    assert next(iter(big)) == b"x" * 1000
    big.close()
    assert h2_pool.get(_url(server.port, "/next")).read() == b"GET /next 0"
    assert log[0].reset_code == h2.errors.ErrorCodes.CANCEL
    assert server.connection_count == 1


# -- failures ---------------------------------------------------------------------------------
def test_read_timeout_resets_the_stream(peer: PeerFactory, h2_context: ssl.SSLContext,
                                        ca_file: str) -> None:
    log: list[H2Request] = []

    def silent(server: H2PeerConnection) -> None:
        server.wait_until(lambda: any(r.reset_code is not None for r in server.requests.values()))
        server.wait_for_close()
    server = peer(h2_script(silent, log=log), tls_context=h2_context)
    timeouts = Timeouts(connect_s=5, read_s=0.3, write_s=5, total_s=20)
    with Pool(timeouts=timeouts, trust_env=False, tls=TLSSettings(cafile=ca_file)) as pool:
        with pytest.raises(ReadTimeout):
            pool.get(_url(server.port))
    server.stop()
    assert log[0].reset_code == h2.errors.ErrorCodes.CANCEL


def test_server_closing_without_a_response(peer: PeerFactory, h2_context: ssl.SSLContext,
                                           h2_pool: Pool) -> None:
    def close(server: H2PeerConnection) -> None:
        server.next_request()
    server = peer(h2_script(close), tls_context=h2_context)
    with pytest.raises(ServerDisconnected):
        h2_pool.post(_url(server.port), b"not retried")
    assert server.connection_count == 1


def test_a_protocol_error_sends_goaway(peer: PeerFactory, h2_context: ssl.SSLContext,
                                       h2_pool: Pool) -> None:
    terminated: list[int | None] = []

    def garbage(server: H2PeerConnection) -> None:
        request = server.next_request()
        assert request is not None
        # A DATA frame on stream 0: a connection error (RFC 9113 §6.1).
        server.send_raw(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
        try:
            server.wait_for_close()
        finally:
            terminated.extend(server.goaways)
    server = peer(h2_script(garbage), tls_context=h2_context)
    with pytest.raises(ProtocolError, match="PROTOCOL_ERROR"):
        h2_pool.get(_url(server.port))
    server.stop()
    assert terminated == [h2.errors.ErrorCodes.PROTOCOL_ERROR]


def test_a_ping_flood_is_refused(peer: PeerFactory, h2_context: ssl.SSLContext,
                                 h2_pool: Pool) -> None:
    terminated: list[int | None] = []

    def flood(server: H2PeerConnection) -> None:
        server.next_request()
        try:
            for number in range(2000):
                server.conn.ping(number.to_bytes(8, "big"))
                server.flush()
            server.wait_for_close()
        finally:
            terminated.extend(server.goaways)
    server = peer(h2_script(flood), tls_context=h2_context)
    with pytest.raises(ProtocolError, match="ENHANCE_YOUR_CALM"):
        h2_pool.get(_url(server.port))
    server.stop()
    assert terminated == [h2.errors.ErrorCodes.ENHANCE_YOUR_CALM]


def test_invalid_field_fails_before_connecting(h2_pool: Pool) -> None:
    with pytest.raises(InvalidRequest):
        h2_pool.get("https://127.0.0.1:9/", headers={"X-Bad": "a\r\nInjected: 1"})


def test_no_settings_within_the_connect_timeout(peer: PeerFactory, h2_context: ssl.SSLContext,
                                                ca_file: str) -> None:
    server = peer(answer(), tls_context=h2_context)      # reads, never answers
    timeouts = Timeouts(connect_s=0.5, read_s=5, write_s=5, total_s=20)
    with Pool(timeouts=timeouts, trust_env=False, tls=TLSSettings(cafile=ca_file)) as pool:
        with pytest.raises(ConnectTimeout, match="SETTINGS"):
            pool.get(_url(server.port))


def test_total_timeout_while_the_body_stalls(peer: PeerFactory, h2_context: ssl.SSLContext,
                                             ca_file: str) -> None:
    def stall(server: H2PeerConnection, request: H2Request) -> None:
        server.respond(request.stream_id, 200, b"start", end=False)
    server = peer(h2_script(serve(stall)), tls_context=h2_context)
    timeouts = Timeouts(connect_s=5, read_s=5, write_s=5, total_s=1.0)
    with Pool(timeouts=timeouts, trust_env=False, tls=TLSSettings(cafile=ca_file)) as pool:
        response = pool.get(_url(server.port))
        with pytest.raises(TotalTimeout):
            response.read()
