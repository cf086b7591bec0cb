"""Who owns what in the client: imports between its modules, the body stream, the one
readiness check, the one error translator, and the deprecated ``TimeoutError`` name."""
from __future__ import annotations

import ast
import builtins
import socket
import ssl
import threading
import warnings
from pathlib import Path

import pytest
import trustme
from client_peers import IO_TIMEOUT_S, TEST_TIMEOUTS, PeerFactory, answer, respond

import wsgiserve.client
from wsgiserve.client import (
    ClientError,
    Connection,
    ConnectionState,
    InvalidRequest,
    Pool,
    RequestTimeout,
)
from wsgiserve.client.errors import Phase, translate_error
from wsgiserve.client.transport import Transport
from wsgiserve.client.url import parse_url
from wsgiserve.http.errors import LocalProtocolError, RemoteProtocolError

CLIENT = Path(wsgiserve.client.__file__).parent
SOCKET_MODULES = {"socket", "ssl", "select", "selectors"}


def _imports(name: str) -> set[str]:
    """Modules imported by ``wsgiserve/client/<name>.py``, TYPE_CHECKING blocks included."""
    tree = ast.parse((CLIENT / f"{name}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_response_reads_a_body_stream_not_the_connection() -> None:
    imported = _imports("response")
    assert not {"wsgiserve.client.connection", "wsgiserve.client.transport"} & imported
    assert not SOCKET_MODULES & imported


def test_proxy_module_does_no_socket_work() -> None:
    imported = _imports("proxy")
    assert not SOCKET_MODULES & imported
    assert not {"wsgiserve.client.connection", "wsgiserve.client.transport"} & imported


def test_one_module_waits_on_sockets() -> None:
    waiting = sorted(path.stem for path in CLIENT.glob("*.py")
                     if {"select", "selectors"} & _imports(path.stem))
    assert waiting == ["transport"]


# -- the readiness check ------------------------------------------------------------------------
def test_readable_counts_bytes_tls_has_already_decrypted(ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        server_end.settimeout(IO_TIMEOUT_S)
        transport = Transport(client_end)
        server_tls: list[ssl.SSLSocket] = []

        def handshake() -> None:
            server_tls.append(server_context.wrap_socket(server_end, server_side=True))

        thread = threading.Thread(target=handshake)
        thread.start()
        transport.start_tls(client_context, "localhost", IO_TIMEOUT_S)
        thread.join(IO_TIMEOUT_S)
        server_tls[0].sendall(b"abc")          # one TLS record
        assert transport.is_readable(IO_TIMEOUT_S)
        assert transport.sock.recv(1) == b"a"  # the record is decrypted whole: 2 bytes wait
        # The kernel has nothing more, so select() alone would say "not readable".
        assert transport.is_readable()
        assert transport.sock.recv(10) == b"bc"
        assert not transport.is_readable()
        transport.close()
        server_tls[0].close()


def test_readable_when_the_peer_closed() -> None:
    near, far = socket.socketpair()
    with near:
        transport = Transport(near)
        assert not transport.is_readable() and not transport.has_input_while_idle()
        far.close()
        assert transport.is_readable(IO_TIMEOUT_S) and transport.has_input_while_idle()


# -- the translator -----------------------------------------------------------------------------
@pytest.mark.parametrize(("exc", "phase", "expected"), [
    pytest.param(LocalProtocolError("bad"), Phase.WRITE, InvalidRequest, id="local-protocol"),
    pytest.param(RemoteProtocolError("bad"), Phase.REQUEST, InvalidRequest,
                 id="caller-value-in-request"),
    pytest.param(RemoteProtocolError("bad"), Phase.READ, wsgiserve.client.ProtocolError,
                 id="remote-protocol"),
    pytest.param(builtins.TimeoutError("timed out"), Phase.AWAIT, wsgiserve.client.ReadTimeout,
                 id="timeout-awaiting"),
    pytest.param(ConnectionResetError(104, "reset"), Phase.AWAIT,
                 wsgiserve.client.ServerDisconnected, id="reset-before-response"),
    pytest.param(ConnectionResetError(104, "reset"), Phase.READ, wsgiserve.client.ReadError,
                 id="reset-in-body"),
    pytest.param(BrokenPipeError(32, "pipe"), Phase.WRITE, wsgiserve.client.WriteError,
                 id="broken-pipe"),
    pytest.param(ssl.SSLError(1, "bad record"), Phase.READ, wsgiserve.client.TLSError,
                 id="tls"),
    pytest.param(FileNotFoundError(2, "No such file"), Phase.TLS_FILES,
                 wsgiserve.client.TLSError, id="tls-files"),
    pytest.param(socket.gaierror(-2, "Name unknown"), Phase.CONNECT,
                 wsgiserve.client.NameResolutionError, id="name"),
])
def test_translator(exc: Exception, phase: Phase, expected: type[Exception]) -> None:
    assert isinstance(exc, (OSError, LocalProtocolError, RemoteProtocolError))
    error = translate_error(exc, phase, "host:1")
    assert type(error) is expected


def test_a_timeout_after_the_deadline_is_the_total_timeout() -> None:
    error = translate_error(builtins.TimeoutError("timed out"), Phase.READ, "host:1", deadline=0.0)
    assert type(error) is wsgiserve.client.TotalTimeout


def test_an_invalid_content_length_keeps_its_cause(pool: Pool) -> None:
    for value in ("12a", "٣"):   # not digits; an Arabic-Indic digit (not latin-1)
        with pytest.raises(InvalidRequest) as caught:
            pool.put("http://127.0.0.1:9/", b"x", headers={"Content-Length": value})
        assert isinstance(caught.value.__cause__, RemoteProtocolError)


def test_header_injection_keeps_the_core_error_as_cause(pool: Pool) -> None:
    with pytest.raises(InvalidRequest) as caught:
        pool.get("http://127.0.0.1:9/", headers={"X-Bad": "a\r\nInjected: 1"})
    assert isinstance(caught.value.__cause__, LocalProtocolError)


# -- TimeoutError, renamed RequestTimeout -------------------------------------------------------
def test_request_timeout_is_also_the_builtin_timeout() -> None:
    assert issubclass(RequestTimeout, builtins.TimeoutError)
    assert issubclass(wsgiserve.client.ReadTimeout, RequestTimeout)
    assert issubclass(wsgiserve.client.ConnectTimeout, wsgiserve.client.ConnectError)


def test_timeout_error_is_a_deprecated_alias() -> None:
    with pytest.warns(DeprecationWarning, match="RequestTimeout") as record:
        from wsgiserve.client import TimeoutError as old_name
    assert old_name is RequestTimeout
    assert record[0].filename == __file__   # the warning points at the importing line
    with pytest.warns(DeprecationWarning):
        assert wsgiserve.client.errors.TimeoutError is RequestTimeout


def test_star_import_no_longer_shadows_the_builtin() -> None:
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec("from wsgiserve.client import *", namespace)
    assert "TimeoutError" not in namespace and "RequestTimeout" in namespace


def test_unknown_names_still_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchName"):
        wsgiserve.client.NoSuchName  # noqa: B018  (the access is the test)


# -- the body stream ------------------------------------------------------------------------------
def test_the_connection_is_the_body_stream_only_while_a_body_is_read(peer: PeerFactory) -> None:
    server = peer(answer(respond(200, b"one"), respond(200, b"two")))
    origin = parse_url(server.url()).origin
    connection = Connection(origin, timeouts=TEST_TIMEOUTS)
    headers = [("Host", origin.authority)]
    first = connection.request("GET", "/1", headers)
    assert first.read() == b"one" and connection.state is ConnectionState.IDLE
    with pytest.raises(ClientError, match="no response body"):
        connection.read_event()   # the body has ended: the stream is spent
    second = connection.request("GET", "/2", headers)
    assert first.read() == b"one"   # the first response never reads the second's bytes
    assert second.read() == b"two"
    connection.close()
