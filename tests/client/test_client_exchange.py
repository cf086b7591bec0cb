"""One exchange and the pool around it: keep-alive, retry, bodies both ways, 1xx, Expect.

Assertions are on the bytes the scripted peer received and on what the caller sees.
"""
from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import pytest
from client_peers import TEST_TIMEOUTS, answer, chunked, PeerConnection, PeerFactory, respond

from wsgiserve.client import (
    Connection,
    ConnectionState,
    InformationalResponse,
    InvalidRequest,
    Pool,
    ServerDisconnected,
    Timeouts,
)
from wsgiserve.client.url import parse_url


def echo_length(connection: PeerConnection) -> None:
    """Answer every request with its method, its body length and its framing fields."""
    while (request := connection.read_request()) is not None:
        framing = f"cl={request.header('content-length')} te={request.header('transfer-encoding')}"
        text = f"{request.method} {len(request.body)} {framing}".encode()
        connection.send(respond(200, text))


# -- keep-alive and retry ---------------------------------------------------------------------
def test_keep_alive_reuses_one_connection(peer: PeerFactory, pool: Pool) -> None:
    server = peer(answer(respond(200, b"a"), respond(200, b"b"), respond(200, b"c")))
    bodies = [pool.get(server.url(f"/{n}")).read() for n in "abc"]
    assert bodies == [b"a", b"b", b"c"]
    assert server.connection_count == 1
    assert [r.target for r in server.requests] == ["/a", "/b", "/c"]
    assert [r.header_all("host") for r in server.requests] == [[f"127.0.0.1:{server.port}"]] * 3


def test_connection_close_means_a_new_connection(peer: PeerFactory, pool: Pool) -> None:
    server = peer(answer(respond(200, b"a", [("Connection", "close")]), after="close"),
                  answer(respond(200, b"b")))
    assert pool.get(server.url("/a")).read() == b"a"
    assert pool.idle_count == 0
    assert pool.get(server.url("/b")).read() == b"b"
    assert server.connection_count == 2


def _close_after_reading_second(connection: PeerConnection) -> None:
    # The race of a keep-alive timeout: the server gives up on the connection just as
    # the next request arrives, and closes without answering it.
    if connection.read_request() is None:
        return
    connection.send(respond(200, b"first"))
    connection.read_request()


def test_idempotent_request_retried_once_on_a_connection_closed_while_idle(
        peer: PeerFactory, pool: Pool) -> None:
    server = peer(_close_after_reading_second, answer(respond(200, b"second")))
    assert pool.get(server.url("/1")).read() == b"first"
    assert pool.request("PUT", server.url("/2"), body=b"same bytes").read() == b"second"
    assert server.connection_count == 2
    assert [(r.target, r.body) for r in server.requests] == [
        ("/1", b""), ("/2", b"same bytes"), ("/2", b"same bytes")]


def test_post_is_not_retried(peer: PeerFactory, pool: Pool) -> None:
    server = peer(_close_after_reading_second, answer(respond(200, b"second")))
    assert pool.get(server.url("/1")).read() == b"first"
    with pytest.raises(ServerDisconnected):
        pool.post(server.url("/2"), b"not twice")
    assert server.connection_count == 1


def test_fresh_connection_closed_without_response_is_not_retried(peer: PeerFactory,
                                                                  pool: Pool) -> None:
    server = peer(answer(after="close"))
    with pytest.raises(ServerDisconnected):
        pool.get(server.url())
    assert server.connection_count == 1


def test_server_closing_an_idle_connection_is_noticed(peer: PeerFactory, pool: Pool) -> None:
    closed = threading.Event()

    def answer_then_close(connection: PeerConnection) -> None:
        connection.read_request()
        connection.send(respond(200, b"a"))
        connection.close()
        closed.set()

    notes: list[str] = []
    pool.trace = notes.append
    server = peer(answer_then_close, answer(respond(200, b"b")))
    assert pool.get(server.url()).read() == b"a"
    assert closed.wait(5)
    assert pool.get(server.url()).read() == b"b"
    assert server.connection_count == 2
    assert len(server.requests) == 2   # dropped before sending, not retried
    assert any("closed while idle" in note for note in notes)


def test_response_closed_early_costs_its_connection(peer: PeerFactory, pool: Pool) -> None:
    server = peer(answer(respond(200, b"x" * 300000)), answer(respond(200, b"small")))
    response = pool.get(server.url())
    first = next(iter(response))
    assert first
    response.close()
    assert pool.idle_count == 0
    assert pool.get(server.url()).read() == b"small"
    assert server.connection_count == 2


