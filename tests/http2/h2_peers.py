"""Two implementations of each HTTP/2 role, driven the same way in memory: ours
(``wsgiserve.http2.Connection``) and python-hyper's ``h2``, for differential tests.

Clients send requests (with bodies and trailers, within the flow-control windows) and
record what comes back; servers run one small application: the response body is
``x-size`` bytes if the request asks for them, else the request body reversed; ``x-reset``
resets the stream instead of answering, ``x-trailers`` adds trailers, ``x-goaway`` sends
a GOAWAY naming this stream as the last. ``exchange`` moves bytes until both are quiet.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

from wsgiserve.http2 import (
    Connection,
    DataReceived,
    ErrorCode,
    Event,
    GoAwayReceived,
    Http2Limits,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)

Fields = list[tuple[bytes, bytes]]


@dataclass
class Result:
    """What a client saw of one request."""

    status: int | None = None
    headers: Fields = field(default_factory=list)
    body: bytes = b""
    trailers: Fields = field(default_factory=list)
    reset_code: int | None = None
    is_ended: bool = False


@dataclass
class Upload:
    """What a peer still has to send on a stream: body, then trailers or END_STREAM."""

    body: bytes
    trailers: Fields | None = None


def _response_for(headers: Fields, body: bytes) -> tuple[Fields, bytes, Fields | None]:
    fields = dict(headers)
    if b"x-size" in fields:
        size = int(fields[b"x-size"])
        payload = bytes(i % 251 for i in range(size))
    else:
        payload = body[::-1]
    trailers = [(b"x-length", str(len(body)).encode())] if b"x-trailers" in fields else None
    return ([(b":status", b"200"), (b"content-length", str(len(payload)).encode()),
             (b"x-request-length", str(len(body)).encode())], payload, trailers)


class _Sender:
    """Sends uploads as the windows allow (shared by the four peers)."""

    def __init__(self) -> None:
        self.uploads: dict[int, Upload] = {}

    def window(self, stream_id: int) -> int:
        raise NotImplementedError

    def write(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        raise NotImplementedError

    def write_trailers(self, stream_id: int, trailers: Fields) -> None:
        raise NotImplementedError

    def pump(self) -> None:
        for stream_id, upload in list(self.uploads.items()):
            size = min(len(upload.body), self.window(stream_id))
            is_last = size == len(upload.body)
            if size or is_last:
                self.write(stream_id, upload.body[:size], is_last and upload.trailers is None)
                upload.body = upload.body[size:]
            if is_last:
                if upload.trailers is not None:
                    self.write_trailers(stream_id, upload.trailers)
                del self.uploads[stream_id]


class OurClient(_Sender):
    def __init__(self, limits: Http2Limits | None = None):
        super().__init__()
        self.conn = Connection(is_client=True, limits=limits)
        self.results: dict[int, Result] = {}
        self.goaway: tuple[int, int] | None = None

    def request(self, headers: Fields, body: bytes = b"", trailers: Fields | None = None) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        is_empty = not body and trailers is None
        self.conn.send_headers(stream_id, headers, end_stream=is_empty)
        self.results[stream_id] = Result()
        if not is_empty:
            self.uploads[stream_id] = Upload(body, trailers)
        self.pump()
        return stream_id

    def cancel(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, ErrorCode.CANCEL)
        self.uploads.pop(stream_id, None)
        self.results[stream_id].reset_code = ErrorCode.CANCEL

    def window(self, stream_id: int) -> int:
        return self.conn.local_flow_control_window(stream_id)

    def write(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.conn.send_data(stream_id, data, end_stream)

    def write_trailers(self, stream_id: int, trailers: Fields) -> None:
        self.conn.send_trailers(stream_id, trailers)

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()

    def receive(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            self._handle(event)
        self.pump()

    def _handle(self, event: Event) -> None:
        if isinstance(event, ResponseReceived):
            result = self.results[event.stream_id]
            result.status = event.status
            result.headers = event.headers[1:]
        elif isinstance(event, DataReceived):
            self.results[event.stream_id].body += event.data
            self.conn.acknowledge_received_data(len(event.data), event.stream_id)
        elif isinstance(event, TrailersReceived):
            self.results[event.stream_id].trailers = event.headers
        elif isinstance(event, StreamEnded):
            self.results[event.stream_id].is_ended = True
        elif isinstance(event, StreamReset):
            self.results[event.stream_id].reset_code = event.error_code
            self.uploads.pop(event.stream_id, None)
        elif isinstance(event, GoAwayReceived):
            self.goaway = (event.last_stream_id, event.error_code)


class TheirClient(_Sender):
    def __init__(self, initial_window_size: int | None = None):
        super().__init__()
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        if initial_window_size is not None:
            self.conn.update_settings(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window_size})
        self.results: dict[int, Result] = {}
        self.goaway: tuple[int, int] | None = None

    def request(self, headers: Fields, body: bytes = b"", trailers: Fields | None = None) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        is_empty = not body and trailers is None
        self.conn.send_headers(stream_id, headers, end_stream=is_empty)
        self.results[stream_id] = Result()
        if not is_empty:
            self.uploads[stream_id] = Upload(body, trailers)
        self.pump()
        return stream_id

    def cancel(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, ErrorCode.CANCEL)
        self.uploads.pop(stream_id, None)
        self.results[stream_id].reset_code = ErrorCode.CANCEL

    def window(self, stream_id: int) -> int:
        return min(self.conn.local_flow_control_window(stream_id),
                   self.conn.max_outbound_frame_size)

    def write(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.conn.send_data(stream_id, data, end_stream=end_stream)

    def write_trailers(self, stream_id: int, trailers: Fields) -> None:
        self.conn.send_headers(stream_id, trailers, end_stream=True)

    def data_to_send(self) -> bytes:
        return bytes(self.conn.data_to_send())

    def receive(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            self._handle(event)
        self.pump()

    def _handle(self, event: Any) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            result = self.results[event.stream_id]
            result.status = int(dict(event.headers)[b":status"])
            result.headers = [(bytes(n), bytes(v)) for n, v in event.headers][1:]
        elif isinstance(event, h2.events.DataReceived):
            self.results[event.stream_id].body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            self.results[event.stream_id].trailers = [(bytes(n), bytes(v))
                                                      for n, v in event.headers]
        elif isinstance(event, h2.events.StreamEnded):
            self.results[event.stream_id].is_ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.results[event.stream_id].reset_code = event.error_code
            self.uploads.pop(event.stream_id, None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            last = int(event.last_stream_id or 0)
            self.goaway = (last, int(event.error_code or 0))
            # h2 reports no reset for the streams a GOAWAY leaves out: record them as ours does.
            for stream_id, result in self.results.items():
                if stream_id > last and not result.is_ended:
                    result.reset_code = ErrorCode.REFUSED_STREAM


class _Server(_Sender):
    """The application, on top of a connection's request events."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: dict[int, tuple[Fields, bytearray]] = {}
        self.resets: dict[int, int] = {}

    def respond(self, stream_id: int, headers: Fields, trailers: Fields | None) -> None:
        raise NotImplementedError

    def reset(self, stream_id: int) -> None:
        raise NotImplementedError

    def goaway(self, last_stream_id: int) -> None:
        raise NotImplementedError

    def on_request(self, stream_id: int, headers: Fields) -> None:
        self.requests[stream_id] = (headers, bytearray())
        if b"x-reset" in dict(headers):
            self.reset(stream_id)

    def on_end(self, stream_id: int) -> None:
        if stream_id not in self.requests or stream_id in self.resets:
            return
        headers, body = self.requests[stream_id]
        response, payload, trailers = _response_for(headers, bytes(body))
        self.respond(stream_id, response, trailers)
        self.uploads[stream_id] = Upload(payload, trailers)
        self.pump()
        if b"x-goaway" in dict(headers):     # after the response: h2 sends nothing after it
            self.goaway(stream_id)


