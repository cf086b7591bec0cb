"""A server connection fed raw frames: the events it reports, the RST_STREAM and GOAWAY
frames it answers with, and the connection errors it raises (RFC 9113 §4-§8).

Each case is replayed whole, one byte at a time, and followed by a partial frame.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
from h2_wire import GET, Wire, control, post, replay, server

from wsgiserve.http2 import (
    CLIENT_PREFACE,
    Connection,
    DataReceived,
    ErrorCode,
    Event,
    Http2ConnectionError,
    Http2Limits,
    PingReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from wsgiserve.http2 import frames as fr

E = ErrorCode


def get_request(stream_id: int = 1, end_stream: bool = True) -> RequestReceived:
    return RequestReceived(stream_id, GET, b"GET", b"https", b"example.com", b"/",
                           end_stream=end_stream)


def post_request(length: int | None, stream_id: int = 1) -> RequestReceived:
    return RequestReceived(stream_id, post(length), b"POST", b"https", b"example.com",
                           b"/upload", content_length=length)


def rst(stream_id: int, code: ErrorCode) -> tuple[str, int, int]:
    return ("RST_STREAM", stream_id, code)


Case = tuple[Callable[[], bytes], list[Event], list[tuple[str, int, int]]]
VALID: dict[str, Case] = {
    "get": (lambda: Wire().headers(1, GET, end_stream=True).bytes(),
            [get_request(), StreamEnded(1)], []),
    "post-with-body": (lambda: Wire().headers(1, post(5)).data(1, b"hel").data(1, b"lo", True)
                       .bytes(),
                       [post_request(5), DataReceived(1, b"hel", 3), DataReceived(1, b"lo", 2, True),
                        StreamEnded(1)], []),
    "post-ended-by-empty-data": (lambda: Wire().headers(1, post()).data(1, b"x")
                                 .data(1, b"", True).bytes(),
                                 [post_request(None), DataReceived(1, b"x", 1),
                                  DataReceived(1, b"", 0, True), StreamEnded(1)], []),
    "continuations": (lambda: Wire().headers_split(1, GET, 3, end_stream=True).bytes(),
                      [get_request(), StreamEnded(1)], []),
    "empty-continuations": (lambda: Wire().headers_split(1, GET, 6, end_stream=True).bytes(),
                            [get_request(), StreamEnded(1)], []),
    "padded-headers-with-priority": (
        lambda: Wire().headers(1, GET, end_stream=True, pad=10, priority=(0, 200)).bytes(),
        [get_request(), StreamEnded(1)], []),
    "padded-data": (lambda: Wire().headers(1, post(2)).data(1, b"ab", True, pad=5).bytes(),
                    [post_request(2), DataReceived(1, b"ab", 8, True), StreamEnded(1)], []),
    "trailers": (lambda: Wire().headers(1, post()).data(1, b"x")
                 .headers(1, [(b"x-checksum", b"1")], end_stream=True).bytes(),
                 [post_request(None), DataReceived(1, b"x", 1),
                  TrailersReceived(1, [(b"x-checksum", b"1")]), StreamEnded(1)], []),
    "two-streams-interleaved": (
        lambda: Wire().headers(1, post()).headers(3, GET, end_stream=True).data(1, b"a", True)
        .bytes(),
        [post_request(None), get_request(3), StreamEnded(3), DataReceived(1, b"a", 1, True),
         StreamEnded(1)], []),
    "host-instead-of-authority": (
        lambda: Wire().headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                                   (b"host", b"h")], end_stream=True).bytes(),
        [RequestReceived(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                             (b"host", b"h")], b"GET", b"http", b"h", b"/", end_stream=True),
         StreamEnded(1)], []),
    "connect": (lambda: Wire().headers(1, [(b":method", b"CONNECT"),
                                           (b":authority", b"h:443")]).bytes(),
                [RequestReceived(1, [(b":method", b"CONNECT"), (b":authority", b"h:443")],
                                 b"CONNECT", None, b"h:443", None)], []),
    "options-star": (lambda: Wire().headers(1, [(b":method", b"OPTIONS"), (b":scheme", b"https"),
                                                (b":authority", b"h"), (b":path", b"*")],
                                            end_stream=True).bytes(),
                     [RequestReceived(1, [(b":method", b"OPTIONS"), (b":scheme", b"https"),
                                          (b":authority", b"h"), (b":path", b"*")],
                                      b"OPTIONS", b"https", b"h", b"*", end_stream=True),
                      StreamEnded(1)], []),
    "te-trailers": (lambda: Wire().headers(1, GET + [(b"te", b"trailers")], True).bytes(),
                    [RequestReceived(1, GET + [(b"te", b"trailers")], b"GET", b"https",
                                     b"example.com", b"/", end_stream=True), StreamEnded(1)],
                    []),
    "ping": (lambda: Wire().ping(b"abcdefgh").bytes(), [PingReceived(b"abcdefgh")], []),
    "window-update": (lambda: Wire().headers(1, GET).window_update(1, 100)
                      .window_update(0, 7).bytes(),
                      [get_request(end_stream=False), WindowUpdated(1, 100),
                       WindowUpdated(0, 7)], []),
    "reset-by-client": (lambda: Wire().headers(1, GET).rst(1, 8).bytes(),
                        [get_request(end_stream=False), StreamReset(1, E.CANCEL, True)], []),
    "unknown-frame-type-is-ignored": (lambda: Wire().raw(0x42, 0xff, 0, b"??")
                                      .headers(1, GET, True).bytes(),
                                      [get_request(), StreamEnded(1)], []),
    "priority-on-idle-stream": (lambda: Wire().priority(9, 0).headers(1, GET, True).bytes(),
                                [get_request(), StreamEnded(1)], []),
    "window-update-after-end": (lambda: Wire().headers(1, GET, True).bytes(),
                                [get_request(), StreamEnded(1)], []),
    "rst-on-a-stream-the-server-ended-is-ignored": (
        lambda: Wire().headers(1, GET, True).rst(1, 8).window_update(1, 5).bytes(),
        [get_request(), StreamEnded(1), StreamReset(1, E.CANCEL, True)], []),
}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_frames(name: str) -> None:
    make_raw, events, sent = VALID[name]
    outcome = replay(server, make_raw())
    assert outcome.error is None
    assert outcome.events == events
    assert outcome.control == sent


def _malformed(fields: list[tuple[bytes, bytes]], end_stream: bool = True) -> Case:
    return (lambda: Wire().headers(1, fields, end_stream).headers(3, GET, True).bytes(),
            [get_request(3), StreamEnded(3)], [rst(1, E.PROTOCOL_ERROR)])


# RFC 9113 §8.1.1: a malformed request is a stream error; the next stream is served.
MALFORMED: dict[str, Case] = {
    "uppercase-name": _malformed(GET + [(b"X-Foo", b"1")]),
    "invalid-name-character": _malformed(GET + [(b"x foo", b"1")]),
    "empty-name": _malformed(GET + [(b"", b"1")]),
    "value-with-cr": _malformed(GET + [(b"x-foo", b"a\rb")]),
    "value-with-nul": _malformed(GET + [(b"x-foo", b"a\x00b")]),
    "value-leading-space": _malformed(GET + [(b"x-foo", b" a")]),
    "value-trailing-tab": _malformed(GET + [(b"x-foo", b"a\t")]),
    "no-method": _malformed(GET[1:]),
    "no-path": _malformed(GET[:3]),
    "no-scheme": _malformed([GET[0], GET[2], GET[3]]),
    "no-authority-nor-host": _malformed(GET[:2] + GET[3:]),
    "empty-path": _malformed(GET[:3] + [(b":path", b"")]),
    "relative-path": _malformed(GET[:3] + [(b":path", b"index.html")]),
    "path-with-space": _malformed(GET[:3] + [(b":path", b"/a b")]),
    "star-path-on-get": _malformed(GET[:3] + [(b":path", b"*")]),
    "userinfo-in-authority": _malformed(GET[:2] + [(b":authority", b"u@h")] + GET[3:]),
    "host-differs-from-authority": _malformed(GET + [(b"host", b"other.example")]),
    "two-hosts": _malformed(GET + [(b"host", b"example.com"), (b"host", b"example.com")]),
    "duplicate-method": _malformed(GET + [(b":method", b"GET")]),
    "pseudo-after-regular": _malformed(GET[:3] + [(b"x-a", b"1"), GET[3]]),
    "unknown-pseudo": _malformed(GET + [(b":foo", b"bar")]),
    "status-in-request": _malformed(GET + [(b":status", b"200")]),
    "protocol-not-enabled": _malformed([(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                                        (b":scheme", b"https"), (b":path", b"/chat"),
                                        (b":authority", b"h")]),
    "connect-with-path": _malformed([(b":method", b"CONNECT"), (b":authority", b"h:443"),
                                     (b":path", b"/")]),
    "connection-header": _malformed(GET + [(b"connection", b"keep-alive")]),
    "keep-alive-header": _malformed(GET + [(b"keep-alive", b"5")]),
    "proxy-connection-header": _malformed(GET + [(b"proxy-connection", b"close")]),
    "transfer-encoding-header": _malformed(GET + [(b"transfer-encoding", b"chunked")]),
    "upgrade-header": _malformed(GET + [(b"upgrade", b"h2c")]),
    "te-gzip": _malformed(GET + [(b"te", b"gzip")]),
    "content-length-not-a-number": _malformed(post() + [(b"content-length", b"1x")], False),
    "content-length-values-differ": _malformed(post(1) + [(b"content-length", b"2")], False),
    "content-length-on-a-request-that-ends": _malformed(post(5), True),
    "body-longer-than-content-length": (
        lambda: Wire().headers(1, post(2)).data(1, b"abc", True).headers(3, GET, True).bytes(),
        [post_request(2), StreamReset(1, E.PROTOCOL_ERROR, False), get_request(3),
         StreamEnded(3)], [rst(1, E.PROTOCOL_ERROR)]),
    "body-shorter-than-content-length": (
        lambda: Wire().headers(1, post(5)).data(1, b"abc", True).bytes(),
        [post_request(5), StreamReset(1, E.PROTOCOL_ERROR, False)], [rst(1, E.PROTOCOL_ERROR)]),
    "trailers-without-end-stream": (
        lambda: Wire().headers(1, post()).headers(1, [(b"x-a", b"1")]).bytes(),
        [post_request(None), StreamReset(1, E.PROTOCOL_ERROR, False)], [rst(1, E.PROTOCOL_ERROR)]),
    "pseudo-header-in-trailers": (
        lambda: Wire().headers(1, post()).headers(1, [(b":path", b"/")], True).bytes(),
        [post_request(None), StreamReset(1, E.PROTOCOL_ERROR, False)], [rst(1, E.PROTOCOL_ERROR)]),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_requests_are_stream_errors(name: str) -> None:
    make_raw, events, sent = MALFORMED[name]
    outcome = replay(server, make_raw())
    assert outcome.error is None
    assert outcome.events == events
    assert outcome.control == sent


STREAM_ERRORS: dict[str, Case] = {
    "data-after-end-stream": (
        lambda: Wire().headers(1, GET, True).data(1, b"x").bytes(),
        [get_request(), StreamEnded(1), StreamReset(1, E.STREAM_CLOSED, False)],
        [rst(1, E.STREAM_CLOSED)]),
    "headers-after-end-stream": (
        lambda: Wire().headers(1, GET, True).headers(1, [(b"x-a", b"1")], True).bytes(),
        [get_request(), StreamEnded(1), StreamReset(1, E.STREAM_CLOSED, False)],
        [rst(1, E.STREAM_CLOSED)]),
    "data-after-client-reset": (
        lambda: Wire().headers(1, post()).rst(1, 8).data(1, b"x").bytes(),
        [post_request(None), StreamReset(1, E.CANCEL, True)], [rst(1, E.STREAM_CLOSED)]),
    "window-update-of-zero": (
        lambda: Wire().headers(1, GET).window_update(1, 0).bytes(),
        [get_request(end_stream=False), StreamReset(1, E.PROTOCOL_ERROR, False)],
        [rst(1, E.PROTOCOL_ERROR)]),
    "stream-window-overflow": (
        lambda: Wire().headers(1, GET).window_update(1, 2**31 - 1).bytes(),
        [get_request(end_stream=False), StreamReset(1, E.FLOW_CONTROL_ERROR, False)],
        [rst(1, E.FLOW_CONTROL_ERROR)]),
    "priority-self-dependency-on-open-stream": (
        lambda: Wire().headers(1, GET).priority(1, 1).bytes(),
        [get_request(end_stream=False), StreamReset(1, E.PROTOCOL_ERROR, False)],
        [rst(1, E.PROTOCOL_ERROR)]),
    "priority-of-4-bytes-on-open-stream": (
        lambda: Wire().headers(1, GET).raw(fr.FrameType.PRIORITY, 0, 1, b"\0\0\0\0").bytes(),
        [get_request(end_stream=False), StreamReset(1, E.FRAME_SIZE_ERROR, False)],
        [rst(1, E.FRAME_SIZE_ERROR)]),
    "headers-depending-on-themselves": (
        lambda: Wire().headers(1, GET, True, priority=(1, 16)).headers(3, GET, True).bytes(),
        [get_request(3), StreamEnded(3)], [rst(1, E.PROTOCOL_ERROR)]),
    "data-beyond-the-stream-window": (
        lambda: Wire().headers(1, post()).data(1, b"x" * 16384).data(1, b"x" * 16384)
        .data(1, b"x" * 16384).data(1, b"x" * 16384).bytes(),
        [post_request(None)] + [DataReceived(1, b"x" * 16384, 16384)] * 3
        + [StreamReset(1, E.FLOW_CONTROL_ERROR, False)], [rst(1, E.FLOW_CONTROL_ERROR)]),
    "frames-after-our-reset-are-ignored": (
        lambda: Wire().headers(1, GET + [(b"X", b"1")]).data(1, b"late")
        .headers(1, [(b"x-t", b"1")], True).window_update(1, 1).rst(1, 8).bytes(),
        [], [rst(1, E.PROTOCOL_ERROR)]),
}


def _small_window_server() -> Connection:
    return server(Http2Limits(initial_window_size=65535))


@pytest.mark.parametrize("name", list(STREAM_ERRORS))
def test_stream_errors(name: str) -> None:
    make_raw, events, sent = STREAM_ERRORS[name]
    outcome = replay(_small_window_server, make_raw())
    assert outcome.error is None
    assert outcome.events == events
    assert outcome.control == sent


ConnectionCase = tuple[Callable[[], bytes], ErrorCode]
CONNECTION_ERRORS: dict[str, ConnectionCase] = {
    "data-on-stream-0": (lambda: Wire().raw(0, 0, 0, b"x").bytes(), E.PROTOCOL_ERROR),
    "headers-on-stream-0": (lambda: Wire().raw(1, 4, 0, b"\x82").bytes(), E.PROTOCOL_ERROR),
    "headers-on-even-stream": (lambda: Wire().headers(2, GET, True).bytes(), E.PROTOCOL_ERROR),
    "stream-id-going-down": (lambda: Wire().headers(5, GET, True).headers(3, GET, True).bytes(),
                             E.PROTOCOL_ERROR),
    "data-on-idle-stream": (lambda: Wire().data(1, b"x").bytes(), E.PROTOCOL_ERROR),
    "rst-on-idle-stream": (lambda: Wire().rst(1).bytes(), E.PROTOCOL_ERROR),
    "window-update-on-idle-stream": (lambda: Wire().window_update(1, 1).bytes(),
                                     E.PROTOCOL_ERROR),
    "rst-on-stream-0": (lambda: Wire().raw(3, 0, 0, b"\0\0\0\0").bytes(), E.PROTOCOL_ERROR),
    "rst-of-3-bytes": (lambda: Wire().headers(1, GET).raw(3, 0, 1, b"\0\0\0").bytes(),
                       E.FRAME_SIZE_ERROR),
    "priority-on-stream-0": (lambda: Wire().raw(2, 0, 0, b"\0" * 5).bytes(), E.PROTOCOL_ERROR),
    "priority-self-dependency-on-idle": (lambda: Wire().priority(3, 3).bytes(),
                                         E.PROTOCOL_ERROR),
    "continuation-without-headers": (lambda: Wire().raw(9, 4, 1, b"\x82").bytes(),
                                     E.PROTOCOL_ERROR),
    "frame-inside-a-header-block": (lambda: Wire().headers(1, GET, True, end_headers=False)
                                    .ping().bytes(), E.PROTOCOL_ERROR),
    "continuation-on-another-stream": (lambda: Wire().headers(1, GET, True, end_headers=False)
                                       .raw(9, 4, 3, b"").bytes(), E.PROTOCOL_ERROR),
    "ping-of-7-bytes": (lambda: Wire().raw(6, 0, 0, b"1234567").bytes(), E.FRAME_SIZE_ERROR),
    "ping-on-a-stream": (lambda: Wire().raw(6, 0, 1, b"12345678").bytes(), E.PROTOCOL_ERROR),
    "settings-on-a-stream": (lambda: Wire().raw(4, 0, 1, b"").bytes(), E.PROTOCOL_ERROR),
    "settings-of-5-bytes": (lambda: Wire().raw(4, 0, 0, b"\0\x01\0\0\0").bytes(),
                            E.FRAME_SIZE_ERROR),
    "settings-ack-with-payload": (lambda: Wire().raw(4, 1, 0, b"\0\x01\0\0\0\0").bytes(),
                                  E.FRAME_SIZE_ERROR),
    "enable-push-2": (lambda: Wire().settings({2: 2}).bytes(), E.PROTOCOL_ERROR),
    "initial-window-over-2^31-1": (lambda: Wire().settings({4: 2**31}).bytes(),
                                   E.FLOW_CONTROL_ERROR),
    "max-frame-size-too-small": (lambda: Wire().settings({5: 16383}).bytes(), E.PROTOCOL_ERROR),
    "max-frame-size-too-large": (lambda: Wire().settings({5: 2**24}).bytes(), E.PROTOCOL_ERROR),
    "push-promise-from-a-client": (lambda: Wire().headers(1, GET).raw(
        5, 4, 1, b"\0\0\0\x02\x82").bytes(), E.PROTOCOL_ERROR),
    "window-update-of-zero-on-the-connection": (lambda: Wire().window_update(0, 0).bytes(),
                                                E.PROTOCOL_ERROR),
    "connection-window-overflow": (lambda: Wire().window_update(0, 2**31 - 1).bytes(),
                                   E.FLOW_CONTROL_ERROR),
    "window-update-of-5-bytes": (lambda: Wire().raw(8, 0, 0, b"\0\0\0\x01\0").bytes(),
                                 E.FRAME_SIZE_ERROR),
    "goaway-on-a-stream": (lambda: Wire().raw(7, 0, 1, b"\0" * 8).bytes(), E.PROTOCOL_ERROR),
    "goaway-of-7-bytes": (lambda: Wire().raw(7, 0, 0, b"\0" * 7).bytes(), E.FRAME_SIZE_ERROR),
    "padding-too-long": (lambda: Wire().headers(1, post()).raw(0, 8, 1, b"\x05abc").bytes(),
                         E.PROTOCOL_ERROR),
    "frame-over-max-frame-size": (lambda: Wire().headers(1, post()).data(1, b"x" * 16385)
                                  .bytes(), E.FRAME_SIZE_ERROR),
    "hpack-garbage": (lambda: Wire().raw(1, 5, 1, b"\x80").bytes(), E.COMPRESSION_ERROR),
    "headers-on-a-stream-not-seen-before-and-lower": (
        lambda: Wire().headers(3, GET, True).headers(1, GET, True).bytes(), E.PROTOCOL_ERROR),
}


@pytest.mark.parametrize("name", list(CONNECTION_ERRORS))
def test_connection_errors(name: str) -> None:
    make_raw, code = CONNECTION_ERRORS[name]
    outcome = replay(server, make_raw())
    assert outcome.error == code
    assert outcome.control[-1][0] == "GOAWAY" and outcome.control[-1][2] == code


def test_connection_window_overrun_is_a_flow_control_error() -> None:
    limits = Http2Limits(connection_window_size=65535, initial_window_size=1 << 20)
    wire = Wire()
    for stream_id in (1, 3, 5, 7, 9):
        wire.headers(stream_id, post()).data(stream_id, b"x" * 16384)
    outcome = replay(lambda: server(limits), wire.bytes())
    assert outcome.error == E.FLOW_CONTROL_ERROR


def test_the_preface_is_checked() -> None:
    conn = Connection(is_client=False)
    assert conn.receive_data(b"PRI * HTTP/2.0\r\n") == []
    with pytest.raises(Http2ConnectionError):
        conn.receive_data(b"\r\nXX\r\n\r\n")
    conn = Connection(is_client=False)
    with pytest.raises(Http2ConnectionError):
        conn.receive_data(b"GET / HTTP/1.1\r\n")        # fails at its first byte


def test_the_first_frame_must_be_settings() -> None:
    conn = Connection(is_client=False)
    conn.data_to_send()
    with pytest.raises(Http2ConnectionError):
        conn.receive_data(CLIENT_PREFACE + Wire().ping().bytes())
    assert control(conn.data_to_send()) == [("GOAWAY", 0, E.PROTOCOL_ERROR)]
    assert conn.receive_data(Wire().settings().bytes()) == []      # CLOSED: ignored


def test_ended_streams_are_remembered_within_a_bound() -> None:
    # RFC 9113 §5.1: HEADERS on a stream that ended is a stream error STREAM_CLOSED while
    # the stream is remembered (the last 256 at least, 512 at most); once it is forgotten
    # it is only a stream id below the last one (§5.1.1): a connection error.
    conn, wire = server(), Wire()
    last = 2 * 700 - 1
    for stream_id in range(1, last + 2, 2):
        wire.parts = []
        conn.receive_data(wire.headers(stream_id, GET, True).bytes())
        conn.send_headers(stream_id, [(b":status", b"204")], end_stream=True)
    conn.data_to_send()
    for stream_id in (last, last - 2 * 255):
        wire.parts = []
        assert conn.receive_data(wire.headers(stream_id, GET, True).bytes()) == []
        assert control(conn.data_to_send()) == [("RST_STREAM", stream_id, E.STREAM_CLOSED)]
    wire.parts = []
    with pytest.raises(Http2ConnectionError):
        conn.receive_data(wire.headers(last - 2 * 512, GET, True).bytes())
    assert control(conn.data_to_send()) == [("GOAWAY", last, E.PROTOCOL_ERROR)]
