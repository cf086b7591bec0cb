"""``wsgiserve-get`` / ``python -m wsgiserve.client``: a curl-like command line on the pool.

Takes curl's flags for the common cases (see ``docs/client.md``), fetches each URL in
turn on one ``Pool`` (so they share a keep-alive connection), and exits with curl's exit
status for the failure, printing one line to stderr. The only client module that prints.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Final, TextIO

from wsgiserve import __version__
from wsgiserve.client.body import RequestBody
from wsgiserve.client.errors import ClientError, HTTPStatusError
from wsgiserve.client.negotiation import HttpVersion
from wsgiserve.client.pool import Pool
from wsgiserve.client.response import Response
from wsgiserve.client.timeouts import Timeouts
from wsgiserve.client.tls import TLSSettings
from wsgiserve.http.events import InformationalResponse
from wsgiserve.http.headers import Headers

PROGRAM: Final = "wsgiserve-get"
# curl's exit codes (man curl, EXIT CODES) for failures that are not ClientErrors.
EXIT_USAGE: Final = 2
EXIT_READ_FILE: Final = 26
EXIT_WRITE_FILE: Final = 23
# curl: --max-redirs defaults to 50.
DEFAULT_MAX_REDIRS: Final = 50
# curl sends Expect: 100-continue for uploads over 1 MiB or of unknown size (since 7.84).
EXPECT_THRESHOLD_BYTES: Final = 1 << 20
# The progress bar appears only once a download has run this long (seconds).
_PROGRESS_AFTER_S: Final = 1.0
_PROGRESS_EVERY_S: Final = 0.2


def build_parser() -> argparse.ArgumentParser:
    """The command line's options, each with one line of help (as ``curl --help``)."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM, allow_abbrev=False,
        description="Fetch URLs over HTTP/1.1 or HTTP/2 with wsgiserve's client (curl's flags).")
    add = parser.add_argument
    add("urls", nargs="*", metavar="URL", help="URLs to fetch, in turn, on one connection pool")
    add("--url", action="append", default=[], dest="extra_urls", metavar="URL",
        help="a URL to fetch (repeatable)")
    add("-X", "--request", dest="method", metavar="METHOD", help="the request method to use")
    add("-H", "--header", action="append", default=[], dest="headers", metavar="LINE",
        help="add a field; 'Name:' drops one, 'Name;' sends it empty")
    add("-d", "--data", "--data-ascii", action="append", default=[], dest="data",
        type=lambda value: ("ascii", value), metavar="DATA",
        help="POST DATA (@FILE: its content, CR and LF removed)")
    add("--data-binary", action="append", dest="data", type=lambda value: ("binary", value),
        metavar="DATA", help="POST DATA as is (@FILE: the file byte for byte)")
    add("--data-raw", action="append", dest="data", type=lambda value: ("raw", value),
        metavar="DATA", help="POST DATA, with no special meaning for @")
    add("-T", "--upload-file", dest="upload_file", metavar="FILE",
        help="PUT FILE (- for stdin)")
    add("-o", "--output", action="append", default=[], dest="outputs", metavar="FILE",
        help="write the body of the n-th URL to FILE, not stdout")
    add("-i", "--include", action="store_true", help="write the response head before the body")
    add("-I", "--head", action="store_true", help="send HEAD and write the response head only")
    add("-L", "--location", action="store_true", help="follow redirects")
    add("--max-redirs", type=int, default=DEFAULT_MAX_REDIRS, metavar="N",
        help=f"follow at most N redirects (default {DEFAULT_MAX_REDIRS})")
    add("--cacert", metavar="FILE", help="verify servers against the CAs in FILE")
    add("-k", "--insecure", action="store_true",
        help="do not verify the server's certificate or name")
    add("-E", "--cert", metavar="FILE", help="client certificate (PEM; may hold the key)")
    add("--key", metavar="FILE", help="private key of the client certificate (PEM)")
    add("-m", "--max-time", type=float, metavar="SECONDS",
        help="time limit for each URL, redirects included")
    add("--connect-timeout", type=float, default=300.0, metavar="SECONDS",
        help="time limit for connecting (default 300)")
    add("--expect100-timeout", type=float, default=1.0, metavar="SECONDS",
        help="how long an upload waits for 100 (default 1)")
    add("-x", "--proxy", metavar="URL", help="use this HTTP proxy for every URL")
    add("--noproxy", metavar="HOSTS", help="comma-separated hosts that bypass any proxy")
    add("-A", "--user-agent", metavar="NAME", help="the User-Agent to send")
    add("-f", "--fail", action="store_true",
        help="on a status >= 400, write nothing and exit 22")
    add("--http1.1", dest="http_version", action="store_const", const=HttpVersion.HTTP_1_1,
        help="use HTTP/1.1 only")
    add("--http2", dest="http_version", action="store_const", const=HttpVersion.HTTP_2,
        help="HTTP/2 over https when the server agrees (the default)")
    add("--http2-prior-knowledge", dest="http_version", action="store_const",
        const=HttpVersion.HTTP_2_PRIOR_KNOWLEDGE, help="HTTP/2 over plain http too, at once")
    parser.set_defaults(http_version=HttpVersion.HTTP_2)
    add("-v", "--verbose", action="store_true",
        help="show heads and connection notes on stderr")
    add("-s", "--silent", action="store_true", help="no progress bar, no error message")
    add("-S", "--show-error", action="store_true", help="with -s, still show error messages")
    add("-V", "--version", action="version", version=f"{PROGRAM} {__version__}",
        help="show the version and exit")
    return parser


