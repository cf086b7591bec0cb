"""Load shedding on a real worker: with every thread held up in the app, a request that
waits longer than --max-queue-time gets 503 with Retry-After at once, while the requests
in the app finish; with shedding off it waits its turn instead."""
from __future__ import annotations

import http.client
import re
import textwrap
import threading
import time
from pathlib import Path

import pytest
from processes import wait_until
from scraping import metric_total
from serving import Server
from websockets.sync.client import connect as ws_connect

pytestmark = pytest.mark.timeout(60)

APP = textwrap.dedent('''\
    import pathlib
    import threading

    RELEASE = pathlib.Path(__file__).with_name("release")
    STARTED = pathlib.Path(__file__).with_name("started")


    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ws":  # an event-mode echo
            ws = environ["wsgiserve.websocket"].accept()
            ws.on_message = lambda ws, message: ws.send(message)
            return []
        if environ["PATH_INFO"] == "/hold":
            STARTED.touch()
            event = threading.Event()
            while not RELEASE.exists():  # held until the test releases it
                event.wait(0.02)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
''')


def _get(port: int, path: str, results: dict[str, object], key: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        results[key] = (response.status, response.getheader("Retry-After"), response.read())
    except OSError as exc:
        results[key] = exc
    finally:
        connection.close()


@pytest.mark.parametrize("max_queue_time", ["0.3", "0"])
def test_a_request_waiting_past_the_queue_time_gets_503_at_once(
        tmp_path: Path, max_queue_time: str) -> None:
    (tmp_path / "shed_app.py").write_text(APP)
    results: dict[str, object] = {}
    with Server(tmp_path, "shed_app:app", "--threads", "1", "--max-queue-time",
                max_queue_time, pythonpath=[tmp_path]) as server:
        held = threading.Thread(target=_get, args=(server.port, "/hold", results, "held"))
        held.start()
        wait_until(lambda: (tmp_path / "started").exists(), 10, message="the held request")
        waiting = threading.Thread(target=_get, args=(server.port, "/", results, "waiting"))
        waiting.start()
        if max_queue_time != "0":
            # Shed while the only thread is still held: the answer comes before the release.
            waiting.join(15)
            assert results["waiting"] == (503, "1", b"503 Service Unavailable\n"
                                          b"the server is busy: retry later\n")
            assert "held" not in results
        (tmp_path / "release").touch()
        held.join(15)
        waiting.join(15)
        assert results["held"] == (200, None, b"ok")
        if max_queue_time == "0":
            assert results["waiting"] == (200, None, b"ok")  # it waited its turn
        after: dict[str, object] = {}
        _get(server.port, "/", after, "after")
        assert after["after"] == (200, None, b"ok")


def test_shed_requests_are_counted_in_the_metrics(tmp_path: Path) -> None:
    (tmp_path / "shed_app.py").write_text(APP)
    results: dict[str, object] = {}
    with Server(tmp_path, "shed_app:app", "--threads", "1", "--max-queue-time", "0.3",
                "--metrics-bind", "127.0.0.1:0", pythonpath=[tmp_path]) as server:
        found = re.search(r"Serving metrics at: http://127\.0\.0\.1:(\d+)/", server.log())
        assert found is not None, server.log()
        metrics_port = int(found.group(1))
        held = threading.Thread(target=_get, args=(server.port, "/hold", results, "held"))
        held.start()
        wait_until(lambda: (tmp_path / "started").exists(), 10, message="the held request")
        for key in ("first", "second"):
            _get(server.port, "/", results, key)
            assert results[key][0] == 503  # type: ignore[index]
        wait_until(lambda: metric_total(metrics_port, "wsgiserve_shed_requests_total") == 2, 10,
                   message="two shed requests counted")
        assert metric_total(metrics_port, "wsgiserve_requests_total", status="5xx") == 2
        (tmp_path / "release").touch()
        held.join(15)
        wait_until(lambda: metric_total(metrics_port, "wsgiserve_requests_total", status="2xx")
                   == 1, 10, message="the held request counted")
        assert metric_total(metrics_port, "wsgiserve_shed_requests_total") == 2


@pytest.mark.parametrize("max_queue_time", ["0.3", "0"])
def test_a_websocket_message_that_waited_past_the_queue_time_is_still_delivered(
        tmp_path: Path, max_queue_time: str) -> None:
    # An open WebSocket is never shed: its message waits for a thread and is echoed once
    # the held request lets go, though the shedder met its event first.
    (tmp_path / "shed_app.py").write_text(APP)
    results: dict[str, object] = {}
    with Server(tmp_path, "shed_app:app", "--threads", "1", "--max-queue-time",
                max_queue_time, "--websocket-ping-interval", "0",
                pythonpath=[tmp_path]) as server, \
            ws_connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10) as ws:
        ws.send("before")
        assert ws.recv(timeout=10) == "before"
        held = threading.Thread(target=_get, args=(server.port, "/hold", results, "held"))
        held.start()
        wait_until(lambda: (tmp_path / "started").exists(), 10, message="the held request")
        ws.send("while held")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1)  # past the queue time: the shedder has met its event
        (tmp_path / "release").touch()
        held.join(15)
        assert results["held"] == (200, None, b"ok")
        assert ws.recv(timeout=10) == "while held"


@pytest.mark.parametrize("max_queue_time", ["10", "0"])
def test_a_keep_alive_request_waiting_for_a_thread_outlives_the_keep_alive_timeout(
        tmp_path: Path, max_queue_time: str) -> None:
    # The request came on an idle keep-alive connection while the only thread was held
    # longer than --keep-alive: the connection is not idle, and the request is answered
    # (it was closed under the waiting client: a reset, a 502 from nginx for a POST).
    (tmp_path / "shed_app.py").write_text(APP)
    results: dict[str, object] = {}
    with Server(tmp_path, "shed_app:app", "--threads", "1", "--keep-alive", "1",
                "--max-queue-time", max_queue_time, pythonpath=[tmp_path]) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            connection.request("GET", "/")
            assert connection.getresponse().read() == b"ok"
            held = threading.Thread(target=_get, args=(server.port, "/hold", results, "held"))
            held.start()
            wait_until(lambda: (tmp_path / "started").exists(), 10, message="the held request")
            connection.request("POST", "/", body=b"waits")
            time.sleep(2.5)  # on purpose: past two keep-alive periods, the thread held
            (tmp_path / "release").touch()
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"ok")
        finally:
            connection.close()
        held.join(15)
        assert results["held"] == (200, None, b"ok")
