"""The sending API and the bookkeeping a driver relies on: flow control and credit,
Content-Length on what we send, 1xx and trailers, stream ids, settings, PING, GOAWAY."""
from __future__ import annotations

import pytest
from h2_wire import GET, Wire, client, control, post, sent_frames, server

from wsgiserve.http2 import (
    MAX_STREAM_ID,
    Connection,
    ConnectionClosedError,
    ConnectionState,
    DataReceived,
    ErrorCode,
    Event,
    FlowControlBlocked,
    Http2Limits,
    Http2UsageError,
    InformationalResponseReceived,
    PingAcked,
    RequestReceived,
    Setting,
    SettingsAcknowledged,
    StreamClosedError,
    StreamReset,
    TooManyStreamsError,
    WindowUpdated,
)
from wsgiserve.http2 import frames as fr

E = ErrorCode
OK = [(b":status", b"200")]


def pair(client_limits: Http2Limits | None = None,
         server_limits: Http2Limits | None = None) -> tuple[Connection, Connection]:
    ours_client = Connection(is_client=True, limits=client_limits)
    ours_server = Connection(is_client=False, limits=server_limits)
    move(ours_client, ours_server)
    move(ours_server, ours_client)
    move(ours_client, ours_server)
    return ours_client, ours_server


def move(sender: Connection, receiver: Connection) -> list[Event]:
    return receiver.receive_data(sender.data_to_send())


def window_updates(data: bytes) -> list[tuple[int, int]]:
    return [(stream_id, fr.parse_window_update(payload))
            for frame_type, _, stream_id, payload in sent_frames(data)
            if frame_type == fr.FrameType.WINDOW_UPDATE]


def test_send_data_within_the_window_only() -> None:
    ours_client, ours_server = pair(server_limits=Http2Limits(initial_window_size=1000))
    ours_client.send_headers(1, post())
    assert ours_client.local_flow_control_window(1) == 1000
    with pytest.raises(FlowControlBlocked) as info:
        ours_client.send_data(1, b"x" * 1001)
    assert info.value.window == 1000
    ours_client.send_data(1, b"x" * 1000)
    assert ours_client.local_flow_control_window(1) == 0
    move(ours_client, ours_server)
    ours_server.acknowledge_received_data(1000, 1)
    assert WindowUpdated(1, 1000) in move(ours_server, ours_client)
    assert ours_client.local_flow_control_window(1) == 1000


def test_peer_initial_window_change_applies_to_open_streams() -> None:
    ours_client, ours_server = pair()
    ours_client.send_headers(1, post())
    ours_client.send_data(1, b"x" * 60_000)
    move(ours_client, ours_server)
    ours_server.update_settings({Setting.INITIAL_WINDOW_SIZE: 50_000})
    move(ours_server, ours_client)
    # 256 KiB - 60,000 sent, then the window shrank by 262,144 - 50,000: below zero.
    assert ours_client.local_flow_control_window(1) == 0
    with pytest.raises(FlowControlBlocked):
        ours_client.send_data(1, b"x")


def test_credit_is_returned_in_batches_of_half_a_window() -> None:
    limits = Http2Limits(initial_window_size=65535, connection_window_size=65535)
    conn = server(limits)
    conn.receive_data(Wire().headers(1, post()).data(1, b"x" * 10_000).data(1, b"x" * 10_000)
                      .bytes())
    conn.acknowledge_received_data(20_000, 1)
    assert conn.data_to_send() == b""                      # under half of 65,535
    conn.receive_data(Wire().data(1, b"x" * 10_000).data(1, b"x" * 10_000).bytes())
    conn.acknowledge_received_data(50_000, 1)              # clamped to the 20,000 unread
    assert window_updates(conn.data_to_send()) == [(1, 40_000), (0, 40_000)]