# -- request bodies -----------------------------------------------------------------------------
def _pieces() -> Iterator[bytes]:
    yield b"abc"
    yield b""
    yield b"defg"


@pytest.mark.parametrize(("make_body", "headers", "expected"), [
    pytest.param(lambda: b"hello", {}, b"POST 5 cl=5 te=None", id="bytes"),
    pytest.param(lambda: "h\u00e9", {}, b"POST 3 cl=3 te=None", id="str-utf8"),
    pytest.param(lambda: io.BytesIO(b"0123456789"), {}, b"POST 10 cl=10 te=None",
                 id="bytesio"),
    pytest.param(_pieces, {}, b"POST 7 cl=None te=chunked", id="iterator-chunked"),
    pytest.param(_pieces, {"Content-Length": "7"}, b"POST 7 cl=7 te=None",
                 id="iterator-declared-length"),
    pytest.param(lambda: b"hello", {"Transfer-Encoding": "chunked"},
                 b"POST 5 cl=None te=chunked", id="bytes-forced-chunked"),
    pytest.param(lambda: b"", {}, b"POST 0 cl=0 te=None", id="empty"),
    pytest.param(lambda: None, {}, b"POST 0 cl=0 te=None", id="none-post-gets-length-0"),
])
def test_request_body_framing(peer: PeerFactory, pool: Pool, make_body: object,
                              headers: dict[str, str], expected: bytes) -> None:
    server = peer(echo_length)
    body = make_body()  # type: ignore[operator]  # the lambdas above
    assert pool.post(server.url(), body, headers=headers).read() == expected


def test_file_body_streams_with_its_length(peer: PeerFactory, pool: Pool,
                                           tmp_path: object) -> None:
    import pathlib
    assert isinstance(tmp_path, pathlib.Path)
    data = bytes(range(256)) * 4096   # 1 MiB, every byte value
    path = tmp_path / "up.bin"
    path.write_bytes(data)
    server = peer(answer(respond(200, b"ok")))
    with open(path, "rb") as file:
        file.read(100)   # the body starts where the file is
        assert pool.put(server.url(), file).read() == b"ok"
    assert server.requests[0].header("content-length") == str(len(data) - 100)
    assert server.requests[0].body == data[100:]


def test_get_sends_no_framing_fields(peer: PeerFactory, pool: Pool) -> None:
    server = peer(answer(respond(200)))
    pool.get(server.url()).read()
    raw = server.requests[0].raw_head.lower()
    assert b"content-length" not in raw and b"transfer-encoding" not in raw
    assert raw.startswith(b"get / http/1.1\r\nhost: 127.0.0.1:")


def test_header_injection_is_refused_before_connecting(peer: PeerFactory, pool: Pool) -> None:
    server = peer(answer(respond(200)))
    with pytest.raises(InvalidRequest):
        pool.get(server.url(), headers={"X-Bad": "a\r\nInjected: 1"})
    assert server.connection_count == 0


def test_iterator_body_cannot_be_replayed_after_307(peer: PeerFactory, pool: Pool) -> None:
    server = peer(answer(respond(307, b"", [("Location", "/b")])))
    response = pool.post(server.url("/a"), _pieces(), follow_redirects=True)
    assert response.status == 307   # the body is gone: the redirect is the answer
    assert len(server.requests) == 1


# -- responses ------------------------------------------------------------------------------------
def test_response_body_streams_as_it_arrives(peer: PeerFactory, pool: Pool) -> None:
    first_seen = threading.Event()
    waited: list[bool] = []

    def script(connection: PeerConnection) -> None:
        connection.read_request()
        connection.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        waited.append(first_seen.wait(5))
        connection.send(chunked(b"second", trailers=b"X-Sum: 11\r\n"))
        connection.wait_for_close()

    server = peer(script)
    response = pool.get(server.url())
    pieces = response.iter_bytes()
    assert next(pieces) == b"first"
    assert response.trailers is None and not response.is_complete
    first_seen.set()
    assert b"".join(pieces) == b"second"
    assert response.header("x-sum") is None
    assert response.trailers is not None and response.trailers.get(b"x-sum") == b"11"
    assert waited == [True]
    assert pool.idle_count == 1


