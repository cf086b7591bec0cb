"""The arbiter with real processes and real signals on loopback: boot, boot failures,
worker death and timeouts, stop sequences, scaling, reloads, pid file, hooks, privileges.

Heavier load tests are in test_arbiter_load.py (marked slow).
"""
from __future__ import annotations

import errno
import os
import pwd
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from arbiter_processes import (
    APP_SOURCE,
    KeepAliveLoad,
    ServerProcess,
    assert_no_failed_requests,
    connect,
    get,
)
from processes import is_alive, wait_until
from wsgiserve.exitcodes import EXIT_APP_LOAD, EXIT_OK, EXIT_USAGE

StartServer = Callable[..., ServerProcess]


def test_boots_answers_and_titles_its_processes(start_server: StartServer) -> None:
    server = start_server("--workers", "2")
    assert server.url.startswith("http://127.0.0.1:")
    workers = server.wait_workers(2)
    status, body, headers = get(server.port)
    assert status == 200 and body.startswith(b"v1 ")
    assert int(headers["x-worker-pid"]) in workers
    assert int(headers["x-master-pid"]) == server.pid
    master_title = Path(f"/proc/{server.pid}/cmdline").read_bytes()
    worker_title = Path(f"/proc/{workers[0]}/cmdline").read_bytes()
    pytest.importorskip("setproctitle")
    assert master_title.startswith(b"wsgiserve: master [arbiter_app:app]")
    assert worker_title.startswith(b"wsgiserve: worker [arbiter_app:app]")


