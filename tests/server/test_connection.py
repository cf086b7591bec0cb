"""``Connection`` driven directly over ``socket.socketpair()``: bytes in on one end, the
outcome the worker would act on and the bytes on the wire at the other.

The driver plays the worker's loop in one thread: ``on_readable()`` after the client
wrote, ``on_writable()`` after the client drained what it could.
"""
from __future__ import annotations

import io
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.validate import WSGIWarning, validator

import pytest

from wsgiserve.http import HttpLimits
from wsgiserve.server.worker.connection import Connection, ConnState, Outcome, make_base_environ
from wsgiserve.server.worker.context import ServerContext

pytestmark = pytest.mark.timeout(30)

App = Any


class Driver:
    def __init__(self, app: App, *, is_stopping: bool = False) -> None:
        self.context = ServerContext(
            app=app, limits=HttpLimits(), keepalive_s=5.0, header_timeout_s=5.0,
            body_timeout_s=2.0, script_name="", access_log=None)
        self.context.is_stopping = is_stopping
        server, self.client = socket.socketpair()
        server.setblocking(False)
        self.client.settimeout(5.0)
        base = make_base_environ("127.0.0.1", "80", "http", multithread=False,
                                 multiprocess=False)
        self.conn = Connection(server, ("127.0.0.1", 5555), self.context, base)
        self.received = b""
        self.writable_waits = 0

    def close(self) -> None:
        self.conn.close()
        self.client.close()

    def _drain_client(self) -> None:
        self.client.setblocking(False)
        try:
            while data := self.client.recv(1 << 20):
                self.received += data
        except BlockingIOError:
            pass
        finally:
            self.client.settimeout(5.0)

    def send(self, data: bytes) -> Outcome:
        """The client sends ``data``; run the connection until it waits for the client."""
        if data:
            self.client.sendall(data)
        outcome = self.conn.on_readable()
        while outcome is Outcome.WAIT_WRITABLE:
            self.writable_waits += 1
            assert self.writable_waits < 10_000
            self._drain_client()
            outcome = self.conn.on_writable()
        self._drain_client()
        return outcome

    def take(self) -> bytes:
        data, self.received = self.received, b""
        return data


@pytest.fixture
def drive() -> Iterator[Any]:
    drivers: list[Driver] = []

    def make(app: App, **options: Any) -> Driver:
        drivers.append(Driver(app, **options))
        return drivers[-1]
    yield make
    for driver in drivers:
        driver.close()


class Result:
    """A response iterable that records whether the server called close()."""

    def __init__(self, pieces: list[bytes], fail_at: int = -1) -> None:
        self.pieces = pieces
        self.fail_at = fail_at
        self.is_closed = False

    def __iter__(self) -> Iterator[bytes]:
        for index, piece in enumerate(self.pieces):
            if index == self.fail_at:
                raise RuntimeError("boom in the iterable")
            yield piece

    def close(self) -> None:
        self.is_closed = True


def make_app(status: str = "200 OK", headers: list[tuple[str, str]] | None = None,
             result: Any = None) -> App:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response(status, list(headers or [("Content-Type", "text/plain")]))
        return result if result is not None else [environ["PATH_INFO"].encode()]
    return app


GET = b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n"


def split_responses(data: bytes) -> list[bytes]:
    return [b"HTTP/1.1 " + part for part in data.split(b"HTTP/1.1 ")[1:]]


# --- request cycle ------------------------------------------------------------------------


def test_pipelined_requests_in_one_read_are_answered_in_order(drive: Any) -> None:
    driver = drive(make_app(headers=[("Content-Length", "2")]))
    outcome = driver.send(GET % b"/a" + GET % b"/b" + GET % b"/c")
    assert outcome is Outcome.WAIT_READABLE and driver.conn.state is ConnState.IDLE
    responses = split_responses(driver.take())
    assert [r[-2:] for r in responses] == [b"/a", b"/b", b"/c"]
    assert all(b"\r\nDate: " in r and b"\r\nServer: wsgiserve" in r for r in responses)


