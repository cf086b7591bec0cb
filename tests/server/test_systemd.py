"""systemd: sd_notify datagrams (path and abstract sockets), LISTEN_FDS parsing, and the
arbiter's notify protocol and socket activation, checked with real processes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from arbiter_processes import ServerProcess, get
from processes import is_alive, wait_until

from wsgiserve.exitcodes import EXIT_OK
from wsgiserve.server.master import systemd

StartServer = Callable[..., ServerProcess]


# --- the module ---------------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def test_notifier_sends_one_datagram_per_call(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = systemd.Notifier({"NOTIFY_SOCKET": path})
    assert notifier.is_enabled
    assert notifier.notify("READY=1", "STATUS=serving")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving"
    notifier.close()
    assert not notifier.notify("READY=1")


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"wsgiserve-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = systemd.Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.notify("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"
        notifier.close()


def test_notifier_without_a_socket_does_nothing() -> None:
    notifier = systemd.Notifier({})
    assert not notifier.is_enabled
    assert not notifier.notify("READY=1")
    assert not systemd.Notifier({"NOTIFY_SOCKET": "relative/path"}).is_enabled


def test_notifier_survives_a_vanished_supervisor(tmp_path: Path) -> None:
    notifier = systemd.Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.notify("READY=1") is False


def test_listen_fds_for_this_process_with_names() -> None:
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2",
               "LISTEN_FDNAMES": "http:admin", "OTHER": "x"}
    found = systemd.listen_fds(environ)
    assert found == [systemd.ListenFd(3, "http"), systemd.ListenFd(4, "admin")]
    assert environ == {"OTHER": "x"}  # unset, as sd_listen_fds(1) does


def test_listen_fds_for_another_process_are_ignored() -> None:
    environ = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}
    assert systemd.listen_fds(environ, unset=False) == []
    assert "LISTEN_FDS" in environ
    assert systemd.listen_fds({}) == []
    with pytest.raises(ValueError, match="LISTEN_FDS"):
        systemd.listen_fds({"LISTEN_PID": "x", "LISTEN_FDS": "1"})


def test_watchdog_interval_is_half_the_timeout_for_us_only() -> None:
    pid = os.getpid()
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "4000000"}) == 2.0
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "4000000",
                                        "WATCHDOG_PID": str(pid)}) == 2.0
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "4000000",
                                        "WATCHDOG_PID": str(pid + 1)}) is None
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert systemd.watchdog_interval_s({}) is None


# --- the arbiter's notifications ------------------------------------------------------------


class Messages:
    """Everything the server sent to our notify socket, as a list of field lists."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received: list[list[str]] = []

    def fields(self) -> list[str]:
        self.sock.setblocking(False)
        try:
            while True:
                self.received.append(self.sock.recv(4096).decode().split("\n"))
        except BlockingIOError:
            pass
        return [item for message in self.received for item in message]

    def wait_for(self, field: str, timeout_s: float = 10.0, *, count: int = 1) -> None:
        wait_until(lambda: self.fields().count(field) >= count, timeout_s, message=field)

    def wait_prefix(self, prefix: str, timeout_s: float = 10.0) -> str:
        def found() -> str | None:
            return next((f for f in self.fields() if f.startswith(prefix)), None)
        return str(wait_until(found, timeout_s, message=prefix))


