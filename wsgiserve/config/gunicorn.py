"""What becomes of each gunicorn setting: taken by a wsgiserve setting, accepted and not
needed (a notice at start says why), or refused with what to do instead.

One table, ``GUNICORN_SETTINGS``, in gunicorn's documentation order: the command line
accepts gunicorn's flags from it, ``--from-gunicorn`` translates a gunicorn.conf.py with
it, and the migration guide's flag table is generated from it. Imports only the config
modules; outside them, import these names from wsgiserve.config.
"""
from __future__ import annotations

import enum
import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from wsgiserve.config.checks import ConfigError, _BadValue, _toml_value
from wsgiserve.config.convert import _from_text, _from_toml
from wsgiserve.config.settings import _BY_KEY, SECTIONS, Setting
from wsgiserve.config.toml import _setting_toml


class Treatment(enum.Enum):
    SETTING = "setting"  # a wsgiserve setting takes it (same flags, or aliases of them)
    NOTICE = "notice"  # accepted but not needed: one line at start says why
    REFUSED = "refused"  # a usage error that says what to do instead
    FILE_ONLY = "file only"  # no flag in gunicorn either: a gunicorn.conf.py name


@dataclass(frozen=True)
class GunicornSetting:
    """One gunicorn setting and what wsgiserve does with it.

    ``accepted_values`` limits a NOTICE flag to those values (compared lowercased); any
    other value is refused with ``refusal``. ``note`` is the notice, the refusal when
    there is no ``refusal``, and the migration guide's note.
    """

    name: str  # as in gunicorn.conf.py
    flags: tuple[str, ...]  # gunicorn's own flags; () for a gunicorn.conf.py-only name
    treatment: Treatment
    note: str
    target: str = ""  # "section.key" of the wsgiserve setting that takes it
    takes_value: bool = True  # False: a switch
    accepted_values: tuple[str, ...] | None = None
    refusal: str = ""
    is_warning: bool = False  # the notice is a warning: requests are handled differently

    def refusal_for(self, value: str | None) -> str | None:
        """The message refusing ``value`` (None for a switch), or None if it is accepted."""
        if self.treatment is Treatment.REFUSED:
            return self.refusal or self.note
        if self.accepted_values is not None and value is not None \
                and value.strip().lower() not in self.accepted_values:
            return self.refusal
        return None


S, N, R, F = Treatment.SETTING, Treatment.NOTICE, Treatment.REFUSED, Treatment.FILE_ONLY
_HOOK_NOTE: Final = "Same name and arguments; a dotted path to your function."
_NO_DIRTY: Final = "No dirty arbiters: run long tasks in a task queue or a separate service."
_NO_ASGI: Final = "WSGI only; gunicorn too ignores it for WSGI apps."
_STRICT: Final = ("wsgiserve always answers such requests with 400 (see docs/security.md): "
                  "lenient parsing is how requests are smuggled past a proxy.")
_COOPERATIVE: Final = (
    "wsgiserve has no cooperative (monkey-patched) workers. Use --threads N: each worker's "
    "epoll loop holds idle keep-alive connections without a thread, so threads are only "
    "needed for requests in the app at the same moment; but blocking I/O inside the app "
    "(database, HTTP calls) holds its thread, as in gunicorn's gthread worker. For "
    "thousands of long-lived connections use an ASGI server.")
_WORKER_CLASSES: Final = ("sync", "gthread", "gunicorn.workers.sync.syncworker",
                          "gunicorn.workers.gthread.threadworker", "egg:gunicorn#sync",
                          "egg:gunicorn#gthread")

