"""wsgiserve-get over HTTP/2: --http1.1, --http2, --http2-prior-knowledge; -i and -v print
HTTP/2 status lines as curl does (``HTTP/2 200 ``); curl's exit codes for stream errors."""
from __future__ import annotations

import ssl

import h2.errors
import pytest
import trustme
from client_peers import PeerFactory, answer, respond
from client_h2_peers import H2PeerConnection, H2Request, echo, h2_script, h2_server_context, serve

from wsgiserve.client.cli import main


@pytest.fixture(scope="module")
def h2_context(ca: trustme.CA) -> ssl.SSLContext:
    return h2_server_context(ca)


def run(capfdbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes, str]:
    code = main(list(argv))
    out, err = capfdbinary.readouterr()
    return code, out, err.decode()


def test_include_prints_the_http2_status_line(peer: PeerFactory, h2_context: ssl.SSLContext,
                                              ca_file: str,
                                              capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    server = peer(h2_script(serve(echo)), tls_context=h2_context)
    code, out, _ = run(capfdbinary, "-s", "-i", "--cacert", ca_file,
                       f"https://localhost:{server.port}/x")
    assert code == 0
    assert out == b"HTTP/2 200 \r\ncontent-length: 8\r\n\r\nGET /x 0"


def test_verbose_shows_negotiation_and_heads(peer: PeerFactory, h2_context: ssl.SSLContext,
                                             ca_file: str,
                                             capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    def hints(server: H2PeerConnection, request: H2Request) -> None:
        server.conn.send_headers(request.stream_id, [(b":status", b"103"),
                                                     (b"link", b"</s.css>")])
        echo(server, request)
    server = peer(h2_script(serve(hints)), tls_context=h2_context)
    code, _, err = run(capfdbinary, "-v", "--cacert", ca_file,
                       f"https://localhost:{server.port}/v")
    assert code == 0
    lines = err.splitlines()
    assert "* ALPN: server accepted h2" in lines and "* using HTTP/2" in lines
    assert "> GET /v HTTP/2" in lines
    assert lines.index("< HTTP/2 103 ") < lines.index("< HTTP/2 200 ")
    assert "< link: </s.css>" in lines


def test_http1_1_flag_offers_http11_only(peer: PeerFactory, h2_context: ssl.SSLContext,
                                         ca_file: str,
                                         capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    server = peer(answer(respond(200, b"old")), tls_context=h2_context)
    code, out, _ = run(capfdbinary, "-s", "-i", "--http1.1", "--cacert", ca_file,
                       f"https://localhost:{server.port}/")
    assert code == 0 and out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"old")


def test_prior_knowledge_flag(peer: PeerFactory,
                              capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    server = peer(h2_script(serve(echo)))
    code, out, _ = run(capfdbinary, "-s", "--http2-prior-knowledge", "-d", "abc",
                       server.url("/form"))
    assert (code, out) == (0, b"POST /form 3")
    # The last of the version flags wins, as with curl.
    plain = peer(answer(respond(200, b"h1")))
    code, out, _ = run(capfdbinary, "-s", "--http2-prior-knowledge", "--http2", plain.url())
    assert (code, out) == (0, b"h1")


def test_a_reset_stream_exits_92(peer: PeerFactory, h2_context: ssl.SSLContext, ca_file: str,
                                 capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    def reset(server: H2PeerConnection, request: H2Request) -> None:
        server.reset(request.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
    server = peer(h2_script(serve(reset)), tls_context=h2_context)
    code, out, err = run(capfdbinary, "--cacert", ca_file, f"https://localhost:{server.port}/")
    assert (code, out) == (92, b"")
    assert err.startswith("wsgiserve-get: (92) ") and "INTERNAL_ERROR" in err
