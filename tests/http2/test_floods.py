"""Floods and bombs (rapid reset, MadeYouReset, CONTINUATION, HPACK, PING, SETTINGS, empty
DATA, WINDOW_UPDATE, PRIORITY, unknown frames): each is refused with ENHANCE_YOUR_CALM (or
the error RFC 9113 names) after a bounded number of frames, and the same frames at a
well-behaved pace are not."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import hpack
import pytest
from h2_wire import GET, Wire, control, post, server

from wsgiserve.http2 import (
    Connection,
    ErrorCode,
    Http2ConnectionError,
    Http2Limits,
    RequestReceived,
)
from wsgiserve.http2 import frames as fr
from wsgiserve.http2.hpack import encode_integer
from wsgiserve.http2.limits import (
    DEFAULT_MAX_CONTINUATION_FRAMES,
    DEFAULT_MAX_GLITCHES_PER_WINDOW,
    DEFAULT_MAX_PINGS_PER_WINDOW,
    DEFAULT_MAX_PRIORITY_PER_WINDOW,
    DEFAULT_MAX_RESETS_PER_WINDOW,
    DEFAULT_MAX_SETTINGS_PER_WINDOW,
    DEFAULT_MAX_WINDOW_UPDATES_PER_WINDOW,
)

E = ErrorCode


def frames_until_error(conn: Connection, frames: Iterator[bytes], limit: int = 100_000,
                       ) -> tuple[int, int, int]:
    """Feed one frame at a time; return (frames fed, requests reported, error code)."""
    requests = 0
    for count, frame in enumerate(frames, 1):
        try:
            requests += sum(isinstance(e, RequestReceived) for e in conn.receive_data(frame))
        except Http2ConnectionError as exc:
            assert control(conn.data_to_send())[-1][::2] == ("GOAWAY", exc.code)
            return count, requests, exc.code
        conn.data_to_send()
        if count >= limit:
            break
    raise AssertionError("no connection error")


def _streams(per_stream: Callable[[Wire, int], Wire]) -> Iterator[bytes]:
    wire = Wire()        # one encoder for every block, as a real peer has
    for stream_id in range(1, fr.MAX_STREAM_ID, 2):
        wire.parts = []
        yield per_stream(wire, stream_id).bytes()


def test_rapid_reset() -> None:
    # CVE-2023-44487: open a stream, cancel it, repeat.
    count, requests, code = frames_until_error(
        server(), _streams(lambda w, s: w.headers(s, GET, True).rst(s, E.CANCEL)))
    assert code == E.ENHANCE_YOUR_CALM
    assert requests <= DEFAULT_MAX_RESETS_PER_WINDOW + 1


@pytest.mark.parametrize("provoke", [
    lambda w, s: w.headers(s, GET).window_update(s, 0),                  # WINDOW_UPDATE of 0
    lambda w, s: w.headers(s, GET).window_update(s, 2**31 - 1),          # window overflow
    lambda w, s: w.headers(s, GET, True).data(s, b"x"),                  # DATA after END_STREAM
    lambda w, s: w.headers(s, GET + [(b"x-a", b" bad")], True),           # a malformed request
    lambda w, s: w.headers(s, post(1)).data(s, b"xx", True),             # over content-length
], ids=["window-update-zero", "window-overflow", "data-on-half-closed", "malformed",
        "content-length"])
def test_made_you_reset(provoke: Callable[[Wire, int], Wire]) -> None:
    # CVE-2025-8671: frames that make the server reset the stream count as resets too.
    count, requests, code = frames_until_error(server(), _streams(provoke))
    assert code == E.ENHANCE_YOUR_CALM
    assert requests <= DEFAULT_MAX_RESETS_PER_WINDOW + 1


def test_refused_streams_count_as_resets() -> None:
    conn = server(Http2Limits(max_concurrent_streams=2))
    frames = _streams(lambda w, s: w.headers(s, GET))     # never ended: 2 open, then refused
    count, requests, code = frames_until_error(conn, frames)
    assert (requests, code) == (2, E.ENHANCE_YOUR_CALM)
    assert count == 2 + DEFAULT_MAX_RESETS_PER_WINDOW + 1


def serve(conn: Connection, raw: bytes) -> int:
    """Feed ``raw`` and answer every request at once; return how many were answered."""
    answered = 0
    for event in conn.receive_data(raw):
        if isinstance(event, RequestReceived):
            conn.send_headers(event.stream_id, [(b":status", b"204")], end_stream=True)
            answered += 1
    conn.data_to_send()
    return answered


def test_resets_at_a_browser_pace_are_fine() -> None:
    # A page starts 100 requests and cancels them all at once, then loads 900 more.
    conn = server()
    wire = Wire()
    for stream_id in range(1, 201, 2):
        wire.headers(stream_id, GET, True)
    for stream_id in range(1, 201, 2):
        wire.rst(stream_id, E.CANCEL)
    assert conn.receive_data(wire.bytes())
    answered = 0
    for stream_id in range(201, 2001, 2):
        wire.parts = []
        answered += serve(conn, wire.headers(stream_id, GET, True).bytes())
    assert answered == 900


def test_empty_continuation_flood() -> None:
    # CVE-2024-27316 class: CONTINUATION frames that add no bytes are counted too.
    block = Wire().block(GET)
    frames = iter([fr.frame_header(len(block), fr.FrameType.HEADERS, fr.END_STREAM, 1) + block]
                  + [fr.continuation_frame(1, b"", False)] * 10_000)
    count, _, code = frames_until_error(server(), frames)
    assert (count, code) == (1 + DEFAULT_MAX_CONTINUATION_FRAMES + 1, E.ENHANCE_YOUR_CALM)


def test_continuation_bytes_flood() -> None:
    piece = b"\x00" * 16384           # never ends: the block would grow without bound
    frames = iter([fr.frame_header(len(piece), fr.FrameType.HEADERS, 0, 1) + piece]
                  + [fr.continuation_frame(1, piece, False)] * 100)
    count, _, code = frames_until_error(server(), frames)
    assert code == E.ENHANCE_YOUR_CALM and count <= 65536 // 16384 + 1


def test_a_large_header_block_within_the_limits_is_fine() -> None:
    fields = GET + [(b"x-%d" % i, b"v" * 900) for i in range(40)]      # ~37 KiB, 3 frames
    wire = Wire()
    block = wire.block(fields)
    raw = fr.headers_frames(1, block, True, 16384)
    events = server().receive_data(raw)
    assert isinstance(events[0], RequestReceived) and events[0].headers == fields


def test_hpack_bomb_is_answered_431_with_bounded_work() -> None:
    # One 4 KiB table entry, then 12,000 one-byte references to it: 48 MiB if decoded.
    get = b"\x82\x87\x84\x01\x0bexample.com"          # GET https / example.com, no indexing
    big = b"a" * 4000
    entry = b"\x40\x03x-a" + encode_integer(len(big), 7) + big
    conn = server()
    assert conn.receive_data(fr.headers_frames(1, get + entry + b"\xbe" * 12_000, True,
                                               16384)) == []
    sent = fr.read_frames(conn.data_to_send(), 0, 1 << 24)[0]
    assert [(t, s) for t, _, s, _ in sent] == [(fr.FrameType.HEADERS, 1)]
    assert hpack.Decoder().decode(sent[0][3], raw=True) == [(b":status", b"431")]
    # The decoder kept its table in step: the next request refers to the entry.
    events = conn.receive_data(fr.headers_frames(3, get + b"\xbe", True, 16384))
    assert isinstance(events[0], RequestReceived)
    assert events[0].headers[-1] == (b"x-a", big)


def test_too_many_table_size_updates() -> None:
    frames = iter([fr.headers_frames(1, b"\x20\x20\x20\x82", True, 16384)])
    _, _, code = frames_until_error(server(), frames)
    assert code == E.COMPRESSION_ERROR


def _repeat(frame: bytes) -> Iterator[bytes]:
    while True:
        yield frame


@pytest.mark.parametrize("frame, quota", [
    (fr.ping_frame(b"12345678"), DEFAULT_MAX_PINGS_PER_WINDOW),
    (fr.settings_frame({}), DEFAULT_MAX_SETTINGS_PER_WINDOW - 1),   # the preface sent one
    (fr.priority_frame(3, 0, 16), DEFAULT_MAX_PRIORITY_PER_WINDOW),
    (fr.frame_header(5, 0x10, 0, 0) + b"\0\0\0\x01u", DEFAULT_MAX_PRIORITY_PER_WINDOW),
    (fr.window_update_frame(0, 1), DEFAULT_MAX_WINDOW_UPDATES_PER_WINDOW),
    (fr.frame_header(1, 0xBB, 0, 0) + b"?", DEFAULT_MAX_GLITCHES_PER_WINDOW),
    (fr.ping_frame(b"unasked!", ack=True), DEFAULT_MAX_GLITCHES_PER_WINDOW),
    (fr.settings_frame({}, ack=True), DEFAULT_MAX_GLITCHES_PER_WINDOW),
], ids=["ping", "settings", "priority", "priority-update", "window-update", "unknown-frames", "ping-acks",
        "settings-acks"])
def test_control_frame_floods(frame: bytes, quota: int) -> None:
    count, _, code = frames_until_error(server(), _repeat(frame))
    assert (count, code) == (quota + 1, E.ENHANCE_YOUR_CALM)


def test_empty_data_flood() -> None:
    opening = Wire().headers(1, post()).bytes()
    frames = iter([opening] + [fr.data_frame(1, b"")] * 10_000)
    count, _, code = frames_until_error(server(), frames)
    assert (count, code) == (1 + DEFAULT_MAX_GLITCHES_PER_WINDOW + 1, E.ENHANCE_YOUR_CALM)


def test_too_many_settings_in_one_frame() -> None:
    frames = iter([fr.settings_frame([(0x99, 0)] * 33)])
    assert frames_until_error(server(), frames)[2] == E.ENHANCE_YOUR_CALM


def test_control_frames_at_a_well_behaved_pace_are_fine() -> None:
    # A PING, a SETTINGS, a PRIORITY and a WINDOW_UPDATE every 60 frames, between
    # requests, for 12 windows: the quotas restart with each window of frames.
    conn = server()
    wire = Wire()
    stream_id = 1
    answered = 0
    for _ in range(200):
        wire.parts = []
        wire.ping().settings().priority(stream_id + 2, 0).window_update(0, 1)
        for _ in range(56):
            wire.headers(stream_id, GET, True)
            stream_id += 2
        answered += serve(conn, wire.bytes())
    assert answered == 200 * 56


def test_window_updates_earned_by_a_download_are_fine() -> None:
    conn = server(Http2Limits(flood_window_frames=1000))
    conn.receive_data(Wire().headers(1, GET, True).bytes())
    conn.send_headers(1, [(b":status", b"200")])
    for _ in range(60):             # 60 x (16 KiB DATA out, 2 WINDOW_UPDATEs back) x 3
        for _ in range(3):
            conn.send_data(1, b"x" * 16384)
            conn.receive_data(fr.window_update_frame(1, 16384) + fr.window_update_frame(0, 16384))
    assert conn.data_to_send()


def test_pings_earned_by_a_download_are_fine() -> None:
    # A client probing bandwidth pings once per burst of DATA it receives.
    conn = server()
    conn.receive_data(Wire().headers(1, GET, True).bytes())
    conn.send_headers(1, [(b":status", b"200")])
    for _ in range(300):
        conn.send_data(1, b"x" * 100)
        conn.receive_data(fr.ping_frame(b"bdp-ping") + fr.window_update_frame(1, 100)
                          + fr.window_update_frame(0, 100))
    assert conn.data_to_send()


def _reset_uploads(count: int) -> tuple[Connection, Wire, list[int]]:
    conn = server(Http2Limits(initial_window_size=65535, max_concurrent_streams=1000))
    wire = Wire()
    streams = list(range(1, 2 * count, 2))
    for stream_id in streams:
        wire.headers(stream_id, post())
    conn.receive_data(wire.bytes())
    for stream_id in streams:
        conn.reset_stream(stream_id, E.CANCEL)      # e.g. 413: the body is not wanted
    conn.data_to_send()
    wire.parts = []
    return conn, wire, streams


def test_frames_in_flight_on_streams_we_reset_are_ignored() -> None:
    # 150 uploads reset at once; each had a full window of DATA and its trailers in flight.
    conn, wire, streams = _reset_uploads(150)
    for stream_id in streams:
        for _ in range(4):
            wire.data(stream_id, b"x" * 16383)
        wire.headers(stream_id, [(b"x-sum", b"1")], True)
    assert conn.receive_data(wire.bytes()) == []


def test_frames_past_the_window_of_a_reset_stream_are_counted() -> None:
    conn, wire, _ = _reset_uploads(1)
    for size in (16384, 16384, 16384, 16383):       # the 65,535 bytes the peer had: ignored
        wire.data(1, b"x" * size)
    frames = iter([wire.bytes()] + [fr.data_frame(1, b"x")] * 10_000)
    count, _, code = frames_until_error(conn, frames)
    assert (count, code) == (1 + DEFAULT_MAX_GLITCHES_PER_WINDOW + 1, E.ENHANCE_YOUR_CALM)
