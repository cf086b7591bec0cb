"""Load shedding over HTTP/2: with the only serving thread held in the app, a new stream
on an open connection that waits past --max-queue-time is answered 503 with Retry-After
at once (HEADERS only, the app never called), the connection's PINGs are answered, and the
connection serves normally once the thread is free; with shedding off the stream waits
its turn and is served."""
from __future__ import annotations

import http.client
import re
import textwrap
import threading
import time
from pathlib import Path

import pytest
from h2client import H2Connection
from processes import wait_until
from scraping import metric_total
from serving import Server

pytestmark = pytest.mark.timeout(60)

APP = textwrap.dedent('''\
    import pathlib
    import threading

    HERE = pathlib.Path(__file__).parent
    CALLS = HERE / "calls"


    def app(environ, start_response):
        with CALLS.open("a") as calls:
            calls.write(environ["PATH_INFO"] + "\\n")
        if environ["PATH_INFO"] == "/hold":
            (HERE / "started").touch()
            event = threading.Event()
            while not (HERE / "release").exists():  # held until the test releases it
                event.wait(0.02)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
''')


def _start_holding(port: int, directory: Path, results: dict[str, object]) -> threading.Thread:
    """Hold the only serving thread with an HTTP/1.1 request to /hold until ``directory``
    has a file "release"; return once the app has it. Its outcome goes to results["held"]."""
    held = threading.Thread(target=_hold, args=(port, results))
    held.start()
    wait_until(lambda: (directory / "started").exists(), 10, message="the held request")
    return held


def _hold(port: int, results: dict[str, object]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/hold")
        response = connection.getresponse()
        results["held"] = (response.status, response.read())
    except OSError as exc:
        results["held"] = exc
    finally:
        connection.close()


@pytest.mark.parametrize("max_queue_time", ["0.3", "0"])
def test_a_new_stream_waiting_past_the_queue_time_gets_503_at_once(
        tmp_path: Path, max_queue_time: str) -> None:
    (tmp_path / "shed_app.py").write_text(APP)
    results: dict[str, object] = {}
    with Server(tmp_path, "shed_app:app", "--threads", "1", "--max-queue-time",
                max_queue_time, "--metrics-bind", "127.0.0.1:0",
                pythonpath=[tmp_path]) as server, \
            H2Connection(server.port, timeout_s=15) as conn:
        found = re.search(r"Serving metrics at: http://127\.0\.0\.1:(\d+)/", server.log())
        assert found is not None, server.log()
        metrics_port = int(found.group(1))
        conn.handshake()
        assert conn.get("/first").status == 200
        held = _start_holding(server.port, tmp_path, results)
        stream_id = conn.request("/waiting")
        if max_queue_time != "0":
            # Shed while the only thread is still held: the answer comes before the release.
            response = conn.response(stream_id, timeout_s=10)
            assert (response.status, response.header("retry-after"), response.body) \
                == (503, "1", b"")
            conn.expect_alive()  # its PINGs are answered too, the thread still held
            # A connection opened meanwhile: the shedder meets the preface (HTTP/1.1 hands
            # over to HTTP/2) and sheds the stream that follows it.
            with H2Connection(server.port, timeout_s=10) as late:
                late.handshake()
                assert late.get("/late").status == 503
            assert "held" not in results
            wait_until(lambda: metric_total(metrics_port, "wsgiserve_shed_requests_total") == 2,
                       10, message="the shed streams counted")
            assert metric_total(metrics_port, "wsgiserve_requests_total", protocol="h2",
                                status="5xx") == 2
        (tmp_path / "release").touch()
        held.join(15)
        assert results["held"] == (200, b"ok")
        if max_queue_time == "0":
            response = conn.response(stream_id, timeout_s=10)  # it waited its turn
            assert (response.status, response.body) == (200, b"ok")
        assert conn.get("/after").status == 200  # the connection serves on
        calls = (tmp_path / "calls").read_text().split()
        expected = ["/first", "/hold", "/after"] if max_queue_time != "0" \
            else ["/first", "/hold", "/waiting", "/after"]
        assert calls == expected


def test_a_stream_waiting_for_a_thread_outlives_the_keep_alive_timeout(tmp_path: Path) -> None:
    # With shedding off, a new stream on an idle connection waits for the held thread
    # longer than --keep-alive: the connection is not idle (it was closed with GOAWAY).
    (tmp_path / "shed_app.py").write_text(APP)
    results: dict[str, object] = {}
    with Server(tmp_path, "shed_app:app", "--threads", "1", "--keep-alive", "1",
                "--max-queue-time", "0", pythonpath=[tmp_path]) as server, \
            H2Connection(server.port, timeout_s=15) as conn:
        conn.handshake()
        assert conn.get("/first").status == 200
        held = _start_holding(server.port, tmp_path, results)
        stream_id = conn.request("/waiting")
        time.sleep(2.5)  # on purpose: past two keep-alive periods, the thread held
        (tmp_path / "release").touch()
        response = conn.response(stream_id, timeout_s=10)
        assert (response.status, response.body) == (200, b"ok")
        held.join(15)
        assert results["held"] == (200, b"ok")
        assert conn.goaway is None
