"""Configuration: precedence, every error path, --print-config round trip, conf/ files."""
from __future__ import annotations

import dataclasses
import importlib.util
import tomllib
from pathlib import Path
from typing import Any

import pytest

from wsgiserve.config import (
    SETTINGS,
    BindAddress,
    CommandLine,
    Config,
    ConfigError,
    Server,
    UsageError,
    Workers,
    dump_toml,
    load,
    parse_bind,
    parse_command_line,
    resolve,
    unknown_environment,
)

ROOT = Path(__file__).resolve().parent.parent
CONF_FILES = sorted((ROOT / "conf").glob("*.toml"))


def write(tmp_path: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the declaration ---------------------------------------------------------------------


def test_every_toml_key_is_its_long_flag_with_underscores() -> None:
    for setting in SETTINGS:
        if setting.is_positional:
            continue
        long_flags = [f for f in setting.flags if f.startswith("--")] or [setting.long_flag]
        assert long_flags[0][2:].replace("-", "_") == setting.key
        assert setting.env_var == "WSGISERVE_" + setting.key.upper()


def test_keys_are_unique_across_tables() -> None:
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))


def test_defaults_without_file_env_or_flags(tmp_path: Path) -> None:
    assert resolve(CommandLine(), {}, cwd=str(tmp_path)) == Config()
    assert Config().workers.workers == 1
    assert Config().metrics.metrics_bind == ""  # metrics are off unless asked for
    assert Config().workers.max_worker_memory == 0
    assert Config().logging.access_logformat == (
        '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"')


# --- precedence --------------------------------------------------------------------------

PRECEDENCE = [
    # setting, file text, env var value, argv, expected at each layer (file, env, cli)
    pytest.param("workers.workers", "[workers]\nworkers = 2", "3", ["-w", "4"], (2, 3, 4),
                 id="int"),
    pytest.param("workers.timeout", "[workers]\ntimeout = 5", "6.5", ["-t", "7"],
                 (5.0, 6.5, 7.0), id="float"),
    pytest.param("server.preload", "[server]\npreload = true", "false", ["--preload"],
                 (True, False, True), id="bool"),
    pytest.param("server.bind", '[server]\nbind = ["a:1"]', "b:2,c:3", ["-b", "d:4", "-b", "e:5"],
                 (("a:1",), ("b:2", "c:3"), ("d:4", "e:5")), id="repeatable-list"),
    pytest.param("proxy.forwarded_allow_ips", '[proxy]\nforwarded_allow_ips = ["10.0.0.1"]',
                 "10.0.0.2", ["--forwarded-allow-ips", "10.0.0.3,10.1.0.0/16"],
                 (("10.0.0.1",), ("10.0.0.2",), ("10.0.0.3", "10.1.0.0/16")), id="comma-list"),
    pytest.param("server.umask", '[server]\numask = "022"', "0o27", ["--umask", "7"],
                 (0o22, 0o27, 7), id="octal"),
    pytest.param("metrics.metrics_bind", '[metrics]\nmetrics_bind = "127.0.0.1:9100"',
                 "unix:/run/m.sock", ["--metrics-bind", "[::1]:9101"],
                 ("127.0.0.1:9100", "unix:/run/m.sock", "[::1]:9101"), id="metrics-bind"),
    pytest.param("workers.max_worker_memory", "[workers]\nmax_worker_memory = 512", "256",
                 ["--max-worker-memory", "1024"], (512, 256, 1024), id="max-worker-memory"),
]


def _value(config: Config, dest: str) -> Any:
    section, key = dest.split(".")
    return getattr(getattr(config, section), key)


@pytest.mark.parametrize(("dest", "file_text", "env_value", "argv", "expected"), PRECEDENCE)
def test_precedence_default_file_env_cli(tmp_path: Path, dest: str, file_text: str,
                                         env_value: str, argv: list[str],
                                         expected: tuple[Any, Any, Any]) -> None:
    path = str(write(tmp_path, file_text))
    env = {"WSGISERVE_" + dest.split(".")[1].upper(): env_value}
    default = _value(Config(), dest)
    assert _value(load([], {}), dest) == default
    assert _value(load(["-c", path], {}), dest) == expected[0]
    assert _value(load(["-c", path], env), dest) == expected[1]
    assert _value(load(["-c", path, *argv], env), dest) == expected[2]


