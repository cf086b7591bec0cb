"""The WebSocket client (``wsgiserve.client.websocket``) against scripted servers.

wsproto's echo server for what a library sends (text, binary, deflate, subprotocols,
Pings, the close handshake), raw scripts for the bytes no library sends (a frame in the
101's packet, fragments around a Ping, violations, refusals), TLS with trustme's
certificates, an HTTP CONNECT proxy, threads, and the websockets library's own server.
"""
from __future__ import annotations

import base64
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme
from client_peers import PeerConnection, PeerFactory, RecordedRequest, Script, respond
from ws_peers import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    close_after_echo,
    close_payload,
    raw_script,
    read_client_frame,
    server_frame,
    switching,
    tunnel,
    wsproto_echo,
)
from wsproto.events import Request

from wsgiserve.client import CertificateError, InvalidRequest, InvalidURL, ReadTimeout, TLSSettings
from wsgiserve.client.websocket import (
    HandshakeRefused,
    InvalidHandshake,
    WebSocket,
    WebSocketClosed,
    WebSocketClosedOK,
    WebSocketConnectionLost,
    WebSocketProtocolError,
    connect,
)

IO_TIMEOUT_S = 5.0


def _connect(url: str, **options: object) -> WebSocket:
    """connect() with short limits (a hung test fails fast) and no proxy from the
    environment."""
    limits: dict[str, object] = {"timeout_s": IO_TIMEOUT_S, "write_timeout_s": IO_TIMEOUT_S,
                                 "close_timeout_s": IO_TIMEOUT_S, "trust_env": False}
    limits.update(options)
    return connect(url, **limits)  # type: ignore[arg-type]  # keyword options as given


def _ws_url(port: int, path: str = "/", scheme: str = "ws", host: str = "127.0.0.1") -> str:
    return f"{scheme}://{host}:{port}{path}"


# -- echo through wsproto ----------------------------------------------------------------------
@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "no-deflate"])
def test_text_and_binary_echo(peer: PeerFactory, deflate: bool) -> None:
    seen: list[Request] = []
    server = peer(wsproto_echo(deflate=deflate, seen=seen))
    with _connect(_ws_url(server.port), deflate=deflate) as ws:
        assert ws.response is not None and ws.response.status == 101
        assert (ws.deflate is not None) is deflate
        ws.send("héllo wörld")
        assert ws.recv(IO_TIMEOUT_S) == "héllo wörld"
        big = bytes(range(256)) * 1000
        ws.send(big)
        assert ws.recv(IO_TIMEOUT_S) == big
        ws.send(bytearray(b"array"))
        assert ws.recv(IO_TIMEOUT_S) == b"array"
        ws.send("")
        assert ws.recv(IO_TIMEOUT_S) == ""
    assert ws.is_closed and (ws.close_code, ws.close_reason) == (1000, "")
    offered = [str(extension) for extension in seen[0].extensions]
    assert any("permessage-deflate" in text for text in offered) is deflate


def test_client_close_with_code_and_reason(peer: PeerFactory) -> None:
    server = peer(wsproto_echo())
    ws = _connect(_ws_url(server.port))
    ws.close(4000, "bye now")
    assert (ws.close_code, ws.close_reason) == (4000, "bye now")
    ws.close()   # idempotent
    with pytest.raises(WebSocketClosed) as caught:
        ws.send("late")
    assert caught.value.code == 4000
    with pytest.raises(WebSocketClosed):
        ws.recv()


def test_pings_and_pongs(peer: PeerFactory) -> None:
    notes: list[str] = []
    server = peer(wsproto_echo())
    with _connect(_ws_url(server.port), trace=notes.append) as ws:
        ws.ping(b"are you there")
        ws.send("after the ping")
        assert ws.recv(IO_TIMEOUT_S) == "after the ping"
    assert "received Pong b'are you there'" in notes
    with _connect(_ws_url(server.port)) as ws, pytest.raises(InvalidRequest):
        ws.ping(b"x" * 126)