def test_a_head_split_across_reads(drive: Any) -> None:
    driver = drive(make_app(headers=[("Content-Length", "2")]))
    request = GET % b"/x"
    for byte in request[:-1]:
        assert driver.send(bytes([byte])) is Outcome.WAIT_READABLE
        assert driver.conn.state is ConnState.READING_HEAD and not driver.received
    driver.send(request[-1:])
    assert driver.take().endswith(b"\r\n\r\n/x")


def test_head_response_has_no_body(drive: Any) -> None:
    driver = drive(make_app(result=[b"body", b"more"]))
    driver.send(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n" + GET % b"/next")
    head, after = split_responses(driver.take())
    assert head.endswith(b"\r\n\r\n") and b"body" not in head
    assert after.endswith(b"4\r\nbody\r\n4\r\nmore\r\n0\r\n\r\n")


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_for_204_and_304(drive: Any, status: str) -> None:
    driver = drive(make_app(status, [("Content-Length", "4")], result=[b"body"]))
    driver.send(GET % b"/")
    response = driver.take()
    assert response.endswith(b"\r\n\r\n") and b"body" not in response
    assert (b"Content-Length" in response) == status.startswith("304")
    assert driver.conn.state is ConnState.IDLE


def test_http10_without_keep_alive_is_close_delimited(drive: Any) -> None:
    driver = drive(make_app(result=[b"one", b"two"]))
    outcome = driver.send(b"GET / HTTP/1.0\r\n\r\n")
    assert driver.conn.state is ConnState.CLOSING
    assert outcome is Outcome.WAIT_READABLE  # lingering: waiting for the client's FIN
    response = driver.take()
    assert response.endswith(b"\r\n\r\nonetwo") and b"chunked" not in response
    assert driver.client.recv(1) == b""  # our side was shut down
    driver.client.shutdown(socket.SHUT_WR)
    assert driver.send(b"") is Outcome.CLOSE


def test_unread_small_body_is_drained_and_the_connection_kept(drive: Any) -> None:
    driver = drive(make_app(headers=[("Content-Length", "2")]))
    body = b"x" * 1000
    driver.send(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + body
                + GET % b"/g")
    responses = split_responses(driver.take())
    assert [r[-2:] for r in responses] == [b"/p", b"/g"]
    assert driver.conn.state is ConnState.IDLE


def test_unread_body_over_the_drain_bound_closes(drive: Any) -> None:
    driver = drive(make_app(headers=[("Content-Length", "2")]))
    head = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 300000\r\n\r\n"
    driver.client.sendall(head + b"x" * 150_000)  # more than DRAIN_MAX_BYTES already here
    driver.send(b"")
    assert driver.take().endswith(b"\r\n\r\n/p")
    assert driver.conn.state is ConnState.CLOSING


def test_body_larger_than_the_socket_buffer_waits_for_writability(drive: Any) -> None:
    size = 8 << 20
    driver = drive(make_app(headers=[("Content-Length", str(size))],
                            result=[b"y" * (1 << 20)] * 8))
    driver.send(GET % b"/")
    assert driver.writable_waits > 0  # the socket filled up at least once
    assert driver.take().endswith(b"\r\n\r\n" + b"y" * size)


# --- app errors -----------------------------------------------------------------------------


def test_exception_before_the_head_gets_500_and_close(drive: Any) -> None:
    def app(environ: Any, start_response: Any) -> Any:
        raise ValueError("secret detail")
    driver = drive(app)
    driver.send(GET % b"/" + GET % b"/never")
    response = driver.take()
    assert response.startswith(b"HTTP/1.1 500 ") and b"secret" not in response
    assert b"Connection: close" in response and response.count(b"HTTP/1.1") == 1
    assert driver.conn.state is ConnState.CLOSING


def test_exception_after_the_head_aborts_and_closes_the_iterable(drive: Any) -> None:
    result = Result([b"first", b"second"], fail_at=1)
    driver = drive(make_app(result=result))
    assert driver.send(GET % b"/") is Outcome.CLOSE
    assert driver.take().endswith(b"5\r\nfirst\r\n")  # never the terminating chunk
    assert result.is_closed


def test_iterable_close_is_called_on_success(drive: Any) -> None:
    result = Result([b"a"])
    driver = drive(make_app(result=result))
    driver.send(GET % b"/")
    assert result.is_closed


def test_iterable_close_is_called_when_the_client_is_gone(drive: Any) -> None:
    result = Result([b"z" * (1 << 20)] * 4)
    driver = drive(make_app(result=result))
    driver.client.sendall(GET % b"/")
    driver.client.close()
    outcome = driver.conn.on_readable()
    while outcome is Outcome.WAIT_WRITABLE:
        try:
            outcome = driver.conn.on_writable()
        except OSError:
            outcome = Outcome.CLOSE
    assert outcome is Outcome.CLOSE
    driver.conn.close()
    assert result.is_closed


def test_exc_info_replaces_the_response_before_the_head(drive: Any) -> None:
    def app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("missing")
        except KeyError:
            import sys
            start_response("503 Unavailable", [("Content-Length", "4")], sys.exc_info())
        return [b"sorr"]
    driver = drive(app)
    driver.send(GET % b"/")
    assert driver.take().startswith(b"HTTP/1.1 503 Unavailable\r\n")


def test_exc_info_after_the_head_reraises_and_aborts(drive: Any) -> None:
    def app(environ: Any, start_response: Any) -> Any:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"sent")
        try:
            raise KeyError("late")
        except KeyError:
            import sys
            start_response("500 Oops", [], sys.exc_info())  # raises KeyError again
        return [b"unreachable"]
    driver = drive(app)
    assert driver.send(GET % b"/") is Outcome.CLOSE
    response = driver.take()
    assert response.startswith(b"HTTP/1.1 200 OK") and b"unreachable" not in response


