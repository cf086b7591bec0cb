"""gunicorn compatibility without servers: every gunicorn 27 setting is taken, accepted
with a notice or refused with advice; --from-gunicorn; the StatsD sender; syslog and
logging configs applied by configure_logging."""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsgiserve.cli import configure_logging, main
from wsgiserve.config import (
    GUNICORN_SETTINGS,
    SETTINGS,
    ConfigError,
    Logging,
    Treatment,
    UsageError,
    load,
    parse_command_line,
    translate_gunicorn_file,
)
from wsgiserve.exitcodes import EXIT_ERROR, EXIT_OK
from wsgiserve.log import ACCESS_LOGGER, ERROR_LOGGER, METRICS_LOGGER, report_gauge
from wsgiserve.statsd import StatsdClient, parse_statsd_address

gunicorn_config = pytest.importorskip("gunicorn.config")

# A value for each gunicorn flag whose default is no usable command-line value.
SAMPLES = {
    "bind": "127.0.0.1:9000", "pidfile": "x.pid", "user": "0", "group": "0", "umask": "0",
    "statsd_host": "localhost:8125", "keyfile": "k.pem", "certfile": "c.pem",
    "ca_certs": "ca.pem", "logconfig": "log.ini", "logconfig_json": "log.json",
    "chdir": "/tmp", "paste": "x.ini#main", "proc_name": "name", "pythonpath": "/tmp",
    "worker_tmp_dir": "/dev/shm", "syslog_prefix": "app", "ssl_version": "TLSv1_2",
    "cert_reqs": "2", "ciphers": "HIGH", "raw_env": "A=1", "reload_extra_files": "x.txt",
    "dirty_apps": "m:app", "worker_class": "gthread", "logger_class": "gunicorn.glogging.Logger",
    "access_log_format": "%(h)s", "config": "site.toml", "statsd_prefix": "shop",
    "dogstatsd_tags": "env:test", "root_path": "/api", "header_map": "drop",
    "http_protocols": "h1", "forwarder_headers": "SCRIPT_NAME", "keepalive": "2",
    "accesslog": "-", "errorlog": "-",
}
ACTIONS = {"config": "config_file", "check_config": "should_check_config",
           "print_config": "should_print_config"}


def _is_switch(setting: Any) -> bool:
    return getattr(setting, "action", None) in ("store_true", "store_const")


def test_the_table_lists_gunicorns_settings_in_its_order() -> None:
    assert [s.name for s in GUNICORN_SETTINGS] == [
        s.name for s in gunicorn_config.KNOWN_SETTINGS]
    for ours, theirs in zip(GUNICORN_SETTINGS, gunicorn_config.KNOWN_SETTINGS):
        assert ours.flags == tuple(theirs.cli or ()), ours.name
        assert ours.takes_value == (not _is_switch(theirs)), ours.name
        assert ours.note, ours.name
        if ours.target and ours.target not in ACTIONS:
            assert ours.target in {s.dest for s in SETTINGS}, ours.name
        if ours.treatment is Treatment.SETTING:
            assert ours.target, ours.name


@pytest.mark.parametrize("theirs", gunicorn_config.KNOWN_SETTINGS,
                         ids=[s.name for s in gunicorn_config.KNOWN_SETTINGS])
def test_every_gunicorn_flag_is_accepted_or_explained(theirs: Any) -> None:
    ours = next(s for s in GUNICORN_SETTINGS if s.name == theirs.name)
    for flag in theirs.cli or ():
        value = None if _is_switch(theirs) else SAMPLES.get(theirs.name, str(theirs.default))
        argv = [flag] if value is None else [flag, value]
        if ours.treatment is Treatment.REFUSED:
            with pytest.raises(UsageError) as caught:
                parse_command_line(argv)
            assert str(caught.value) == f"{' '.join(argv)}: {ours.note}"
            continue
        command_line = parse_command_line(argv)
        if ours.treatment is Treatment.NOTICE:
            assert command_line.gunicorn_flags == ((flag, value),)
        elif ours.target in ACTIONS:
            assert getattr(command_line, ACTIONS[ours.target])
        else:
            assert set(command_line.values) == {ours.target}, argv


def test_a_refused_value_says_what_to_do_instead() -> None:
    for worker_class in ("gevent", "eventlet", "tornado", "gunicorn.workers.ggevent.GeventWorker"):
        with pytest.raises(UsageError) as caught:
            parse_command_line(["-k", worker_class, "app:app"])
        message = str(caught.value)
        assert message.startswith(f"-k {worker_class}: wsgiserve has no cooperative")
        assert "--threads" in message and "idle keep-alive connections" in message
    for worker_class in ("sync", "gthread", "gunicorn.workers.sync.SyncWorker",
                         "gunicorn.workers.gthread.ThreadWorker"):
        assert parse_command_line(["-k", worker_class]).gunicorn_flags == (("-k", worker_class),)


