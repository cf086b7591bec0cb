"""The command line: --help, --check-config, --print-config, exit codes, app loading,
hooks, the reloader and the bundled demo app."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import WSGIWarning, validator

import pytest

from wsgiserve import __version__, demo
from wsgiserve.appload import AppLoadError, load_app
from wsgiserve.cli import main
from wsgiserve.config import Config, Hooks, load
from wsgiserve.exitcodes import EXIT_APP_LOAD, EXIT_ERROR, EXIT_OK, EXIT_USAGE
from wsgiserve.hooks import HookError, load_hook, load_hooks
from wsgiserve.log import ACCESS_LOGGER, ERROR_LOGGER
from wsgiserve.server.master.reload import Reloader

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No stray wsgiserve.toml or WSGISERVE_* variable; loggers restored afterwards."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WSGISERVE_") or name in ("WEB_CONCURRENCY", "SCRIPT_NAME"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in (ERROR_LOGGER, ACCESS_LOGGER)}
    yield
    for name, (handlers, level, propagate) in saved.items():
        target = logging.getLogger(name)
        for handler in target.handlers:
            if handler not in handlers:
                handler.close()
        target.handlers[:] = handlers
        target.setLevel(level)
        target.propagate = propagate


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WSGISERVE_")}
    environ["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "wsgiserve", *args], check=False, cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=60)


# --- --help, --version, usage errors ----------------------------------------------------


@pytest.mark.parametrize("columns", ["200", "80", "60"])
def test_help_fits_an_80_column_terminal(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         columns: str) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    for group in ("server:", "workers:", "request limits:", "TLS:", "logging:", "proxies:"):
        assert f"\n{group}\n" in out
    assert "-b, --bind ADDRESS" in out and "--limit-request-field_size" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out == f"wsgiserve {__version__}\n"


def test_bad_flag_value_is_a_usage_error_naming_the_flag(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-w", "0"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == ("usage: wsgiserve [OPTIONS] [APP]\n"
                   "wsgiserve: error: argument -w/--workers: must be >= 1, got 0\n")


# --- --check-config and --print-config --------------------------------------------------


def test_check_config_ok_via_python_m(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text("[workers]\nworkers = 3\n")
    result = run_module("--check-config", "-c", "site.toml", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "config OK: site.toml\n", "")


def test_check_config_finds_wsgiserve_toml(tmp_path: Path) -> None:
    (tmp_path / "wsgiserve.toml").write_text("[workers]\nthreads = 2\n")
    result = run_module("--check-config", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"config OK: {tmp_path / 'wsgiserve.toml'}\n"


def test_check_config_failure_is_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text("[limits]\nlimit_request_line = -1\n")
    result = run_module("--check-config", "-c", "site.toml", cwd=tmp_path)
    assert result.returncode == EXIT_ERROR
    assert result.stdout == ""
    assert result.stderr == ("wsgiserve: error: site.toml: [limits] limit_request_line: must be "
                             "> 0, got -1\n")


def test_bad_config_without_check_is_exit_2(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text("[workers]\ntimeout = -1\n")
    assert main(["-c", "site.toml"]) == EXIT_USAGE
    assert capsys.readouterr().err == ("wsgiserve: error: site.toml: [workers] timeout: must be "
                                       ">= 0, got -1\n")


def test_bad_access_log_format_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check-config", "--access-logformat", "%(zz)s"]) == EXIT_ERROR
    assert capsys.readouterr().err == ("wsgiserve: error: settings: [logging] access_logformat: "
                                       "unknown access log atom %(zz)s\n")


def test_print_config_loads_back_equal(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    argv = ["-w", "5", "--threads", "2", "-b", "0.0.0.0:80", "--access-logfile", "-",
            "--access-log-format", "json", "--umask", "0o22", "-e", "A=b,c", "demo.mod:app"]
    assert main(["--print-config", *argv]) == EXIT_OK
    printed = capsys.readouterr().out
    (tmp_path / "printed.toml").write_text(printed)
    assert load(["-c", "printed.toml"], {}) == load(argv, {}).__class__(
        **{**load(argv, {}).__dict__, "config_path": "printed.toml"})


def test_environment_overrides_file_in_main(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    (tmp_path / "wsgiserve.toml").write_text("[workers]\nworkers = 2\nthreads = 7\n")
    monkeypatch.setenv("WSGISERVE_WORKERS", "3")
    assert main(["--print-config"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "\nworkers = 3\n" in out and "\nthreads = 7\n" in out


# --- handing over to the arbiter ---------------------------------------------------------


def test_without_a_server_main_exits_2_with_a_message(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "wsgiserve.server.master.arbiter", None)  # import fails
    assert main(["--error-logfile", "-"]) == EXIT_USAGE
    assert "wsgiserve.server.master.arbiter is not available" in capsys.readouterr().err


def test_main_prepares_the_process_and_runs_the_arbiter(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    class FakeArbiter:
        def __init__(self, config: Config) -> None:
            seen["config"] = config

        def run(self) -> int:
            seen["cwd"] = os.getcwd()
            seen["env"] = os.environ.get("WSGISERVE_TEST_PAIR")
            seen["path"] = sys.path[:3]
            return 7

    fake = types.ModuleType("wsgiserve.server.master.arbiter")
    fake.Arbiter = FakeArbiter  # type: ignore[attr-defined]  # a stand-in module
    monkeypatch.setitem(sys.modules, "wsgiserve.server.master.arbiter", fake)
    monkeypatch.setenv("WSGISERVE_TEST_PAIR", "unset")  # so the fixture restores it
    site = tmp_path / "site"
    extra = tmp_path / "extra"
    site.mkdir()
    extra.mkdir()
    code = main(["--chdir", str(site), "--pythonpath", str(extra), "-e",
                 "WSGISERVE_TEST_PAIR=a=b", "--access-logfile", str(tmp_path / "access.log"),
                 "--log-level", "debug", "mod:app"])
    assert code == 7
    assert seen["config"].server.app == "mod:app"
    assert seen["cwd"] == str(site)
    assert seen["env"] == "a=b"
    assert seen["path"][:2] == [str(extra), str(site)]
    assert logging.getLogger(ERROR_LOGGER).level == logging.DEBUG
    assert logging.getLogger(ACCESS_LOGGER).propagate is False


def test_exit_codes_are_distinct() -> None:
    assert len({EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_APP_LOAD}) == 4
    assert (EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_APP_LOAD) == (0, 1, 2, 3)


# --- the APP argument --------------------------------------------------------------------

APP_MODULE = '''
calls = []

def application(environ, start_response):
    start_response("200 OK", [])
    return [b"application"]

def app(environ, start_response):
    start_response("200 OK", [])
    return [b"app"]

def make(name="default", count=1, *, flag=False):
    calls.append((name, count, flag))
    def built(environ, start_response):
        start_response("200 OK", [])
        return [f"{name}:{count}:{flag}".encode()]
    return built

class Holder:
    class Inner:
        @staticmethod
        def wsgi(environ, start_response):
            start_response("200 OK", [])
            return [b"nested"]

not_callable = 42

def returns_none():
    return None

def broken_factory():
    raise RuntimeError("no database")
'''


@pytest.fixture
def app_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "apps"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "full.py").write_text(APP_MODULE)
    (package / "only_app.py").write_text("def app(environ, start_response):\n"
                                         "    start_response('200 OK', [])\n"
                                         "    return [b'only app']\n")
    (package / "empty.py").write_text("x = 1\n")
    (package / "crashes.py").write_text("import missing_dependency_xyz\n")
    (package / "fails.py").write_text("raise ValueError('bad settings')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "apps" or m.startswith("apps.")]:
        monkeypatch.delitem(sys.modules, name)
    return package


def call(app: Any) -> bytes:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    return b"".join(app(environ, lambda status, headers, exc_info=None: None))


APP_SPECS = [
    pytest.param("apps.full:app", b"app", id="module:callable"),
    pytest.param("apps.full", b"application", id="module-prefers-application"),
    pytest.param("apps.only_app", b"only app", id="module-falls-back-to-app"),
    pytest.param("apps.full:make()", b"default:1:False", id="factory-no-args"),
    pytest.param("apps.full:make('x', 2)", b"x:2:False", id="factory-literal-args"),
    pytest.param("apps.full:make(name='y', flag=True)", b"y:1:True", id="factory-keywords"),
    pytest.param("apps.full:Holder.Inner.wsgi", b"nested", id="attribute-path"),
    pytest.param(" apps.full:app ", b"app", id="surrounding-space"),
]


@pytest.mark.parametrize(("spec", "body"), APP_SPECS)
def test_app_argument_forms(app_modules: Path, spec: str, body: bytes) -> None:
    assert call(load_app(spec)) == body


BAD_SPECS = [
    pytest.param("apps.nope:app", "'apps.nope:app': no module named 'apps.nope' (check the "
                 "working directory, --chdir or --pythonpath)", id="missing-module"),
    pytest.param("apps.full:nope", "'apps.full:nope': 'apps.full' has no attribute 'nope'",
                 id="missing-attribute"),
    pytest.param("apps.full:Holder.Nope", "'apps.full:Holder.Nope': 'apps.full.Holder' has no "
                 "attribute 'Nope'", id="missing-nested"),
    pytest.param("apps.empty", "'apps.empty': module 'apps.empty' defines neither "
                 "'application' nor 'app'", id="no-default-name"),
    pytest.param("apps.full:not_callable", "'apps.full:not_callable': found int, not a WSGI "
                 "application (a callable taking environ and start_response)", id="not-callable"),
    pytest.param("apps.full:returns_none()", "'apps.full:returns_none()': found NoneType, not "
                 "a WSGI application (a callable taking environ and start_response)",
                 id="factory-returns-none"),
    pytest.param("apps.full:make(__import__('os').getcwd())", "\"apps.full:make(__import__('os')"
                 ".getcwd())\": factory arguments must be literals", id="code-in-arguments"),
    pytest.param("apps.full:make(**{'a': 1})", "\"apps.full:make(**{'a': 1})\": factory "
                 "arguments must be literals", id="double-star"),
    pytest.param("apps.full:app[0]", "'apps.full:app[0]': expected NAME, NAME.ATTR or "
                 "NAME(literal args)", id="subscript"),
    pytest.param("apps.full:(", "'apps.full:(': cannot parse '('", id="syntax"),
    pytest.param("-x:app", "'-x:app': expected MODULE or MODULE:CALLABLE", id="bad-module"),
    pytest.param("apps.full:broken_factory()", "'apps.full:broken_factory()': factory raised "
                 "RuntimeError: no database", id="factory-raises"),
    pytest.param("apps.crashes", "'apps.crashes': importing 'apps.crashes' failed: No module "
                 "named 'missing_dependency_xyz'", id="import-inside-app-fails"),
    pytest.param("apps.fails", "'apps.fails': importing 'apps.fails' failed: ValueError: bad "
                 "settings", id="app-raises-on-import"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_app_argument_errors(app_modules: Path, spec: str, message: str) -> None:
    with pytest.raises(AppLoadError) as caught:
        load_app(spec)
    assert str(caught.value) == message


def test_literal_arguments_never_run_code(app_modules: Path) -> None:
    with pytest.raises(AppLoadError):
        load_app("apps.full:make(print('pwned'))")
    import apps.full  # type: ignore[import-not-found]  # written by the fixture

    assert apps.full.calls == []


def test_import_failure_keeps_its_cause(app_modules: Path) -> None:
    with pytest.raises(AppLoadError) as caught:
        load_app("apps.fails")
    assert isinstance(caught.value.__cause__, ValueError)


def test_empty_spec_is_the_demo_app() -> None:
    assert load_app("") is demo.app


# --- hooks -------------------------------------------------------------------------------


def test_hooks_resolve_both_spellings(app_modules: Path) -> None:
    assert call(load_hook("apps.full:app")) == b"app"
    assert call(load_hook("apps.full.app")) == b"app"
    hooks = load_hooks(Hooks(pre_fork="apps.full.app", on_exit="apps.full:make"))
    assert set(hooks) == {"pre_fork", "on_exit"}


def test_hook_errors_name_the_setting(app_modules: Path) -> None:
    with pytest.raises(HookError) as caught:
        load_hooks(Hooks(worker_exit="apps.full.missing"))
    assert str(caught.value) == ("[hooks] worker_exit: 'apps.full.missing': 'apps.full' has no "
                                 "attribute 'missing'")
    with pytest.raises(HookError, match="found int, not a callable"):
        load_hook("apps.full:not_callable")


# --- the reloader ------------------------------------------------------------------------


def bump_mtime(path: Path) -> None:
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))


def test_reloader_reports_a_changed_module_once(app_modules: Path) -> None:
    import apps.full  # noqa: F401  (loaded so the reloader watches it)

    reloader = Reloader()
    assert reloader.changed() == []
    bump_mtime(app_modules / "full.py")
    assert reloader.changed() == [str(app_modules / "full.py")]
    assert reloader.changed() == []


def test_reloader_watches_extra_files_even_before_they_exist(tmp_path: Path) -> None:
    settings = tmp_path / "settings.ini"
    absent = tmp_path / "later.txt"
    settings.write_text("a=1\n")
    reloader = Reloader([str(settings), str(absent)], watch_modules=False)
    assert reloader.changed() == []
    settings.write_text("a=22\n")  # size changes even if the clock is coarse
    absent.write_text("now here\n")
    assert reloader.changed() == sorted([str(settings), str(absent)])
    absent.unlink()
    assert reloader.changed() == []  # a vanished file is reported when it comes back


def test_reloader_does_not_report_modules_imported_after_the_snapshot(
        app_modules: Path) -> None:
    reloader = Reloader()
    import apps.only_app  # type: ignore[import-not-found]  # noqa: F401  (written by the fixture)

    assert reloader.changed() == []
    bump_mtime(app_modules / "only_app.py")
    assert reloader.changed() == [str(app_modules / "only_app.py")]


# --- the demo app ------------------------------------------------------------------------


def request(method: str, path: str, body: bytes = b"") -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "",
                               "QUERY_STRING": "",
                               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                               "CONTENT_TYPE": "application/x-www-form-urlencoded"}
    setup_testing_defaults(environ)
    result: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        result["status"], result["headers"] = status, dict(headers)
        return lambda data: None

    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)  # a PEP 3333 slip fails the test
        iterable = validator(demo.app)(environ, start_response)
        try:
            data = b"".join(iterable)
        finally:
            iterable.close()  # type: ignore[attr-defined]  # the validator's iterator closes
    return result["status"], result["headers"], data


def test_demo_index_says_it_is_running() -> None:
    status, headers, body = request("GET", "/")
    assert status == "200 OK"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert f"wsgiserve {__version__} is running".encode() in body
    assert int(headers["Content-Length"]) == len(body)


def test_demo_healthz() -> None:
    assert request("GET", "/healthz") == ("200 OK", {"Content-Type": "text/plain; charset=utf-8",
                                                     "Content-Length": "3"}, b"ok\n")


def test_demo_echo_escapes_html() -> None:
    status, _, body = request("POST", "/echo", b"message=%3Cscript%3Ehi%3C%2Fscript%3E")
    assert status == "200 OK"
    assert b"&lt;script&gt;hi&lt;/script&gt;" in body and b"<script>" not in body


@pytest.mark.parametrize(("method", "path", "status"), [
    pytest.param("GET", "/echo", "405 Method Not Allowed", id="echo-needs-post"),
    pytest.param("DELETE", "/", "405 Method Not Allowed", id="index-needs-get"),
    pytest.param("GET", "/nope", "404 Not Found", id="not-found"),
])
def test_demo_errors(method: str, path: str, status: str) -> None:
    assert request(method, path)[0] == status


def test_demo_refuses_a_huge_form() -> None:
    assert request("POST", "/echo", b"m=" + b"x" * (demo.MAX_FORM_BYTES + 1))[0] == (
        "413 Content Too Large")


def test_conf_examples_pass_the_config_checks(capsys: pytest.CaptureFixture[str]) -> None:
    # Their apps and certificate paths are examples: --check-config fails on those alone.
    for path in sorted((ROOT / "conf").glob("*.toml")):
        assert main(["--print-config", "-c", str(path)]) == EXIT_OK
        code = main(["--check-config", "-c", str(path)])
        captured = capsys.readouterr()
        assert code == EXIT_OK or captured.err.startswith((
            "wsgiserve: error: cannot load the app: 'myproject.wsgi:application': no module "
            "named 'myproject'", "wsgiserve: error: [tls] certfile: cannot read /etc/")), (
            path, captured.err)


def test_textwrap_is_not_needed_for_help(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # A narrow terminal still gets every flag listed.
    monkeypatch.setenv("COLUMNS", "40")
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert textwrap.dedent(out).count("--") > 60


# --- --check-config imports the app and loads the TLS files ------------------------------


def test_check_config_fails_on_a_missing_app_module(tmp_path: Path) -> None:
    result = run_module("--check-config", "no_such_module:app", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (EXIT_ERROR, "")
    assert result.stderr == ("wsgiserve: error: cannot load the app: 'no_such_module:app': no "
                             "module named 'no_such_module' (check the working directory, "
                             "--chdir or --pythonpath)\n")


@pytest.mark.parametrize(("source", "line", "problem"), [
    pytest.param("import os\nraise ValueError('bad settings')\n", 2,
                 "ValueError: bad settings", id="raises"),
    pytest.param("x = 1\nimport missing_dependency_xyz\n", 2,
                 "No module named 'missing_dependency_xyz'", id="missing-dependency"),
    pytest.param("def app(:\n    pass\n", 1, "SyntaxError: ", id="syntax-error"),
])
def test_check_config_reports_the_apps_own_error_where_it_is(
        tmp_path: Path, source: str, line: int, problem: str) -> None:
    (tmp_path / "site_app.py").write_text(source)
    result = run_module("--check-config", "site_app:app", cwd=tmp_path)
    assert result.returncode == EXIT_ERROR
    first, second = result.stderr.splitlines()
    assert first.startswith("wsgiserve: error: cannot load the app: 'site_app:app': importing "
                            "'site_app' failed: ") and problem in first
    source_line = source.splitlines()[line - 1].strip()
    assert second == f"  at {tmp_path / 'site_app.py'}, line {line}: {source_line}"
    assert "Traceback" not in result.stderr


def test_check_config_fails_on_a_missing_hook(tmp_path: Path) -> None:
    (tmp_path / "site_app.py").write_text("def app(environ, start_response):\n    return []\n")
    result = run_module("--check-config", "--post-fork", "site_app:nope", "site_app:app",
                        cwd=tmp_path)
    assert result.returncode == EXIT_ERROR
    assert result.stderr == ("wsgiserve: error: [hooks] post_fork: 'site_app:nope': 'site_app' "
                             "has no attribute 'nope'\n")


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, Path]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    paths = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "ca", "empty")}
    paths["cert"].write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    paths["empty"].write_text("not a key\n")
    (tmp_path / "site_app.py").write_text("def app(environ, start_response):\n    return []\n")
    return paths


def test_check_config_succeeds_with_the_app_and_tls_files(certificates: dict[str, Path],
                                                          tmp_path: Path) -> None:
    result = run_module("--check-config", "--certfile", str(certificates["cert"]),
                        "--keyfile", str(certificates["key"]), "--cert-reqs", "required",
                        "--ca-certs", str(certificates["ca"]), "site_app:app", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        EXIT_OK, "config OK: (no config file)\n", "")


@pytest.mark.parametrize(("flags", "message"), [
    pytest.param(["--keyfile", "empty"], "[tls] keyfile: no PEM private key in {empty}",
                 id="keyfile-without-a-key"),
    pytest.param(["--keyfile", "ca"], "[tls] keyfile: no PEM private key in {ca}",
                 id="keyfile-holds-a-certificate"),
    pytest.param(["--keyfile", "key", "--cert-reqs", "required", "--ca-certs", "empty"],
                 "[tls] ca_certs: cannot load CA certificates from {empty}",
                 id="ca-file-without-certificates"),
])
def test_check_config_loads_the_tls_files_as_a_worker_will(
        certificates: dict[str, Path], tmp_path: Path, flags: list[str], message: str) -> None:
    argv = [str(certificates[f]) if f in certificates else f for f in flags]
    result = run_module("--check-config", "--certfile", str(certificates["cert"]), *argv,
                        "site_app:app", cwd=tmp_path)
    assert result.returncode == EXIT_ERROR
    expected = message.format(**{k: str(v) for k, v in certificates.items()})
    assert result.stderr.startswith(f"wsgiserve: error: {expected}"), result.stderr
    assert result.stdout == ""


PASTE_INI = """\
[app:main]
paste.app_factory = paste_app:make
greeting = hello from paste

[app:other]
paste.app_factory = paste_app:make
greeting = the other one
"""

PASTE_APP = """\
def make(global_config, greeting):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [greeting.encode()]
    return app
"""


def test_paste_deploy_app_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("paste.deploy")
    (tmp_path / "site.ini").write_text(PASTE_INI)
    (tmp_path / "paste_app.py").write_text(PASTE_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert call(load_app(f"config:{tmp_path / 'site.ini'}")) == b"hello from paste"
    assert call(load_app("config:site.ini#other")) == b"the other one"  # from the cwd
    with pytest.raises(AppLoadError, match="no such file"):
        load_app("config:missing.ini")
    result = run_module("--check-config", "--paste", "site.ini#other", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (EXIT_OK, "")