def test_pid_file_is_written_and_removed_and_term_exits_0(
        start_server: StartServer, tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "server.pid"
    pidfile.parent.mkdir()
    server = start_server("--pid", str(pidfile))
    assert pidfile.read_text().strip() == str(server.pid)
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == EXIT_OK
    assert not pidfile.exists()


def test_an_app_that_cannot_load_stops_the_master_with_exit_3(
        start_server: StartServer) -> None:
    server = start_server("--workers", "3", app="no_such_module:app", wait=False)
    assert server.wait_exit(15) == EXIT_APP_LOAD
    log = server.log()
    assert "no module named 'no_such_module'" in log
    assert "failed to boot" in log
    assert log.count("booting worker") <= 3  # no respawn loop


def test_preload_failure_exits_3_before_forking(start_server: StartServer) -> None:
    server = start_server("--preload", app="no_such_module:app", wait=False)
    assert server.wait_exit(15) == EXIT_APP_LOAD
    assert "booting worker" not in server.log()


def test_an_address_in_use_is_a_clear_error(start_server: StartServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = start_server("--bind", f"127.0.0.1:{port}", wait=False)
        assert server.wait_exit(15) == 1
    assert f"127.0.0.1:{port}" in server.log() and "in use" in server.log()


def test_unknown_user_is_a_usage_error(start_server: StartServer) -> None:
    server = start_server("--user", "no-such-user-wsgiserve", wait=False)
    assert server.wait_exit(15) == EXIT_USAGE


def test_a_crashing_worker_is_respawned_with_backoff(start_server: StartServer,
                                                     app_dir: Path) -> None:
    (app_dir / "crash_app.py").write_text("import os\nos._exit(7)\n")
    server = start_server(app="crash_app:app", wait=False)
    time.sleep(2.0)  # observing a rate: how many spawns happen in a fixed window
    assert server.process is not None and server.process.poll() is None
    spawns = server.log().count("booting worker")
    assert 2 <= spawns <= 8, server.log()
    assert "exited with status 7" in server.log()


def test_sigkill_of_a_worker_replaces_it_within_2_s(start_server: StartServer) -> None:
    server = start_server("--workers", "2")
    before = server.wait_workers(2)
    os.kill(before[0], signal.SIGKILL)
    started = time.monotonic()
    after = server.wait_workers(2, 2.0, exclude=[before[0]])
    assert time.monotonic() - started < 2.0
    assert before[1] in after
    wait_until(lambda: "ready" in server.log(), 1)
    assert get(server.port)[0] == 200


def test_a_hung_request_gets_its_worker_aborted_with_a_stack_dump(
        start_server: StartServer) -> None:
    server = start_server("--workers", "1", "--threads", "4", "--timeout", "1")
    [victim] = server.wait_workers(1)
    results: dict[str, object] = {}

    def hang() -> None:
        try:
            results["hung"] = get(server.port, "/?sleep=30", timeout_s=15)[0]
        except OSError as exc:
            results["hung"] = type(exc).__name__
    thread = threading.Thread(target=hang, daemon=True)
    thread.start()
    wait_until(lambda: not is_alive(victim), 8, message="the hung worker to die")
    thread.join(10)
    assert results["hung"] != 200
    [replacement] = server.wait_workers(1, 5, exclude=[victim])
    assert get(server.port)[0] == 200
    log = server.wait_for_log(r"after a timeout")
    assert "WORKER TIMEOUT" in log
    # The stack dump (faulthandler's) names the app's frame at the line that hangs.
    hung_line = APP_SOURCE.splitlines().index(
        next(line for line in APP_SOURCE.splitlines() if "the hung-request line" in line)) + 1
    assert f'arbiter_app.py", line {hung_line} in app' in log
    assert replacement != victim


def test_other_requests_keep_working_while_one_hangs(start_server: StartServer) -> None:
    server = start_server("--workers", "2", "--threads", "2", "--timeout", "2")
    hung = threading.Thread(target=lambda: _quiet_get(server.port, "/?sleep=20"), daemon=True)
    hung.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert get(server.port, timeout_s=3)[0] == 200
        time.sleep(0.05)


def _quiet_get(port: int, path: str) -> None:
    try:
        get(port, path, timeout_s=25)
    except OSError:
        pass


def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0(
        start_server: StartServer) -> None:
    server = start_server("--workers", "2", "--threads", "4", "--graceful-timeout", "10")
    workers = server.wait_workers(2)
    results: list[object] = []
    lock = threading.Lock()

    def slow() -> None:
        try:
            status = get(server.port, "/?sleep=2", timeout_s=15)[0]
        except OSError as exc:
            status = type(exc).__name__
        with lock:
            results.append(status)
    threads = [threading.Thread(target=slow, daemon=True) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # let the five requests reach the app (they run for 2 s)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(ConnectionRefusedError):
        connect(server.port, 2).close()
    assert server.wait_exit(15) == EXIT_OK
    assert time.monotonic() - started < 10
    for thread in threads:
        thread.join(5)
    assert results == [200] * 5
    assert not any(is_alive(pid) for pid in workers)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGQUIT])
def test_int_and_quit_stop_fast_despite_a_long_request(start_server: StartServer,
                                                       signum: int) -> None:
    server = start_server("--workers", "1", "--threads", "2", "--graceful-timeout", "20")
    workers = server.wait_workers(1)
    hung = threading.Thread(target=lambda: _quiet_get(server.port, "/?sleep=10"), daemon=True)
    hung.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.signal(signum)
    assert server.wait_exit(5) == EXIT_OK
    assert time.monotonic() - started < 3.0
    wait_until(lambda: not any(is_alive(pid) for pid in workers), 2)


def test_ttin_and_ttou_change_the_worker_count_but_never_below_one(
        start_server: StartServer) -> None:
    server = start_server("--workers", "2")
    server.wait_workers(2)
    server.signal(signal.SIGTTIN)
    server.wait_workers(3)
    for _ in range(4):
        server.signal(signal.SIGTTOU)
        time.sleep(0.1)
    server.wait_workers(1)
    time.sleep(0.5)
    assert len(server.workers()) == 1
    assert get(server.port)[0] == 200


def test_winch_stops_the_workers_and_hup_brings_them_back(start_server: StartServer) -> None:
    server = start_server("--workers", "2")
    server.wait_workers(2)
    server.signal(signal.SIGWINCH)
    server.wait_workers(0)
    assert is_alive(server.pid)
    server.signal(signal.SIGHUP)
    server.wait_workers(2)
    wait_until(lambda: _answers(server.port), 5, message="an answer after HUP")


def _answers(port: int) -> bool:
    try:
        return get(port, timeout_s=2)[0] == 200
    except OSError:
        return False


def test_hup_loads_new_code_and_retires_old_workers(start_server: StartServer,
                                                    app_dir: Path) -> None:
    server = start_server("--workers", "2")
    before = server.wait_workers(2)
    source = (app_dir / "arbiter_app.py").read_text()
    (app_dir / "arbiter_app.py").write_text(source.replace('b"v1"', 'b"v2"'))
    server.signal(signal.SIGHUP)
    server.wait_workers(2, 10, exclude=before)
    wait_until(lambda: get(server.port)[1].startswith(b"v2"), 5, message="v2")


def test_hup_with_broken_code_keeps_the_old_workers_serving(
        start_server: StartServer, app_dir: Path) -> None:
    server = start_server("--workers", "2")
    before = server.wait_workers(2)
    app_file = app_dir / "arbiter_app.py"
    good = app_file.read_text()
    app_file.write_text("def app(:  # a broken deploy\n")
    with KeepAliveLoad(server.port, threads=2, max_seconds=30) as load:
        server.signal(signal.SIGHUP)
        server.wait_for_log(r"reload \(HUP\) failed", 10)
        assert set(server.workers()) == set(before)
        app_file.write_text(good.replace('b"v1"', 'b"v2"'))
        server.signal(signal.SIGHUP)
        server.wait_workers(2, 10, exclude=before)
        result = load.stop()
    assert get(server.port)[1].startswith(b"v2")
    assert is_alive(server.pid)
    assert_no_failed_requests(result)


def test_hup_with_a_bad_config_file_keeps_running(start_server: StartServer,
                                                  tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text("[workers]\nworkers = 1\n")
    server = start_server("--config", str(config))
    before = server.wait_workers(1)
    config.write_text("[workers]\nworkers = -5\n")
    server.signal(signal.SIGHUP)
    log = server.wait_for_log(r"reload \(HUP\) failed, keeping the running configuration")
    assert "workers" in log.split("reload (HUP) failed", 1)[1].splitlines()[0]
    assert server.workers() == before
    config.write_text("[workers]\nworkers = 2\n")
    server.signal(signal.SIGHUP)
    server.wait_workers(2, 10, exclude=before)


def test_hup_keeps_a_command_line_bind_over_a_changed_config_file(
        start_server: StartServer, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('[server]\nbind = ["127.0.0.1:0"]\n')
    server = start_server("--config", str(config), "--bind", "127.0.0.1:0")
    first_port = server.port
    socket_path = tmp_path / "second.sock"
    config.write_text(f'[server]\nbind = ["unix:{socket_path}"]\n')
    server.signal(signal.SIGHUP)
    server.wait_for_log(r"reload \(HUP\) done", 10)
    assert get(first_port)[0] == 200  # the command line outranks the file
    assert not socket_path.exists()


def test_hup_rebinds_when_the_config_file_changes_bind(start_server: StartServer,
                                                       tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    socket_path = tmp_path / "app.sock"
    config.write_text('[server]\nbind = ["127.0.0.1:0"]\n')
    server = start_server("--config", str(config), default_bind=False)
    first_port = server.port
    config.write_text(f'[server]\nbind = ["unix:{socket_path}"]\n')
    server.signal(signal.SIGHUP)
    server.wait_for_log(r"Listening at: unix:", 10)
    server.wait_for_log(r"reload \(HUP\) done", 10)
    assert _unix_get(str(socket_path)).startswith(b"HTTP/1.1 200")
    wait_until(lambda: _refused(first_port), 5, message="the old port to close")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == EXIT_OK
    assert not socket_path.exists()


def _refused(port: int) -> bool:
    try:
        connect(port, 2).close()
    except ConnectionRefusedError:
        return True
    return False


def _unix_get(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_unix_socket_bind_mode_and_cleanup(start_server: StartServer, tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    server = start_server("--bind", f"unix:{path}", "--umask", "0o007")
    assert server.url == f"unix:{path}"
    assert oct(path.stat().st_mode & 0o777) == oct(0o770)
    assert _unix_get(str(path)).startswith(b"HTTP/1.1 200")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == EXIT_OK
    assert not path.exists()


def test_stale_unix_socket_is_replaced(start_server: StartServer, tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays behind, nobody listens
    server = start_server("--bind", f"unix:{path}")
    assert _unix_get(str(path)).startswith(b"HTTP/1.1 200")
    assert "removing stale socket" in server.log()


def test_usr1_reopens_log_files_in_master_and_workers(start_server: StartServer,
                                                      tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    server = start_server("--access-logfile", str(access))
    before = server.workers()
    assert get(server.port)[0] == 200
    wait_until(lambda: access.exists() and access.read_text().count("\n") >= 1, 5)
    access.rename(tmp_path / "access.log.1")
    server.signal(signal.SIGUSR1)
    server.wait_for_log(r"SIGUSR1: reopened")

    def reopened() -> bool:
        get(server.port)
        return access.exists() and access.read_text().count("\n") >= 1
    wait_until(reopened, 5, interval_s=0.1, message="the new access log")
    assert server.workers() == before


def test_workers_drop_privileges_to_user(start_server: StartServer) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to switch users")
    nobody = pwd.getpwnam("nobody")
    # nobody cannot read the test's private temporary directory (nor, here, a Python
    # installed under /root): a world-readable directory and an app importing nothing new.
    public = Path(tempfile.mkdtemp(prefix="wsgiserve-user-"))
    try:
        public.chmod(0o755)
        (public / "plain_app.py").write_text(
            "def app(environ, start_response):\n"
            "    start_response('200 OK', [('Content-Length', '2')])\n"
            "    return [b'ok']\n")
        (public / "plain_app.py").chmod(0o644)
        _check_worker_user(start_server, public, nobody)
    finally:
        shutil.rmtree(public, ignore_errors=True)


def _check_worker_user(start_server: StartServer, public: Path,
                       nobody: pwd.struct_passwd) -> None:
    server = start_server("--user", "nobody", "--pythonpath", str(public),
                          app="plain_app:app")
    [worker] = server.wait_workers(1)
    status = Path(f"/proc/{worker}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
    assert get(server.port)[0] == 200
    assert Path(f"/proc/{server.pid}/status").read_text().count("Uid:\t0\t") == 1


def test_hooks_are_called_in_order(start_server: StartServer, app_dir: Path) -> None:
    record = app_dir / "hooks.txt"
    (app_dir / "arbiter_hooks.py").write_text(
        "import os\n"
        f"PATH = {str(record)!r}\n"
        "def _note(name):\n"
        "    with open(PATH, 'a') as f:\n"
        "        f.write(f'{name} {os.getpid()}\\n')\n"
        + "".join(f"def {name}(*args):\n    _note({name!r})\n"
                  for name in ("on_starting", "when_ready", "pre_fork", "post_fork",
                               "on_reload", "on_exit", "post_worker_init"))
        # As in gunicorn: worker_exit(server, worker), in the worker, with the arbiter.
        + "def worker_exit(server, worker):\n"
          "    _note('worker_exit-' + type(server).__name__ + '-' + type(worker).__name__)\n")
    hook_args = []
    for name in ("on_starting", "when_ready", "pre_fork", "post_fork", "on_reload", "on_exit",
                 "post_worker_init", "worker_exit"):
        hook_args += [f"--{name.replace('_', '-')}", f"arbiter_hooks:{name}"]
    server = start_server("--pythonpath", str(app_dir), *hook_args)
    server.signal(signal.SIGHUP)
    server.wait_for_log(r"reload \(HUP\) done")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == EXIT_OK
    lines = [line.split() for line in record.read_text().splitlines()]
    names = [name for name, _ in lines]
    master = str(server.pid)
    assert names[0] == "on_starting" and names[-1] == "on_exit"
    assert {pid for name, pid in lines if name in ("pre_fork", "on_reload", "when_ready")} == \
        {master}
    assert all(pid != master for name, pid in lines if name in ("post_fork",
                                                               "post_worker_init"))
    assert names.count("pre_fork") == 2 and names.count("post_fork") == 2
    exits = [pid for name, pid in lines if name == "worker_exit-Arbiter-Worker"]
    assert len(exits) == 2 and master not in exits  # the HUP's old worker, then the new one
    assert "on_reload" in names and "when_ready" in names


def test_without_tls_no_process_loads_the_ssl_module(start_server: StartServer,
                                                     app_dir: Path) -> None:
    # The ssl module and OpenSSL cost ~5 MiB of RSS per process: only TLS loads them.
    (app_dir / "ssl_app.py").write_text(
        "import sys\n"
        "def app(environ, start_response):\n"
        "    body = str('ssl' in sys.modules).encode()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "    return [body]\n")
    server = start_server("--pythonpath", str(app_dir), app="ssl_app:app")
    [worker] = server.wait_workers(1)
    assert get(server.port)[:2] == (200, b"False")
    for pid in (server.pid, worker):
        assert "libssl" not in Path(f"/proc/{pid}/maps").read_text()


def test_reload_flag_restarts_workers_when_the_app_file_changes(
        start_server: StartServer, app_dir: Path) -> None:
    server = start_server("--reload")
    before = server.wait_workers(1)
    app_file = app_dir / "arbiter_app.py"
    time.sleep(0.05)
    app_file.write_text(app_file.read_text().replace('b"v1"', 'b"v2!"'))
    server.wait_workers(1, 10, exclude=before)
    wait_until(lambda: get(server.port)[1].startswith(b"v2!"), 5, message="new code")


def test_the_master_refuses_connections_after_its_workers_are_gone(
        start_server: StartServer) -> None:
    server = start_server()
    port = server.port
    server.signal(signal.SIGTERM)
    server.wait_exit(10)
    with pytest.raises(OSError) as caught:
        connect(port, 2).close()
    assert caught.value.errno in (errno.ECONNREFUSED, None)


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("the arbiter tests read /proc", allow_module_level=True)