def test_start_response_twice_without_exc_info_is_a_500(drive: Any) -> None:
    def app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b""]
    driver = drive(app)
    driver.send(GET % b"/")
    assert driver.take().startswith(b"HTTP/1.1 500 ")


def test_write_callable_then_iterable(drive: Any) -> None:
    def app(environ: Any, start_response: Any) -> Any:
        write = start_response("200 OK", [("Content-Length", "9")])
        write(b"abc")
        write(b"")
        return [b"def", b"ghi"]
    driver = drive(app)
    driver.send(GET % b"/")
    assert driver.take().endswith(b"\r\n\r\nabcdefghi")
    assert driver.conn.state is ConnState.IDLE


@pytest.mark.parametrize(("declared", "pieces", "sent"), [
    pytest.param(3, [b"12345"], b"123", id="more-than-declared"),
    pytest.param(10, [b"12345"], b"12345", id="fewer-than-declared"),
])
def test_wrong_content_length_closes_the_connection(drive: Any, declared: int,
                                                    pieces: list[bytes], sent: bytes) -> None:
    driver = drive(make_app(headers=[("Content-Length", str(declared))], result=pieces))
    driver.send(GET % b"/" + GET % b"/next")
    response = driver.take()
    assert response.endswith(b"\r\n\r\n" + sent) and response.count(b"HTTP/1.1 ") == 1
    assert driver.conn.state is not ConnState.IDLE


def test_no_body_before_start_response_is_a_500(drive: Any) -> None:
    driver = drive(lambda environ, start_response: [b"x"])
    driver.send(GET % b"/")
    assert driver.take().startswith(b"HTTP/1.1 500 ")


# --- file wrapper -----------------------------------------------------------------------------