def test_notices_are_logged_once_at_start(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    fake = type(sys)("wsgiserve.server.master.arbiter")

    class FakeArbiter:
        def __init__(self, config: Any) -> None:
            pass

        def run(self) -> int:
            return 0

    fake.Arbiter = FakeArbiter  # type: ignore[attr-defined]  # a stand-in module
    monkeypatch.setitem(sys.modules, "wsgiserve.server.master.arbiter", fake)
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in (ERROR_LOGGER, ACCESS_LOGGER)}
    try:
        assert main(["--worker-tmp-dir", "/dev/shm", "-k", "gthread", "--initgroups",
                     "--permit-obsolete-folding", "app:app"], {}) == 0
    finally:
        for name, (handlers, level, propagate) in saved.items():
            target = logging.getLogger(name)
            target.handlers[:] = handlers
            target.setLevel(level)
            target.propagate = propagate
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("] ", 3)[-1] for line in lines] == [
        "--worker-tmp-dir /dev/shm: ignored: the worker heartbeat is shared memory, not a "
        "temporary file.",
        "-k gthread: ignored: there is one worker type, an epoll loop with --threads threads "
        "(gunicorn's gthread; sync is --threads 1).",
        "--initgroups: ignored: always done: a --user given by name gets that user's "
        "supplementary groups (os.initgroups).",
        "--permit-obsolete-folding: ignored: obsolete line folding is refused. wsgiserve "
        "always answers such requests with 400 (see docs/security.md): lenient parsing is "
        "how requests are smuggled past a proxy.",
    ]
    assert "[INFO]" in lines[0] and "[WARNING]" in lines[3]


def test_gunicorn_spellings_map_onto_settings() -> None:
    config = load(["-p", "w.pid", "-u", "www", "-g", "www", "-m", "022", "--log-file", "e.log",
                   "--root-path", "/api", "--proxy-allow-from", "10.0.0.1", "--no-sendfile",
                   "-D", "-R", "--proxy-protocol", "v1", "--paster", "/srv/app.ini#main"], {})
    server = config.server
    assert (server.pid, server.user, server.group, server.umask) == ("w.pid", "www", "www", 0o22)
    assert (server.script_name, server.sendfile, server.daemon) == ("/api", False, True)
    assert server.enable_stdio_inheritance and server.proxy_protocol
    assert server.app == "config:/srv/app.ini#main"
    assert config.logging.error_logfile == "e.log"
    assert config.proxy.proxy_allow_ips == ("10.0.0.1",)
    assert load(["--proxy-protocol", "off"], {}).server.proxy_protocol is False
    assert load(["--proxy-protocol=auto"], {}).server.proxy_protocol is True
    # A word that is no mode is not taken as one: gunicorn's flag before the app.
    switched = load(["--proxy-protocol", "m:app"], {}).server
    assert (switched.proxy_protocol, switched.app) == (True, "m:app")
    assert load(["--no-proxy-protocol", "m:app"], {}).server.app == "m:app"


# --- --from-gunicorn ----------------------------------------------------------------------

GUNICORN_CONF = '''
import multiprocessing

bind = ["unix:/run/app.sock", "127.0.0.1:9000"]
workers = multiprocessing.cpu_count() * 0 + 3
worker_class = "gthread"
threads = 4
keepalive = 7
accesslog = "-"
forwarded_allow_ips = "10.0.0.1,10.0.0.2"
raw_env = ["A=1"]
umask = 0o027
statsd_host = "localhost:8125"
logconfig_dict = {"version": 1, "loggers": {"gunicorn.error": {"level": "DEBUG"}}}
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
helper_not_a_setting = 42

def post_fork(server, worker):
    pass
'''


