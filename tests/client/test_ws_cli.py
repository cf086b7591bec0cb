"""``wsgiserve-ws``: stdin lines in, stdout lines out, exit statuses by error class.

Most runs call ``main`` in process with byte streams for stdin and stdout; two run the
installed command line as a subprocess (a real pipe on stdin, ``python -m``).
"""
from __future__ import annotations

import io
import os
import ssl
import subprocess
import sys

import pytest
from client_peers import PeerConnection, PeerFactory, RecordedRequest, respond
from ws_peers import (
    CLOSE,
    PING,
    TEXT,
    close_payload,
    raw_script,
    read_client_frame,
    server_frame,
    switching,
    wsproto_echo,
)
from wsproto.events import Request

from wsgiserve.client.websocket.cli import build_parser, main

IO_TIMEOUT_S = 5.0


def _run(*args: str, stdin: bytes = b"") -> tuple[int, bytes, str]:
    stdout = io.BytesIO()
    stderr = io.StringIO()
    status = main(["--connect-timeout", "5", "--close-timeout", "5", *args],
                  stdin=io.BytesIO(stdin), stdout=stdout, stderr=stderr)
    return status, stdout.getvalue(), stderr.getvalue()


def test_lines_in_messages_out(peer: PeerFactory) -> None:
    server = peer(wsproto_echo())
    status, out, err = _run(f"ws://127.0.0.1:{server.port}/", stdin=b"one\ntwo\r\n\nthree")
    assert (status, out, err) == (0, b"one\ntwo\n\nthree\n", "")


def test_binary_lines(peer: PeerFactory) -> None:
    received: list[tuple[int, bool, bytes] | None] = []

    def play(connection: PeerConnection, request: RecordedRequest) -> None:
        connection.send(switching(request) + server_frame(0x2, b"\x00\xffraw"))
        received.append(read_client_frame(connection))
        received.append(read_client_frame(connection))
        connection.send(server_frame(CLOSE, close_payload(1000)))
    server = peer(raw_script(play))
    status, out, _ = _run("--binary", "--no-deflate", f"ws://127.0.0.1:{server.port}/",
                          stdin=b"\xc3\x28 not utf-8\n")
    server.stop()
    assert (status, out) == (0, b"\x00\xffraw\n")
    assert received == [(0x2, True, b"\xc3\x28 not utf-8"), (CLOSE, True, close_payload(1000))]


def test_verbose_shows_the_handshake_and_the_close(peer: PeerFactory) -> None:
    server = peer(wsproto_echo(subprotocol="chat"))
    status, _, err = _run("-v", "--subprotocol", "chat", f"ws://127.0.0.1:{server.port}/room",
                          stdin=b"hi\n")
    assert status == 0
    lines = err.splitlines()
    assert "> GET /room HTTP/1.1" in lines and "> Sec-WebSocket-Protocol: chat" in lines
    assert "< HTTP/1.1 101 Switching Protocols" in lines
    assert "* sent Close 1000 ''" in lines and "* received Close 1000 ''" in lines


def test_options_reach_the_request(peer: PeerFactory) -> None:
    seen: list[Request] = []
    server = peer(wsproto_echo(seen=seen))
    status, _, _ = _run("-H", "Authorization: Bearer t0k3n", "--subprotocol", "a",
                        "--subprotocol", "b", "--no-deflate", f"ws://127.0.0.1:{server.port}/")
    assert status == 0
    request = seen[0]
    assert request.subprotocols == ["a", "b"] and request.extensions == []
    assert (b"authorization", b"Bearer t0k3n") in request.extra_headers


def _refuse(connection: PeerConnection, request: RecordedRequest) -> None:
    connection.send(respond(403, b"go away", reason="Forbidden"))


def _masked_frame(connection: PeerConnection, request: RecordedRequest) -> None:
    connection.send(switching(request) + server_frame(TEXT, b"masked", mask=b"abcd"))
    read_client_frame(connection)


