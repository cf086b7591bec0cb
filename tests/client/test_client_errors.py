"""The error tree: each failure raises its class, keeps the OS error as its cause, and
leaves no connection behind in the pool. Timeouts are driven by real stalled peers."""
from __future__ import annotations

import builtins
import socket
from collections.abc import Iterator

import pytest
from client_peers import answer, PeerConnection, PeerFactory, respond

from wsgiserve.client import (
    ClientError,
    ConnectError,
    ConnectTimeout,
    HTTPStatusError,
    IncompleteResponse,
    InvalidURL,
    NameResolutionError,
    Pool,
    ReadTimeout,
    Response,
    RequestTimeout,
    Timeouts,
    TotalTimeout,
    WriteError,
    WriteTimeout,
)


def _stall(connection: PeerConnection) -> None:
    """Read the request, answer nothing, hold the connection until the client goes."""
    connection.read_request()
    connection.wait_for_close()


def _never_read(connection: PeerConnection) -> None:
    connection.peer.stopping.wait(10)


def test_read_timeout(peer: PeerFactory) -> None:
    server = peer(_stall)
    with Pool(timeouts=Timeouts(read_s=0.3), trust_env=False) as pool:
        with pytest.raises(ReadTimeout) as caught:
            pool.get(server.url())
        assert pool.idle_count == 0
    assert isinstance(caught.value, RequestTimeout) and isinstance(caught.value, ClientError)
    assert isinstance(caught.value.__cause__, builtins.TimeoutError)
    assert caught.value.exit_code == 28


def test_total_timeout_with_a_trickling_body(peer: PeerFactory) -> None:
    def trickle(connection: PeerConnection) -> None:
        connection.read_request()
        connection.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        # One byte every 50 ms never trips a read timeout; only the total limit ends it.
        while not connection.peer.stopping.wait(0.05):
            if not connection.send(b"x"):
                return

    server = peer(trickle)
    with Pool(timeouts=Timeouts(read_s=2, total_s=0.5), trust_env=False) as pool:
        response = pool.get(server.url())
        with pytest.raises(TotalTimeout):
            response.read()
        assert pool.idle_count == 0


def test_total_timeout_before_the_head(peer: PeerFactory) -> None:
    server = peer(_stall)
    with Pool(timeouts=Timeouts(read_s=None, total_s=0.3), trust_env=False) as pool:
        with pytest.raises(TotalTimeout):
            pool.get(server.url())


def test_write_timeout_when_the_server_never_reads(peer: PeerFactory) -> None:
    server = peer(_never_read)
    piece = b"u" * (1 << 20)

    def endless() -> Iterator[bytes]:
        for _ in range(256):
            yield piece

    with Pool(timeouts=Timeouts(write_s=0.3, read_s=1), trust_env=False) as pool:
        with pytest.raises(WriteTimeout):
            pool.put(server.url(), endless())
    assert server.connection_count == 1


def test_connect_timeout() -> None:
    # A listener with a full accept queue never answers the SYN: connect() hangs.
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        with Pool(timeouts=Timeouts(connect_s=0.3), trust_env=False) as pool:
            with pytest.raises(ConnectTimeout) as caught:
                for _ in range(8):
                    filler = socket.socket()
                    filler.setblocking(False)
                    filler.connect_ex(("127.0.0.1", port))
                    fillers.append(filler)
                    pool.get(f"http://127.0.0.1:{port}/")
        assert isinstance(caught.value, ConnectError) and caught.value.exit_code == 28
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_connection_refused_keeps_the_os_error() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()   # nothing listens there now
    with Pool(trust_env=False) as pool:
        with pytest.raises(ConnectError) as caught:
            pool.get(f"http://127.0.0.1:{port}/")
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert caught.value.exit_code == 7


def test_name_resolution_error() -> None:
    with Pool(trust_env=False) as pool:
        with pytest.raises(NameResolutionError) as caught:
            pool.get("http://no-such-host.invalid/")
    assert isinstance(caught.value.__cause__, socket.gaierror)
    assert caught.value.exit_code == 6


@pytest.mark.parametrize("url", ["ftp://example.org/", "http://", "http://host:99999/",
                                 "http://a b/"])
def test_invalid_url(url: str) -> None:
    with Pool(trust_env=False) as pool:
        with pytest.raises(InvalidURL):
            pool.get(url)


def test_early_response_while_uploading(peer: PeerFactory, pool: Pool) -> None:
    def refuse(connection: PeerConnection) -> None:
        connection.read_request(read_body=False)
        connection.send(respond(413, b"too big", [("Connection", "close")],
                                reason="Content Too Large"))
        # close() with unread bytes: the kernel answers the client's next bytes with RST.

    server = peer(refuse)
    try:
        response: Response | None = pool.put(server.url(), b"b" * (32 << 20))
    except WriteError:
        response = None   # the RST overtook the response: also a correct outcome
    if response is not None:
        assert (response.status, response.read()) == (413, b"too big")
    assert pool.idle_count == 0


def test_incomplete_body_is_never_a_success(peer: PeerFactory, pool: Pool) -> None:
    server = peer(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345", after="close"))
    response = pool.get(server.url())
    pieces = []
    with pytest.raises(IncompleteResponse) as caught:
        for piece in response:
            pieces.append(piece)
    assert b"".join(pieces) == b"12345"
    assert caught.value.exit_code == 18
    assert not response.is_complete


def test_raise_for_status(peer: PeerFactory, pool: Pool) -> None:
    server = peer(answer(respond(404, b"nope", reason="Not Found")))
    with pool.get(server.url()) as response, pytest.raises(HTTPStatusError) as caught:
        response.raise_for_status()
    assert caught.value.status == 404 and caught.value.exit_code == 22