def test_ready_reloading_status_watchdog_and_stopping(
        start_server: StartServer, notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    messages = Messages(sock)
    server = start_server("--workers", "2", env={"NOTIFY_SOCKET": path,
                                                 "WATCHDOG_USEC": "200000"})
    messages.wait_for("READY=1")
    status = messages.wait_prefix("STATUS=")
    assert "serving" in status
    wait_until(lambda: messages.fields().count("STATUS=2 worker(s) serving, 0 booting, "
                                               "0 stopping") >= 1, 5, message="STATUS 2")
    messages.wait_for("WATCHDOG=1", count=3)
    server.signal(signal.SIGHUP)
    messages.wait_for("RELOADING=1")
    monotonic = messages.wait_prefix("MONOTONIC_USEC=")
    usec = int(monotonic.split("=", 1)[1])
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 < now_usec - usec < 30_000_000
    messages.wait_for("READY=1", count=2)
    fields = messages.fields()
    assert fields.index("RELOADING=1") < len(fields) - 1 - fields[::-1].index("READY=1")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == EXIT_OK
    messages.wait_for("STOPPING=1")
    assert not any(f.startswith("MAINPID=") for f in messages.fields())


def test_watchdog_for_another_pid_is_not_ours(
        start_server: StartServer, notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    messages = Messages(sock)
    start_server(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
    messages.wait_for("READY=1")
    time.sleep(0.5)  # a window in which ten watchdog pings would have been due
    assert "WATCHDOG=1" not in messages.fields()


# --- socket activation ----------------------------------------------------------------------

# Puts the inherited socket on fd 3, sets LISTEN_PID to its own pid and execs the server,
# as systemd does.
_ACTIVATE = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "os.dup2(fd, 3)\n"
    "if fd != 3: os.close(fd)\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'wsgiserve', *sys.argv[2:]])\n"
)


# What the app sees: the variable names of its own os.environ ("/") and of a subprocess it
# starts ("/child"). /proc/PID/environ would not do: it shows the environment the process
# was exec'd with, and the arbiter removes the activation variables after exec.
_ENVIRON_APP = (
    "import json, os, subprocess, sys\n"
    "def app(environ, start_response):\n"
    "    if environ['PATH_INFO'] == '/child':\n"
    "        names = subprocess.run([sys.executable, '-c', 'import os; print(*os.environ)'],\n"
    "                               capture_output=True, text=True, timeout=30,\n"
    "                               check=True).stdout.split()\n"
    "    else:\n"
    "        names = list(os.environ)\n"
    "    body = json.dumps(sorted(names)).encode()\n"
    "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
    "    return [body]\n"
)


def test_listen_fds_set_by_hand_are_used_instead_of_bind(start_server: StartServer,
                                                          app_dir: Path) -> None:
    (app_dir / "environ_app.py").write_text(_ENVIRON_APP)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        server = start_server(
            "--workers", "2", default_bind=False, app="environ_app:app",
            command=[sys.executable, "-c", _ACTIVATE, str(listener.fileno())],
            env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "web", "ACTIVATION_TEST_MARK": "1"},
            pass_fds=[listener.fileno()])
    finally:
        listener.close()  # the server holds its own copy
    assert server.url == f"http://127.0.0.1:{port}"
    assert "inherited listener(s) from systemd" in server.log()
    for path in ("/", "/child"):
        status, body, _ = get(port, path, timeout_s=30)
        assert status == 200
        names = set(json.loads(body))
        assert "ACTIVATION_TEST_MARK" in names  # the environment did reach it
        assert not names & set(systemd.ACTIVATION_VARIABLES), (path, names)
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == EXIT_OK


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate not installed (Debian package systemd)")
def test_systemd_socket_activate_on_a_unix_socket(start_server: StartServer,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "activated.sock"
    activate = shutil.which("systemd-socket-activate")
    assert activate is not None
    server = start_server(
        default_bind=False, wait=False,
        command=[activate, "-l", str(path), "-E", "PYTHONPATH", "-E",
                 "PYTHONDONTWRITEBYTECODE", sys.executable, "-m", "wsgiserve"])
    # systemd-socket-activate starts the server on the first connection.
    wait_until(path.exists, 10, message="the activation socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(15)
        client.connect(str(path))
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"v1 " in answer
    server.wait_ready()
    assert "inherited listener(s) from systemd" in server.log()
    assert server.url == f"unix:{path}"
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == EXIT_OK


def test_usr2_new_master_announces_mainpid_and_the_old_one_does_not_stop_the_unit(
        start_server: StartServer, notify_socket: tuple[socket.socket, str],
        tmp_path: Path) -> None:
    sock, path = notify_socket
    messages = Messages(sock)
    pidfile = tmp_path / "server.pid"
    server = start_server("--pid", str(pidfile), env={"NOTIFY_SOCKET": path})
    messages.wait_for("READY=1")
    server.signal(signal.SIGUSR2)
    mainpid = messages.wait_prefix("MAINPID=", 20)
    new_master = int(mainpid.split("=", 1)[1])
    server.known_pids.add(new_master)
    assert new_master != server.pid
    messages.wait_for("READY=1", count=2)
    server.known_pids.update(server.workers(master=new_master))
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == EXIT_OK
    assert "STOPPING=1" not in messages.fields()  # the unit lives on in the new master
    assert get(server.port)[2]["x-master-pid"] == str(new_master)
    os.kill(new_master, signal.SIGTERM)
    messages.wait_for("STOPPING=1")
    wait_until(lambda: not is_alive(new_master), 10, message="the new master to exit")

