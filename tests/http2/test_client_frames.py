"""A client connection fed a server's raw frames: responses, 1xx, trailers, GOAWAY, and
the rules that are the client's to check (no push, no 101, content of HEAD responses)."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from h2_wire import GET, Wire, client, control, replay, sent_frames

from wsgiserve.http2 import (
    Connection,
    DataReceived,
    ErrorCode,
    Event,
    GoAwayReceived,
    Http2Limits,
    InformationalResponseReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from wsgiserve.http2 import frames as fr

E = ErrorCode
OK = [(b":status", b"200"), (b"content-length", b"5")]
HEAD = [(b":method", b"HEAD")] + GET[1:]


def with_requests(*requests: tuple[list[tuple[bytes, bytes]], bool]) -> Callable[[], Connection]:
    def make() -> Connection:
        conn = client()
        for fields, end_stream in requests:
            conn.send_headers(conn.get_next_available_stream_id(), fields, end_stream)
        conn.data_to_send()
        return conn
    return make


ONE_GET = with_requests((GET, True))
Case = tuple[Callable[[], Connection], Callable[[], bytes], list[Event], list[tuple[str, int, int]]]
CASES: dict[str, Case] = {
    "response-with-body": (ONE_GET, lambda: Wire().headers(1, OK).data(1, b"hello", True).bytes(),
                           [ResponseReceived(1, OK, 200, 5), DataReceived(1, b"hello", 5, True),
                            StreamEnded(1)], []),
    "early-hints-then-response": (
        ONE_GET, lambda: Wire().headers(1, [(b":status", b"103"), (b"link", b"</a.css>")])
        .headers(1, [(b":status", b"204")], True).bytes(),
        [InformationalResponseReceived(1, [(b":status", b"103"), (b"link", b"</a.css>")], 103),
         ResponseReceived(1, [(b":status", b"204")], 204, end_stream=True), StreamEnded(1)], []),
    "trailers": (ONE_GET, lambda: Wire().headers(1, [(b":status", b"200")]).data(1, b"x")
                 .headers(1, [(b"grpc-status", b"0")], True).bytes(),
                 [ResponseReceived(1, [(b":status", b"200")], 200), DataReceived(1, b"x", 1),
                  TrailersReceived(1, [(b"grpc-status", b"0")]), StreamEnded(1)], []),
    "head-response-declares-a-length": (
        with_requests((HEAD, True)), lambda: Wire().headers(1, OK, True).bytes(),
        [ResponseReceived(1, OK, 200, 5, True), StreamEnded(1)], []),
    "head-response-with-content": (
        with_requests((HEAD, True)), lambda: Wire().headers(1, OK).data(1, b"hello", True).bytes(),
        [ResponseReceived(1, OK, 200, 5), StreamReset(1, E.PROTOCOL_ERROR, False)],
        [("RST_STREAM", 1, E.PROTOCOL_ERROR)]),
    "informational-ending-the-stream": (
        ONE_GET, lambda: Wire().headers(1, [(b":status", b"100")], True).bytes(),
        [StreamReset(1, E.PROTOCOL_ERROR, False)], [("RST_STREAM", 1, E.PROTOCOL_ERROR)]),
    "switching-protocols": (
        ONE_GET, lambda: Wire().headers(1, [(b":status", b"101")]).bytes(),
        [StreamReset(1, E.PROTOCOL_ERROR, False)], [("RST_STREAM", 1, E.PROTOCOL_ERROR)]),
    "no-status": (ONE_GET, lambda: Wire().headers(1, [(b"x-a", b"1")], True).bytes(),
                  [StreamReset(1, E.PROTOCOL_ERROR, False)], [("RST_STREAM", 1, E.PROTOCOL_ERROR)]),
    "request-pseudo-header-in-response": (
        ONE_GET, lambda: Wire().headers(1, [(b":status", b"200"), (b":path", b"/")], True).bytes(),
        [StreamReset(1, E.PROTOCOL_ERROR, False)], [("RST_STREAM", 1, E.PROTOCOL_ERROR)]),
    "data-before-the-response": (
        ONE_GET, lambda: Wire().data(1, b"x").bytes(),
        [StreamReset(1, E.PROTOCOL_ERROR, False)], [("RST_STREAM", 1, E.PROTOCOL_ERROR)]),
    "reset-by-the-server": (ONE_GET, lambda: Wire().rst(1, 2).bytes(),
                            [StreamReset(1, E.INTERNAL_ERROR, True)], []),
    "goaway-refuses-later-streams": (
        with_requests((GET, True), (GET, True), (GET, True)),
        lambda: Wire().goaway(1, 0, b"bye").headers(1, OK).data(1, b"hello", True).bytes(),
        [StreamReset(3, E.REFUSED_STREAM, True), StreamReset(5, E.REFUSED_STREAM, True),
         GoAwayReceived(1, E.NO_ERROR, b"bye"), ResponseReceived(1, OK, 200, 5),
         DataReceived(1, b"hello", 5, True), StreamEnded(1)], []),
}


@pytest.mark.parametrize("name", list(CASES))
def test_client_receives(name: str) -> None:
    make, make_raw, events, sent = CASES[name]
    outcome = replay(make, make_raw())
    assert outcome.error is None
    assert outcome.events == events
    assert outcome.control == sent


@pytest.mark.parametrize("make_raw", [
    lambda: Wire().raw(5, 4, 1, b"\0\0\0\x02\x82").bytes(),              # PUSH_PROMISE
    lambda: Wire().headers(2, [(b":status", b"200")], True).bytes(),    # a server-opened stream
    lambda: Wire().settings({2: 1}).bytes(),                            # ENABLE_PUSH=1
    lambda: Wire().headers(3, OK, True).bytes(),                        # an idle stream of ours
], ids=["push-promise", "server-opened-stream", "enable-push", "idle-stream"])
def test_client_protocol_errors(make_raw: Callable[[], bytes]) -> None:
    outcome = replay(ONE_GET, make_raw())
    assert outcome.error == E.PROTOCOL_ERROR


def test_frames_on_a_stream_the_client_reset_are_ignored_and_credited() -> None:
    conn = client(Http2Limits(connection_window_size=65535))
    conn.send_headers(1, GET, True)
    conn.reset_stream(1)
    assert control(conn.data_to_send()) == [("RST_STREAM", 1, E.CANCEL)]
    raw = Wire().headers(1, OK).data(1, b"x" * 16384).data(1, b"x" * 16384).bytes()
    assert conn.receive_data(raw) == []
    # The DATA counted against the connection window; nobody will read it, so its credit
    # went back at once: half a window of it makes a WINDOW_UPDATE.
    assert [(t, s, fr.parse_window_update(p)) for t, _, s, p in sent_frames(conn.data_to_send())] \
        == [(fr.FrameType.WINDOW_UPDATE, 0, 32768)]


def test_no_new_stream_after_goaway() -> None:
    from wsgiserve.http2 import ConnectionClosedError
    conn = ONE_GET()
    conn.receive_data(Wire().goaway(1).bytes())
    with pytest.raises(ConnectionClosedError):
        conn.send_headers(conn.get_next_available_stream_id(), GET, True)