def test_file_wrapper_uses_sendfile_for_a_real_file(drive: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(700_000)
    (tmp_path / "f").write_bytes(data)
    calls = []
    real_sendfile = os.sendfile

    def counting_sendfile(*args: Any) -> int:
        calls.append(args)
        return real_sendfile(*args)
    monkeypatch.setattr(os, "sendfile", counting_sendfile)

    def app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return environ["wsgi.file_wrapper"](open(tmp_path / "f", "rb"))  # noqa: SIM115
    driver = drive(app)
    driver.send(GET % b"/" + GET % b"/")
    received = driver.take()
    assert calls, "os.sendfile was not used"
    head_end = received.index(b"\r\n\r\n") + 4
    assert received[head_end:head_end + len(data)] == data
    assert received.count(b"HTTP/1.1 200 OK") == 2 and received.endswith(data)


def test_file_wrapper_over_a_non_file_is_iterated(drive: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sendfile", None)  # would raise if the server tried it
    data = bytes(range(250)) * 4  # 1000 bytes: one block

    def app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(data), 1000)
    driver = drive(app)
    driver.send(GET % b"/")
    response = driver.take()
    assert b"Transfer-Encoding: chunked" in response
    assert response.endswith(b"3e8\r\n" + data + b"\r\n0\r\n\r\n")


# --- timers and stopping ------------------------------------------------------------------


def test_timeout_with_a_partial_head_sends_408(drive: Any) -> None:
    driver = drive(make_app())
    driver.send(b"GET / HTTP/1.1\r\nHo")
    # The client is still sending: a lingering close (FIN, then drain), never a reset.
    assert driver.conn.on_timeout() is Outcome.WAIT_READABLE
    assert driver.conn.state is ConnState.CLOSING
    driver.client.sendall(b"st: x\r\n")
    driver.client.settimeout(2.0)
    answer = b""
    while piece := driver.client.recv(4096):
        answer += piece
    assert answer.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in answer
    assert driver.conn.on_readable() is Outcome.WAIT_READABLE  # drains what came
    driver.client.shutdown(socket.SHUT_WR)
    assert driver.conn.on_readable() is Outcome.CLOSE


def test_timeout_of_an_idle_connection_sends_nothing(drive: Any) -> None:
    driver = drive(make_app(headers=[("Content-Length", "1")], result=[b"k"]))
    driver.send(GET % b"/")
    driver.take()
    assert driver.conn.on_timeout() is Outcome.CLOSE
    driver.conn.close()
    assert driver.client.recv(4096) == b""


def test_requests_while_stopping_get_connection_close(drive: Any) -> None:
    driver = drive(make_app(headers=[("Content-Length", "1")], result=[b"k"]),
                   is_stopping=True)
    driver.send(GET % b"/" + GET % b"/second")
    response = driver.take()
    assert b"Connection: close" in response and response.count(b"HTTP/1.1 ") == 1


def test_protocol_error_gets_its_status(drive: Any) -> None:
    driver = drive(make_app())
    driver.send(b"GET / HTTP/1.1\r\nHost: h\r\nHost: h2\r\n\r\n")
    response = driver.take()
    assert response.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in response
    assert driver.conn.state is ConnState.CLOSING


@pytest.mark.parametrize(("request_line", "headers"), [
    pytest.param(b"HEAD / HTTP/1.1", [("Content-Length", "5000")], id="head"),
    pytest.param(b"GET / HTTP/1.1", [], id="chunked-file"),
    pytest.param(b"GET / HTTP/1.0", [], id="http10-file"),
])
def test_file_wrapper_without_sendfile_framing_finishes_once(
        drive: Any, tmp_path: Path, request_line: bytes, headers: list[tuple[str, str]]
) -> None:
    (tmp_path / "f").write_bytes(b"F" * 5000)
    done = []

    def app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", list(headers))
        return environ["wsgi.file_wrapper"](open(tmp_path / "f", "rb"))  # noqa: SIM115
    driver = drive(app)
    driver.context.on_request_done = lambda: done.append(1)
    driver.send(request_line + b"\r\nHost: h\r\n\r\n" + GET % b"/")
    received = driver.take()
    assert len(done) == (1 if b"1.0" in request_line else 2)  # each exchange ends once
    if b"1.0" not in request_line:
        assert received.count(b"HTTP/1.1 200 OK") == 2  # the next request was served
        assert driver.conn.state is ConnState.IDLE


@pytest.mark.parametrize(("status", "headers"), [
    pytest.param("200 OK", [("X-A", "a\r\nX-Injected: 1")], id="crlf-in-value"),
    pytest.param("200 OK", [("X-A\r\nX-B", "1")], id="crlf-in-name"),
    pytest.param("200 OK\r\nX-Injected: 1", [], id="crlf-in-status"),
    pytest.param("abc OK", [], id="status-not-a-number"),
    pytest.param("200 OK", [("X-A", "\u20ac")], id="not-latin-1"),
    pytest.param("200 OK", [("X-A: b", "1")], id="colon-in-name"),
    pytest.param("101 Switching Protocols", [], id="1xx-as-final"),
])
def test_invalid_response_from_the_app_is_a_500(drive: Any, status: str,
                                               headers: list[tuple[str, str]]) -> None:
    driver = drive(make_app(status, headers, result=[b"x"]))
    driver.send(GET % b"/")
    response = driver.take()
    assert response.startswith(b"HTTP/1.1 500 ") and b"Injected" not in response


def test_wsgiref_validator_finds_no_fault_in_environ_or_calls(drive: Any) -> None:
    def app(environ: Any, start_response: Any) -> Any:
        body = environ["wsgi.input"].read(1 << 20)
        environ["wsgi.input"].readline(10)
        environ["wsgi.errors"].write("")
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"w")
        return [b"len=%d" % len(body)]
    driver = drive(validator(app))
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        driver.send(GET % b"/a?b" + b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                    + b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"2\r\nxy\r\n0\r\n\r\n" + b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    responses = split_responses(driver.take())
    assert [r.split(b"\r\n", 1)[0] for r in responses] == [b"HTTP/1.1 200 OK"] * 4
    for response, length in zip(responses, (b"len=0", b"len=3", b"len=2")):
        assert response.endswith(b"1\r\nw\r\n5\r\n" + length + b"\r\n0\r\n\r\n")
    assert responses[3].endswith(b"\r\n\r\n") and b"len=" not in responses[3]


def test_a_validator_fault_becomes_a_500(drive: Any) -> None:
    def app(environ: Any, start_response: Any) -> Any:
        start_response("200", [])  # PEP 3333 wants "200 OK": the validator objects
        return [b"x"]
    driver = drive(validator(app))
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        driver.send(GET % b"/")
    assert driver.take().startswith(b"HTTP/1.1 500 ")


def test_pipelined_requests_behind_a_parked_response_are_answered(drive: Any) -> None:
    size = 4 << 20
    driver = drive(make_app(headers=[("Content-Length", str(size))],
                            result=[b"q" * (1 << 20)] * 4))
    driver.send(GET % b"/big" + GET % b"/next" + b"GET /third HTTP/1.1\r\nHost: h\r\n"
                b"Content-Length: 3\r\n\r\nabc")
    assert driver.writable_waits > 0
    received = driver.take()
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert driver.conn.state is ConnState.IDLE


# --- the peer's close in the middle of a request (RFC 9112 §8) ------------------------------


def _read_all(client: socket.socket) -> bytes:
    client.settimeout(2.0)
    answer = b""
    while piece := client.recv(65536):
        answer += piece
    return answer


def _run_until_closed(driver: Driver) -> Outcome:
    outcome = driver.conn.on_readable()
    for _ in range(10):
        if outcome is Outcome.CLOSE:
            break
        outcome = driver.conn.on_readable()
    return outcome


def reading_app(seen: list[object]) -> App:
    """Reads the whole body; records what read() gave or raised, and answers 200."""
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            seen.append(environ["wsgi.input"].read())
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            seen.append(exc)
            raise
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    return app


@pytest.mark.parametrize("partial", [
    pytest.param(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Le", id="in-the-head"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello",
                 id="small-body-by-length"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + b"x" * 500,
                 id="large-body-by-length"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5",
                 id="chunk-size-line"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
                 id="chunk-data"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n0\r\nX-T: 1\r\n", id="trailers"),
])
def test_a_request_cut_short_by_the_peers_close_gets_400_never_2xx(
        drive: Any, partial: bytes) -> None:
    seen: list[object] = []
    driver = drive(reading_app(seen))
    driver.client.sendall(partial)
    driver.client.shutdown(socket.SHUT_WR)
    assert _run_until_closed(driver) is Outcome.CLOSE
    answer = driver.received + _read_all(driver.client)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:60]
    assert b"200 OK" not in answer
    # When the app was reading, read() raised rather than return a short body.
    assert all(isinstance(item, Exception) for item in seen), seen


def test_an_app_that_swallows_the_cut_body_error_still_closes(drive: Any) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            environ["wsgi.input"].read()
        except Exception:  # noqa: BLE001 - what a careless app does
            pass
        start_response("400 Bad Request", [("Content-Length", "3")])
        return [b"bad"]
    driver = drive(app)
    driver.client.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\nx")
    driver.client.shutdown(socket.SHUT_WR)
    assert _run_until_closed(driver) is Outcome.CLOSE


# --- the server's own answers to HEAD carry no body (RFC 9110 §9.3.2) -----------------------


@pytest.mark.parametrize(("raw", "status"), [
    pytest.param(b"HEAD / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", 400, id="repeated-host"),
    pytest.param(b"HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", 400,
                 id="bad-content-length"),
    pytest.param(b"HEAD / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
                 id="unknown-coding"),
    pytest.param(b"HEAD / HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n\r\n", 417, id="expect"),
    pytest.param(b"HEAD / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431,
                 id="field-too-large"),
])
def test_error_answers_to_head_have_no_body(drive: Any, raw: bytes, status: int) -> None:
    driver = drive(make_app())
    driver.client.sendall(raw)
    driver.client.shutdown(socket.SHUT_WR)
    _run_until_closed(driver)
    answer = driver.received + _read_all(driver.client)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), head
    assert b"Content-Length: " in head and body == b""