def test_interim_responses_reach_the_callback(peer: PeerFactory, pool: Pool) -> None:
    raw = (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
           b"HTTP/1.1 100 Continue\r\n\r\n" + respond(200, b"done"))
    server = peer(answer(raw))
    seen: list[InformationalResponse] = []
    response = pool.get(server.url(), on_informational=seen.append)
    assert response.read() == b"done"
    assert [(e.status, e.reason) for e in seen] == [(103, b"Early Hints"), (100, b"Continue")]
    assert seen[0].headers.get(b"link") == b"</style.css>; rel=preload"
    assert response.interim == seen


def test_text_uses_the_charset(peer: PeerFactory, pool: Pool) -> None:
    body = "d\u00e9j\u00e0".encode("latin-1")
    server = peer(answer(respond(200, body, [("Content-Type", "text/plain; charset=latin-1")])))
    assert pool.get(server.url()).text() == "d\u00e9j\u00e0"


# -- Expect: 100-continue -----------------------------------------------------------------------
def test_expect_continue_body_sent_after_100(peer: PeerFactory) -> None:
    held_back: list[bool] = []

    def script(connection: PeerConnection) -> None:
        request = connection.read_request(read_body=False)
        assert request is not None
        held_back.append(not connection.has_pending_bytes(0.3))
        connection.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        connection.read_body(request)
        connection.send(respond(200, b"got %d" % len(request.body)))
        connection.wait_for_close()

    server = peer(script)
    timeouts = Timeouts(read_s=5, expect_continue_s=10)
    with Pool(timeouts=timeouts, trust_env=False) as pool:
        response = pool.put(server.url(), b"x" * 100000, expect_continue=True)
        assert response.read() == b"got 100000"
        assert [e.status for e in response.interim] == [100]
    assert held_back == [True]
    assert server.requests[0].header("expect") == "100-continue"


def test_expect_continue_final_status_means_no_body(peer: PeerFactory) -> None:
    received_after_head: list[bytes] = []

    def script(connection: PeerConnection) -> None:
        connection.read_request(read_body=False)
        connection.send(respond(401, b"no", [("WWW-Authenticate", "Basic")]))
        connection.wait_for_close()
        received_after_head.append(bytes(connection.received).partition(b"\r\n\r\n")[2])

    server = peer(script)
    with Pool(timeouts=Timeouts(read_s=5, expect_continue_s=10), trust_env=False) as pool:
        response = pool.put(server.url(), b"x" * 100000, headers={"Expect": "100-continue"})
        assert (response.status, response.read()) == (401, b"no")
        assert pool.idle_count == 0   # the server may still wait for the body: closed
    server.stop()
    assert received_after_head == [b""]


def test_expect_continue_body_sent_after_the_timeout(peer: PeerFactory) -> None:
    server = peer(echo_length)
    with Pool(timeouts=Timeouts(read_s=5, expect_continue_s=0.2), trust_env=False) as pool:
        response = pool.put(server.url(), b"y" * 5000, expect_continue=True)
        assert response.read() == b"PUT 5000 cl=5000 te=None"
        assert response.interim == []


def test_417_is_retried_without_the_expectation(peer: PeerFactory, pool: Pool) -> None:
    def refuse(connection: PeerConnection) -> None:
        connection.read_request(read_body=False)
        connection.send(respond(417, b"", [("Connection", "close")], reason="Expectation Failed"))

    server = peer(refuse, echo_length)
    response = pool.put(server.url(), b"z" * 10, expect_continue=True)
    assert response.read() == b"PUT 10 cl=10 te=None"
    assert [r.header("expect") for r in server.requests] == ["100-continue", None]


# -- the Connection on its own ---------------------------------------------------------------------
def test_connection_alone(peer: PeerFactory) -> None:
    server = peer(answer(respond(200, b"one"), respond(200, b"two", [("Connection", "close")])))
    origin = parse_url(server.url()).origin
    connection = Connection(origin, timeouts=TEST_TIMEOUTS)
    assert connection.state.name == "NEW"
    headers = [("Host", origin.authority)]
    assert connection.request("GET", "/1", headers).read() == b"one"
    assert connection.state is ConnectionState.IDLE
    assert connection.request("GET", "/2", headers).read() == b"two"
    assert connection.state.name == ConnectionState.CLOSED.name   # mypy keeps the narrowing
    assert server.connection_count == 1