def test_no_flag_overrides_a_true_from_the_file(tmp_path: Path) -> None:
    path = str(write(tmp_path, "[server]\nreload = true"))
    assert load(["-c", path, "--no-reload"], {}).server.reload is False


def test_web_concurrency_is_a_default_below_the_file(tmp_path: Path) -> None:
    assert load([], {"WEB_CONCURRENCY": "5"}).workers.workers == 5
    path = str(write(tmp_path, "[workers]\nworkers = 2"))
    assert load(["-c", path], {"WEB_CONCURRENCY": "5"}).workers.workers == 2
    with pytest.raises(ConfigError, match=r"^WEB_CONCURRENCY: must be an integer, got \"x\"$"):
        load([], {"WEB_CONCURRENCY": "x"})


def test_script_name_environment_variable_is_honoured() -> None:
    assert load([], {"SCRIPT_NAME": "/app"}).server.script_name == "/app"
    assert load(["--script-name", "/b"], {"SCRIPT_NAME": "/app"}).server.script_name == "/b"


def test_wsgiserve_toml_in_the_working_directory_is_found(tmp_path: Path) -> None:
    write(tmp_path, "[workers]\nthreads = 3", name="wsgiserve.toml")
    config = resolve(CommandLine(), {}, cwd=str(tmp_path))
    assert config.workers.threads == 3
    assert config.config_path == str(tmp_path / "wsgiserve.toml")
    # An explicit empty -c means no file at all.
    assert resolve(CommandLine(config_file=""), {}, cwd=str(tmp_path)) == Config()


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = str(write(tmp_path, "[workers]\nthreads = 4"))
    assert load([], {"WSGISERVE_CONFIG": path}).workers.threads == 4


def test_positional_app_and_env_pairs() -> None:
    config = load(["-e", "A=1", "--env", "B=x=y", "pkg.mod:make('a', 2)"], {})
    assert config.server.app == "pkg.mod:make('a', 2)"
    assert config.server.env == ("A=1", "B=x=y")


# --- error paths -------------------------------------------------------------------------