def test_from_gunicorn_prints_toml_that_loads(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(GUNICORN_CONF)
    assert main(["--from-gunicorn", str(conf)], {}) == EXIT_OK
    text = capsys.readouterr().out
    (tmp_path / "out.toml").write_text(text)
    config = load(["-c", str(tmp_path / "out.toml")], {})
    assert config.server.bind == ("unix:/run/app.sock", "127.0.0.1:9000")
    assert (config.workers.workers, config.workers.threads) == (3, 4)
    assert config.workers.keep_alive == 7.0
    assert config.logging.access_logfile == "-"
    assert config.proxy.forwarded_allow_ips == ("10.0.0.1", "10.0.0.2")
    assert (config.server.env, config.server.umask) == (("A=1",), 0o027)
    assert config.logging.statsd_host == "localhost:8125"
    assert config.logging.log_config_dict == {
        "version": 1, "loggers": {"gunicorn.error": {"level": "DEBUG"}}}
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert '# post_fork = "myproject.server_hooks:post_fork"' in comments
    assert any(line.startswith('# worker_class = "gthread": ignored') for line in comments)
    assert any(line.startswith("# secure_scheme_headers = ") for line in comments)
    assert "helper_not_a_setting" not in text and "multiprocessing" not in text


def test_from_gunicorn_reports_the_files_own_error(tmp_path: Path) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = 2\nraise RuntimeError('no')\n")
    with pytest.raises(ConfigError) as caught:
        translate_gunicorn_file(str(conf))
    assert str(caught.value) == f"{conf}: line 2: RuntimeError: no"
    assert main(["--from-gunicorn", str(tmp_path / "missing.py")], {}) == EXIT_ERROR


# --- StatsD ---------------------------------------------------------------------------------


@pytest.fixture
def statsd_server() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def test_statsd_request_metrics_are_gunicorns(statsd_server: socket.socket) -> None:
    client = StatsdClient(_address(statsd_server), prefix="shop..", tags="env:test")
    assert client.request(404, 0.0125)
    assert statsd_server.recv(4096).decode().split("\n") == [
        "shop.gunicorn.request.duration:12.5|ms|#env:test",
        "shop.gunicorn.requests:1|c|@1.0|#env:test",
        "shop.gunicorn.request.status.404:1|c|@1.0|#env:test",
    ]
    client.gauge("gunicorn.workers", 3)
    assert statsd_server.recv(4096) == b"shop.gunicorn.workers:3|g|#env:test"
    client.close()


def test_statsd_never_raises_and_counts_what_it_drops(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "statsd.sock"
    listener.bind(str(path))
    client = StatsdClient(f"unix:{path}")
    assert client.increment("gunicorn.requests")
    assert listener.recv(100) == b"gunicorn.requests:1|c|@1.0"
    # A receiver that never reads: the non-blocking send fills its queue, then drops.
    sent = sum(client.increment("x") for _ in range(5000))
    assert client.dropped == 5000 - sent > 0
    listener.close()
    path.unlink()
    assert not client.increment("gunicorn.requests")  # nobody listening: dropped, no raise
    assert client.dropped == 5000 - sent + 1


@pytest.mark.parametrize(("text", "expected"), [
    ("localhost:8125", (socket.AF_INET, ("localhost", 8125))),
    ("[::1]:8125", (socket.AF_INET6, ("::1", 8125))),
    ("unix:/run/statsd.sock", (socket.AF_UNIX, "/run/statsd.sock")),
    ("unix:///run/statsd.sock", (socket.AF_UNIX, "/run/statsd.sock")),
])
def test_statsd_addresses(text: str, expected: tuple[Any, Any]) -> None:
    assert parse_statsd_address(text) == expected


# --- logging: StatsD counters, syslog, logging configs -------------------------------------


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    names = (ERROR_LOGGER, ACCESS_LOGGER, METRICS_LOGGER, "gunicorn.error", "gunicorn.access")
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in names}
    yield
    for name, (handlers, level, propagate) in saved.items():
        target = logging.getLogger(name)
        for handler in target.handlers:
            if handler not in handlers:
                handler.close()
        target.handlers[:] = handlers
        target.setLevel(level)
        target.propagate = propagate


def test_log_levels_and_gauges_reach_statsd(restore_loggers: None,
                                            statsd_server: socket.socket) -> None:
    configure_logging(Logging(statsd_host=_address(statsd_server), error_logfile=os.devnull))
    logger = logging.getLogger("wsgiserve.server.worker.loop")
    logger.info("not counted")
    logger.warning("w")
    logger.error("e")
    try:
        raise ValueError("x")
    except ValueError:
        logger.exception("boom")
    logger.critical("c")
    report_gauge("gunicorn.workers", 2)
    report_gauge("gunicorn.workers", 2)  # unchanged within a second: not sent again
    report_gauge("gunicorn.workers", 3)
    received = [statsd_server.recv(4096) for _ in range(6)]
    assert received == [b"gunicorn.log.warning:1|c|@1.0", b"gunicorn.log.error:1|c|@1.0",
                        b"gunicorn.log.exception:1|c|@1.0", b"gunicorn.log.critical:1|c|@1.0",
                        b"gunicorn.workers:2|g", b"gunicorn.workers:3|g"]


def test_syslog_gets_error_and_access_lines(restore_loggers: None, tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(path))
        syslog.settimeout(5)
        configure_logging(Logging(log_syslog=True, log_syslog_to=f"unix://{path}#dgram",
                                  log_syslog_facility="local3", error_logfile=os.devnull),
                          name="shop")
        logging.getLogger("wsgiserve.server.master.arbiter").warning("disk %s", "full")
        logging.getLogger(ACCESS_LOGGER).info("GET / 200")
        # PRI = facility * 8 + severity: local3 (19) warning (4) = 156, info (6) = 158.
        assert syslog.recv(4096) == (b"<156>shop[%d]: [WARNING] disk full\x00" % os.getpid())
        assert syslog.recv(4096) == (b"<158>shop.access[%d]: [INFO] GET / 200\x00"
                                     % os.getpid())


def test_syslog_can_leave_access_lines_out(restore_loggers: None) -> None:
    configure_logging(Logging(log_syslog=True, disable_redirect_access_to_syslog=True,
                              error_logfile=os.devnull))
    assert [type(h).__name__ for h in logging.getLogger(ACCESS_LOGGER).handlers
            if h.get_name()] == []
    assert logging.getLogger(ACCESS_LOGGER).level > logging.CRITICAL


INI = '''
[loggers]
keys = root, {logger}

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = WARNING
handlers =

[logger_{logger}]
level = DEBUG
handlers = file
qualname = {qualname}
propagate = 0

[handler_file]
class = FileHandler
args = ({path!r},)
formatter = plain

[formatter_plain]
format = custom|%(levelname)s|%(name)s|%(message)s
'''


@pytest.mark.parametrize("qualname", ["wsgiserve", "gunicorn.error"])
def test_log_config_file_takes_effect(restore_loggers: None, tmp_path: Path,
                                      qualname: str) -> None:
    log_file = tmp_path / "out.log"
    ini = tmp_path / "logging.ini"
    ini.write_text(INI.format(logger=qualname.replace(".", "_"), qualname=qualname,
                              path=str(log_file)))
    configure_logging(Logging(log_config=str(ini), error_logfile=os.devnull))
    logging.getLogger("wsgiserve.server.worker.loop").debug("booted %d", 7)
    for handler in logging.getLogger(ERROR_LOGGER).handlers:
        handler.flush()
    # gunicorn.error's handlers (a config written for gunicorn) serve wsgiserve's logger.
    assert log_file.read_text() == "custom|DEBUG|wsgiserve.server.worker.loop|booted 7\n"


def test_log_config_json_and_dict(restore_loggers: None, tmp_path: Path) -> None:
    log_file = tmp_path / "out.log"
    config = {"formatters": {"f": {"format": "json|%(message)s"}},
              "handlers": {"h": {"class": "logging.FileHandler", "filename": str(log_file),
                                 "formatter": "f"}},
              "loggers": {"wsgiserve.access": {"handlers": ["h"], "level": "INFO"}}}
    (tmp_path / "log.json").write_text(json.dumps({"version": 1, **config}))
    configure_logging(Logging(log_config_json=str(tmp_path / "log.json"),
                              error_logfile=os.devnull))
    logging.getLogger(ACCESS_LOGGER).info("one")
    configure_logging(Logging(log_config_dict=config, error_logfile=os.devnull))
    logging.getLogger(ACCESS_LOGGER).info("two")
    for handler in logging.getLogger(ACCESS_LOGGER).handlers:
        handler.flush()
    assert log_file.read_text() == "json|one\njson|two\n"


def test_log_config_dict_in_toml(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text(textwrap.dedent('''\
        [logging.log_config_dict]
        version = 1
        [logging.log_config_dict.root]
        level = "INFO"
    '''))
    config = load(["-c", str(tmp_path / "site.toml")], {})
    assert config.logging.log_config_dict == {"version": 1, "root": {"level": "INFO"}}
    assert load([], {"WSGISERVE_LOG_CONFIG_DICT": '{"version": 1}'}).logging.log_config_dict \
        == {"version": 1}


def test_the_migration_guides_example_is_what_from_gunicorn_prints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "migrating-from-gunicorn.md"
            ).read_text()
    section = text[text.index("## A gunicorn.conf.py, translated"):]
    python = section.split("```python\n", 1)[1].split("```", 1)[0]
    toml = section.split("```toml\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    Path("gunicorn.conf.py").write_text(python)
    assert translate_gunicorn_file("gunicorn.conf.py") == toml
