"""Frame reading and writing (RFC 9113 §4, §6), checked against hyperframe's serializer."""
from __future__ import annotations

import hyperframe.frame as hf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgiserve.http2 import ErrorCode, Http2ConnectionError, Http2StreamError
from wsgiserve.http2 import frames as fr


def _hyper(frame: hf.Frame, *flags: str) -> bytes:
    for flag in flags:
        frame.flags.add(flag)
    return bytes(frame.serialize())


def _data(pad: int) -> hf.DataFrame:
    frame = hf.DataFrame(1, data=b"hello")
    frame.pad_length = pad
    return frame


def _headers_with_priority() -> hf.HeadersFrame:
    frame = hf.HeadersFrame(3, data=b"\x82")
    frame.depends_on, frame.stream_weight, frame.exclusive = 1, 15, True
    return frame


# (our writer's bytes, hyperframe's bytes for the same frame)
WRITERS = [
    pytest.param(fr.data_frame(1, b"hello"), _hyper(hf.DataFrame(1, data=b"hello")), id="data"),
    pytest.param(fr.data_frame(1, b"hello", end_stream=True),
                 _hyper(hf.DataFrame(1, data=b"hello"), "END_STREAM"), id="data-end"),
    pytest.param(fr.data_frame(1, b"hello", pad_length=3),
                 _hyper(_data(3), "PADDED"), id="data-padded"),
    pytest.param(fr.headers_frames(3, b"\x82", False, 16384),
                 _hyper(hf.HeadersFrame(3, data=b"\x82"), "END_HEADERS"), id="headers"),
    pytest.param(fr.headers_frames(3, b"\x82", True, 16384, (True, 1, 16)),
                 _hyper(_headers_with_priority(), "END_STREAM", "END_HEADERS", "PRIORITY"),
                 id="headers-priority"),
    pytest.param(fr.priority_frame(5, 3, 256), bytes(hf.PriorityFrame(
        5, depends_on=3, stream_weight=255).serialize()), id="priority"),
    pytest.param(fr.rst_stream_frame(7, 8), bytes(hf.RstStreamFrame(7, error_code=8).serialize()),
                 id="rst-stream"),
    pytest.param(fr.settings_frame({1: 0, 4: 1 << 20}),
                 bytes(hf.SettingsFrame(0, settings={1: 0, 4: 1 << 20}).serialize()),
                 id="settings"),
    pytest.param(fr.settings_frame({}, ack=True), _hyper(hf.SettingsFrame(0), "ACK"),
                 id="settings-ack"),
    pytest.param(fr.push_promise_frame(1, 2, b"\x82"), _hyper(hf.PushPromiseFrame(
        1, promised_stream_id=2, data=b"\x82"), "END_HEADERS"), id="push-promise"),
    pytest.param(fr.ping_frame(b"12345678"), bytes(hf.PingFrame(0, opaque_data=b"12345678")
                                                  .serialize()), id="ping"),
    pytest.param(fr.ping_frame(b"12345678", ack=True),
                 _hyper(hf.PingFrame(0, opaque_data=b"12345678"), "ACK"), id="ping-ack"),
    pytest.param(fr.goaway_frame(7, 11, b"calm"), bytes(hf.GoAwayFrame(
        0, last_stream_id=7, error_code=11, additional_data=b"calm").serialize()), id="goaway"),
    pytest.param(fr.window_update_frame(0, 2**31 - 1), bytes(hf.WindowUpdateFrame(
        0, window_increment=2**31 - 1).serialize()), id="window-update"),
    pytest.param(fr.continuation_frame(3, b"\x84", True),
                 _hyper(hf.ContinuationFrame(3, data=b"\x84"), "END_HEADERS"),
                 id="continuation"),
]


@pytest.mark.parametrize("ours, theirs", WRITERS)
def test_writers_match_hyperframe(ours: bytes, theirs: bytes) -> None:
    assert ours == theirs
    frames, end = fr.read_frames(ours, 0, 16384)
    assert end == len(ours) and len(frames) == 1
    frame_type, flags, stream_id, payload = frames[0]
    assert (frame_type, flags, stream_id) == (theirs[3], theirs[4],
                                              int.from_bytes(theirs[5:9], "big"))
    assert payload == theirs[9:]


