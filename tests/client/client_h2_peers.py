"""A scripted HTTP/2 server for the client tests, on the ``h2`` library (an implementation
independent of ``wsgiserve.http2``, so a bug shared by our two roles cannot pass).

``h2_script(fn)`` turns ``fn(H2PeerConnection)`` into a ``client_peers.Peer`` script: the
peer accepts (TLS with ALPN ``h2`` when given a context, or plain for prior knowledge),
and the script reads requests and answers them frame by frame. Every read has the
peer's socket timeout; nothing sleeps.
"""
from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trustme
from client_peers import PeerConnection, Script


@dataclass
class H2Request:
    stream_id: int
    headers: list[tuple[bytes, bytes]]
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    is_ended: bool = False
    reset_code: int | None = None
    is_taken: bool = False

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)

    @property
    def method(self) -> bytes:
        return self.header(b":method") or b""

    @property
    def path(self) -> bytes:
        return self.header(b":path") or b""


class H2PeerConnection:
    """The server side of one HTTP/2 connection; ``settings`` are sent in its preface."""

    def __init__(self, connection: PeerConnection,
                 settings: dict[h2.settings.SettingCodes, int] | None = None,
                 log: list[H2Request] | None = None):
        self.peer_connection = connection
        self.sock = connection.sock
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(client=False,
                                                        initial_values=settings or {})
        self.conn.initiate_connection()
        self.requests: dict[int, H2Request] = {}
        self.log = log
        self.events: list[h2.events.Event] = []
        self.is_closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except OSError:
                self.is_closed = True

    def receive(self) -> list[h2.events.Event]:
        """Read once (blocking, with the socket's timeout); record and answer what came."""
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            self.is_closed = True
            return []
        events = self.conn.receive_data(data)
        for event in events:
            self._record(event)
        self.events.extend(events)
        self.flush()
        return events

    def _record(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            assert event.stream_id is not None and event.headers is not None
            request = H2Request(event.stream_id, list(event.headers))
            self.requests[event.stream_id] = request
            if self.log is not None:
                self.log.append(request)
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None and event.data is not None
            self.requests[event.stream_id].body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length or 0,
                                                event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            assert event.stream_id is not None and event.headers is not None
            self.requests[event.stream_id].trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            self.requests[event.stream_id].is_ended = True
        elif isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            if event.stream_id in self.requests:
                self.requests[event.stream_id].reset_code = event.error_code

    def wait_until(self, condition: Callable[[], bool]) -> bool:
        """Receive until ``condition()`` holds; False if the client closed first."""
        while not condition():
            if self.is_closed:
                return False
            self.receive()
        return True

    def next_request(self, *, complete: bool = True) -> H2Request | None:
        """The next request not yet taken (with its whole body when ``complete``)."""
        def ready() -> H2Request | None:
            return next((r for r in self.requests.values() if not r.is_taken and
                         (r.is_ended or not complete or r.reset_code is not None)), None)
        if not self.wait_until(lambda: ready() is not None):
            return None
        request = ready()
        assert request is not None
        request.is_taken = True
        return request

    def respond(self, stream_id: int, status: int = 200, body: bytes = b"",
                headers: Sequence[tuple[bytes, bytes]] = (),
                trailers: Sequence[tuple[bytes, bytes]] | None = None,
                end: bool = True) -> None:
        fields = [(b":status", str(status).encode())] + list(headers)
        self.conn.send_headers(stream_id, fields, end_stream=end and not body and not trailers)
        self.flush()
        if body:
            self.send_body(stream_id, body, end=end and not trailers)
        if trailers:
            self.conn.send_headers(stream_id, list(trailers), end_stream=True)
            self.flush()

    def send_body(self, stream_id: int, data: bytes, end: bool = True) -> int:
        """Send within the client's windows, reading its WINDOW_UPDATEs; return the bytes
        sent (fewer if the client reset the stream or closed)."""
        sent = 0
        view = memoryview(data)
        while sent < len(data):
            window = self.window(stream_id)
            if window is None:
                return sent
            if not window:
                if self.is_closed:
                    return sent
                self.receive()
                continue
            size = min(window, self.conn.max_outbound_frame_size, len(data) - sent)
            self.conn.send_data(stream_id, bytes(view[sent:sent + size]))
            sent += size
            self.flush()
        if end:
            self.conn.end_stream(stream_id)
            self.flush()
        return sent

    def window(self, stream_id: int) -> int | None:
        """What may be sent on the stream now; None once it is closed or reset."""
        try:
            return self.conn.local_flow_control_window(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            return None

    def reset(self, stream_id: int, code: int) -> None:
        self.conn.reset_stream(stream_id, code)
        self.flush()

    def goaway(self, last_stream_id: int, code: int = 0) -> None:
        self.conn.close_connection(code, last_stream_id=last_stream_id)
        self.flush()

    @property
    def goaways(self) -> list[int | None]:
        """The error codes of the GOAWAY frames the client sent."""
        return [event.error_code for event in self.events
                if isinstance(event, h2.events.ConnectionTerminated)]

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_for_close(self) -> None:
        """Answer frames (PING, SETTINGS) until the client closes or the socket times out."""
        try:
            while not self.is_closed:
                self.receive()
        except (TimeoutError, h2.exceptions.ProtocolError):
            pass


H2Script = Callable[[H2PeerConnection], None]


def h2_script(fn: H2Script, settings: dict[h2.settings.SettingCodes, int] | None = None,
              log: list[H2Request] | None = None,
              connections: list[H2PeerConnection] | None = None) -> Script:
    """A ``Peer`` script running ``fn`` over an HTTP/2 server connection."""
    def script(connection: PeerConnection) -> None:
        server = H2PeerConnection(connection, settings, log)
        if connections is not None:
            connections.append(server)
        fn(server)
    return script


def serve(handler: Callable[[H2PeerConnection, H2Request], None]) -> H2Script:
    """Answer each complete request with ``handler`` until the client closes."""
    def script(server: H2PeerConnection) -> None:
        while (request := server.next_request()) is not None:
            handler(server, request)
        server.wait_for_close()
    return script


def echo(server: H2PeerConnection, request: H2Request) -> None:
    """200 with ``METHOD PATH LENGTH`` of what the request carried."""
    text = b"%s %s %d" % (request.method, request.path, len(request.body))
    server.respond(request.stream_id, 200, text, [(b"content-length", b"%d" % len(text))])


def h2_server_context(ca: trustme.CA, protocols: Sequence[str] = ("h2", "http/1.1"),
                      ciphers: str | None = None,
                      maximum_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(list(protocols))
    if maximum_version is not None:
        context.maximum_version = maximum_version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


class Gate:
    """A count shared by the scripts of one peer: wait until it reaches a number."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def add(self, amount: int = 1) -> None:
        with self._cond:
            self.count += amount
            self._cond.notify_all()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout_s)
