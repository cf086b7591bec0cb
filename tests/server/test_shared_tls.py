"""SharedTLSSocket on a real TLS connection over ``socket.socketpair()``: what a library's
reader thread and the app's sending thread see (the socket handed as gunicorn.socket)."""
from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

from wsgiserve.server.worker.shared_tls import SharedTLSSocket


@pytest.fixture
def pair() -> Iterator[tuple[SharedTLSSocket, SharedTLSSocket]]:
    """The server's and the client's ends, both wrapped (a plain SSLSocket used by two
    threads at once is what fails: the client's end here would, now and then)."""
    authority = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    ours, theirs = socket.socketpair()
    accepted: list[ssl.SSLSocket] = []
    handshake = threading.Thread(target=lambda: accepted.append(
        server_context.wrap_socket(ours, server_side=True)))
    handshake.start()
    client = SharedTLSSocket(client_context.wrap_socket(theirs, server_hostname="localhost"))
    handshake.join(10)
    server = SharedTLSSocket(accepted[0])
    server.settimeout(10)
    client.settimeout(10)
    try:
        yield server, client
    finally:
        server.close()
        client.close()


def _read(sock: SharedTLSSocket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def test_a_reader_and_a_writer_thread_move_every_byte_both_ways(
        pair: tuple[SharedTLSSocket, SharedTLSSocket]) -> None:
    server, client = pair
    size = 8 << 20
    up, down = os.urandom(size), os.urandom(size)
    received: dict[str, bytes] = {}
    threads = [
        threading.Thread(target=lambda: received.update(server=_read(server, size))),
        threading.Thread(target=server.sendall, args=(down,)),
        threading.Thread(target=lambda: received.update(client=_read(client, size))),
        threading.Thread(target=client.sendall, args=(up,)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert hashlib.sha256(received["server"]).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(received["client"]).digest() == hashlib.sha256(down).digest()


def test_recv_into_and_the_peers_close(pair: tuple[SharedTLSSocket, SharedTLSSocket]) -> None:
    server, client = pair
    client.sendall(b"hello")
    buffer = bytearray(16)
    assert server.recv_into(buffer) == 5
    assert buffer[:5] == b"hello"
    client.close()
    assert server.recv(10) == b""


def test_timeouts_as_a_socket_has_them(pair: tuple[SharedTLSSocket, SharedTLSSocket]) -> None:
    server, _ = pair
    server.settimeout(0.2)
    assert server.gettimeout() == 0.2
    with pytest.raises(TimeoutError):
        server.recv(10)
    server.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.recv(10)
    server.setblocking(True)
    assert server.gettimeout() is None


def test_a_reader_waiting_when_the_worker_shuts_the_socket_down_returns(
        pair: tuple[SharedTLSSocket, SharedTLSSocket]) -> None:
    # The worker's exit ends a hijacked connection with shutdown() from another thread.
    server, _ = pair
    server.settimeout(None)
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(server.recv(10))
        except OSError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(0.3)
    assert reader.is_alive()  # waiting, without the lock: the shutdown gets through
    server.shutdown(socket.SHUT_RDWR)
    reader.join(10)
    assert not reader.is_alive()
    assert outcome and (outcome[0] == b"" or isinstance(outcome[0], OSError))


def test_a_socket_closed_by_another_thread_fails_as_a_socket_does(
        pair: tuple[SharedTLSSocket, SharedTLSSocket]) -> None:
    server, _ = pair
    server.close()
    with pytest.raises(OSError):
        server.recv(10)
    with pytest.raises(OSError):
        server.sendall(b"late")