def test_a_large_header_block_is_split_into_continuations() -> None:
    block = bytes(range(256)) * 100               # 25,600 bytes
    raw = fr.headers_frames(1, block, True, 16384)
    frames, end = fr.read_frames(raw, 0, 16384)
    assert end == len(raw)
    assert [(t, f) for t, f, _, _ in frames] == [
        (fr.FrameType.HEADERS, fr.END_STREAM), (fr.FrameType.CONTINUATION, fr.END_HEADERS)]
    assert b"".join(payload for *_, payload in frames) == block
    assert len(frames[0][3]) == 16384


@given(st.lists(st.binary(max_size=40), max_size=8), st.data())
def test_read_frames_keeps_partial_frames_whole(payloads: list[bytes], data: st.DataObject) -> None:
    raw = b"".join(fr.data_frame(1, payload) for payload in payloads)
    cut = data.draw(st.integers(0, len(raw)))
    first, pos = fr.read_frames(raw[:cut], 0, 16384)
    rest, end = fr.read_frames(raw[:cut][pos:] + raw[cut:], 0, 16384)
    assert [p for *_, p in first + rest] == payloads
    assert pos <= cut and end == len(raw) - pos


def test_read_frames_ignores_the_reserved_bit() -> None:
    raw = bytearray(fr.data_frame(5, b"x"))
    raw[5] |= 0x80
    assert fr.read_frames(bytes(raw), 0, 16384)[0][0][2] == 5


def test_a_frame_over_the_maximum_size_is_a_frame_size_error() -> None:
    raw = fr.frame_header(16385, fr.FrameType.DATA, 0, 1)       # the header alone suffices
    with pytest.raises(Http2ConnectionError) as info:
        fr.read_frames(raw, 0, 16384)
    assert info.value.code == ErrorCode.FRAME_SIZE_ERROR
    assert fr.read_frames(raw, 0, 16385) == ([], 0)


@pytest.mark.parametrize("payload, expected", [
    (b"\x00hello", b"hello"),
    (b"\x02hello\x00\x00", b"hello"),
    (b"\x00", b""),
    (b"\x03abc", b""),          # padding one byte shorter than the payload: valid
])
def test_strip_padding(payload: bytes, expected: bytes) -> None:
    assert fr.strip_padding(fr.PADDED, payload) == expected
    assert fr.strip_padding(0, payload) == payload


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x05abc", b"\x04abc"])
def test_padding_as_long_as_the_payload_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(Http2ConnectionError) as info:
        fr.strip_padding(fr.PADDED, payload)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


def test_priority_fields() -> None:
    assert fr.parse_priority(b"\x80\x00\x00\x01\x0f", 3) == (True, 1, 16)
    with pytest.raises(Http2StreamError):
        fr.parse_priority(b"\x00\x00\x00\x03\x0f", 3)        # depends on itself
    with pytest.raises(Http2ConnectionError):
        fr.parse_priority(b"\x00\x00", 3)


@pytest.mark.parametrize("call, code", [
    (lambda: fr.parse_settings(b"\x00\x01\x00\x00\x00"), ErrorCode.FRAME_SIZE_ERROR),
    (lambda: fr.parse_goaway(b"\x00" * 7), ErrorCode.FRAME_SIZE_ERROR),
    (lambda: fr.parse_window_update(b"\x00" * 5), ErrorCode.FRAME_SIZE_ERROR),
], ids=["settings-not-multiple-of-6", "goaway-short", "window-update-long"])
def test_payload_size_errors(call: object, code: ErrorCode) -> None:
    assert callable(call)
    with pytest.raises(Http2ConnectionError) as info:
        call()
    assert info.value.code == code


def test_payload_parsers() -> None:
    assert fr.parse_settings(bytes(hf.SettingsFrame(0, settings={3: 100, 99: 7}).serialize())[9:]) \
        == [(3, 100), (99, 7)]
    assert fr.parse_goaway(b"\x80\x00\x00\x07\x00\x00\x00\x0bdebug") == (7, 11, b"debug")
    assert fr.parse_window_update(b"\xff\xff\xff\xff") == 2**31 - 1