# Every setting of gunicorn 27.0.1 (gunicorn.config.KNOWN_SETTINGS), in its order.
GUNICORN_SETTINGS: Final[tuple[GunicornSetting, ...]] = (
    GunicornSetting("config", ("-c", "--config"), S, "A TOML file, not Python: "
                    "`wsgiserve --from-gunicorn gunicorn.conf.py` translates yours; "
                    "./wsgiserve.toml is read when present; also $WSGISERVE_CONFIG.",
                    target="config"),
    GunicornSetting("wsgi_app", (), F, "The positional argument, or app in [server]: "
                    "module:callable, module (finds application, then app) or "
                    "module:factory(args).", target="server.app"),
    GunicornSetting("bind", ("-b", "--bind"), S, "HOST:PORT, [IPV6]:PORT, unix:PATH, fd://N; "
                    "repeatable. systemd socket activation needs no flag.",
                    target="server.bind"),
    GunicornSetting("backlog", ("--backlog",), S, "Same default, 2048.",
                    target="server.backlog"),
    GunicornSetting("workers", ("-w", "--workers"), S, "Same; $WEB_CONCURRENCY too.",
                    target="workers.workers"),
    GunicornSetting("worker_class", ("-k", "--worker-class"), N,
                    "ignored: there is one worker type, an epoll loop with --threads "
                    "threads (gunicorn's gthread; sync is --threads 1).",
                    accepted_values=_WORKER_CLASSES, refusal=_COOPERATIVE),
    GunicornSetting("threads", ("--threads",), S, "Threads per worker; each runs requests "
                    "end to end.", target="workers.threads"),
    GunicornSetting("worker_connections", ("--worker-connections",), S, "Open connections "
                    "per worker; past it, clients wait in the kernel backlog.",
                    target="workers.worker_connections"),
    GunicornSetting("max_requests", ("--max-requests",), S, "Same.",
                    target="workers.max_requests"),
    GunicornSetting("max_requests_jitter", ("--max-requests-jitter",), S, "Same.",
                    target="workers.max_requests_jitter"),
    GunicornSetting("timeout", ("-t", "--timeout"), S, "Enforced per request, with a stack "
                    "dump.", target="workers.timeout"),
    GunicornSetting("graceful_timeout", ("--graceful-timeout",), S, "Same.",
                    target="workers.graceful_timeout"),
    GunicornSetting("keepalive", ("--keep-alive",), S, "Default 5 s (gunicorn 2 s).",
                    target="workers.keep_alive"),
    GunicornSetting("limit_request_line", ("--limit-request-line",), S, "Default 8190 "
                    "(gunicorn 4094); 414 past it.", target="limits.limit_request_line"),
    GunicornSetting("limit_request_fields", ("--limit-request-fields",), S, "Same default, "
                    "100; 431 past it.", target="limits.limit_request_fields"),
    GunicornSetting("limit_request_field_size", ("--limit-request-field_size",), S,
                    "Same default, 8190; 431 past it.",
                    target="limits.limit_request_field_size"),
    GunicornSetting("reload", ("--reload",), S, "Same (stat polling, standard library "
                    "only).", target="server.reload", takes_value=False),
    GunicornSetting("reload_engine", ("--reload-engine",), N, "ignored: the reloader always "
                    "polls file times (no inotify dependency)."),
    GunicornSetting("reload_extra_files", ("--reload-extra-file",), S, "Same.",
                    target="server.reload_extra_files"),
    GunicornSetting("spew", ("--spew",), N, "ignored: no line tracing; use python -X "
                    "importtime or a profiler.", takes_value=False, is_warning=True),
    GunicornSetting("check_config", ("--check-config",), S, "Imports the app as a worker "
                    "would and loads the TLS files; exits 0 or 1 with the problem.",
                    target="check_config", takes_value=False),
    GunicornSetting("print_config", ("--print-config",), S, "Prints TOML that loads back "
                    "to the same configuration.", target="print_config", takes_value=False),
    GunicornSetting("preload_app", ("--preload",), S, "Same.", target="server.preload",
                    takes_value=False),
    GunicornSetting("sendfile", ("--no-sendfile",), S, "Same: wsgi.file_wrapper files are "
                    "read and written instead (sendfile is never used on TLS).",
                    target="server.sendfile", takes_value=False),
    GunicornSetting("reuse_port", ("--reuse-port",), S, "Same.", target="server.reuse_port",
                    takes_value=False),
    GunicornSetting("chdir", ("--chdir",), S, "Same.", target="server.chdir"),
    GunicornSetting("daemon", ("-D", "--daemon"), S, "Same (double fork, new session); "
                    "under systemd prefer Type=notify (deploy/wsgiserve.service).",
                    target="server.daemon", takes_value=False),
    GunicornSetting("raw_env", ("-e", "--env"), S, "Same.", target="server.env"),
    GunicornSetting("pidfile", ("-p", "--pid"), S, "Same. Under systemd no pid file is "
                    "needed.", target="server.pid"),
    GunicornSetting("worker_tmp_dir", ("--worker-tmp-dir",), N, "ignored: the worker "
                    "heartbeat is shared memory, not a temporary file."),
    GunicornSetting("user", ("-u", "--user"), S, "Same; a user name also gets its "
                    "supplementary groups (gunicorn's --initgroups).", target="server.user"),
    GunicornSetting("group", ("-g", "--group"), S, "Same.", target="server.group"),
    GunicornSetting("umask", ("-m", "--umask"), S, "Same; 022 and 0o22 are both octal.",
                    target="server.umask"),
    GunicornSetting("initgroups", ("--initgroups",), N, "ignored: always done: a --user "
                    "given by name gets that user's supplementary groups (os.initgroups).",
                    takes_value=False),
    GunicornSetting("tmp_upload_dir", (), F, "Bodies are streamed to the app; nothing is "
                    "written to disk."),
    GunicornSetting("secure_scheme_headers", (), F, "Fixed set: X-Forwarded-Proto, "
                    "X-Forwarded-Ssl, Forwarded: proto=, from --forwarded-allow-ips peers "
                    "only."),
    GunicornSetting("forwarded_allow_ips", ("--forwarded-allow-ips",), S, "Same default "
                    "(127.0.0.1,::1), plus CIDR ranges; unix-socket peers are trusted. Also "
                    "sets REMOTE_ADDR.", target="proxy.forwarded_allow_ips"),
    GunicornSetting("accesslog", ("--access-logfile",), S, "Same; off by default.",
                    target="logging.access_logfile"),
    GunicornSetting("disable_redirect_access_to_syslog",
                    ("--disable-redirect-access-to-syslog",), S, "Same.",
                    target="logging.disable_redirect_access_to_syslog", takes_value=False),
    GunicornSetting("access_log_format", ("--access-logformat",), S, "Same atoms, plus json "
                    "for one JSON object per line.", target="logging.access_logformat"),
    GunicornSetting("errorlog", ("--error-logfile", "--log-file"), S, "Same.",
                    target="logging.error_logfile"),
    GunicornSetting("loglevel", ("--log-level",), S, "Same.", target="logging.log_level"),
    GunicornSetting("capture_output", ("--capture-output",), S, "Same.",
                    target="logging.capture_output", takes_value=False),
    GunicornSetting("logger_class", ("--logger-class",), N, "ignored: the standard logging "
                    "setup is built in, and --statsd-host turns StatsD on.",
                    accepted_values=("gunicorn.glogging.logger",
                                     "gunicorn.instrument.statsd.statsd"),
                    refusal="wsgiserve has no logger classes: configure the wsgiserve and "
                    "wsgiserve.access loggers with --log-config or --log-config-json, and "
                    "metrics with --statsd-host."),
    GunicornSetting("logconfig", ("--log-config",), S, "Same (fileConfig INI); handlers on "
                    "gunicorn.error and gunicorn.access also serve wsgiserve's loggers.",
                    target="logging.log_config"),
    GunicornSetting("logconfig_dict", (), F, "log_config_dict in [logging], a TOML table.",
                    target="logging.log_config_dict"),
    GunicornSetting("logconfig_json", ("--log-config-json",), S, "Same (dictConfig JSON).",
                    target="logging.log_config_json"),
    GunicornSetting("syslog_addr", ("--log-syslog-to",), S, "Same address forms.",
                    target="logging.log_syslog_to"),
    GunicornSetting("syslog", ("--log-syslog",), S, "Same.", target="logging.log_syslog",
                    takes_value=False),
    GunicornSetting("syslog_prefix", ("--log-syslog-prefix",), S, "Same.",
                    target="logging.log_syslog_prefix"),
    GunicornSetting("syslog_facility", ("--log-syslog-facility",), S, "Same.",
                    target="logging.log_syslog_facility"),
    GunicornSetting("enable_stdio_inheritance", ("-R", "--enable-stdio-inheritance"), S,
                    "Same: with --daemon, stdout and stderr stay open.",
                    target="server.enable_stdio_inheritance", takes_value=False),
    GunicornSetting("statsd_host", ("--statsd-host",), S, "Same metric names and types.",
                    target="logging.statsd_host"),
    GunicornSetting("dogstatsd_tags", ("--dogstatsd-tags",), S, "Same.",
                    target="logging.dogstatsd_tags"),
    GunicornSetting("statsd_prefix", ("--statsd-prefix",), S, "Same.",
                    target="logging.statsd_prefix"),
    GunicornSetting("enable_backlog_metric", ("--enable-backlog-metric",), N, "ignored: "
                    "no gunicorn.backlog metric is sent (the other StatsD metrics are).",
                    takes_value=False),
    GunicornSetting("proc_name", ("-n", "--name"), S, "Process titles need setproctitle "
                    "installed, as with gunicorn.", target="server.name"),
    GunicornSetting("default_proc_name", (), F, "The default title is wsgiserve."),
    GunicornSetting("pythonpath", ("--pythonpath",), S, "Same.", target="server.pythonpath"),
    GunicornSetting("paste", ("--paste", "--paster"), S, "Same (needs PasteDeploy: pip "
                    "install wsgiserve[paste]); it sets APP to config:/abs/path.ini#name.",
                    target="server.app"),
    GunicornSetting("on_starting", (), F, _HOOK_NOTE, target="hooks.on_starting"),
    GunicornSetting("on_reload", (), F, _HOOK_NOTE, target="hooks.on_reload"),
    GunicornSetting("when_ready", (), F, _HOOK_NOTE, target="hooks.when_ready"),
    GunicornSetting("pre_fork", (), F, _HOOK_NOTE, target="hooks.pre_fork"),
    GunicornSetting("post_fork", (), F, _HOOK_NOTE, target="hooks.post_fork"),
    GunicornSetting("post_worker_init", (), F, _HOOK_NOTE, target="hooks.post_worker_init"),
    GunicornSetting("worker_int", (), F, "No such hook: INT and QUIT stop at once."),
    GunicornSetting("worker_abort", (), F, "Same arguments (called on SIGABRT, after a "
                    "timeout).", target="hooks.worker_abort"),
    GunicornSetting("pre_exec", (), F, "No such hook: USR2 re-executes with the original "
                    "command line."),
    GunicornSetting("pre_request", (), F, _HOOK_NOTE, target="hooks.pre_request"),
    GunicornSetting("post_request", (), F, _HOOK_NOTE, target="hooks.post_request"),
    GunicornSetting("child_exit", (), F, "No such hook: use worker_exit."),
    GunicornSetting("worker_exit", (), F, _HOOK_NOTE, target="hooks.worker_exit"),
    GunicornSetting("nworkers_changed", (), F, "No such hook: the STATUS line sent to "
                    "systemd and the gunicorn.workers StatsD gauge show the count."),
    GunicornSetting("on_exit", (), F, _HOOK_NOTE, target="hooks.on_exit"),
    GunicornSetting("ssl_context", (), F, "No such hook: use the [tls] settings."),
    GunicornSetting("proxy_protocol", ("--proxy-protocol",), S, "v1 and v2 are both "
                    "always read; off, v1, v2 and auto are accepted.",
                    target="server.proxy_protocol"),
    GunicornSetting("proxy_allow_ips", ("--proxy-allow-from",), S, "Also spelled "
                    "--proxy-allow-ips; CIDR ranges allowed.", target="proxy.proxy_allow_ips"),
    GunicornSetting("protocol", ("--protocol",), N, "ignored: HTTP is the only protocol.",
                    accepted_values=("http",), refusal="wsgiserve speaks HTTP only, not the "
                    "uwsgi protocol: in nginx use proxy_pass (see docs/deployment.md) instead "
                    "of uwsgi_pass."),
    GunicornSetting("uwsgi_allow_ips", ("--uwsgi-allow-from",), N, "ignored: there is no "
                    "uwsgi protocol."),
    GunicornSetting("keyfile", ("--keyfile",), S, "Same; --keyfile-password for an "
                    "encrypted key.", target="tls.keyfile"),
    GunicornSetting("certfile", ("--certfile",), S, "Same; read once per worker and again "
                    "on HUP, not per connection.", target="tls.certfile"),
    GunicornSetting("ssl_version", ("--ssl-version",), N, "ignored, as in gunicorn: the "
                    "oldest TLS version accepted is --ssl-min-version (TLSv1.2)."),
    GunicornSetting("cert_reqs", ("--cert-reqs",), S, "none, optional or required, or "
                    "gunicorn's 0, 1, 2.", target="tls.cert_reqs"),
    GunicornSetting("ca_certs", ("--ca-certs",), S, "Same.", target="tls.ca_certs"),
    GunicornSetting("suppress_ragged_eofs", ("--suppress-ragged-eofs",), N, "ignored: a "
                    "TLS peer that closes without close_notify is treated as closed (the "
                    "request framing decides whether anything was lost), as with the flag.",
                    takes_value=False),
    GunicornSetting("do_handshake_on_connect", ("--do-handshake-on-connect",), N,
                    "ignored: TLS handshakes always run in the worker's event loop as soon "
                    "as a connection is accepted, never blocking a thread.",
                    takes_value=False),
    GunicornSetting("ciphers", ("--ciphers",), S, "Same; --alpn sets the ALPN list.",
                    target="tls.ciphers"),
    GunicornSetting("http_protocols", ("--http-protocols",), S, "Same values (h1, h2); "
                    "wsgiserve's default serves both.", target="server.http_protocols"),
    GunicornSetting("http2_cleartext", ("--http2-cleartext",), S, "Same values; "
                    "wsgiserve's default is prior-knowledge.",
                    target="http2.http2_cleartext"),
    GunicornSetting("http2_max_concurrent_streams", ("--http2-max-concurrent-streams",), S,
                    "Same.", target="http2.http2_max_concurrent_streams"),
    GunicornSetting("http2_initial_window_size", ("--http2-initial-window-size",), S,
                    "Same; wsgiserve's default is 256 KiB.",
                    target="http2.http2_initial_window_size"),
    GunicornSetting("http2_max_frame_size", ("--http2-max-frame-size",), S, "Same.",
                    target="http2.http2_max_frame_size"),
    GunicornSetting("http2_max_header_list_size", ("--http2-max-header-list-size",), S,
                    "Same.", target="http2.http2_max_header_list_size"),
    GunicornSetting("raw_paste_global_conf", ("--paste-global",), R, "PasteDeploy global "
                    "variables cannot be passed: put them in the [DEFAULT] section of the "
                    "ini file."),
    GunicornSetting("permit_obsolete_folding", ("--permit-obsolete-folding",), N,
                    "ignored: obsolete line folding is refused. " + _STRICT,
                    takes_value=False, is_warning=True),
    GunicornSetting("strip_header_spaces", ("--strip-header-spaces",), N, "ignored: a space "
                    "before a field's colon is refused. " + _STRICT, takes_value=False,
                    is_warning=True),
    GunicornSetting("permit_unconventional_http_method",
                    ("--permit-unconventional-http-method",), N, "ignored: methods must be "
                    "RFC 9110 tokens. " + _STRICT, takes_value=False, is_warning=True),
    GunicornSetting("permit_unconventional_http_version",
                    ("--permit-unconventional-http-version",), N, "ignored: HTTP/1.0 and "
                    "HTTP/1.1 in HTTP/1 request lines (HTTP/2.0 in a request line gets 505; "
                    "HTTP/2 itself is spoken after its preface or ALPN). " + _STRICT,
                    takes_value=False, is_warning=True),
    GunicornSetting("casefold_http_method", ("--casefold-http-method",), N, "ignored: "
                    "methods are case-sensitive and passed on as sent.", takes_value=False,
                    is_warning=True),
    GunicornSetting("forwarder_headers", ("--forwarder-headers",), N, "ignored: from "
                    "--forwarded-allow-ips peers X-Forwarded-Prefix sets SCRIPT_NAME; "
                    "--script-name fixes it."),
    GunicornSetting("header_map", ("--header-map",), N, "ignored: fields with _ in their "
                    "name never reach the environ (gunicorn's drop).", is_warning=True),
    GunicornSetting("asgi_loop", ("--asgi-loop",), N, "ignored: " + _NO_ASGI),
    GunicornSetting("asgi_lifespan", ("--asgi-lifespan",), N, "ignored: " + _NO_ASGI),
    GunicornSetting("asgi_disconnect_grace_period", ("--asgi-disconnect-grace-period",), N,
                    "ignored: " + _NO_ASGI),
    GunicornSetting("websocket_max_message_size", ("--websocket-max-message-size",), N,
                    "ignored: " + _NO_ASGI),
    GunicornSetting("http_parser", ("--http-parser",), N, "ignored: wsgiserve has its own "
                    "strict parser."),
    GunicornSetting("root_path", ("--root-path",), S, "The mount prefix as SCRIPT_NAME "
                    "(stripped from PATH_INFO when the path starts with it), as --script-name.",
                    target="server.script_name"),
    GunicornSetting("dirty_apps", ("--dirty-app",), R, _NO_DIRTY),
    GunicornSetting("dirty_workers", ("--dirty-workers",), N, "ignored: " + _NO_DIRTY),
    GunicornSetting("dirty_timeout", ("--dirty-timeout",), N, "ignored: " + _NO_DIRTY),
    GunicornSetting("dirty_threads", ("--dirty-threads",), N, "ignored: " + _NO_DIRTY),
    GunicornSetting("dirty_graceful_timeout", ("--dirty-graceful-timeout",), N,
                    "ignored: " + _NO_DIRTY),
    GunicornSetting("on_dirty_starting", (), F, _NO_DIRTY),
    GunicornSetting("dirty_post_fork", (), F, _NO_DIRTY),
    GunicornSetting("dirty_worker_init", (), F, _NO_DIRTY),
    GunicornSetting("dirty_worker_exit", (), F, _NO_DIRTY),
    GunicornSetting("control_socket", ("--control-socket",), N, "ignored: no control "
                    "socket; use signals (docs/signals.md)."),
    GunicornSetting("control_socket_mode", ("--control-socket-mode",), N, "ignored: no "
                    "control socket; use signals (docs/signals.md)."),
    GunicornSetting("control_socket_disable", ("--no-control-socket",), N, "ignored: there "
                    "is no control socket to disable.", takes_value=False),
)

