"""``wsgiserve-ws`` / ``python -m wsgiserve.client.websocket``: talk to a WebSocket from a
terminal or a pipe, as websocat and wscat do.

Each line of stdin is sent as a message (text, or binary with ``--binary``); each message
received is written to stdout on a line of its own. At the end of stdin the connection is
closed with 1000 once the server has answered. The exit status is 0 for a normal close
and the error's ``exit_code`` otherwise (the HTTP client's curl-based scheme: 7 connect,
35/60 TLS, 22 handshake refused, 8 protocol error, 28 timeout, 56 connection lost).
"""
from __future__ import annotations

import argparse
import io
import sys
import threading
from collections.abc import Sequence
from typing import BinaryIO, Final, TextIO

from wsgiserve import __version__
from wsgiserve.client.errors import ClientError
from wsgiserve.client.tls import TLSSettings
from wsgiserve.client.websocket.errors import WebSocketClosed
from wsgiserve.client.websocket.opening import connect
from wsgiserve.client.websocket.session import WebSocket
from wsgiserve.websocket import DEFAULT_MAX_MESSAGE_BYTES

PROGRAM: Final = "wsgiserve-ws"
EXIT_USAGE: Final = 2
EXIT_WRITE_OUTPUT: Final = 23     # curl: "Write error"
EXIT_INTERRUPTED: Final = 130     # the shell's status for SIGINT
# RFC 6455 §7.4.1: 1001, an endpoint "going away" (here: interrupted by the user).
_GOING_AWAY: Final = 1001


def build_parser() -> argparse.ArgumentParser:
    """The command line's options, each with one line of help."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM, allow_abbrev=False,
        description="Send stdin's lines to a WebSocket and print the messages it sends.")
    add = parser.add_argument
    add("url", metavar="URL", help="the ws:// or wss:// URL to connect to")
    add("-b", "--binary", action="store_true",
        help="send each line as a binary message, not text")
    add("-H", "--header", action="append", default=[], dest="headers", metavar="LINE",
        help="add a field to the upgrade request ('Name: value')")
    add("--subprotocol", action="append", default=[], dest="subprotocols", metavar="NAME",
        help="offer this subprotocol (repeatable, preferred first)")
    add("--no-deflate", action="store_true",
        help="do not offer permessage-deflate compression")
    add("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_BYTES, metavar="BYTES",
        help=f"close with 1009 on a bigger message (default {DEFAULT_MAX_MESSAGE_BYTES})")
    add("--ping-interval", type=float, metavar="SECONDS",
        help="send a Ping every SECONDS (default: never)")
    add("--cacert", metavar="FILE", help="verify servers against the CAs in FILE")
    add("-k", "--insecure", action="store_true",
        help="do not verify the server's certificate or name")
    add("-E", "--cert", metavar="FILE", help="client certificate (PEM; may hold the key)")
    add("--key", metavar="FILE", help="private key of the client certificate (PEM)")
    add("-x", "--proxy", metavar="URL", help="connect through this HTTP proxy (CONNECT)")
    add("--noproxy", metavar="HOSTS", help="comma-separated hosts that bypass any proxy")
    add("--connect-timeout", type=float, default=30.0, metavar="SECONDS",
        help="time limit for connecting and the handshake (default 30)")
    add("--close-timeout", type=float, default=10.0, metavar="SECONDS",
        help="how long the close handshake may take (default 10)")
    add("-v", "--verbose", action="store_true",
        help="show the handshake, Pings, Pongs and Close codes on stderr")
    add("-s", "--silent", action="store_true", help="no error message")
    add("-V", "--version", action="version", version=f"{PROGRAM} {__version__}",
        help="show the version and exit")
    return parser


def main(argv: Sequence[str] | None = None, *, stdin: BinaryIO | None = None,
         stdout: BinaryIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line; return the exit status (0 after a normal close)."""
    options = build_parser().parse_args(argv)
    reporter = _Reporter(stderr or sys.stderr, options.silent, options.verbose)
    try:
        headers = _header_fields(options.headers)
    except ValueError as exc:
        reporter.error(EXIT_USAGE, str(exc))
        return EXIT_USAGE
    tls = TLSSettings(verify=not options.insecure, cafile=options.cacert,
                      certfile=options.cert, keyfile=options.key)
    try:
        ws = connect(options.url, subprotocols=options.subprotocols,
                     deflate=not options.no_deflate, headers=headers,
                     timeout_s=options.connect_timeout, close_timeout_s=options.close_timeout,
                     max_message_bytes=options.max_message_size, tls=tls,
                     proxy=options.proxy, no_proxy=options.noproxy,
                     user_agent=f"{PROGRAM}/{__version__}",
                     trace=reporter.note if options.verbose else None)
    except ClientError as exc:
        reporter.error(exc.exit_code, str(exc))
        return exc.exit_code
    reporter.handshake(ws)
    sender = threading.Thread(target=_send_lines, daemon=True, name="stdin",
                              args=(ws, stdin or _stdin(), options.binary))
    sender.start()
    if options.ping_interval:
        threading.Thread(target=_ping_every, args=(ws, options.ping_interval), daemon=True,
                         name="pinger").start()
    return _print_messages(ws, stdout or sys.stdout.buffer, reporter)