def test_padding_is_credited_by_the_connection() -> None:
    limits = Http2Limits(initial_window_size=65535, connection_window_size=65535)
    conn = server(limits)
    wire = Wire().headers(1, post())
    for _ in range(2):
        wire.data(1, b"x" * 1000, pad=255)
    events = conn.receive_data(wire.bytes())
    assert [e.flow_controlled_length for e in events if isinstance(e, DataReceived)] == [1256] * 2
    conn.acknowledge_received_data(2000, 1)
    assert conn.data_to_send() == b""                      # 2 x 256 + 2,000 < 32,767
    conn.receive_data(Wire().data(1, b"", pad=255).data(1, b"y" * 16_000, pad=200)
                      .data(1, b"y" * 14_000).bytes())
    conn.acknowledge_received_data(30_000, 1)
    assert window_updates(conn.data_to_send()) == [(1, 2512 + 256 + 16_201 + 14_000),
                                                   (0, 2512 + 256 + 16_201 + 14_000)]


def test_a_closed_stream_gives_its_unread_bytes_back_to_the_connection() -> None:
    limits = Http2Limits(initial_window_size=65535, connection_window_size=65535)
    conn = server(limits)
    conn.receive_data(Wire().headers(1, post()).data(1, b"x" * 16_000).data(1, b"x" * 16_000)
                      .data(1, b"x" * 8_000).bytes())
    conn.reset_stream(1, E.CANCEL)                         # the app never read the body
    assert control(data := conn.data_to_send()) == [("RST_STREAM", 1, E.CANCEL)]
    assert window_updates(data) == [(0, 40_000)]


def test_our_initial_window_decrease_applies_when_acknowledged() -> None:
    conn = server(Http2Limits(initial_window_size=65535))
    conn.update_settings({Setting.INITIAL_WINDOW_SIZE: 1000})
    assert conn.has_unacknowledged_settings
    conn.data_to_send()
    raw = Wire().headers(1, post()).data(1, b"x" * 5000).bytes()
    assert isinstance(conn.receive_data(raw)[-1], DataReceived)        # not yet acked
    events = conn.receive_data(Wire().settings(ack=True).headers(3, post())
                               .data(3, b"x" * 1001).bytes())
    assert isinstance(events[0], SettingsAcknowledged) and not conn.has_unacknowledged_settings
    assert events[-1] == StreamReset(3, E.FLOW_CONTROL_ERROR, False)


def test_content_length_we_send_is_enforced() -> None:
    ours_client, ours_server = pair()
    ours_client.send_headers(1, post(3))
    with pytest.raises(Http2UsageError):
        ours_client.send_data(1, b"abcd")                  # past it
    with pytest.raises(Http2UsageError):
        ours_client.send_data(1, b"ab", end_stream=True)   # short of it
    with pytest.raises(Http2UsageError):
        ours_client.send_headers(3, post(3), end_stream=True)
    ours_client.send_data(1, b"ab")
    ours_client.send_data(1, b"c", end_stream=True)
    assert [type(e).__name__ for e in move(ours_client, ours_server)] == [
        "RequestReceived", "DataReceived", "DataReceived", "StreamEnded"]


def test_responses_without_content() -> None:
    conn = server()
    conn.receive_data(Wire().headers(1, [(b":method", b"HEAD")] + GET[1:], True)
                      .headers(3, GET, True).bytes())
    conn.send_headers(1, [(b":status", b"200"), (b"content-length", b"1234")], end_stream=True)
    conn.send_headers(3, [(b":status", b"304"), (b"content-length", b"1234")])
    with pytest.raises(Http2UsageError, match="no content"):
        conn.send_data(3, b"x")
    conn.end_stream(3)
    assert conn.open_inbound_streams == 0


