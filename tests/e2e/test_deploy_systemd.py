"""The systemd and logrotate files in deploy/: checked by ``systemd-analyze verify``, kept
consistent with deploy/wsgiserve.toml and deploy/nginx.conf, socket activation run with
``systemd-socket-activate``, and the logrotate snippet run by logrotate against a live
server (rotate, USR1, the server writes to the new file)."""
from __future__ import annotations

import configparser
import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from deploy_helpers import (
    DEPLOY,
    Wsgiserve,
    deploy_config_args,
    substitute,
    unix_request,
    write_app,
)
from processes import wait_until

pytestmark = pytest.mark.timeout(90)

UNITS = ("wsgiserve.service", "wsgiserve.socket", "wsgiserve@.service")


def read_unit(name: str) -> configparser.ConfigParser:
    """A unit file as sections of keys; repeated keys are joined (systemd appends them)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((DEPLOY / name).read_text().replace("\\\n", " "))
    return parser


def deploy_config() -> dict[str, dict[str, object]]:
    with open(DEPLOY / "wsgiserve.toml", "rb") as file:
        return tomllib.load(file)


def test_deploy_config_is_valid_for_wsgiserve(tmp_path: Path) -> None:
    # --check-config imports the app from its chdir: a stand-in for /srv/myproject.
    (tmp_path / "myproject").mkdir()
    (tmp_path / "myproject" / "__init__.py").write_text("")
    (tmp_path / "myproject" / "wsgi.py").write_text(
        "def application(environ, start_response):\n    return []\n")
    result = subprocess.run([sys.executable, "-m", "wsgiserve", "--config",
                             str(DEPLOY / "wsgiserve.toml"), "--chdir", str(tmp_path),
                             "--check-config"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def test_timeout_stop_sec_covers_the_graceful_timeout() -> None:
    graceful_s = deploy_config()["workers"]["graceful_timeout"]
    assert isinstance(graceful_s, float)
    for name in ("wsgiserve.service", "wsgiserve@.service"):
        service = read_unit(name)["Service"]
        stop_s = float(service["TimeoutStopSec"])
        # Enough for the master to let requests finish and reap; not much more, or a
        # stuck stop keeps a deploy waiting.
        assert graceful_s + 2 <= stop_s <= graceful_s + 10, (name, stop_s, graceful_s)
        assert service["KillSignal"] == "SIGTERM"
        assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
        assert service["Type"] == "notify"


def test_socket_path_agrees_across_unit_config_and_nginx() -> None:
    path = read_unit("wsgiserve.socket")["Socket"]["ListenStream"]
    assert deploy_config()["server"]["bind"] == [f"unix:{path}"]
    assert f"server unix:{path} " in (DEPLOY / "nginx.conf").read_text()
    runtime = read_unit("wsgiserve.service")["Service"]["RuntimeDirectory"]
    assert Path(path).parent == Path("/run") / runtime


def test_template_unit_differs_from_the_service_only_where_it_must() -> None:
    single = dict(read_unit("wsgiserve.service")["Service"])
    template = dict(read_unit("wsgiserve@.service")["Service"])
    per_instance = {"ExecStart", "RuntimeDirectory", "RuntimeDirectoryPreserve"}
    assert {k: v for k, v in single.items() if k not in per_instance} == \
        {k: v for k, v in template.items() if k not in per_instance}
    assert "%i" in template["ExecStart"] and template["RuntimeDirectory"] == "wsgiserve-%i"
    instances = (DEPLOY / "nginx-instances.conf").read_text()
    assert "server unix:/run/wsgiserve-1/wsgiserve.sock " in instances
    assert "--bind unix:/run/wsgiserve-%i/wsgiserve.sock" in template["ExecStart"]


def _verifiable_copies(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointing at an executable that exists here (verify checks)."""
    executable = shutil.which("wsgiserve")
    if executable is None:
        pytest.skip("the wsgiserve console script is not installed (pip install -e .)")
    copies = []
    for name in UNITS:
        text = (DEPLOY / name).read_text()
        if "ExecStart=" in text:
            text = substitute(text, {"/srv/myproject/venv/bin/wsgiserve": executable})
        copy = tmp_path / name
        copy.write_text(text)
        copies.append(copy)
    instance = tmp_path / "wsgiserve@1.service"
    instance.symlink_to(tmp_path / "wsgiserve@.service")
    return [*copies, instance]


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    units = _verifiable_copies(tmp_path)
    result = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True,
                            text=True, timeout=60, check=False, cwd=tmp_path)
    output = result.stdout + result.stderr
    if result.returncode != 0 and re.search(r"Failed to (initialize|set up|create)", output):
        pytest.skip(f"systemd-analyze verify cannot run here: {output.strip()[:300]}")
    assert result.returncode == 0, output
    # verify exits 0 on unknown keys and bad values, which it reports and ignores.
    assert not re.search(r"Unknown|ignoring|[Ii]nvalid|[Ff]ailed", output), output