class OurServer(_Server):
    def __init__(self, limits: Http2Limits | None = None):
        super().__init__()
        self.conn = Connection(is_client=False, limits=limits)

    def respond(self, stream_id: int, headers: Fields, trailers: Fields | None) -> None:
        self.conn.send_headers(stream_id, headers)

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
        self.resets[stream_id] = ErrorCode.REFUSED_STREAM

    def goaway(self, last_stream_id: int) -> None:
        self.conn.close(last_stream_id=last_stream_id)

    def window(self, stream_id: int) -> int:
        return self.conn.local_flow_control_window(stream_id)

    def write(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.conn.send_data(stream_id, data, end_stream)

    def write_trailers(self, stream_id: int, trailers: Fields) -> None:
        self.conn.send_trailers(stream_id, trailers)

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()

    def receive(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, RequestReceived):
                self.on_request(event.stream_id, event.headers)
            elif isinstance(event, DataReceived):
                self.requests[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(len(event.data), event.stream_id)
            elif isinstance(event, TrailersReceived):
                self.requests[event.stream_id][0].extend(event.headers)
            elif isinstance(event, StreamEnded):
                self.on_end(event.stream_id)
            elif isinstance(event, StreamReset):
                self.resets[event.stream_id] = event.error_code
                self.uploads.pop(event.stream_id, None)
        self.pump()


class TheirServer(_Server):
    def __init__(self, initial_window_size: int | None = None):
        super().__init__()
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None))
        self.conn.initiate_connection()
        if initial_window_size is not None:
            self.conn.update_settings(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window_size})

    def respond(self, stream_id: int, headers: Fields, trailers: Fields | None) -> None:
        self.conn.send_headers(stream_id, headers)

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
        self.resets[stream_id] = ErrorCode.REFUSED_STREAM

    def goaway(self, last_stream_id: int) -> None:
        self.conn.close_connection(last_stream_id=last_stream_id)

    def window(self, stream_id: int) -> int:
        return min(self.conn.local_flow_control_window(stream_id),
                   self.conn.max_outbound_frame_size)

    def write(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.conn.send_data(stream_id, data, end_stream=end_stream)

    def write_trailers(self, stream_id: int, trailers: Fields) -> None:
        self.conn.send_headers(stream_id, trailers, end_stream=True)

    def data_to_send(self) -> bytes:
        return bytes(self.conn.data_to_send())

    def receive(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.on_request(event.stream_id, [(bytes(n), bytes(v)) for n, v in event.headers])
            elif isinstance(event, h2.events.DataReceived):
                self.requests[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                    event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                self.requests[event.stream_id][0].extend(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                self.on_end(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.resets[event.stream_id] = event.error_code
                self.uploads.pop(event.stream_id, None)
        self.pump()


Client = OurClient | TheirClient
Server = OurServer | TheirServer


def exchange(client: Client, server: Server, rounds: int = 5000) -> None:
    """Move bytes both ways until neither side has anything to send."""
    for _ in range(rounds):
        client.pump()
        server.pump()
        to_server = client.data_to_send()
        if to_server:
            server.receive(to_server)
        to_client = server.data_to_send()
        if to_client:
            client.receive(to_client)
        if not to_server and not to_client:
            return
    raise AssertionError("the peers never went quiet")
