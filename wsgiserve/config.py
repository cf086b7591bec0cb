"""Settings: each one declared once, as a field of a frozen section dataclass.

From that single declaration come the TOML loader, the ``WSGISERVE_*`` environment reader,
the argparse parser, ``--print-config`` and ``docs/configuration.md``. Precedence is
defaults < config file < ``WSGISERVE_*`` environment < command line. Data only: this module
imports no other wsgiserve module, and any module may import it.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import ipaddress
import math
import os
import shutil
import textwrap
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "ACCESS_LOG_JSON",
    "DEFAULT_ACCESS_LOG_FORMAT",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "SECTIONS",
    "SETTINGS",
    "TLS",
    "BindAddress",
    "CommandLine",
    "Config",
    "ConfigError",
    "Hooks",
    "Limits",
    "Logging",
    "Proxy",
    "Server",
    "Setting",
    "TLSSettings",
    "UsageError",
    "Workers",
    "build_parser",
    "dump_toml",
    "load",
    "parse_bind",
    "parse_command_line",
    "resolve",
    "unknown_environment",
]

ENV_PREFIX: Final = "WSGISERVE_"
# Looked for in the working directory when neither -c nor WSGISERVE_CONFIG names a file.
DEFAULT_CONFIG_FILE: Final = "wsgiserve.toml"
# Apache's "combined" format, spelled in gunicorn's atoms (gunicorn's own default omits %(l)s).
DEFAULT_ACCESS_LOG_FORMAT: Final = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
# The access_logformat value that selects one JSON object per line.
ACCESS_LOG_JSON: Final = "json"
_HELP_MAX_WIDTH: Final = 80


class ConfigError(Exception):
    """A setting is malformed; the message names the source, the key and the problem.

    For example ``site.toml: [limits] limit_request_line: must be > 0, got -1``.
    """


class UsageError(ConfigError):
    """The command line itself is malformed; the message is argparse's, naming the flag."""


class _BadValue(Exception):
    """Internal: a value failed a type or range check; ``args[0]`` is the problem."""


# --- checks: each returns None or a problem such as "must be > 0, got -1" -------------------

_Check = Callable[[Any], "str | None"]


def _show(value: object) -> str:
    try:
        return _toml_value(value)
    except TypeError:
        isoformat = getattr(value, "isoformat", None)  # TOML dates and times
        return str(isoformat()) if callable(isoformat) else repr(value)


def _at_least(low: float) -> _Check:
    def check(value: Any) -> str | None:
        return None if value >= low else f"must be >= {low}, got {_show(value)}"
    return check


def _above(low: float) -> _Check:
    def check(value: Any) -> str | None:
        return None if value > low else f"must be > {low}, got {_show(value)}"
    return check


def _one_of(*choices: str) -> _Check:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"must be one of {', '.join(choices)}, got {_show(value)}"
    return check