# The flags wsgiserve parses only for gunicorn's sake (NOTICE and REFUSED), by flag.
COMPAT_FLAGS: Final[Mapping[str, GunicornSetting]] = {
    flag: setting for setting in GUNICORN_SETTINGS
    if setting.treatment in (Treatment.NOTICE, Treatment.REFUSED) for flag in setting.flags
}
BY_NAME: Final[Mapping[str, GunicornSetting]] = {s.name: s for s in GUNICORN_SETTINGS}


# --- --from-gunicorn ----------------------------------------------------------------------


def read_gunicorn_file(path: str) -> dict[str, Any]:
    """Run a gunicorn.conf.py as gunicorn does and return its gunicorn settings.

    The file is executed (it is code) with ``__file__`` set; its module-level names that
    are gunicorn settings are kept (lowercased, as gunicorn reads them); anything else,
    imports and helpers, is dropped.

    Raises:
        ConfigError: the file cannot be read, or running it raised (message and line).
    """
    try:
        with open(path, "rb") as file:
            source = file.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    namespace: dict[str, Any] = {"__builtins__": __builtins__, "__name__": "__config__",
                                 "__file__": os.path.abspath(path), "__doc__": None,
                                 "__package__": None}
    try:
        exec(compile(source, path, "exec"), namespace)  # noqa: S102 - gunicorn's own way
    except Exception as exc:  # noqa: BLE001 - report any failure of the user's file
        line = getattr(exc, "lineno", None)
        if line is None and exc.__traceback__ is not None:
            tb = exc.__traceback__
            while tb.tb_next is not None:
                tb = tb.tb_next
            line = tb.tb_lineno
        raise ConfigError(f"{path}: line {line}: {type(exc).__name__}: {exc}") from None
    return {name.lower(): value for name, value in namespace.items()
            if name.lower() in BY_NAME}