@dataclass
class _Plan:
    """The request every URL gets, built once from the options."""

    method: str
    headers: list[tuple[str, str]]
    body_bytes: bytes | None = None
    body_file: str | None = None
    removed: set[str] = field(default_factory=set)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 when every exchange completed)."""
    options = build_parser().parse_args(argv)
    urls = list(options.urls) + list(options.extra_urls)
    reporter = _Reporter(options.silent and not options.show_error, options.verbose)
    if not urls:
        reporter.error(EXIT_USAGE, "no URL specified")
        return EXIT_USAGE
    try:
        plan = _plan(options)
    except OSError as exc:
        reporter.error(EXIT_READ_FILE, f"cannot read {exc.filename}: {exc.strerror}")
        return EXIT_READ_FILE
    except ValueError as exc:
        reporter.error(EXIT_USAGE, str(exc))
        return EXIT_USAGE
    timeouts = Timeouts(connect_s=options.connect_timeout, read_s=None, write_s=None,
                        total_s=options.max_time, expect_continue_s=options.expect100_timeout)
    tls = TLSSettings(verify=not options.insecure, cafile=options.cacert,
                      certfile=options.cert, keyfile=options.key)
    status = 0
    with Pool(timeouts=timeouts, tls=tls, proxy=options.proxy, no_proxy=options.noproxy,
              user_agent=options.user_agent or f"{PROGRAM}/{__version__}",
              trace=reporter.note if options.verbose else None,
              on_request_head=reporter.request_head if options.verbose else None,
              http_version=options.http_version) as pool:
        for index, url in enumerate(urls):
            output_path = options.outputs[index] if index < len(options.outputs) else None
            code = _fetch(pool, url, plan, options, output_path, reporter)
            if code:
                status = code
    return status


def _plan(options: argparse.Namespace) -> _Plan:
    headers: list[tuple[str, str]] = []
    removed: set[str] = set()
    for line in options.headers:
        name, separator, value = line.partition(":")
        if separator and not value.strip():
            removed.add(name.strip().lower())   # curl: "Name:" removes that field
            continue
        if not separator and line.endswith(";"):
            headers.append((line[:-1].strip(), ""))   # curl: "Name;" sends it empty
            continue
        if not separator:
            raise ValueError(f"invalid header {line!r}")
        headers.append((name.strip(), value.strip()))
    method = "GET"
    plan = _Plan(method, headers, removed=removed)
    names = {name.lower() for name, _ in headers}
    if options.upload_file:
        plan.method = "PUT"
        plan.body_file = options.upload_file
    elif options.data:
        plan.method = "POST"
        if len(options.data) == 1 and options.data[0][0] == "binary" \
                and options.data[0][1].startswith("@") and options.data[0][1] != "@-":
            plan.body_file = options.data[0][1][1:]
            os.stat(plan.body_file)
        else:
            plan.body_bytes = b"&".join(_data_bytes(kind, value) for kind, value in options.data)
        if "content-type" not in names:
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    if options.head:
        plan.method = "HEAD"
    if options.method:
        plan.method = options.method
    return plan


def _data_bytes(kind: str, value: str) -> bytes:
    if kind == "raw" or not value.startswith("@"):
        return value.encode("utf-8")
    path = value[1:]
    data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    if kind == "ascii":
        # curl -d @file strips carriage returns and newlines; --data-binary keeps them.
        data = data.replace(b"\r", b"").replace(b"\n", b"")
    return data


def _fetch(pool: Pool, url: str, plan: _Plan, options: argparse.Namespace,
           output_path: str | None, reporter: _Reporter) -> int:
    """Fetch one URL into its output; return 0 or the exit status of the failure."""
    upload: BinaryIO | None = None
    output: BinaryIO | None = None
    try:
        body: RequestBody | None = None
        if plan.body_file is not None:
            upload = sys.stdin.buffer if plan.body_file == "-" else open(plan.body_file, "rb")
            body = RequestBody(file=upload)
            if options.upload_file and url.endswith("/"):
                url += os.path.basename(plan.body_file)   # curl -T: URL/ gets the file name
        elif plan.body_bytes is not None:
            body = RequestBody(data=plan.body_bytes)
        headers = [(n, v) for n, v in plan.headers if n.lower() not in plan.removed]
        names = {name.lower() for name, _ in headers}
        if body is not None and "expect" not in names and "expect" not in plan.removed \
                and (body.content_length is None or body.content_length > EXPECT_THRESHOLD_BYTES):
            headers.append(("Expect", "100-continue"))
        if "accept" not in names and "accept" not in plan.removed:
            headers.append(("Accept", "*/*"))
        response = pool.request(plan.method, url, headers=headers, body=body,
                                follow_redirects=options.location,
                                max_redirects=options.max_redirs,
                                on_informational=reporter.interim)
        with response:
            reporter.response_heads(response)
            if options.fail and response.status >= 400:
                response.close()
                raise HTTPStatusError(
                    f"The requested URL returned error: {response.status}", response.status)
            output = open(output_path, "wb") if output_path else None
            _write_response(response, output or sys.stdout.buffer, options, reporter)
        return 0
    except ClientError as exc:
        reporter.error(exc.exit_code, f"{url}: {exc}")
        return exc.exit_code
    except OSError as exc:
        code = EXIT_WRITE_FILE if output_path and exc.filename == output_path else EXIT_READ_FILE
        reporter.error(code, f"{exc.filename or url}: {exc.strerror or exc}")
        return code
    finally:
        if upload is not None and upload is not sys.stdin.buffer:
            upload.close()
        if output is not None:
            output.close()


def _write_response(response: Response, output: BinaryIO, options: argparse.Namespace,
                    reporter: _Reporter) -> None:
    if options.include or options.head:
        for earlier in response.history if options.include else []:
            output.write(format_head(earlier.http_version, earlier.status, earlier.reason,
                                     earlier.headers))
        output.write(format_head(response.http_version, response.status, response.reason,
                                 response.headers))
    if options.head:
        response.read()
        output.flush()
        return
    total = response.header("content-length")
    progress = _Progress(int(total) if total and total.isdigit() else None, reporter)
    for piece in response.iter_bytes():
        output.write(piece)
        progress.update(len(piece))
    progress.finish()
    output.flush()


def format_head(http_version: str, status: int, reason: str, headers: Headers) -> bytes:
    """A response head as curl -i prints it: status line, fields as received, CRLF.

    HTTP/2 has no reason phrase; curl prints its status line as ``HTTP/2 200 `` (the
    space before the empty reason kept), and so do we.
    """
    line = f"HTTP/{http_version} {status} {reason}"
    lines = [(line if http_version == "2" else line.rstrip()).encode("latin-1")]
    lines.extend(name + b": " + value for name, value in headers.fields)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Reporter:
    """Everything written to stderr: -v traces, the progress bar, the error line."""

    def __init__(self, is_silent: bool, is_verbose: bool, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.is_silent = is_silent
        self.is_verbose = is_verbose

    def error(self, code: int, message: str) -> None:
        if not self.is_silent:
            line = " ".join(message.split())
            self.stream.write(f"{PROGRAM}: ({code}) {line}\n")
            self.stream.flush()

    def note(self, message: str) -> None:
        self.stream.write(f"* {message}\n")

    def request_head(self, head: bytes) -> None:
        for line in head.decode("latin-1").split("\r\n")[:-1]:
            self.stream.write(f"> {line}\n")
        self.stream.flush()

    def interim(self, event: InformationalResponse) -> None:
        if self.is_verbose:
            self._head(format_head(event.http_version.decode(), event.status,
                                   event.reason.decode("latin-1"), event.headers))

    def response_heads(self, response: Response) -> None:
        if self.is_verbose:
            self._head(format_head(response.http_version, response.status, response.reason,
                                   response.headers))

    def _head(self, head: bytes) -> None:
        for line in head.decode("latin-1").split("\r\n")[:-1]:
            self.stream.write(f"< {line}\n")
        self.stream.flush()

    @property
    def shows_progress(self) -> bool:
        return not self.is_silent and not self.is_verbose and self.stream.isatty()


class _Progress:
    """A one-line progress bar on a terminal stderr, drawn only for long downloads."""

    def __init__(self, total_bytes: int | None, reporter: _Reporter):
        self.total_bytes = total_bytes
        self.reporter = reporter
        self.is_enabled = reporter.shows_progress
        self.received_bytes = 0
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.has_drawn = False

    def update(self, size: int) -> None:
        self.received_bytes += size
        if not self.is_enabled:
            return
        now = time.monotonic()
        if now - self.started >= _PROGRESS_AFTER_S and now - self.drawn_at >= _PROGRESS_EVERY_S:
            self.drawn_at = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.received_bytes / max(now - self.started, 1e-6)
        done = _size(self.received_bytes)
        if self.total_bytes:
            fraction = min(1.0, self.received_bytes / self.total_bytes)
            bar = "#" * int(fraction * 30)
            text = f"[{bar:<30}] {fraction:4.0%} {done}/{_size(self.total_bytes)}"
        else:
            text = f"{done}"
        self.reporter.stream.write(f"\r{text}  {_size(rate)}/s  ")
        self.reporter.stream.flush()
        self.has_drawn = True

    def finish(self) -> None:
        if self.has_drawn:
            self._draw(time.monotonic())
            self.reporter.stream.write("\n")


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