# -- raw scripts: the bytes on the wire --------------------------------------------------------
def test_request_fields(peer: PeerFactory) -> None:
    def play(connection: PeerConnection, request: RecordedRequest) -> None:
        connection.send(switching(request))
        close_after_echo(connection)
    server = peer(raw_script(play))
    url = f"ws://user:p%40ss@127.0.0.1:{server.port}/chat?room=1"
    with _connect(url, headers=[("Origin", "http://example.test")], subprotocols=["a", "b"]):
        pass
    request = server.requests[0]
    assert (request.method, request.target, request.version) == ("GET", "/chat?room=1",
                                                                 "HTTP/1.1")
    assert request.headers[0] == ("Host", f"127.0.0.1:{server.port}")
    assert request.header("upgrade") == "websocket" and request.header("connection") == "Upgrade"
    assert request.header("sec-websocket-version") == "13"
    assert len(base64.b64decode(request.header("sec-websocket-key") or "")) == 16
    assert request.header("sec-websocket-protocol") == "a, b"
    assert request.header("origin") == "http://example.test"
    assert request.header("authorization") == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert (request.header("user-agent") or "").startswith("wsgiserve/")


def test_frames_in_the_same_packet_as_the_101(peer: PeerFactory) -> None:
    def play(connection: PeerConnection, request: RecordedRequest) -> None:
        connection.send(switching(request) + server_frame(TEXT, b"early")
                        + server_frame(BINARY, b"\x00bird"))
        close_after_echo(connection)
    server = peer(raw_script(play))
    with _connect(_ws_url(server.port)) as ws:
        assert ws.recv(IO_TIMEOUT_S) == "early"
        assert ws.recv(IO_TIMEOUT_S) == b"\x00bird"
    assert ws.close_code == 1000


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "byte-by-byte"])
def test_fragmented_messages_around_a_ping(peer: PeerFactory, bytewise: bool) -> None:
    pongs: list[tuple[int, bool, bytes] | None] = []

    def play(connection: PeerConnection, request: RecordedRequest) -> None:
        frames = (switching(request) + server_frame(TEXT, b"frag", fin=False)
                  + server_frame(PING, b"in between") + server_frame(CONT, "mé".encode(),
                                                                     fin=False)
                  + server_frame(CONT, b"nted") + server_frame(BINARY, b"\x01", fin=False)
                  + server_frame(CONT, b"\x02"))
        (connection.send_bytewise if bytewise else connection.send)(frames)
        pongs.append(read_client_frame(connection))
        close_after_echo(connection)
    server = peer(raw_script(play))
    with _connect(_ws_url(server.port)) as ws:
        assert ws.recv(IO_TIMEOUT_S) == "fragménted"
        assert ws.recv(IO_TIMEOUT_S) == b"\x01\x02"
    server.stop()
    assert pongs == [(PONG, True, b"in between")]


@pytest.mark.parametrize("frames, code, error", [
    pytest.param(server_frame(TEXT, b"x" * 2000), 1009, "frame of 2000 bytes", id="oversize"),
    pytest.param(server_frame(TEXT, b"x" * 600, fin=False) + server_frame(CONT, b"x" * 600),
                 1009, "a message over 1000 bytes", id="oversize-in-fragments"),
    pytest.param(server_frame(TEXT, b"\xff\xfe"), 1007, "UTF-8", id="invalid-utf8"),
    pytest.param(server_frame(TEXT, b"masked", mask=b"abcd"), 1002, "masked", id="masked"),
    pytest.param(server_frame(CONT, b"orphan"), 1002, "continuation", id="orphan-continuation"),
    pytest.param(server_frame(TEXT, b"x", rsv=0x40), 1002, "RSV", id="rsv1-without-deflate"),
])
def test_violations_fail_the_connection(peer: PeerFactory, frames: bytes, code: int,
                                        error: str) -> None:
    received: list[tuple[int, bool, bytes] | None] = []

    def play(connection: PeerConnection, request: RecordedRequest) -> None:
        connection.send(switching(request) + frames)
        received.append(read_client_frame(connection))
        connection.send(server_frame(CLOSE, close_payload(code)))
    server = peer(raw_script(play))
    with _connect(_ws_url(server.port), deflate=False, max_message_bytes=1000) as ws:
        with pytest.raises(WebSocketProtocolError, match=error) as caught:
            ws.recv(IO_TIMEOUT_S)
        assert caught.value.code == code and caught.value.exit_code == 8
        with pytest.raises(WebSocketProtocolError):   # and again, on every later call
            ws.recv(IO_TIMEOUT_S)
    server.stop()
    assert received[0] is not None and received[0][:2] == (CLOSE, True)
    assert received[0][2][:2] == close_payload(code)
    assert ws.close_code == code