def test_socket_activation_with_systemd_socket_activate(tmp_path: Path) -> None:
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate is not installed (Debian package systemd)")
    write_app(tmp_path)
    socket_path = tmp_path / "activated.sock"
    # As wsgiserve.socket does it: systemd owns the socket, and the config's bind (the
    # shipped one, a /run path that does not exist here) is not used at all.
    args = ["--config", str(DEPLOY / "wsgiserve.toml"), "--chdir", str(tmp_path),
            "--access-logfile", str(tmp_path / "access.log"), "--workers", "2",
            "deploy_app:app"]
    server = Wsgiserve(tmp_path, args, cwd=tmp_path,
                       command=[activate, "--listen", str(socket_path), "-E", "PYTHONPATH",
                                sys.executable, "-m", "wsgiserve"])
    try:
        server.start(wait_ready=False)
        wait_until(socket_path.exists, 10, message="systemd-socket-activate's socket")
        # The first connection waits in the socket's queue until wsgiserve accepts it.
        reply = unix_request(socket_path, "GET", "/activated", timeout_s=30)
        assert reply.status == 200
        assert reply.json()["PATH_INFO"] == "/activated"
        log = server.wait_for_log(r"ready: 2 worker")
        assert "using 1 inherited listener(s) from systemd; --bind is not used" in log
        assert "/run/wsgiserve" not in log
        assert server.terminate() == 0
    finally:
        server.stop()
    # The socket belongs to systemd (here systemd-socket-activate): wsgiserve leaves it.
    assert socket_path.exists()


def _logrotate_config(log_dir: Path, master_pid: int) -> str:
    snippet = (DEPLOY / "wsgiserve.logrotate").read_text()
    # The shipped postrotate signals the units' main processes; here the master is ours.
    postrotate = re.search(r"^\s*(systemctl kill .*)$", snippet, re.M)
    assert postrotate and "--kill-whom=main" in postrotate.group(1) and \
        "--signal=USR1" in postrotate.group(1) and "'wsgiserve@*.service'" in postrotate.group(1)
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    return substitute(snippet, {
        "/var/log/wsgiserve/*.log": f"{log_dir}/*.log",
        "su wsgiserve wsgiserve": f"su {user} {group}",
        "create 0640 wsgiserve wsgiserve": f"create 0640 {user} {group}",
        postrotate.group(1): f"kill -USR1 {master_pid}",
    })


def test_logrotate_snippet_rotates_and_the_server_reopens(tmp_path: Path) -> None:
    logrotate = shutil.which("logrotate") or (
        "/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
    if logrotate is None:
        pytest.skip("logrotate is not installed (Debian package logrotate)")
    app_dir, log_dir = tmp_path / "app", tmp_path / "logs"
    app_dir.mkdir()
    log_dir.mkdir(mode=0o755)
    write_app(app_dir)
    socket_path = tmp_path / "wsgiserve.sock"
    server = Wsgiserve(tmp_path, deploy_config_args(
        bind=f"unix:{socket_path}", app="deploy_app:app", chdir=app_dir, log_dir=log_dir,
        extra=["--workers", "2"]), cwd=app_dir)
    try:
        server.start()
        for number in range(4):
            assert unix_request(socket_path, "GET", f"/before/{number}").status == 200
        access_log = log_dir / "access.log"
        wait_until(lambda: access_log.read_text().count("/before/") == 4, 10,
                   message="4 access lines")
        config = tmp_path / "logrotate.conf"
        config.write_text(_logrotate_config(log_dir, server.pid))
        result = subprocess.run([logrotate, "--force", "--state", str(tmp_path / "state"),
                                 str(config)], capture_output=True, text=True, timeout=30,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        rotated = log_dir / "access.log.1"  # delaycompress: compressed at the next rotation
        assert rotated.exists() and "/before/3" in rotated.read_text()
        server.wait_for_log(r"SIGUSR1: reopened")
        # Both workers reopen too; ask until each has answered after the signal.
        for number in range(20):
            assert unix_request(socket_path, "GET", f"/after/{number}").status == 200
        wait_until(lambda: access_log.read_text().count("/after/") == 20, 10,
                   message="the access lines in the new file")
        lines = access_log.read_text().splitlines()
        assert all(json.loads(line)["path"].startswith("/after/") for line in lines)
        assert "/after/" not in rotated.read_text()
    finally:
        server.stop()