def _stdin() -> BinaryIO:
    """A reader of our own on fd 0: the stdin thread may still be blocked in it when the
    program exits, and ``sys.stdin``'s lock is taken at interpreter shutdown (a daemon
    thread holding it aborts the interpreter)."""
    try:
        return io.BufferedReader(io.FileIO(sys.stdin.fileno(), "rb", closefd=False))
    except (AttributeError, OSError, ValueError):   # no real stdin (embedded, replaced)
        return sys.stdin.buffer


def _header_fields(lines: Sequence[str]) -> list[tuple[str, str]]:
    fields = []
    for line in lines:
        name, separator, value = line.partition(":")
        if not separator or not name.strip():
            raise ValueError(f"invalid header {line!r} (expected 'Name: value')")
        fields.append((name.strip(), value.strip()))
    return fields


def _print_messages(ws: WebSocket, output: BinaryIO, reporter: _Reporter) -> int:
    """The main thread reads: each message on a line, until the connection closes."""
    try:
        for message in ws:
            output.write(message.encode("utf-8") if isinstance(message, str) else message)
            output.write(b"\n")
            output.flush()
    except KeyboardInterrupt:
        ws.close(_GOING_AWAY)
        return EXIT_INTERRUPTED
    except WebSocketClosed as exc:
        reporter.error(exc.exit_code, str(exc))
        return exc.exit_code
    except ClientError as exc:
        ws.close()
        reporter.error(exc.exit_code, str(exc))
        return exc.exit_code
    except OSError as exc:     # stdout closed (a pipe whose reader left)
        ws.close()
        reporter.error(EXIT_WRITE_OUTPUT, f"cannot write the output: {exc.strerror or exc}")
        return EXIT_WRITE_OUTPUT
    return 0


def _send_lines(ws: WebSocket, source: BinaryIO, is_binary: bool) -> None:
    """The stdin thread: a message per line (without its line ending), then Close (the
    main thread reads the answers to the last lines, then the end)."""
    try:
        for line in source:
            data = line.rstrip(b"\r\n") if line.endswith(b"\n") else line
            ws.send(data if is_binary else data.decode("utf-8", "replace"))
        ws.send_close()
    except ClientError:
        pass      # the connection ended: the main thread reports how


def _ping_every(ws: WebSocket, interval_s: float) -> None:
    while not ws.wait_closed(interval_s):
        try:
            ws.ping()
        except ClientError:
            return


class _Reporter:
    """Everything written to stderr: -v notes and heads, the error line."""

    def __init__(self, stream: TextIO, is_silent: bool, is_verbose: bool):
        self.stream = stream
        self.is_silent = is_silent
        self.is_verbose = is_verbose
        self._lock = threading.Lock()

    def error(self, code: int, message: str) -> None:
        if not self.is_silent and code:
            self._write(f"{PROGRAM}: ({code}) {' '.join(message.split())}\n")

    def note(self, message: str) -> None:
        self._write(f"* {message}\n")

    def handshake(self, ws: WebSocket) -> None:
        if not self.is_verbose:
            return
        lines = [f"> {line}" for line in ws.request_head.decode("latin-1").split("\r\n")[:-2]]
        response = ws.response
        if response is not None:
            lines.append(f"< HTTP/{response.http_version.decode()} {response.status} "
                         f"{response.reason.decode('latin-1')}".rstrip())
            lines.extend(f"< {name.decode('latin-1')}: {value.decode('latin-1')}"
                         for name, value in response.headers.fields)
        self._write("".join(line + "\n" for line in lines))

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()