BAD_FILES = [
    pytest.param("[limits]\nlimit_request_line = -1",
                 "[limits] limit_request_line: must be > 0, got -1", id="limit-negative"),
    pytest.param('[workers]\nworkers = "4"',
                 '[workers] workers: must be an integer, got string "4"', id="int-as-string"),
    pytest.param("[workers]\nworkers = 0", "[workers] workers: must be >= 1, got 0",
                 id="workers-zero"),
    pytest.param("[workers]\ntimeout = -1.5", "[workers] timeout: must be >= 0, got -1.5",
                 id="timeout-negative"),
    pytest.param("[workers]\ntimeout = nan", "[workers] timeout: must be a finite number, got nan",
                 id="timeout-nan"),
    pytest.param("[workers]\ntimeout = true",
                 "[workers] timeout: must be a number, got boolean true", id="float-as-bool"),
    pytest.param("[server]\npreload = 1",
                 "[server] preload: must be true or false, got integer 1", id="bool-as-int"),
    pytest.param("[server]\nworkers = 4", "[server] workers: unknown key (it belongs in "
                 "[workers])", id="key-in-wrong-table"),
    pytest.param("[workers]\nworkerz = 4",
                 "[workers] workerz: unknown key (did you mean 'workers'?)", id="typo-key"),
    pytest.param("[workers]\nfrobnicate = 4", "[workers] frobnicate: unknown key",
                 id="unknown-key"),
    pytest.param("[limit]\n", "[limit]: unknown table (did you mean 'limits'?)",
                 id="typo-table"),
    pytest.param("preload = true", "preload: unknown top-level key (it belongs in [server])",
                 id="top-level-key"),
    pytest.param("workers = 4", "workers: must be a table, got integer",
                 id="section-not-table"),
    pytest.param('[server]\nbind = "0.0.0.0:80"',
                 '[server] bind: must be an array of strings, got string "0.0.0.0:80"',
                 id="list-as-string"),
    pytest.param("[server]\nbind = []", "[server] bind: must not be empty", id="bind-empty"),
    pytest.param('[server]\nbind = ["localhost"]',
                 '[server] bind: must be HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N, got '
                 '"localhost"', id="bind-without-port"),
    pytest.param('[server]\nbind = ["[::1:80"]',
                 '[server] bind: must be HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N, got '
                 '"[::1:80"', id="bind-bad-brackets"),
    pytest.param('[server]\numask = "0o1777"',
                 "[server] umask: must be between 0 and 0o777, got 0o1777", id="umask-range"),
    pytest.param('[server]\numask = "rw"',
                 '[server] umask: must be an octal mode like 0o22 or 022, got "rw"',
                 id="umask-text"),
    pytest.param('[server]\nenv = ["NOEQUALS"]',
                 '[server] env: must be KEY=VALUE, got "NOEQUALS"', id="env-pair"),
    pytest.param('[server]\nscript_name = "app/"', '[server] script_name: must be empty or '
                 'start with / and not end with /, got "app/"', id="script-name"),
    pytest.param('[server]\napp = "my-app:app"',
                 '[server] app: must be MODULE or MODULE:CALLABLE, got "my-app:app"', id="app"),
    pytest.param('[proxy]\nforwarded_allow_ips = ["10.0.0.0/33"]',
                 '[proxy] forwarded_allow_ips: must be an IP address, a CIDR network or *, got '
                 '"10.0.0.0/33"', id="bad-cidr"),
    pytest.param('[tls]\ncert_reqs = "maybe"',
                 '[tls] cert_reqs: must be one of none, optional, required, got "maybe"',
                 id="choice"),
    pytest.param('[tls]\nalpn = [""]', '[tls] alpn: must be an ASCII protocol name of 1 to '
                 '255 characters, got ""', id="alpn-empty"),
    pytest.param('[tls]\nkeyfile = "k.pem"', "[tls] keyfile: needs certfile to be set too",
                 id="keyfile-without-certfile"),
    pytest.param('[tls]\ncertfile = "c.pem"\ncert_reqs = "required"',
                 "[tls] cert_reqs: 'required' needs ca_certs to verify client certificates",
                 id="client-certs-without-ca"),
    pytest.param('[logging]\nlog_level = "verbose"', '[logging] log_level: must be one of '
                 'debug, info, warning, error, critical, got "verbose"', id="log-level"),
    pytest.param('[hooks]\npre_fork = "not a path"', '[hooks] pre_fork: must be a dotted path '
                 'like module:callable, got "not a path"', id="hook-syntax"),
    pytest.param('[hooks]\non_exit = "nodots"', '[hooks] on_exit: must be a dotted path like '
                 'module:callable, got "nodots"', id="hook-without-module"),
    pytest.param('[metrics]\nmetrics_bind = "fd://3"', '[metrics] metrics_bind: must be '
                 'HOST:PORT, [IPV6]:PORT or unix:PATH, got "fd://3"', id="metrics-bind-fd"),
    pytest.param('[metrics]\nmetrics_bind = "9100"', '[metrics] metrics_bind: must be '
                 'HOST:PORT, [IPV6]:PORT or unix:PATH, got "9100"', id="metrics-bind-port"),
    pytest.param("[workers]\nmax_worker_memory = -1",
                 "[workers] max_worker_memory: must be >= 0, got -1", id="max-worker-memory"),
    pytest.param("[workers]\nworkers = 1979-05-27",
                 "[workers] workers: must be an integer, got date/time 1979-05-27",
                 id="date-value"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_FILES)
def test_bad_file_names_file_table_key_and_problem(tmp_path: Path, text: str,
                                                   problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(["-c", str(path)], {})
    assert str(caught.value) == f"{path}: {problem}"


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nbind = ]\n")
    with pytest.raises(ConfigError) as caught:
        load(["-c", str(path)], {})
    assert str(caught.value) == f"{path}: invalid TOML: Invalid value (at line 2, column 8)"


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load(["-c", str(path)], {})
    assert str(caught.value) == f"{path}: cannot read config file: No such file or directory"


BAD_ENV = [
    pytest.param({"WSGISERVE_WORKERS": "abc"}, 'WSGISERVE_WORKERS: must be an integer, got "abc"',
                 id="int"),
    pytest.param({"WSGISERVE_PRELOAD": "maybe"},
                 'WSGISERVE_PRELOAD: must be true or false, got "maybe"', id="bool"),
    pytest.param({"WSGISERVE_LIMIT_REQUEST_LINE": "-1"},
                 "WSGISERVE_LIMIT_REQUEST_LINE: must be > 0, got -1", id="range"),
    pytest.param({"WSGISERVE_BIND": ""}, "WSGISERVE_BIND: must not be empty", id="empty-list"),
]


@pytest.mark.parametrize(("environ", "message"), BAD_ENV)
def test_bad_environment_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load([], environ)
    assert str(caught.value) == message


BAD_ARGV = [
    pytest.param(["-w", "0"], "argument -w/--workers: must be >= 1, got 0", id="range"),
    pytest.param(["--workers", "four"], 'argument -w/--workers: must be an integer, got "four"',
                 id="int"),
    pytest.param(["--limit-request-field_size", "-5"], "argument --limit-request-field_size/"
                 "--limit-request-field-size: must be > 0, got -5", id="gunicorn-spelling"),
    pytest.param(["-b", "nowhere"], 'argument -b/--bind: must be HOST:PORT, [IPV6]:PORT, '
                 'unix:PATH or fd://N, got "nowhere"', id="bind"),
    pytest.param(["--log-level", "loud"], 'argument --log-level: must be one of debug, info, '
                 'warning, error, critical, got "loud"', id="choice"),
    # (Not close to any flag: --no-such-flag would get "did you mean --no-websocket-deflate?")
    pytest.param(["--xyzzy"], "unrecognized option --xyzzy", id="unknown"),
    pytest.param(["--workerz", "2", "app:app"], "unrecognized option --workerz (did you mean "
                 "--workers?)", id="typo-before-a-value"),
    pytest.param(["--work=2"], "unrecognized option --work (did you mean --workers?)",
                 id="no-abbreviations"),
    pytest.param(["-k", "gevent"], "-k gevent: wsgiserve has no cooperative", id="gevent"),
    pytest.param(["--worker-class", "eventlet"], "--worker-class eventlet: wsgiserve has no "
                 "cooperative", id="eventlet"),
    pytest.param(["--protocol", "uwsgi"], "--protocol uwsgi: wsgiserve speaks HTTP only",
                 id="uwsgi"),
    pytest.param(["--dirty-app", "m:a"], "--dirty-app m:a: No dirty arbiters", id="dirty"),
    pytest.param(["--proxy-protocol=v3"], "argument --proxy-protocol/--no-proxy-protocol: "
                 "must be one of off, v1, v2, auto, got 'v3'", id="proxy-protocol-mode"),
    pytest.param(["a:app", "b:app"], "unrecognized arguments: b:app", id="two-apps"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_ARGV)
def test_bad_command_line_names_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_command_line(argv)
    assert str(caught.value) == message or (
        message.endswith(("cooperative", "HTTP only", "arbiters")) and
        str(caught.value).startswith(message))


def test_gunicorn_flag_spellings_are_accepted() -> None:
    argv = ["--limit-request-field-size", "100", "--access-log-format", "json",
            "--reload-extra-file", "a.txt", "--limit-request-field_size", "200"]
    config = load(argv, {})
    assert config.limits.limit_request_field_size == 200
    assert config.logging.access_logformat == "json"
    assert config.server.reload_extra_files == ("a.txt",)


def test_unknown_environment_lists_typos_only() -> None:
    environ = {"WSGISERVE_WORKERZ": "2", "WSGISERVE_WORKERS": "2", "WSGISERVE_CONFIG": "x",
               "WSGISERVE_FDS": "3", "WSGISERVE_METRICS_FD": "4", "PATH": "/bin"}
    assert unknown_environment(environ) == ["WSGISERVE_WORKERZ"]


UMASKS = [
    pytest.param("[server]\numask = 18", 18, id="toml-int"),
    pytest.param("[server]\numask = 0o22", 0o22, id="toml-octal-literal"),
    pytest.param('[server]\numask = "022"', 0o22, id="shell-octal-string"),
    pytest.param('[server]\numask = "0o22"', 0o22, id="python-octal-string"),
    pytest.param('[server]\numask = "18"', 18, id="decimal-string"),
]


@pytest.mark.parametrize(("text", "expected"), UMASKS)
def test_umask_forms(tmp_path: Path, text: str, expected: int) -> None:
    assert load(["-c", str(write(tmp_path, text))], {}).server.umask == expected


BINDS = [
    pytest.param("127.0.0.1:8000", BindAddress("tcp", host="127.0.0.1", port=8000), id="ipv4"),
    pytest.param("[::1]:0", BindAddress("tcp", host="::1", port=0), id="ipv6"),
    pytest.param("localhost:80", BindAddress("tcp", host="localhost", port=80), id="name"),
    pytest.param("unix:/run/app.sock", BindAddress("unix", path="/run/app.sock"), id="unix"),
    pytest.param("fd://3", BindAddress("fd", fd=3), id="fd"),
]


@pytest.mark.parametrize(("text", "expected"), BINDS)
def test_parse_bind(text: str, expected: BindAddress) -> None:
    assert parse_bind(text) == expected


@pytest.mark.parametrize("text", ["::1:80", "host:65536", "host:", ":80", "unix:", "fd://x",
                                  "[nothex]:80", "a b:80"])
def test_parse_bind_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="must be HOST:PORT"):
        parse_bind(text)


# --- --print-config round trip -----------------------------------------------------------


def test_print_config_round_trip(tmp_path: Path) -> None:
    text = '[logging]\naccess_logformat = "%(h)s \\"%(r)s\\" \\\\ \\u0001 \\u007f é"\n'
    argv = ["-c", str(write(tmp_path, text)), "-w", "3", "-b", "[::1]:9000", "-b",
            "unix:/tmp/a b.sock", "--umask", "027", "--preload", "--timeout", "0.25",
            "-e", 'QUOTE="x"', "--forwarded-allow-ips", "*", "--limit-request-body", "1048576",
            "--pre-request", "hooks.mod:before", "app.mod:make('x', 2)"]
    original = load(argv, {})
    dumped = dump_toml(original)
    reloaded = load(["-c", str(write(tmp_path, dumped, name="printed.toml"))], {})
    assert reloaded == dataclasses.replace(original, config_path=str(tmp_path / "printed.toml"))
    assert f"# loaded from {tmp_path / 'site.toml'}" in dumped
    assert "umask = 0o027" in dumped


def test_print_config_of_defaults_is_plain_toml() -> None:
    data = tomllib.loads(dump_toml(Config()))
    assert data["workers"]["timeout"] == 30.0
    assert data["server"]["bind"] == ["127.0.0.1:8000"]


# --- conf/ and docs ----------------------------------------------------------------------


@pytest.mark.parametrize("path", CONF_FILES, ids=[p.name for p in CONF_FILES])
def test_every_conf_file_loads(path: Path) -> None:
    config = load(["-c", str(path)], {})
    assert config.config_path == str(path)


def test_conf_examples_exist() -> None:
    names = {p.name for p in CONF_FILES}
    assert {"wsgiserve.toml", "minimal.toml", "tls.toml", "behind-nginx.toml"} <= names


def test_annotated_conf_names_every_setting_with_its_default() -> None:
    path = ROOT / "conf" / "wsgiserve.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for setting in SETTINGS:
        assert setting.key in data[setting.section], setting.key
    assert data["logging"]["log_config_dict"] == {}
    assert load(["-c", str(path)], {}) == Config(config_path=str(path))


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_config_docs",
                                                  ROOT / "tools" / "gen_config_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_docs_and_conf_are_up_to_date() -> None:
    generator = _generator()
    for path, render in generator.OUTPUTS.items():
        assert path.read_text(encoding="utf-8") == render(), (
            f"{path} is stale: run python tools/gen_config_docs.py")
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for setting in SETTINGS:
        assert f"| `{setting.key}` |" in doc


def test_sections_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().workers.workers = 2  # type: ignore[misc]  # proving it is rejected
    assert isinstance(Config().server, Server) and isinstance(Config().workers, Workers)


def test_limit_defaults_are_the_protocol_cores() -> None:
    # config may not import wsgiserve.http, so the defaults are written twice: keep them equal.
    from wsgiserve.http import HttpLimits
    from wsgiserve.server.worker.loop import limits_from_config
    assert limits_from_config(Config()) == HttpLimits()