def _dotted(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def _check_hook(value: Any) -> str | None:
    # "module:callable" or "module.callable"; resolved later by wsgiserve.hooks.
    if value == "":
        return None
    module, colon, attribute = value.partition(":")
    if colon and _dotted(module) and _dotted(attribute):
        return None
    if not colon and "." in value and _dotted(value):
        return None
    return f"must be a dotted path like module:callable, got {_show(value)}"


def _check_app(value: Any) -> str | None:
    module = value.partition(":")[0]
    if value == "" or _dotted(module):
        return None
    return f"must be MODULE or MODULE:CALLABLE, got {_show(value)}"


def _check_ip(value: Any) -> str | None:
    if value == "*":
        return None
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"must be an IP address, a CIDR network or *, got {_show(value)}"
    return None


def _check_env_pair(value: Any) -> str | None:
    name, equals, _ = value.partition("=")
    if equals and name and "\0" not in value:
        return None
    return f"must be KEY=VALUE, got {_show(value)}"


def _check_script_name(value: Any) -> str | None:
    if value == "" or (value.startswith("/") and not value.endswith("/")):
        return None
    return f"must be empty or start with / and not end with /, got {_show(value)}"


def _check_alpn(value: Any) -> str | None:
    # RFC 7301 §3.1: a protocol name is 1 to 255 octets.
    if value.isascii() and 0 < len(value) <= 255:
        return None
    return f"must be an ASCII protocol name of 1 to 255 characters, got {_show(value)}"


def _check_mode(value: Any) -> str | None:
    return None if 0 <= value <= 0o777 else f"must be between 0 and 0o777, got {oct(value)}"


@dataclass(frozen=True)
class BindAddress:
    """One parsed ``bind`` entry: ``kind`` is "tcp", "unix" or "fd"."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1


def parse_bind(text: str) -> BindAddress:
    """Parse ``HOST:PORT``, ``[IPV6]:PORT``, ``unix:PATH`` or ``fd://N``.

    Raises:
        ValueError: with a message saying which forms are accepted.
    """
    problem = f"must be HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N, got {_show(text)}"
    if text.startswith("unix:"):
        if len(text) > len("unix:"):
            return BindAddress("unix", path=text[len("unix:"):])
        raise ValueError(problem)
    if text.startswith("fd://"):
        number = text[len("fd://"):]
        if number.isdigit():
            return BindAddress("fd", fd=int(number))
        raise ValueError(problem)
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not host or int(port) > 65535:
        raise ValueError(problem)
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(problem)
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(problem) from None
    elif ":" in host or any(ch.isspace() or ch in "/[]" for ch in host):
        raise ValueError(problem)
    return BindAddress("tcp", host=host, port=int(port))


def _check_bind(value: Any) -> str | None:
    try:
        parse_bind(value)
    except ValueError as exc:
        return str(exc)
    return None


# --- the declaration --------------------------------------------------------------------


@dataclass(frozen=True)
class _Meta:
    help: str
    short: str
    flag: str
    aliases: tuple[str, ...]
    metavar: str
    check: _Check | None
    is_repeatable: bool
    is_positional: bool
    is_mode: bool
    allows_empty: bool
    fallback_env: str


def _setting(
    default: Any,
    help: str,
    *,
    short: str = "",
    flag: str = "",
    aliases: tuple[str, ...] = (),
    metavar: str = "",
    check: _Check | None = None,
    repeat: bool = False,
    positional: bool = False,
    mode: bool = False,
    allows_empty: bool = True,
    fallback_env: str = "",
) -> Any:
    meta = _Meta(help, short, flag, aliases, metavar, check, repeat, positional, mode,
                 allows_empty, fallback_env)
    return field(default=default, metadata={"wsgiserve": meta})


_HOOK_HELP: Final = "called as"


@dataclass(frozen=True)
class Server:
    """Listening sockets, the application and the process environment."""

    bind: tuple[str, ...] = _setting(
        ("127.0.0.1:8000",), "address to listen on: HOST:PORT, [IPV6]:PORT, unix:PATH "
        "or fd://N; repeat the flag for several", short="-b", metavar="ADDRESS",
        check=_check_bind, repeat=True, allows_empty=False)
    # Linux somaxconn caps it; 2048 is gunicorn's default.
    backlog: int = _setting(2048, "listen(2) queue length", metavar="N", check=_at_least(1))
    reuse_port: bool = _setting(False, "set SO_REUSEPORT on the listening sockets")
    app: str = _setting("", "WSGI application, MODULE[:CALLABLE]; empty serves the bundled "
                        "demo wsgiserve.demo:app", metavar="APP", check=_check_app,
                        positional=True)
    name: str = _setting("", "process name shown by ps (default: wsgiserve)", short="-n",
                         metavar="NAME")
    chdir: str = _setting("", "change to this directory before loading the app",
                          metavar="DIR")
    pythonpath: tuple[str, ...] = _setting(
        (), "comma-separated directories to prepend to sys.path", metavar="DIRS")
    preload: bool = _setting(False, "import the app in the arbiter before forking workers")
    reload: bool = _setting(False, "restart workers when a source file changes "
                            "(development only)")
    reload_extra_files: tuple[str, ...] = _setting(
        (), "another file whose change triggers a reload; repeat for several",
        aliases=("--reload-extra-file",), metavar="FILE", repeat=True)
    env: tuple[str, ...] = _setting(
        (), "set an environment variable for the app; repeat for several", short="-e",
        metavar="KEY=VALUE", check=_check_env_pair, repeat=True)
    pid: str = _setting("", "write the arbiter's process id to this file", metavar="FILE")
    user: str = _setting("", "switch workers to this user (name or uid)", metavar="USER")
    group: str = _setting("", "switch workers to this group (name or gid)", metavar="GROUP")
    umask: int = _setting(0, "umask of the server processes, e.g. 0o22 or 022",
                          metavar="MODE", check=_check_mode, mode=True)
    script_name: str = _setting("", "SCRIPT_NAME mount prefix such as /app (default: the "
                                "SCRIPT_NAME environment variable)", metavar="PATH",
                                check=_check_script_name, fallback_env="SCRIPT_NAME")
    proxy_protocol: bool = _setting(False, "expect a PROXY protocol v1/v2 header on each "
                                    "connection")


@dataclass(frozen=True)
class Workers:
    """Worker processes, their threads and their timers."""

    workers: int = _setting(1, "number of worker processes (default: $WEB_CONCURRENCY or 1)",
                            short="-w", metavar="N", check=_at_least(1),
                            fallback_env="WEB_CONCURRENCY")
    threads: int = _setting(1, "threads per worker serving requests", metavar="N",
                            check=_at_least(1))
    worker_connections: int = _setting(1000, "open connections per worker at most",
                                       metavar="N", check=_at_least(1))
    timeout: float = _setting(30.0, "kill and replace a worker silent this many seconds; "
                              "0 disables", short="-t", metavar="SECONDS", check=_at_least(0))
    graceful_timeout: float = _setting(30.0, "seconds a stopping worker may finish requests",
                                       metavar="SECONDS", check=_at_least(0))
    keep_alive: float = _setting(5.0, "seconds an idle keep-alive connection is kept; "
                                 "0 disables keep-alive", metavar="SECONDS",
                                 check=_at_least(0))
    max_requests: int = _setting(0, "restart a worker after this many requests; 0 never",
                                 metavar="N", check=_at_least(0))
    max_requests_jitter: int = _setting(0, "add a random 0..N to max_requests per worker",
                                        metavar="N", check=_at_least(0))
    # Slowloris defence: a client may not trickle a request head byte by byte forever.
    header_timeout: float = _setting(10.0, "seconds to receive a whole request head after "
                                     "its first byte; 0 disables", metavar="SECONDS",
                                     check=_at_least(0))


@dataclass(frozen=True)
class Limits:
    """Request size limits (defaults are gunicorn's and nginx's)."""

    limit_request_line: int = _setting(8190, "longest request line in bytes (else 414)",
                                       metavar="BYTES", check=_above(0))
    limit_request_fields: int = _setting(100, "most header fields in a request (else 431)",
                                         metavar="N", check=_above(0))
    limit_request_field_size: int = _setting(
        8190, "longest header field line in bytes (else 431)",
        flag="--limit-request-field_size", aliases=("--limit-request-field-size",),
        metavar="BYTES", check=_above(0))
    limit_request_head: int = _setting(65536, "largest whole request head in bytes (else 431)",
                                       metavar="BYTES", check=_above(0))
    limit_chunk_ext: int = _setting(4096, "longest chunk-size line with extensions, bytes",
                                    metavar="BYTES", check=_above(0))
    limit_trailer: int = _setting(8190, "largest chunked trailer section in bytes",
                                  metavar="BYTES", check=_above(0))
    limit_request_body: int = _setting(0, "largest request body in bytes (else 413); "
                                       "0 means unlimited", metavar="BYTES",
                                       check=_at_least(0))


@dataclass(frozen=True)
class TLS:
    """TLS for the listeners; off while certfile is empty."""

    certfile: str = _setting("", "PEM certificate chain; enables TLS", metavar="FILE")
    keyfile: str = _setting("", "PEM private key (default: inside certfile)", metavar="FILE")
    keyfile_password: str = _setting("", "password of an encrypted keyfile",
                                     metavar="PASSWORD")
    ca_certs: str = _setting("", "PEM CA bundle used to verify client certificates",
                             metavar="FILE")
    cert_reqs: str = _setting("none", "client certificates: none, optional or required",
                              metavar="MODE", check=_one_of("none", "optional", "required"))
    ssl_min_version: str = _setting("TLSv1.2", "oldest TLS version accepted: TLSv1.2 or "
                                    "TLSv1.3", metavar="VERSION",
                                    check=_one_of("TLSv1.2", "TLSv1.3"))
    ciphers: str = _setting("", "OpenSSL cipher list for TLS 1.2 (default: Python's)",
                            metavar="LIST")
    alpn: tuple[str, ...] = _setting(("http/1.1",), "comma-separated ALPN protocols offered",
                                     metavar="PROTOCOLS", check=_check_alpn)


TLSSettings = TLS


@dataclass(frozen=True)
class Proxy:
    """Which peers are trusted to speak for the client."""

    forwarded_allow_ips: tuple[str, ...] = _setting(
        ("127.0.0.1", "::1"), "comma-separated peers (IPs, CIDRs or *) trusted for "
        "X-Forwarded-* and Forwarded headers", metavar="IPS", check=_check_ip)
    proxy_allow_ips: tuple[str, ...] = _setting(
        ("127.0.0.1", "::1"), "comma-separated peers (IPs, CIDRs or *) allowed to send a "
        "PROXY protocol header", metavar="IPS", check=_check_ip)


@dataclass(frozen=True)
class Logging:
    """Error log and access log."""

    access_logfile: str = _setting("", "access log file; - is stdout, empty is off",
                                   metavar="FILE")
    access_logformat: str = _setting(
        DEFAULT_ACCESS_LOG_FORMAT, "access line in gunicorn atoms, or json for one JSON "
        "object per line (default: Apache combined)", aliases=("--access-log-format",),
        metavar="FORMAT")
    error_logfile: str = _setting("-", "error log file; - is stderr", metavar="FILE")
    log_level: str = _setting("info", "debug, info, warning, error or critical",
                              metavar="LEVEL",
                              check=_one_of("debug", "info", "warning", "error", "critical"))
    capture_output: bool = _setting(False, "send the app's stdout and stderr to the error log")


@dataclass(frozen=True)
class Hooks:
    """Server hooks, each a dotted path to a callable (gunicorn's names and arguments)."""

    on_starting: str = _setting("", f"{_HOOK_HELP} on_starting(arbiter)", metavar="PATH",
                                check=_check_hook)
    when_ready: str = _setting("", f"{_HOOK_HELP} when_ready(arbiter)", metavar="PATH",
                               check=_check_hook)
    pre_fork: str = _setting("", f"{_HOOK_HELP} pre_fork(arbiter, worker)", metavar="PATH",
                             check=_check_hook)
    post_fork: str = _setting("", f"{_HOOK_HELP} post_fork(arbiter, worker)", metavar="PATH",
                              check=_check_hook)
    post_worker_init: str = _setting("", f"{_HOOK_HELP} post_worker_init(worker)",
                                     metavar="PATH", check=_check_hook)
    worker_exit: str = _setting("", f"{_HOOK_HELP} worker_exit(arbiter, worker)",
                                metavar="PATH", check=_check_hook)
    on_reload: str = _setting("", f"{_HOOK_HELP} on_reload(arbiter)", metavar="PATH",
                              check=_check_hook)
    on_exit: str = _setting("", f"{_HOOK_HELP} on_exit(arbiter)", metavar="PATH",
                            check=_check_hook)
    pre_request: str = _setting("", f"{_HOOK_HELP} pre_request(worker, request)",
                                metavar="PATH", check=_check_hook)
    post_request: str = _setting("", f"{_HOOK_HELP} post_request(worker, request, environ, "
                                 "response)", metavar="PATH", check=_check_hook)
    worker_abort: str = _setting("", f"{_HOOK_HELP} worker_abort(worker)", metavar="PATH",
                                 check=_check_hook)


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration; ``config_path`` is the file loaded, if any."""

    server: Server = field(default_factory=Server)
    workers: Workers = field(default_factory=Workers)
    limits: Limits = field(default_factory=Limits)
    tls: TLS = field(default_factory=TLS)
    proxy: Proxy = field(default_factory=Proxy)
    logging: Logging = field(default_factory=Logging)
    hooks: Hooks = field(default_factory=Hooks)
    config_path: str = ""


# TOML table name -> (section dataclass, --help group title)
SECTIONS: Final[Mapping[str, tuple[type[Any], str]]] = {
    "server": (Server, "server"),
    "workers": (Workers, "workers"),
    "limits": (Limits, "request limits"),
    "tls": (TLS, "TLS"),
    "proxy": (Proxy, "proxies"),
    "logging": (Logging, "logging"),
    "hooks": (Hooks, "server hooks (each a dotted path module:callable, as in gunicorn)"),
}

_KINDS: Final[Mapping[object, str]] = {
    str: "str", int: "int", float: "float", bool: "bool", tuple[str, ...]: "list",
}


@dataclass(frozen=True)
class Setting:
    """One declared setting, as read from its section dataclass field."""

    section: str
    key: str
    kind: str  # "str", "int", "float", "bool", "list" (of strings) or "mode" (octal int)
    default: Any
    help: str
    flags: tuple[str, ...]  # primary long flag first; () for the positional APP
    metavar: str
    check: _Check | None  # applied to the value, or to each item of a list
    is_repeatable: bool  # a list flag given once per item (else comma-separated)
    is_positional: bool
    allows_empty: bool
    fallback_env: str  # a conventional variable supplying the default, e.g. WEB_CONCURRENCY

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.upper()

    @property
    def dest(self) -> str:
        return f"{self.section}.{self.key}"


def _declared() -> Iterator[Setting]:
    for section, (cls, _) in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            meta: _Meta = item.metadata["wsgiserve"]
            kind = "mode" if meta.is_mode else _KINDS[hints[item.name]]
            long_flag = meta.flag or "--" + item.name.replace("_", "-")
            flags = () if meta.is_positional else (long_flag, *meta.aliases)
            if meta.short:
                flags = (meta.short, *flags)
            yield Setting(section, item.name, kind, item.default, meta.help, flags,
                          meta.metavar, meta.check, meta.is_repeatable, meta.is_positional,
                          meta.allows_empty, meta.fallback_env)


SETTINGS: Final[tuple[Setting, ...]] = tuple(_declared())
_BY_KEY: Final[Mapping[tuple[str, str], Setting]] = {(s.section, s.key): s for s in SETTINGS}


# --- converting and checking values -------------------------------------------------------


def _type_name(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
             dict: "table"}
    return names.get(type(value), "date/time")


def _checked(setting: Setting, value: Any) -> Any:
    """Run the setting's check over a converted value; raises _BadValue."""
    if setting.kind == "list":
        if not value and not setting.allows_empty:
            raise _BadValue("must not be empty")
        items: tuple[Any, ...] = value
    elif setting.kind == "float" and not math.isfinite(value):
        raise _BadValue(f"must be a finite number, got {value}")
    else:
        items = (value,)
    if setting.check is not None:
        for item in items:
            if (problem := setting.check(item)) is not None:
                raise _BadValue(problem)
    return value


def _from_toml(setting: Setting, value: object) -> Any:
    """Convert a value read by tomllib, checking its type; raises _BadValue."""
    kind = setting.kind
    got = f"got {_type_name(value)}" + ("" if isinstance(value, dict) else f" {_show(value)}")
    if kind == "str" and isinstance(value, str):
        return _checked(setting, value)
    if kind in ("int", "mode") and isinstance(value, int) and not isinstance(value, bool):
        return _checked(setting, value)
    if kind == "mode" and isinstance(value, str):
        return _checked(setting, _parse_mode(value))
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(_checked(setting, value))  # checked first: "got -1", not "got -1.0"
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "list" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _checked(setting, tuple(value))
    expected = {"str": "a string", "int": "an integer", "float": "a number",
                "bool": "true or false", "list": "an array of strings",
                "mode": "an integer or an octal string"}[kind]
    raise _BadValue(f"must be {expected}, {got}")


def _parse_mode(text: str) -> int:
    # gunicorn's auto_int: "022" is octal like the shell's umask, "0o22" and "18" as written.
    text = text.strip()
    try:
        if len(text) > 1 and text.startswith("0") and text.isdigit():
            return int(text, 8)
        return int(text, 0)
    except ValueError:
        raise _BadValue(f"must be an octal mode like 0o22 or 022, got {_show(text)}") from None


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _from_text(setting: Setting, text: str, *, is_item: bool = False) -> Any:
    """Convert a string from the environment or the command line; raises _BadValue.

    ``is_item`` converts one item of a repeatable list flag rather than a comma list.
    """
    kind = setting.kind
    if kind == "str":
        return _checked(setting, text)
    if kind == "mode":
        return _checked(setting, _parse_mode(text))
    if kind == "int":
        try:
            return _checked(setting, int(text.strip(), 10))
        except ValueError:
            raise _BadValue(f"must be an integer, got {_show(text)}") from None
    if kind == "float":
        try:
            return _checked(setting, float(text.strip()))
        except ValueError:
            raise _BadValue(f"must be a number, got {_show(text)}") from None
    if kind == "bool":
        if text.strip().lower() in _TRUE:
            return True
        if text.strip().lower() in _FALSE:
            return False
        raise _BadValue(f"must be true or false, got {_show(text)}")
    if is_item:
        return _checked(setting, (text,))[0]
    return _checked(setting, tuple(item.strip() for item in text.split(",") if item.strip()))


# --- the command line -------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(message)


class _HelpFormatter(argparse.HelpFormatter):
    """Fits 80 columns and shows the metavar once: ``-b, --bind ADDRESS``."""

    def __init__(self, prog: str) -> None:
        width = min(shutil.get_terminal_size().columns, _HELP_MAX_WIDTH) - 2
        super().__init__(prog, max_help_position=32, width=width)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        return f"{', '.join(action.option_strings)} {action.metavar}"


def _argparse_type(setting: Setting) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        if text is argparse.SUPPRESS:  # argparse converts an omitted optional positional
            return text
        try:
            return _from_text(setting, text, is_item=setting.is_repeatable)
        except _BadValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def build_parser(version: str = "") -> argparse.ArgumentParser:
    """The ``wsgiserve`` argument parser; every setting is a flag, grouped by section.

    Values are stored under ``"section.key"`` only when given (the default is suppressed),
    so the parser tells which settings the command line overrides. ``error()`` raises
    ``UsageError`` instead of exiting; ``--help`` and ``--version`` still exit.
    """
    parser = _Parser(
        prog="wsgiserve", usage="%(prog)s [OPTIONS] [APP]", allow_abbrev=False,
        formatter_class=_HelpFormatter, argument_default=argparse.SUPPRESS,
        description="A pre-fork WSGI server. APP is MODULE[:CALLABLE] (default: a demo app).",
        epilog="Each flag is also a TOML key (--max-requests is max_requests in [workers]) "
               "and an environment variable (WSGISERVE_MAX_REQUESTS). Precedence: defaults < "
               "config file < environment < command line. See docs/configuration.md.")
    general = parser.add_argument_group("configuration")
    general.add_argument("-c", "--config", metavar="FILE", dest="config_file",
                         help=f"TOML config file (default: ./{DEFAULT_CONFIG_FILE} if present;"
                              " also $WSGISERVE_CONFIG)")
    general.add_argument("--check-config", action="store_true",
                         help="check the configuration and exit (0 if valid, else 1)")
    general.add_argument("--print-config", action="store_true",
                         help="print the resolved configuration as TOML and exit")
    if version:
        general.add_argument("--version", action="version", version=f"wsgiserve {version}")
    for section, (_, title) in SECTIONS.items():
        group = parser.add_argument_group(title)
        for setting in (s for s in SETTINGS if s.section == section):
            if setting.is_positional:
                parser.add_argument(setting.dest, nargs="?", metavar=setting.metavar,
                                    type=_argparse_type(setting), help=argparse.SUPPRESS)
            elif setting.kind == "bool":
                group.add_argument(*setting.flags, dest=setting.dest, help=setting.help,
                                   action=argparse.BooleanOptionalAction)
            else:
                group.add_argument(*setting.flags, dest=setting.dest, help=setting.help,
                                   metavar=setting.metavar, type=_argparse_type(setting),
                                   action="append" if setting.is_repeatable else "store")
    return parser


@dataclass(frozen=True)
class CommandLine:
    """What the command line said: settings given (by ``"section.key"``) and actions."""

    values: Mapping[str, Any] = field(default_factory=dict)
    config_file: str | None = None
    should_check_config: bool = False
    should_print_config: bool = False


def parse_command_line(argv: Sequence[str] | None, version: str = "") -> CommandLine:
    """Parse argv (``sys.argv[1:]`` when None).

    Raises:
        UsageError: a malformed flag or value, with argparse's message naming the flag.
        SystemExit: after printing ``--help`` or ``--version``.
    """
    namespace = vars(build_parser(version).parse_args(argv))
    config_file = namespace.pop("config_file", None)
    should_check = bool(namespace.pop("check_config", False))
    should_print = bool(namespace.pop("print_config", False))
    values = {dest: (tuple(v) if isinstance(v, list) else v) for dest, v in namespace.items()}
    return CommandLine(values, config_file, should_check, should_print)


# --- loading ---------------------------------------------------------------------------


def _suggestion(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _read_file(path: str) -> dict[str, tuple[Any, str]]:
    """Read a TOML file into ``{"section.key": (value, origin)}``; raises ConfigError."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    found: dict[str, tuple[Any, str]] = {}
    for table, entries in data.items():
        if table not in SECTIONS:
            hint = _suggestion(table, list(SECTIONS))
            if not isinstance(entries, dict):
                owners = [s.section for s in SETTINGS if s.key == table]
                hint = f" (it belongs in [{owners[0]}])" if owners else ""
                raise ConfigError(f"{path}: {table}: unknown top-level key{hint}")
            raise ConfigError(f"{path}: [{table}]: unknown table{hint}")
        if not isinstance(entries, dict):
            raise ConfigError(f"{path}: {table}: must be a table, got {_type_name(entries)}")
        for key, value in entries.items():
            origin = f"{path}: [{table}] {key}"
            setting = _BY_KEY.get((table, key))
            if setting is None:
                owners = [s.section for s in SETTINGS if s.key == key]
                hint = (f" (it belongs in [{owners[0]}])" if owners else
                        _suggestion(key, [s.key for s in SETTINGS if s.section == table]))
                raise ConfigError(f"{origin}: unknown key{hint}")
            try:
                found[setting.dest] = (_from_toml(setting, value), origin)
            except _BadValue as exc:
                raise ConfigError(f"{origin}: {exc}") from None
    return found


def _check_together(values: Mapping[str, Any], origins: Mapping[str, str]) -> None:
    """Checks that involve two settings; the message names the one that was set."""
    if values["tls.keyfile"] and not values["tls.certfile"]:
        raise ConfigError(f"{origins['tls.keyfile']}: needs certfile to be set too")
    if values["tls.cert_reqs"] != "none" and not values["tls.ca_certs"]:
        raise ConfigError(f"{origins['tls.cert_reqs']}: {values['tls.cert_reqs']!r} needs "
                          "ca_certs to verify client certificates")


def _find_config_file(command_line: CommandLine, environ: Mapping[str, str],
                      cwd: str | None) -> str:
    if command_line.config_file is not None:
        return command_line.config_file
    if ENV_PREFIX + "CONFIG" in environ:
        return environ[ENV_PREFIX + "CONFIG"]
    candidate = os.path.join(cwd or os.getcwd(), DEFAULT_CONFIG_FILE)
    return candidate if os.path.isfile(candidate) else ""


def resolve(command_line: CommandLine, environ: Mapping[str, str], *,
            cwd: str | None = None) -> Config:
    """Layer defaults < config file < ``WSGISERVE_*`` environment < command line.

    The config file is ``command_line.config_file``, else ``$WSGISERVE_CONFIG``, else
    ``wsgiserve.toml`` in ``cwd`` (the working directory when None) if present; an empty
    path means no file.

    Raises:
        ConfigError: naming the file and key, or the variable, and the problem.
    """
    values: dict[str, Any] = {s.dest: s.default for s in SETTINGS}
    origins = {s.dest: f"default {s.section}.{s.key}" for s in SETTINGS}

    def put(setting: Setting, text: str, origin: str) -> None:
        try:
            values[setting.dest] = _from_text(setting, text)
        except _BadValue as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        origins[setting.dest] = origin

    for setting in SETTINGS:
        if setting.fallback_env and setting.fallback_env in environ:
            put(setting, environ[setting.fallback_env], setting.fallback_env)
    path = _find_config_file(command_line, environ, cwd)
    if path:
        for dest, (value, origin) in _read_file(path).items():
            values[dest], origins[dest] = value, origin
    for setting in SETTINGS:
        if setting.env_var in environ:
            put(setting, environ[setting.env_var], setting.env_var)
    by_dest = {s.dest: s for s in SETTINGS}
    for dest, value in command_line.values.items():
        setting = by_dest[dest]
        try:
            values[dest] = _checked(setting, value)
        except _BadValue as exc:
            raise ConfigError(f"argument {'/'.join(setting.flags)}: {exc}") from None
        origins[dest] = f"argument {'/'.join(setting.flags) or setting.metavar}"
    _check_together(values, origins)
    sections = {
        name: cls(**{s.key: values[s.dest] for s in SETTINGS if s.section == name})
        for name, (cls, _) in SECTIONS.items()
    }
    return Config(**sections, config_path=path)


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Parse argv and resolve it against the environment (``os.environ`` when None).

    Raises:
        UsageError: a malformed command line.
        ConfigError: a bad config file, variable or value.
    """
    return resolve(parse_command_line(argv), os.environ if environ is None else environ)


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """``WSGISERVE_*`` variables that name no setting (likely typos), sorted."""
    # FDS: listening descriptors a USR2 parent master hands to its successor.
    known = {s.env_var for s in SETTINGS} | {ENV_PREFIX + "CONFIG", ENV_PREFIX + "FDS"}
    return sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)


# --- writing TOML ------------------------------------------------------------------------

_TOML_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                        "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    # TOML 1.0 basic strings: escape quote, backslash and every control character.
    out = []
    for char in text:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _setting_toml(setting: Setting, value: Any) -> str:
    text = f"0o{value:03o}" if setting.kind == "mode" else _toml_value(value)
    return f"{setting.key} = {text}"


def dump_toml(config: Config, *, annotate: bool = False) -> str:
    """Write ``config`` as TOML that ``load`` reads back to an equal Config.

    ``config_path`` is written as a comment, not a key. With ``annotate``, each key is
    preceded by its help, flags and environment variable (used for conf/wsgiserve.toml).
    """
    lines = []
    if config.config_path:
        lines.append(f"# loaded from {config.config_path}")
    for section, (cls, _) in SECTIONS.items():
        if lines:
            lines.append("")
        if annotate and cls.__doc__:
            lines.append(f"# {cls.__doc__.strip()}")
        lines.append(f"[{section}]")
        values = getattr(config, section)
        for setting in (s for s in SETTINGS if s.section == section):
            if annotate:
                flags = ", ".join(setting.flags) or f"positional {setting.metavar}"
                lines.append("")
                lines += textwrap.wrap(setting.help + ".", 86, initial_indent="# ",
                                       subsequent_indent="# ")
                lines.append(f"# Flag: {flags}. Variable: {setting.env_var}.")
            lines.append(_setting_toml(setting, getattr(values, setting.key)))
    return "\n".join(lines) + "\n"
