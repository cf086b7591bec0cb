"""The command line: curl's flags, curl's exit codes, one-line errors, output bytes.

Most cases call ``main()`` in-process (stdout and stderr captured at the fd level); a few
run ``python -m wsgiserve.client`` for real.
"""
from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from client_peers import answer, chunked, PeerConnection, PeerFactory, respond

from wsgiserve.client.cli import _Progress, _Reporter, build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def run(capfdbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes, str]:
    code = main(list(argv))
    out, err = capfdbinary.readouterr()
    return code, out, err.decode()


def _echo(connection: PeerConnection) -> None:
    while (request := connection.read_request()) is not None:
        connection.send(respond(200, b"%s %s %d" % (request.method.encode(),
                                                      request.target.encode(),
                                                      len(request.body))))


def test_get_to_stdout(peer: PeerFactory, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    server = peer(answer(respond(200, bytes(range(256)))))
    assert run(capfdbinary, "-s", server.url()) == (0, bytes(range(256)), "")
    request = server.requests[0]
    assert request.header("accept") == "*/*"
    assert (request.header("user-agent") or "").startswith("wsgiserve-get/")


def test_several_urls_share_a_connection(peer: PeerFactory,
                                         capfdbinary: pytest.CaptureFixture[bytes],
                                         tmp_path: Path) -> None:
    server = peer(answer(respond(200, b"A"), respond(200, b"B"), respond(200, b"C")))
    out = tmp_path / "first"
    code, stdout, _ = run(capfdbinary, "-o", str(out), server.url("/a"), server.url("/b"),
                          server.url("/c"))
    assert (code, out.read_bytes(), stdout) == (0, b"A", b"BC")
    assert server.connection_count == 1


def test_include_and_head(peer: PeerFactory, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    # One connection per main(): each gets the next script.
    server = peer(answer(respond(200, b"body", [("X-Test", "yes")])),
                  answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"))
    code, out, _ = run(capfdbinary, "-i", server.url())
    assert code == 0
    assert out == b"HTTP/1.1 200 OK\r\nX-Test: yes\r\nContent-Length: 4\r\n\r\nbody"
    code, out, _ = run(capfdbinary, "-I", server.url())
    assert (code, out) == (0, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    assert [r.method for r in server.requests] == ["GET", "HEAD"]


def test_obs_fold_in_a_response_is_accepted(peer: PeerFactory,
                                            capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    # RFC 9112 §5.2: the user agent replaces obs-fold with SP (it used to exit 8).
    server = peer(answer(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 4\r\n\r\nbody"))
    code, out, err = run(capfdbinary, "-i", server.url())
    assert (code, err) == (0, "")
    assert out == b"HTTP/1.1 200 OK\r\nX-A: 1 folded\r\nContent-Length: 4\r\n\r\nbody"


def test_verbose_traces_heads_on_stderr(peer: PeerFactory,
                                        capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    server = peer(answer(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                         + respond(200, b"ok", [("X-A", "1")])))
    code, out, err = run(capfdbinary, "-v", server.url("/path"))
    assert (code, out) == (0, b"ok")
    lines = err.splitlines()
    assert "> GET /path HTTP/1.1" in lines and f"> Host: 127.0.0.1:{server.port}" in lines
    assert "< HTTP/1.1 103 Early Hints" in lines and "< Link: </a>" in lines
    assert "< HTTP/1.1 200 OK" in lines and "< X-A: 1" in lines
    assert any(line.startswith("* connecting to") for line in lines)


def test_headers_method_and_curl_header_forms(peer: PeerFactory,
                                              capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    server = peer(answer(respond(204)))
    code, _, _ = run(capfdbinary, "-X", "DELETE", "-H", "X-Multi: a", "-H", "X-Multi: b",
                     "-H", "Accept:", "-H", "X-Empty;", "-H", "Host: example.test",
                     "-A", "agent/1", server.url("/item/7"))
    assert code == 0
    request = server.requests[0]
    assert (request.method, request.target, request.body) == ("DELETE", "/item/7", b"")
    assert request.header_all("x-multi") == ["a", "b"]
    assert request.header("accept") is None and request.header_all("x-empty") == [""]
    assert request.header_all("host") == ["example.test"]
    assert request.header_all("user-agent") == ["agent/1"]


def test_data_forms(peer: PeerFactory, capfdbinary: pytest.CaptureFixture[bytes],
                    tmp_path: Path) -> None:
    server = peer(answer(respond(200)))
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"x=1\r\ny=2\n")
    assert run(capfdbinary, "-d", "a=1", "-d", f"@{lines}", server.url())[0] == 0
    assert run(capfdbinary, "--data-binary", f"@{lines}", server.url())[0] == 0
    assert run(capfdbinary, "--data-raw", "@literal", server.url())[0] == 0
    first, second, third = server.requests
    assert (first.method, first.body) == ("POST", b"a=1&x=1y=2")
    assert first.header("content-type") == "application/x-www-form-urlencoded"
    assert (second.body, second.header("content-length")) == (b"x=1\r\ny=2\n", "9")
    assert third.body == b"@literal"


def test_upload_file(peer: PeerFactory, capfdbinary: pytest.CaptureFixture[bytes],
                     tmp_path: Path) -> None:
    server = peer(_echo)
    path = tmp_path / "up.bin"
    path.write_bytes(b"u" * 70000)
    code, out, _ = run(capfdbinary, "-T", str(path), server.url("/dir/"))
    assert (code, out) == (0, b"PUT /dir/up.bin 70000")
    code, out, _ = run(capfdbinary, "-T", str(path), "-H", "Transfer-Encoding: chunked",
                       server.url("/c"))
    assert (code, out) == (0, b"PUT /c 70000")
    assert server.requests[1].header("transfer-encoding") == "chunked"
    assert server.requests[1].header("content-length") is None


def test_large_upload_sends_expect(peer: PeerFactory, capfdbinary: pytest.CaptureFixture[bytes],
                                   tmp_path: Path) -> None:
    def script(connection: PeerConnection) -> None:
        request = connection.read_request(read_body=False)
        assert request is not None
        connection.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        connection.read_body(request)
        connection.send(respond(200, b"%d" % len(request.body)))
        connection.wait_for_close()

    server = peer(script)
    path = tmp_path / "big.bin"
    path.write_bytes(b"b" * (3 << 20))
    assert run(capfdbinary, "--expect100-timeout", "10", "-T", str(path), server.url()) \
        == (0, b"%d" % (3 << 20), "")
    assert server.requests[0].header("expect") == "100-continue"


def test_follow_redirects(peer: PeerFactory, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    server = peer(answer(respond(302, b"moved", [("Location", "/b")]), respond(200, b"B")),
                  answer(respond(302, b"moved", [("Location", "/b")])))
    assert run(capfdbinary, "-L", server.url("/a")) == (0, b"B", "")
    code, out, _ = run(capfdbinary, "-i", server.url("/a"))
    assert code == 0 and out.startswith(b"HTTP/1.1 302 OK\r\nLocation: /b\r\n")


def _stall(connection: PeerConnection) -> None:
    connection.read_request()
    connection.wait_for_close()


def _loop(connection: PeerConnection) -> None:
    while connection.read_request() is not None:
        connection.send(respond(302, b"", [("Location", "/again")]))


@pytest.mark.parametrize(("script", "flags", "code"), [
    pytest.param(_stall, ["--max-time", "0.3"], 28, id="timeout-28"),
    pytest.param(_loop, ["-L", "--max-redirs", "3"], 47, id="redirects-47"),
    pytest.param(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", after="close"), [],
                 18, id="partial-18"),
    pytest.param(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
                 [], 8, id="weird-reply-8"),
    pytest.param(answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), [], 8,
                 id="bad-chunk-8"),
    pytest.param(answer(after="close"), [], 52, id="empty-reply-52"),
    pytest.param(answer(respond(404, b"not here", reason="Not Found")), ["--fail"], 22,
                 id="fail-22"),
])
def test_exit_codes(peer: PeerFactory, capfdbinary: pytest.CaptureFixture[bytes], script: object,
                    flags: list[str], code: int) -> None:
    server = peer(script)
    status, out, err = run(capfdbinary, *flags, server.url())
    assert status == code
    assert err.startswith(f"wsgiserve-get: ({code}) ") and err.count("\n") == 1
    assert "Traceback" not in err
    if code == 22:
        assert out == b""


def test_exit_codes_without_a_server(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    assert run(capfdbinary, f"http://127.0.0.1:{port}/")[0] == 7
    assert run(capfdbinary, "http://no-such-host.invalid/")[0] == 6
    assert run(capfdbinary, "ftp://example.test/")[0] == 3
    assert run(capfdbinary, "-s", f"http://127.0.0.1:{port}/") == (7, b"", "")


def test_tls_flags(peer: PeerFactory, capfdbinary: pytest.CaptureFixture[bytes], ca: trustme.CA,
                   ca_file: str, tls_server_context: object) -> None:
    import ssl
    assert isinstance(tls_server_context, ssl.SSLContext)
    server = peer(answer(respond(200, b"secure")), tls_context=tls_server_context)
    url = f"https://localhost:{server.port}/"
    assert run(capfdbinary, "--cacert", ca_file, url) == (0, b"secure", "")
    assert run(capfdbinary, url)[0] == 60
    assert run(capfdbinary, "-k", url) == (0, b"secure", "")


def test_progress_bar_only_on_a_terminal_after_a_while() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = _Progress(4 << 20, _Reporter(False, False, stream))
    progress.update(1 << 20)
    assert stream.getvalue() == ""          # not yet a long download
    progress.started -= 5                   # as if it began 5 s ago
    progress.update(1 << 20)
    progress.finish()
    assert "50%" in stream.getvalue() and "2.0 MiB/4.0 MiB" in stream.getvalue()
    quiet = io.StringIO()
    pipe_progress = _Progress(None, _Reporter(False, False, quiet))
    pipe_progress.started -= 5
    pipe_progress.update(100)
    assert quiet.getvalue() == ""           # stderr is not a terminal


def test_python_dash_m(peer: PeerFactory, tmp_path: Path) -> None:
    server = peer(answer(respond(200, b"A"), respond(200, b"B")))
    result = subprocess.run([sys.executable, "-m", "wsgiserve.client", server.url("/a"),
                             server.url("/b")], capture_output=True, timeout=30, cwd=ROOT)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"AB", b"")
    result = subprocess.run([sys.executable, "-m", "wsgiserve.client", "--max-time", "0.2",
                             "http://127.0.0.1:1/"], capture_output=True, timeout=30, cwd=ROOT)
    assert result.returncode == 7 and result.stderr.count(b"\n") == 1


def test_chunked_download_with_trailers(peer: PeerFactory,
                                        capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(
        b"tls-", b"chunks", trailers=b"X-T: 1\r\n")
    server = peer(answer(raw))
    assert run(capfdbinary, server.url()) == (0, b"tls-chunks", "")


def test_every_option_has_one_line_of_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")   # argparse wraps help to the terminal's width
    parser = build_parser()
    text = parser.format_help()
    for action in parser._actions:
        name = "/".join(action.option_strings) or str(action.metavar)
        assert action.help and action.help.strip(), f"{name} has no help"
        assert action.help in text, f"{name}: its help is over one line at 80 columns"
