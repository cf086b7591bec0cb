"""Two wsgiserve instances, each started with the command line of deploy/wsgiserve@.service,
behind one nginx upstream (deploy/nginx-instances.conf in deploy/nginx.conf): restarted in
turn (TERM one, start it again, then the other) under load with zero failed requests."""
from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import (
    DEPLOY,
    Certificate,
    Load,
    Nginx,
    Wsgiserve,
    make_certificate,
    nginx_binary,
    site_from_deploy,
    substitute,
    write_app,
)

pytestmark = pytest.mark.timeout(120)


def unit_exec_start(unit: Path) -> list[str]:
    """ExecStart= of a unit file, continuation lines joined, split like systemd does."""
    text = unit.read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0][len("ExecStart="):])


def instance_command(instance: str, tmp: Path) -> list[str]:
    """The template's ExecStart for ``instance``, with this host's paths."""
    command = " ".join(unit_exec_start(DEPLOY / "wsgiserve@.service"))
    command = substitute(command, {
        "/srv/myproject/venv/bin/wsgiserve": f"{sys.executable} -m wsgiserve",
        "/etc/wsgiserve/wsgiserve.toml": str(DEPLOY / "wsgiserve.toml"),
        "/run/": f"{tmp}/run/",
        "/var/log/wsgiserve/": f"{tmp}/logs/",
        "%i": instance,
    })
    return command.split()


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[tuple[dict[str, Wsgiserve], Nginx, Certificate]]:
    nginx_binary()
    app_dir, logs = tmp_path / "app", tmp_path / "logs"
    for directory in (app_dir, logs, tmp_path / "nginx", tmp_path / "static"):
        directory.mkdir()
    write_app(app_dir)
    servers: dict[str, Wsgiserve] = {}
    for name in ("1", "2"):
        # systemd's RuntimeDirectory=wsgiserve-%i
        (tmp_path / "run" / f"wsgiserve-{name}").mkdir(parents=True)
        command = instance_command(name, tmp_path)
        servers[name] = Wsgiserve(
            logs, [*command[3:], "--chdir", str(app_dir), "--workers", "2",
                   "--graceful-timeout", "10", "deploy_app:app"],
            command=command[:3], cwd=app_dir)
    upstream = substitute((DEPLOY / "nginx-instances.conf").read_text(),
                          {"/run/": f"{tmp_path}/run/"})
    block = upstream[upstream.index("upstream wsgiserve {"):]
    certificate = make_certificate(tmp_path)
    nginx = Nginx(tmp_path / "nginx", "")
    nginx.site = site_from_deploy(
        upstream_socket=tmp_path / "unused.sock", static_dir=tmp_path / "static",
        certificate=certificate, log_dir=tmp_path / "nginx", http_port=nginx.http_port,
        https_port=nginx.https_port, upstream_block=block)
    try:
        for server in servers.values():
            server.start()
        nginx.start()
        yield servers, nginx, certificate
    finally:
        nginx.stop()
        for server in servers.values():
            server.stop()


def test_instances_restarted_in_turn_under_load_have_zero_errors(
        instances: tuple[dict[str, Wsgiserve], Nginx, Certificate]) -> None:
    servers, nginx, certificate = instances
    context = certificate.client_context()
    with Load(nginx.https_port, context, clients=6, post_every=0) as load:
        load.wait_for(200)
        for server in servers.values():
            old_pid = server.pid
            assert server.terminate(timeout_s=20) == 0, server.log()[-2000:]
            load.wait_for(100)  # served by the other instance alone
            server.start()
            assert server.pid != old_pid
            load.wait_for(200)
        result = load.stop()
    diagnosis = f"{result.describe()}\n--- nginx error log ---\n{nginx.error_log()[-3000:]}"
    assert result.errors == [] and result.bad == [], diagnosis
    assert set(result.statuses) == {200}, diagnosis
    # Both restarted masters' workers answered.
    restarted = {str(pid) for server in servers.values() for pid in server.workers()}
    assert restarted & set(result.pids), (restarted, result.pids)
    assert len(restarted) == 4