@pytest.mark.parametrize("code, reason, error", [
    (1001, b"going away", WebSocketClosedOK),
    (1000, b"", WebSocketClosedOK),
    (1011, b"internal error", WebSocketClosed),
    (4321, "κόσμε".encode(), WebSocketClosed),
])
def test_server_initiated_close(peer: PeerFactory, code: int, reason: bytes,
                                error: type[WebSocketClosed]) -> None:
    echoes: list[tuple[int, bool, bytes] | None] = []

    def play(connection: PeerConnection, request: RecordedRequest) -> None:
        connection.send(switching(request) + server_frame(TEXT, b"last words")
                        + server_frame(CLOSE, close_payload(code, reason)))
        echoes.append(read_client_frame(connection))
    server = peer(raw_script(play))
    ws = _connect(_ws_url(server.port))
    assert ws.recv(IO_TIMEOUT_S) == "last words"
    with pytest.raises(error) as caught:
        ws.recv(IO_TIMEOUT_S)
    assert type(caught.value) is error
    assert (caught.value.code, caught.value.reason) == (code, reason.decode())
    assert ws.is_closed and ws.close_code == code
    server.stop()
    # RFC 6455 §5.5.1: the client echoes the code.
    assert echoes == [(CLOSE, True, close_payload(code))]


def test_iteration_stops_on_a_normal_close_and_raises_on_another(peer: PeerFactory) -> None:
    def closing_with(code: int) -> Script:
        def play(connection: PeerConnection, request: RecordedRequest) -> None:
            connection.send(switching(request) + server_frame(TEXT, b"one")
                            + server_frame(BINARY, b"two") + server_frame(CLOSE, close_payload(code)))
            read_client_frame(connection)
        return raw_script(play)
    normal = peer(closing_with(1000))
    assert list(_connect(_ws_url(normal.port))) == ["one", b"two"]
    failing = peer(closing_with(1011))
    received: list[object] = []
    with pytest.raises(WebSocketClosed) as caught:
        received.extend(_connect(_ws_url(failing.port)))
    assert received == ["one", b"two"] and caught.value.code == 1011


def test_connection_dropped_without_close(peer: PeerFactory) -> None:
    def play(connection: PeerConnection, request: RecordedRequest) -> None:
        connection.send(switching(request) + server_frame(TEXT, b"bye"))
    server = peer(raw_script(play))
    ws = _connect(_ws_url(server.port))
    assert ws.recv(IO_TIMEOUT_S) == "bye"
    with pytest.raises(WebSocketConnectionLost) as caught:
        ws.recv(IO_TIMEOUT_S)
    assert caught.value.code == 1006 and caught.value.exit_code == 56
    with pytest.raises(WebSocketConnectionLost):
        ws.send("anyone?")


def test_close_gives_up_when_the_server_never_answers(peer: PeerFactory) -> None:
    frames: list[tuple[int, bool, bytes] | None] = []

    def play(connection: PeerConnection, request: RecordedRequest) -> None:
        connection.send(switching(request))
        while (frame := read_client_frame(connection)) is not None:   # until the client closes
            frames.append(frame)
    server = peer(raw_script(play))
    ws = _connect(_ws_url(server.port), close_timeout_s=0.2)
    ws.close(1000)
    assert ws.is_closed and ws.close_code == 1006
    server.stop()
    assert frames == [(CLOSE, True, close_payload(1000))]


def test_recv_timeout_leaves_the_connection_open(peer: PeerFactory) -> None:
    server = peer(wsproto_echo())
    with _connect(_ws_url(server.port)) as ws:
        with pytest.raises(ReadTimeout) as caught:
            ws.recv(timeout_s=0.05)
        assert isinstance(caught.value, TimeoutError)
        ws.send("still here")
        assert ws.recv(IO_TIMEOUT_S) == "still here"


# -- the opening handshake refused -----------------------------------------------------------------
def test_refused_with_403(peer: PeerFactory) -> None:
    server = peer(raw_script(lambda connection, request: connection.send(
        respond(403, b"<h1>Forbidden: no token</h1>", [("Content-Type", "text/html")],
                reason="Forbidden"))))
    with pytest.raises(HandshakeRefused) as caught:
        _connect(_ws_url(server.port))
    error = caught.value
    assert error.status == 403 and error.exit_code == 22
    assert error.body == b"<h1>Forbidden: no token</h1>"
    assert ("Content-Type", "text/html") in error.headers
    assert "403 Forbidden" in str(error) and "no token" in str(error)


def test_redirects_are_not_followed(peer: PeerFactory) -> None:
    server = peer(raw_script(lambda connection, request: connection.send(
        respond(302, b"", [("Location", "/elsewhere")], reason="Found"))))
    with pytest.raises(HandshakeRefused, match="redirects are not followed: Location /elsewhere"):
        _connect(_ws_url(server.port))
    assert len(server.requests) == 1