def test_writing_to_a_stream_the_peer_reset() -> None:
    conn = server()
    conn.receive_data(Wire().headers(1, GET, True).rst(1, E.CANCEL).bytes())
    with pytest.raises(StreamClosedError) as info:
        conn.send_headers(1, OK)
    assert info.value.reset_code == E.CANCEL
    with pytest.raises(StreamClosedError):
        conn.send_data(1, b"x")
    conn.reset_stream(1)                                  # closed already: nothing to do
    assert conn.data_to_send() == b""


def test_informational_responses_and_trailers() -> None:
    ours_client, ours_server = pair()
    ours_client.send_headers(1, GET, end_stream=True)
    move(ours_client, ours_server)
    ours_server.send_informational(1, [(b":status", b"103"), (b"link", b"</s.css>")])
    with pytest.raises(Http2UsageError):
        ours_server.send_informational(1, OK)
    with pytest.raises(Http2UsageError):
        ours_server.send_headers(1, [(b":status", b"100")])
    ours_server.send_headers(1, OK)
    with pytest.raises(Http2UsageError):
        ours_server.send_informational(1, [(b":status", b"103")])
    with pytest.raises(Http2UsageError):
        ours_server.send_headers(1, OK)
    with pytest.raises(Http2UsageError):
        ours_server.send_trailers(1, [(b":status", b"200")])
    ours_server.send_data(1, b"body")
    ours_server.send_trailers(1, [(b"x-sum", b"4")])
    events = move(ours_server, ours_client)
    assert isinstance(events[0], InformationalResponseReceived) and events[0].status == 103
    assert [type(e).__name__ for e in events[1:]] == [
        "ResponseReceived", "DataReceived", "TrailersReceived", "StreamEnded"]
    with pytest.raises(StreamClosedError):
        ours_server.send_data(1, b"more")


@pytest.mark.parametrize("fields", [
    GET + [(b"X-Upper", b"1")],
    GET + [(b"connection", b"close")],
    GET + [(b"x-a", b"line\r\nbreak")],
    GET[1:],
    [(b":status", b"200")],
])
def test_invalid_requests_are_not_sent(fields: list[tuple[bytes, bytes]]) -> None:
    conn = client()
    with pytest.raises(Http2UsageError):
        conn.send_headers(1, fields, end_stream=True)
    assert conn.data_to_send() == b"" and conn.get_next_available_stream_id() == 1


def test_stream_ids_and_the_peer_concurrency_limit() -> None:
    ours_client, ours_server = pair(server_limits=Http2Limits(max_concurrent_streams=2))
    assert ours_client.max_outbound_streams == 2
    with pytest.raises(Http2UsageError):
        ours_client.send_headers(3, GET)                   # 1 is next
    ours_client.send_headers(1, GET)
    ours_client.send_headers(3, GET)
    assert ours_client.get_next_available_stream_id() == 5
    with pytest.raises(TooManyStreamsError):
        ours_client.send_headers(5, GET)
    ours_client.reset_stream(1)
    ours_client.send_headers(5, GET, end_stream=True)
    assert ours_client.open_outbound_streams == 2
    with pytest.raises(StreamClosedError) as info:
        ours_client.send_headers(1, GET)                   # a closed stream of ours
    assert info.value.reset_code == E.CANCEL
    with pytest.raises(Http2UsageError):
        ours_server.get_next_available_stream_id()