def test_error_answers_to_get_keep_their_body(drive: Any) -> None:
    driver = drive(make_app())
    driver.client.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n")
    driver.client.shutdown(socket.SHUT_WR)
    _run_until_closed(driver)
    head, _, body = (driver.received + _read_all(driver.client)).partition(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert len(body) == length > 0


# --- 103 Early Hints (RFC 8297) ---------------------------------------------------------------


def early_hints_app(environ: dict[str, Any], start_response: Any) -> Any:
    environ["wsgi.early_hints"]([("Link", "</app.css>; rel=preload; as=style"),
                                 ("Connection", "close")])  # hop-by-hop: dropped
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def test_early_hints_go_before_the_response_to_http11(drive: Any) -> None:
    driver = drive(early_hints_app)
    driver.send(GET % b"/")
    hints, _, final = driver.take().partition(b"\r\n\r\n")
    assert hints == b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload; as=style"
    assert final.startswith(b"HTTP/1.1 200 OK\r\n") and final.endswith(b"\r\n\r\nok")
    assert driver.conn.state is ConnState.IDLE


def test_no_early_hints_to_http10(drive: Any) -> None:
    driver = drive(early_hints_app)
    driver.send(b"GET / HTTP/1.0\r\n\r\n")
    assert driver.take().startswith(b"HTTP/1.1 200 OK\r\n")