@pytest.mark.parametrize("accept, fields, error", [
    pytest.param("d3Jvbmc=", (), "does not match", id="wrong-accept"),
    pytest.param(None, ("Sec-WebSocket-Protocol: other",), "was not offered",
                 id="subprotocol-not-offered"),
    pytest.param(None, ("Sec-WebSocket-Extensions: x-unknown",), "was not offered",
                 id="extension-not-offered"),
    pytest.param(None, ("Upgrade: h2c",), "Upgrade", id="upgrade-to-another-protocol"),
])
def test_invalid_101(peer: PeerFactory, accept: str | None, fields: tuple[str, ...],
                     error: str) -> None:
    def play(connection: PeerConnection, request: RecordedRequest) -> None:
        head = switching(request, *fields, accept=accept)
        if fields and fields[0].startswith("Upgrade"):
            head = head.replace(b"Upgrade: websocket\r\n", b"")
        connection.send(head)
        connection.wait_for_close()
    server = peer(raw_script(play))
    with pytest.raises(InvalidHandshake, match=error) as caught:
        _connect(_ws_url(server.port), subprotocols=["chat"], deflate=False)
    assert caught.value.exit_code == 8


def test_not_http(peer: PeerFactory) -> None:
    server = peer(raw_script(lambda connection, request: connection.send(b"SSH-2.0-OpenSSH\r\n")))
    with pytest.raises(InvalidHandshake, match="not a valid HTTP/1.1 response"):
        _connect(_ws_url(server.port))


@pytest.mark.parametrize("subprotocol, expected", [("chat.v1", "chat.v1"), ("chat.v2", "chat.v2"),
                                                   ("other", None)])
def test_subprotocol_negotiation(peer: PeerFactory, subprotocol: str, expected: str | None) -> None:
    server = peer(wsproto_echo(subprotocol=subprotocol))
    with _connect(_ws_url(server.port), subprotocols=["chat.v2", "chat.v1"]) as ws:
        assert ws.subprotocol == expected