def test_graceful_close_in_two_steps() -> None:
    ours_client, ours_server = pair()
    ours_client.send_headers(1, GET, end_stream=True)
    move(ours_client, ours_server)
    ours_server.close(last_stream_id=MAX_STREAM_ID)       # "stop opening streams soon"
    ours_server.ping(b"shutdown")
    ours_client.receive_data(ours_server.data_to_send())
    with pytest.raises(ConnectionClosedError):
        ours_client.send_headers(3, GET, end_stream=True)
    # A request sent before the client saw the first GOAWAY is still served...
    events = ours_server.receive_data(
        fr.headers_frames(3, b"\x82\x87\x84\x01\x0bexample.com", True, 16384)
        + ours_client.data_to_send())
    assert [type(e).__name__ for e in events] == ["RequestReceived", "StreamEnded", "PingAcked"]
    ours_server.close()                                   # ...and named in the final GOAWAY
    with pytest.raises(Http2UsageError):
        ours_server.close(last_stream_id=5)               # the last id cannot go up
    assert control(ours_server.data_to_send()) == [("GOAWAY", 3, E.NO_ERROR)]
    assert ours_server.goaway_sent == 3 and ours_client.goaway_received == MAX_STREAM_ID
    events = ours_server.receive_data(
        fr.headers_frames(5, b"\x82\x87\x84\x01\x0bexample.com", True, 16384))
    assert events == [] and control(ours_server.data_to_send()) == [
        ("RST_STREAM", 5, E.REFUSED_STREAM)]
    for stream_id in (1, 3):                              # the streams it covers go on
        ours_server.send_headers(stream_id, OK, end_stream=True)
    assert ours_server.open_inbound_streams == 0 and ours_server.state is ConnectionState.OPEN


def test_close_with_an_error_closes_the_connection() -> None:
    conn = server()
    conn.close(E.ENHANCE_YOUR_CALM, debug_data=b"bye")
    assert conn.state is ConnectionState.CLOSED
    assert control(conn.data_to_send()) == [("GOAWAY", 0, E.ENHANCE_YOUR_CALM)]
    with pytest.raises(ConnectionClosedError):
        conn.ping()
    assert conn.receive_data(Wire().headers(1, GET, True).bytes()) == []


def test_ping_and_settings_round_trips() -> None:
    ours_client, ours_server = pair()
    ours_client.ping(b"abcdefgh")
    ours_client.update_settings({Setting.MAX_CONCURRENT_STREAMS: 5})
    move(ours_client, ours_server)
    events = move(ours_server, ours_client)
    assert PingAcked(b"abcdefgh") in events
    assert SettingsAcknowledged({Setting.MAX_CONCURRENT_STREAMS: 5}) in events
    with pytest.raises(Http2UsageError):
        ours_client.update_settings({Setting.MAX_FRAME_SIZE: 10})
    with pytest.raises(ValueError):
        ours_client.ping(b"short")


def test_the_peer_frame_size_and_table_size_are_followed() -> None:
    import hpack
    conn = server()
    conn.receive_data(Wire().settings({Setting.MAX_FRAME_SIZE: 20_000,
                                       Setting.HEADER_TABLE_SIZE: 0}).headers(1, GET, True)
                      .bytes())
    assert conn.max_outbound_frame_size == 20_000
    conn.data_to_send()
    conn.send_headers(1, OK + [(b"x-a", b"1")])
    conn.send_data(1, b"x" * 20_001, end_stream=True)
    frames = sent_frames(conn.data_to_send())
    decoder = hpack.Decoder()
    decoder.header_table_size = 0
    assert frames[0][3][:1] == b"\x20"                    # a table size update to 0 first
    assert decoder.decode(frames[0][3], raw=True) == OK + [(b"x-a", b"1")]
    assert [len(payload) for t, _, _, payload in frames[1:]] == [20_000, 1]


def test_reset_of_an_idle_stream_is_refused() -> None:
    with pytest.raises(Http2UsageError):
        client().reset_stream(1)


def test_request_events_carry_the_parsed_pseudo_headers() -> None:
    conn = server()
    events = conn.receive_data(Wire().headers(1, post(10)).bytes())
    assert events == [RequestReceived(1, post(10), b"POST", b"https", b"example.com",
                                      b"/upload", None, 10, False)]


def test_receive_data_takes_any_buffer_and_reports_bytes() -> None:
    raw = Wire().headers(1, post()).data(1, b"body", True).bytes()
    for data in (bytearray(raw), memoryview(raw)):
        events = server().receive_data(data)
        assert [type(e.data) for e in events if isinstance(e, DataReceived)] == [bytes]