def _close_with_1011(connection: PeerConnection, request: RecordedRequest) -> None:
    connection.send(switching(request) + server_frame(CLOSE, close_payload(1011, b"oops")))
    read_client_frame(connection)


def _drop(connection: PeerConnection, request: RecordedRequest) -> None:
    connection.send(switching(request))


def _big_message(connection: PeerConnection, request: RecordedRequest) -> None:
    connection.send(switching(request) + server_frame(TEXT, b"x" * 101))
    read_client_frame(connection)


@pytest.mark.parametrize("play, options, status, message", [
    pytest.param(_refuse, [], 22, "403 Forbidden: go away", id="refused-22"),
    pytest.param(_masked_frame, [], 8, "must not be masked", id="protocol-error-8"),
    pytest.param(_close_with_1011, [], 1, "closed with 1011 'oops'", id="closed-with-error-1"),
    pytest.param(_drop, [], 56, "without a close handshake", id="dropped-56"),
    pytest.param(_big_message, ["--max-message-size", "100"], 8, "(closed with 1009)",
                 id="too-big-8"),
])
def test_exit_status_by_error_class(peer: PeerFactory, play: object, options: list[str],
                                    status: int, message: str) -> None:
    server = peer(raw_script(play))  # type: ignore[arg-type]  # a play function
    code, out, err = _run(*options, f"ws://127.0.0.1:{server.port}/", stdin=b"")
    assert code == status and out == b""
    assert err.startswith(f"wsgiserve-ws: ({status}) ") and message in err


def test_exit_status_connect_and_tls(peer: PeerFactory, tls_server_context: ssl.SSLContext,
                                     ca_file: str) -> None:
    server = peer(wsproto_echo(), tls_context=tls_server_context)
    closed_port = server.port
    assert _run(f"wss://localhost:{server.port}/")[0] == 60     # untrusted CA
    assert _run("--cacert", ca_file, f"wss://localhost:{server.port}/", stdin=b"x\n")[:2] \
        == (0, b"x\n")
    assert _run("-k", f"wss://localhost:{server.port}/", stdin=b"y\n")[:2] == (0, b"y\n")
    server.stop()
    code, _, err = _run(f"ws://127.0.0.1:{closed_port}/")
    assert code == 7 and "failed to connect" in err
    assert _run("-s", f"ws://127.0.0.1:{closed_port}/")[2] == ""
    assert _run("-H", "no colon", "ws://127.0.0.1:1/")[0] == 2


def test_every_option_has_one_line_of_help() -> None:
    for action in build_parser()._actions:
        assert action.help and "\n" not in action.help, action.option_strings
        assert len(action.help) <= 60, action.option_strings


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "wsgiserve.client.websocket", "--connect-timeout", "5",
            "--close-timeout", "5", *args]


def test_subprocess_pipe_end_to_end(peer: PeerFactory) -> None:
    server = peer(wsproto_echo())
    result = subprocess.run(_cli(f"ws://127.0.0.1:{server.port}/"), input=b"alpha\nbeta\n",
                            capture_output=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"alpha\nbeta\n", b"")


def test_ping_interval_with_stdin_left_open(peer: PeerFactory) -> None:
    """stdin stays open: the server ends the session once it has seen a Ping."""
    pings: list[tuple[int, bool, bytes] | None] = []

    def play(connection: PeerConnection, request: RecordedRequest) -> None:
        connection.send(switching(request) + server_frame(TEXT, b"hello"))
        pings.append(read_client_frame(connection))
        connection.send(server_frame(CLOSE, close_payload(1000)))
        read_client_frame(connection)
    server = peer(raw_script(play))
    read_end, write_end = os.pipe()
    try:
        with subprocess.Popen(_cli("-v", "--ping-interval", "0.05",
                                   f"ws://127.0.0.1:{server.port}/"),
                              stdin=read_end, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as process:
            out, err = process.communicate(timeout=30)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert (process.returncode, out) == (0, b"hello\n"), err
    assert pings == [(PING, True, b"")]
    assert b"* sent Ping b''" in err