@pytest.mark.parametrize("url, error", [
    ("ftp://127.0.0.1/", InvalidURL), ("ws://127.0.0.1/#fragment", InvalidURL),
    ("ws://", InvalidURL),
])
def test_invalid_urls(url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        _connect(url)


@pytest.mark.parametrize("headers, subprotocols", [
    ([("Sec-WebSocket-Key", "x")], ()), ([("Upgrade", "h2c")], ()),
    ([("X-Injected", "a\r\nB: c")], ()), ([], ["not a token"]),
])
def test_invalid_requests_send_nothing(peer: PeerFactory, headers: list[tuple[str, str]],
                                       subprotocols: list[str]) -> None:
    server = peer(wsproto_echo())
    with pytest.raises(InvalidRequest):
        _connect(_ws_url(server.port), headers=headers, subprotocols=subprotocols)
    server.stop()
    assert server.connection_count == 0


# -- TLS and proxies --------------------------------------------------------------------------------
def test_wss_verified(peer: PeerFactory, tls_server_context: ssl.SSLContext, ca_file: str) -> None:
    server = peer(wsproto_echo(), tls_context=tls_server_context)
    with _connect(_ws_url(server.port, scheme="wss", host="localhost"),
                  tls=TLSSettings(cafile=ca_file)) as ws:
        ws.send("secret")
        assert ws.recv(IO_TIMEOUT_S) == "secret"
    assert ws.close_code == 1000


def test_wss_untrusted_or_wrong_name(peer: PeerFactory, ca: trustme.CA, ca_file: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.test").configure_cert(context)
    server = peer(wsproto_echo(), tls_context=context)
    url = _ws_url(server.port, scheme="wss", host="localhost")
    with pytest.raises(CertificateError, match="certificate verification failed") as caught:
        _connect(url, tls=TLSSettings(cafile=ca_file))
    assert caught.value.exit_code == 60
    with pytest.raises(CertificateError):
        _connect(url)   # the system trust store does not know trustme's CA
    with _connect(url, tls=TLSSettings(verify=False)) as ws:   # -k
        ws.send("anyway")
        assert ws.recv(IO_TIMEOUT_S) == "anyway"


@pytest.mark.parametrize("is_tls", [False, True], ids=["ws", "wss"])
def test_through_a_connect_proxy(peer: PeerFactory, tls_server_context: ssl.SSLContext,
                                 ca_file: str, is_tls: bool) -> None:
    origin = peer(wsproto_echo(), tls_context=tls_server_context if is_tls else None)
    proxy = peer(tunnel(origin.port))
    url = _ws_url(origin.port, scheme="wss" if is_tls else "ws", host="localhost")
    with _connect(url, proxy=f"127.0.0.1:{proxy.port}", tls=TLSSettings(cafile=ca_file)) as ws:
        ws.send("tunnelled")
        assert ws.recv(IO_TIMEOUT_S) == "tunnelled"
    connect_request = proxy.requests[0]
    assert (connect_request.method, connect_request.target) == ("CONNECT",
                                                                f"localhost:{origin.port}")


# -- threads ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("is_tls", [False, True], ids=["ws", "wss"])
def test_send_from_other_threads_while_one_reads(peer: PeerFactory,
                                                 tls_server_context: ssl.SSLContext,
                                                 ca_file: str, is_tls: bool) -> None:
    server = peer(wsproto_echo(), tls_context=tls_server_context if is_tls else None)
    url = _ws_url(server.port, scheme="wss" if is_tls else "ws", host="localhost")
    count = 200
    with _connect(url, tls=TLSSettings(cafile=ca_file)) as ws:
        def send_all(prefix: str) -> None:
            for index in range(count):
                ws.send(f"{prefix}{index}" + "x" * (index * 37 % 3000))
                if index % 50 == 0:
                    ws.ping(prefix.encode())
        senders = [threading.Thread(target=send_all, args=(prefix,)) for prefix in "ab"]
        for sender in senders:
            sender.start()
        received = [ws.recv(IO_TIMEOUT_S) for _ in range(2 * count)]
        for sender in senders:
            sender.join(IO_TIMEOUT_S)
    for prefix in "ab":
        mine = [m for m in received if isinstance(m, str) and m.startswith(prefix)]
        assert [m.rstrip("x") for m in mine] == [f"{prefix}{i}" for i in range(count)]


def test_send_close_lets_the_reader_get_the_last_answers(peer: PeerFactory) -> None:
    server = peer(wsproto_echo())
    ws = _connect(_ws_url(server.port))
    received: list[object] = []
    reader = threading.Thread(target=lambda: received.extend(ws))
    for word in ("one", "two", "three"):
        ws.send(word)
    ws.send_close()   # returns at once; the echoes still reach the reader, which ends quietly
    reader.start()
    reader.join(IO_TIMEOUT_S)
    assert not reader.is_alive()
    assert received == ["one", "two", "three"] and ws.close_code == 1000
    with pytest.raises(WebSocketClosedOK):
        ws.send("too late")


def test_close_from_another_thread_while_one_reads(peer: PeerFactory) -> None:
    server = peer(wsproto_echo())
    ws = _connect(_ws_url(server.port))
    received: list[object] = []
    first = threading.Event()

    def read() -> None:
        for message in ws:
            received.append(message)
            first.set()
    reader = threading.Thread(target=read)
    reader.start()
    ws.send("one")
    assert first.wait(IO_TIMEOUT_S)
    ws.close()   # the reader, inside its iteration, reads the end
    reader.join(IO_TIMEOUT_S)
    assert not reader.is_alive() and received == ["one"] and ws.close_code == 1000


def test_close_inside_an_iteration(peer: PeerFactory) -> None:
    server = peer(wsproto_echo())
    with _connect(_ws_url(server.port)) as ws:
        ws.send("first")
        for message in ws:
            assert message == "first"
            ws.close(1000)
    assert ws.close_code == 1000


# -- an independent server: the websockets library ---------------------------------------------------
@pytest.fixture
def websockets_server() -> Iterator[int]:
    from websockets.sync.server import ServerConnection, serve

    def handler(connection: ServerConnection) -> None:
        for message in connection:
            if message == "please close":
                connection.close(1001, "as asked")
                return
            connection.send(message)

    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.socket.getsockname()[1]
        server.shutdown()
    thread.join(IO_TIMEOUT_S)


def test_websockets_library_server(websockets_server: int) -> None:
    with _connect(_ws_url(websockets_server)) as ws:
        assert ws.deflate is not None   # websockets accepts permessage-deflate by default
        for message in ("text", b"\x00binary", "é" * 100_000, bytes(300_000)):
            ws.send(message)
            assert ws.recv(IO_TIMEOUT_S) == message
    assert ws.close_code == 1000
    with _connect(_ws_url(websockets_server), deflate=False) as ws:
        assert ws.deflate is None
        ws.send("please close")
        with pytest.raises(WebSocketClosedOK) as caught:
            ws.recv(IO_TIMEOUT_S)
    assert (caught.value.code, caught.value.reason) == (1001, "as asked")
