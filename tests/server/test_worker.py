"""The worker served by a real ``python -m wsgiserve`` process, driven by real clients:
raw bytes over ``socket`` (tests/server/serving.py, no shared code with the server's parser),
``http.client``, requests, curl and our own ``wsgiserve.client``.

The app is tests/apps.py inside ``wsgiref.validate``'s validator (warnings are errors), so
each test also checks PEP 3333; ``test_no_app_error_was_logged`` then checks the log.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving import Server, chunked, request_bytes

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("worker"), "tests.apps:app", "--threads", "4") as s:
        yield s


def http_get(server: Server, path: str, **headers: str) -> tuple[int, bytes, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def echo_json(response_body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response_body)
    return data


# --- keep-alive and pipelining ------------------------------------------------------------


def test_keep_alive_reuses_one_connection_with_http_client(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    ports = set()
    try:
        for index in range(5):
            conn.request("POST", f"/echo?i={index}", body=b"x" * index)
            response = conn.getresponse()
            data = echo_json(response.read())
            assert response.status == 200
            assert not response.will_close
            assert data["query"] == f"i={index}" and data["body_length"] == index
            ports.add(data["remote_port"])
            assert conn.sock is not None
    finally:
        conn.close()
    assert len(ports) == 1, f"the server saw several client ports: {ports}"


def test_keep_alive_reuses_one_connection_with_raw_bytes(server: Server) -> None:
    with server.connect() as conn:
        for _ in range(3):
            conn.send(request_bytes("GET", "/hello"))
            response = conn.read_response()
            assert (response.status, response.body) == (200, b"Hello, World!")
            assert response.header("date") and response.header("server")
            assert not response.announces_close


def test_keep_alive_with_our_client(server: Server) -> None:
    from wsgiserve.client import Pool
    with Pool() as pool:
        bodies = [pool.get(f"{server.url}/echo?i={i}").read() for i in range(3)]
        assert pool.idle_count == 1
    assert len({echo_json(body)["remote_port"] for body in bodies}) == 1


def test_http10_keep_alive_when_asked(server: Server) -> None:
    with server.connect() as conn:
        for _ in range(2):
            conn.send(request_bytes("GET", "/hello", version="HTTP/1.0",
                                    headers=[("Connection", "keep-alive")]))
            response = conn.read_response()
            assert response.body == b"Hello, World!"
            assert (response.header("connection") or "").lower() == "keep-alive"


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    requests = [request_bytes("GET", "/echo?n=1"),
                request_bytes("POST", "/echo?n=2", body=b"abc"),
                request_bytes("POST", "/echo?n=3", body=chunked([b"de", b"f"]),
                              headers=[("Transfer-Encoding", "chunked")]),
                request_bytes("HEAD", "/hello"),
                request_bytes("GET", "/stream?n=2&size=3"),
                request_bytes("GET", "/echo?n=6", headers=[("Connection", "close")])]
    with server.connect() as conn:
        conn.send(b"".join(requests))  # one write: the server sees them all at once
        answers = [conn.read_response(is_head=index == 3) for index in range(6)]
        assert conn.is_closed()
    assert [echo_json(answers[i].body)["query"] for i in (0, 1, 2, 5)] == \
        ["n=1", "n=2", "n=3", "n=6"]
    assert echo_json(answers[1].body)["body_length"] == 3
    assert echo_json(answers[2].body)["body_length"] == 3
    assert answers[3].body == b"" and answers[3].header("content-length") == "13"
    assert answers[4].body == b"aaabbb" and answers[4].framing == "chunked"
    assert answers[5].announces_close


# --- bodies -------------------------------------------------------------------------------


def test_chunked_upload_with_http_client(server: Server) -> None:
    pieces = [bytes([i]) * (1000 * i + 1) for i in range(20)]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("PUT", "/echo", body=iter(pieces), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        data = echo_json(conn.getresponse().read())
    finally:
        conn.close()
    whole = b"".join(pieces)
    assert data["body_length"] == len(whole)
    assert data["body_sha256"] == hashlib.sha256(whole).hexdigest()
    assert data["content_length"] is None  # PEP 3333: no length for a chunked body


def test_chunked_upload_with_curl(server: Server, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    payload = bytes(range(256)) * 4000  # 1 MB
    (tmp_path / "payload").write_bytes(payload)
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-H", "Transfer-Encoding: chunked",
         "--data-binary", f"@{tmp_path / 'payload'}", f"{server.url}/echo"],
        capture_output=True, timeout=30, check=True)
    data = echo_json(result.stdout)
    assert data["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_chunked_download(server: Server) -> None:
    with server.connect() as conn:
        conn.send(request_bytes("GET", "/stream?n=4&size=5000"))
        response = conn.read_response()
        assert response.framing == "chunked"
        assert response.header("content-length") is None
        assert response.body == b"".join(bytes([0x61 + i]) * 5000 for i in range(4))
        conn.send(request_bytes("GET", "/hello"))
        assert conn.read_response().body == b"Hello, World!"
    status, body, _ = http_get(server, "/stream?n=3&size=7")
    assert (status, body) == (200, b"a" * 7 + b"b" * 7 + b"c" * 7)


def test_http10_download_without_length_is_close_delimited(server: Server) -> None:
    with server.connect() as conn:
        conn.send(request_bytes("GET", "/stream?n=2&size=4", version="HTTP/1.0"))
        response = conn.read_response()
        assert response.framing == "close" and response.body == b"aaaabbbb"


def test_requests_upload_and_download(server: Server) -> None:
    requests = pytest.importorskip("requests")
    payload = b"r" * 300_000
    response = requests.post(f"{server.url}/echo", data=payload, timeout=10)
    assert response.json()["body_sha256"] == hashlib.sha256(payload).hexdigest()
    response = requests.get(f"{server.url}/big?size=500000", timeout=10)
    assert response.content == b"x" * 500_000


# --- Expect: 100-continue ------------------------------------------------------------------


def test_expect_continue_when_the_app_reads(server: Server) -> None:
    with server.connect() as conn:
        conn.send(request_bytes("POST", "/echo", headers=[
            ("Expect", "100-continue"), ("Content-Length", "5")]))
        interim = conn.read_head()  # the client waits for this before sending the body
        assert interim.status == 100 and interim.head.startswith(b"HTTP/1.1 100 ")
        conn.send(b"hello")
        response = conn.read_response()
        assert response.status == 200 and echo_json(response.body)["body_length"] == 5
        conn.send(request_bytes("GET", "/hello"))  # the connection is still in sync
        assert conn.read_response().body == b"Hello, World!"


def test_expect_continue_when_the_app_does_not_read(server: Server) -> None:
    with server.connect() as conn:
        conn.send(request_bytes("POST", "/ignore-body", headers=[
            ("Expect", "100-continue"), ("Content-Length", "100000")]))
        response = conn.read_response()  # a final status, not a 100
        assert (response.status, response.body) == (200, b"ignored")
        assert response.announces_close
        assert conn.is_closed()


def test_expect_continue_with_http_client_sending_the_body_anyway(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/echo", body=b"q" * 70000, headers={"Expect": "100-continue"})
        response = conn.getresponse()  # http.client skips the 100
        assert echo_json(response.read())["body_length"] == 70000
    finally:
        conn.close()


# --- responses without a body --------------------------------------------------------------


def test_head_has_no_body_and_the_next_response_is_intact(server: Server) -> None:
    with server.connect() as conn:
        conn.send(request_bytes("HEAD", "/stream?n=3&size=10") + request_bytes("HEAD", "/hello")
                  + request_bytes("GET", "/hello"))
        streamed = conn.read_response(is_head=True)
        sized = conn.read_response(is_head=True)
        after = conn.read_response()
        assert streamed.status == 200 and sized.header("content-length") == "13"
        assert (after.status, after.body) == (200, b"Hello, World!")
        assert not conn.buffer


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_for_204_and_304(server: Server, code: int) -> None:
    with server.connect() as conn:
        conn.send(request_bytes("GET", f"/status?code={code}") + request_bytes("GET", "/hello"))
        response = conn.read_response()
        assert response.status == code
        assert response.header("transfer-encoding") is None
        if code == 204:
            assert response.header("content-length") is None
        after = conn.read_response()
        assert (after.status, after.body) == (200, b"Hello, World!")


# --- app behaviour ------------------------------------------------------------------------


def test_write_callable(server: Server) -> None:
    status, body, response = http_get(server, "/write")
    assert (status, body) == (200, b"first,second,tail")
    assert response.getheader("Transfer-Encoding") == "chunked"


def test_app_exception_before_the_head_gets_500_without_details(server: Server) -> None:
    with server.connect() as conn:
        conn.send(request_bytes("GET", "/error-before"))
        response = conn.read_response()
        assert response.status == 500
        assert b"SECRET-DETAIL" not in response.body
        assert response.header("date") and response.header("server")
    assert "SECRET-DETAIL" in server.log()  # the details go to the error log
    assert http_get(server, "/hello")[0] == 200


def test_app_exception_after_the_head_aborts_the_response(server: Server) -> None:
    with server.connect() as conn:
        conn.send(request_bytes("GET", "/error-after"))
        response = conn.read_head()
        assert response.status == 200
        rest = conn.read_to_close()  # the server closes without the last chunk
        assert rest.startswith(b"7\r\npartial\r\n") and b"0\r\n\r\n" not in rest
    conn2 = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn2.request("GET", "/error-after")
        with pytest.raises(http.client.IncompleteRead):
            conn2.getresponse().read()
    finally:
        conn2.close()


def test_short_body_closes_the_connection(server: Server) -> None:
    with server.connect() as conn:
        conn.send(request_bytes("GET", "/short") + request_bytes("GET", "/hello"))
        head = conn.read_head()
        assert head.header("content-length") == "10"
        assert conn.read_to_close() == b"12345"  # and never the next response


def test_file_wrapper_with_a_non_file(server: Server) -> None:
    status, body, _ = http_get(server, "/file-bytesio?size=100000")
    assert status == 200 and body == bytes(range(256)) * 390 + b"z" * 160


def test_script_name_is_not_set_by_default(server: Server) -> None:
    data = echo_json(http_get(server, "/echo")[1])
    assert (data["script_name"], data["path_info"]) == ("", "/echo")


def test_header_names_with_underscores_are_dropped(server: Server) -> None:
    with server.connect() as conn:
        conn.send(request_bytes("GET", "/echo", headers=[
            ("X-Auth_User", "mallory"), ("X-Auth-User", "alice"), ("X-Multi", "a"),
            ("X-Multi", "b")]))
        headers = echo_json(conn.read_response().body)["headers"]
    assert headers["HTTP_X_AUTH_USER"] == "alice"
    assert headers["HTTP_X_MULTI"] == "a, b"


def test_protocol_error_gets_its_status_and_closes(server: Server) -> None:
    with server.connect() as conn:
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        response = conn.read_response()
        assert response.status == 400 and response.announces_close
        assert response.header("date") and response.header("server")
        assert conn.is_closed()


def test_concurrent_pipelined_connections_get_their_own_answers_in_order(
        server: Server) -> None:
    """Many connections at once, each pipelining bursts, over the four threads: every
    response must answer its own request, in order (no two threads on one connection)."""
    failures: list[str] = []

    def client(number: int) -> None:
        try:
            with server.connect(timeout_s=20) as conn:
                for burst in range(5):
                    paths = [f"/echo?c={number}&b={burst}&i={i}" for i in range(10)]
                    conn.send(b"".join(request_bytes("POST", p, body=p.encode())
                                       for p in paths))
                    for path in paths:
                        data = echo_json(conn.read_response().body)
                        if "?" + data["query"] != path[len("/echo"):] \
                                or data["body_length"] != len(path):
                            failures.append(f"{path} answered with {data['query']}")
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(f"client {number}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert not failures, failures[:5]


def test_client_that_vanishes_mid_response_costs_nothing_else(server: Server) -> None:
    for path in ("/big?size=20000000", "/stream?n=2000&size=10000", "/slow-tail?s=0.2"):
        conn = server.connect()
        conn.send(request_bytes("GET", path))
        assert conn.read_head().status == 200
        # SO_LINGER 0: close() sends RST, as a crashed or killed client's kernel does
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    assert http_get(server, "/hello")[:2] == (200, b"Hello, World!")


def test_no_app_error_was_logged(server: Server) -> None:
    """The validator raises (AssertionError or WSGIWarning) inside the app on a PEP 3333
    violation, which the worker logs; only the deliberate errors may be there."""
    log = server.log()
    errors = [line for line in log.splitlines()
              if "Error handling request" in line and "/error-" not in line]
    assert not errors, log
    assert "WSGIWarning" not in log and "AssertionError" not in log, log
    assert "Unexpected error" not in log, log
    deliberate = log.count("Error handling request GET /error-")
    assert log.count("Traceback") == deliberate, log
