"""Differential tests: our client against h2's server and h2's client against our server
(and each against its own kind), in memory, for the same scenarios: every pairing must
see the same responses, bodies, trailers, resets and GOAWAYs."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from h2_peers import (
    Client,
    OurClient,
    OurServer,
    Result,
    Server,
    TheirClient,
    TheirServer,
    exchange,
)
from h2_wire import GET, post

from wsgiserve.http2 import ErrorCode, Http2Limits

SMALL = 100      # bytes of stream window in the small-window scenario

PAIRS: dict[str, tuple[Callable[[bool], Client], Callable[[bool], Server]]] = {
    "ours-to-h2": (lambda small: OurClient(Http2Limits(initial_window_size=SMALL)
                                           if small else None),
                   lambda small: TheirServer(SMALL if small else None)),
    "h2-to-ours": (lambda small: TheirClient(SMALL if small else None),
                   lambda small: OurServer(Http2Limits(initial_window_size=SMALL)
                                           if small else None)),
    "ours-to-ours": (lambda small: OurClient(Http2Limits(initial_window_size=SMALL)
                                             if small else None),
                     lambda small: OurServer(Http2Limits(initial_window_size=SMALL)
                                             if small else None)),
    "h2-to-h2": (lambda small: TheirClient(SMALL if small else None),
                 lambda small: TheirServer(SMALL if small else None)),
}


def _pair(name: str, small: bool = False) -> tuple[Client, Server]:
    make_client, make_server = PAIRS[name]
    client, server = make_client(small), make_server(small)
    exchange(client, server)
    return client, server


def _sized(size: int) -> list[tuple[bytes, bytes]]:
    return GET + [(b"x-size", str(size).encode())]


def _expect(result: Result, body: bytes, request_length: int = 0,
            trailers: list[tuple[bytes, bytes]] | None = None) -> None:
    assert result.status == 200 and result.is_ended and result.reset_code is None
    assert result.headers == [(b"content-length", str(len(body)).encode()),
                              (b"x-request-length", str(request_length).encode())]
    assert result.body == body
    assert result.trailers == (trailers or [])


def _payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


@pytest.mark.parametrize("pair", list(PAIRS))
@pytest.mark.parametrize("small", [False, True], ids=["default-windows", "100-byte-windows"])
def test_get_and_post_with_bodies(pair: str, small: bool) -> None:
    client, server = _pair(pair, small)
    upload = bytes(range(256)) * 300                          # 76,800 bytes
    streams = [client.request(_sized(0)), client.request(_sized(100_000)),
               client.request(post(len(upload)), upload), client.request(post(), b"")]
    exchange(client, server)
    _expect(client.results[streams[0]], b"")
    _expect(client.results[streams[1]], _payload(100_000))
    _expect(client.results[streams[2]], upload[::-1], len(upload))
    _expect(client.results[streams[3]], b"")


@pytest.mark.parametrize("pair", list(PAIRS))
def test_trailers_both_ways(pair: str) -> None:
    client, server = _pair(pair)
    body = b"0123456789" * 5000
    stream_id = client.request(post() + [(b"x-trailers", b"1")], body,
                               trailers=[(b"x-checksum", b"abc")])
    exchange(client, server)
    _expect(client.results[stream_id], body[::-1], len(body),
            trailers=[(b"x-length", str(len(body)).encode())])
    assert (b"x-checksum", b"abc") in server.requests[stream_id][0]


@pytest.mark.parametrize("pair", list(PAIRS))
def test_resets_both_ways(pair: str) -> None:
    client, server = _pair(pair, small=True)
    refused = client.request(GET + [(b"x-reset", b"1")])
    served = client.request(_sized(1000))
    cancelled = client.request(post(), b"x" * 5000)          # more than the window allows
    client.cancel(cancelled)
    exchange(client, server)
    assert client.results[refused].reset_code == ErrorCode.REFUSED_STREAM
    assert client.results[refused].status is None
    _expect(client.results[served], _payload(1000))
    assert server.resets.get(cancelled) == ErrorCode.CANCEL
    assert cancelled not in server.uploads


@pytest.mark.parametrize("pair", list(PAIRS))
def test_goaway_after_a_request(pair: str) -> None:
    client, server = _pair(pair)
    first = client.request(_sized(10) + [(b"x-goaway", b"1")])
    exchange(client, server)
    _expect(client.results[first], _payload(10))
    assert client.goaway == (first, ErrorCode.NO_ERROR)


@pytest.mark.parametrize("pair", ["ours-to-ours"])     # h2 clients raise on frames after a GOAWAY
def test_streams_in_flight_after_a_goaway_are_refused(pair: str) -> None:
    client, server = _pair(pair)
    first = client.request(_sized(10) + [(b"x-goaway", b"1")])
    server.receive(client.data_to_send())         # the server answers and sends GOAWAY(1)
    second = client.request(_sized(10))           # sent before the client sees the GOAWAY
    exchange(client, server)
    _expect(client.results[first], _payload(10))
    assert client.results[second].reset_code == ErrorCode.REFUSED_STREAM
    assert second not in server.requests          # never reached the application


@pytest.mark.parametrize("pair", list(PAIRS))
def test_many_concurrent_streams(pair: str) -> None:
    client, server = _pair(pair)
    streams = {client.request(_sized(size)): size for size in range(0, 100 * 997, 997)}
    assert len(streams) == 100
    exchange(client, server)
    for stream_id, size in streams.items():
        _expect(client.results[stream_id], _payload(size))