def _convert(setting: Setting, value: Any) -> Any:
    """A gunicorn.conf.py value as the wsgiserve setting's value; raises _BadValue."""
    if setting.kind == "list":
        if isinstance(value, str):  # one bind address, or a comma-separated list
            return _from_toml(setting, [value]) if setting.is_repeatable \
                else _from_text(setting, value)
        if isinstance(value, (list, tuple)):
            return _from_toml(setting, [str(item) for item in value])
    if setting.kind == "table" and isinstance(value, dict):
        return _from_toml(setting, value)
    if isinstance(value, str):
        return _from_text(setting, value)
    if setting.kind in ("str", "mode") and isinstance(value, int) and not isinstance(value, bool):
        return _from_text(setting, str(value))  # a uid, gid, umask or gunicorn's cert_reqs
    return _from_toml(setting, value)


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, 86, initial_indent="# ", subsequent_indent="#   ")


def _shown(value: Any) -> str:
    if callable(value):
        return f"<function {getattr(value, '__name__', '?')}>"
    try:
        return _toml_value(value)
    except TypeError:
        return repr(value)


def translate_gunicorn_file(path: str) -> str:
    """The TOML equivalent of a gunicorn.conf.py, for ``wsgiserve --from-gunicorn``.

    Settings carried over are TOML keys in their tables; each setting that is not carried
    over is a ``#`` comment saying why and what to do instead.

    Raises:
        ConfigError: the file cannot be read or run.
    """
    found = read_gunicorn_file(path)
    tables: dict[str, list[str]] = {section: [] for section in SECTIONS}
    left_over: list[str] = []
    for gunicorn in GUNICORN_SETTINGS:
        if gunicorn.name not in found or found[gunicorn.name] is None:
            continue
        value = found[gunicorn.name]
        section, _, key = gunicorn.target.partition(".")
        setting = _BY_KEY.get((section, key))
        where = tables[section] if setting is not None else left_over
        if setting is not None and setting.section == "hooks":
            if callable(value):
                module = "myproject.server_hooks"
                where += _comment(f"{gunicorn.name}: a function in {os.path.basename(path)}. "
                                  f"Move it into a module of your project; wsgiserve calls "
                                  f"it with gunicorn's arguments:")
                where.append(f'# {key} = "{module}:{gunicorn.name}"')
                continue
        if setting is None or gunicorn.treatment is not Treatment.SETTING \
                and gunicorn.treatment is not Treatment.FILE_ONLY:
            refusal = gunicorn.refusal_for(str(value) if not isinstance(value, bool) else None)
            why = refusal or gunicorn.note
            if not why.startswith("ignored"):
                why = "not carried over: " + why
            where += _comment(f"{gunicorn.name} = {_shown(value)}: {why}")
            continue
        if gunicorn.name == "paste":
            value = "config:" + os.path.abspath(str(value))
        try:
            converted = _convert(setting, value)
        except _BadValue as exc:
            where += _comment(f"{gunicorn.name} = {_shown(value)}: not carried over: {exc}")
            continue
        where.append(_setting_toml(setting, converted))
    lines = [f"# wsgiserve.toml from {path} (wsgiserve --from-gunicorn).",
             "# Check it with: wsgiserve --check-config -c wsgiserve.toml"]
    for section, entries in tables.items():
        if entries:
            lines += ["", f"[{section}]", *entries]
    if left_over:
        lines += ["", "# Not carried over:", *left_over]
    return "\n".join(lines) + "\n"
