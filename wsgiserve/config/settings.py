"""The settings, each declared once as a field of a frozen section dataclass.

``_setting`` gives a field its default, help, flags, metavar and check; ``SETTINGS`` reads
them back as one ``Setting`` per field, from which the other config modules build the TOML
loader, the environment reader, the argparse parser and ``dump_toml``. Imports only
checks; outside the config modules, import these names from wsgiserve.config.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from wsgiserve.config.checks import (
    _above,
    _at_least,
    _between,
    _check_http_protocol,
    _Check,
    _check_alpn,
    _check_app,
    _check_bind,
    _check_env_pair,
    _check_facility,
    _check_hook,
    _check_ip,
    _check_metrics_bind,
    _check_mode,
    _check_script_name,
    _check_statsd_host,
    _check_syslog_address,
    _one_of,
)

ENV_PREFIX: Final = "WSGISERVE_"
# Looked for in the working directory when neither -c nor WSGISERVE_CONFIG names a file.
DEFAULT_CONFIG_FILE: Final = "wsgiserve.toml"
# Apache's "combined" format, spelled in gunicorn's atoms (gunicorn's own default omits %(l)s).
DEFAULT_ACCESS_LOG_FORMAT: Final = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
# The access_logformat value that selects one JSON object per line.
ACCESS_LOG_JSON: Final = "json"


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
    value_words: Mapping[str, Any]


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
    value_words: Mapping[str, Any] | None = None,
) -> Any:
    meta = _Meta(help, short, flag, aliases, metavar, check, repeat, positional, mode,
                 allows_empty, fallback_env, value_words or {})
    if isinstance(default, dict):  # a table: frozen like the rest of the Config
        return field(default_factory=lambda: MappingProxyType({}), metadata={"wsgiserve": meta})
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
    pid: str = _setting("", "write the arbiter's process id to this file", short="-p",
                        metavar="FILE")
    user: str = _setting("", "switch workers to this user (name or uid); a name also "
                         "gets its supplementary groups", short="-u", metavar="USER")
    group: str = _setting("", "switch workers to this group (name or gid)", short="-g",
                          metavar="GROUP")
    umask: int = _setting(0, "umask of the server processes, e.g. 0o22 or 022", short="-m",
                          metavar="MODE", check=_check_mode, mode=True)
    daemon: bool = _setting(False, "detach from the terminal (fork twice, new session, "
                            "stdio to /dev/null) before starting", short="-D")
    enable_stdio_inheritance: bool = _setting(
        False, "with --daemon, keep stdout and stderr instead of /dev/null", short="-R")
    script_name: str = _setting("", "SCRIPT_NAME mount prefix such as /app (default: the "
                                "SCRIPT_NAME environment variable)", metavar="PATH",
                                aliases=("--root-path",), check=_check_script_name,
                                fallback_env="SCRIPT_NAME")
    sendfile: bool = _setting(True, "send wsgi.file_wrapper files with sendfile(2) on plain "
                              "sockets; --no-sendfile reads them instead")
    # gunicorn's spelling takes a mode (off, v1, v2, auto); both versions are always read.
    http_protocols: tuple[str, ...] = _setting(
        ("h2", "h1"), "HTTP versions served, in order of preference: h2 (HTTP/2: ALPN over "
        "TLS, and cleartext per --http2-cleartext), h1 (HTTP/1.1); h1 alone turns HTTP/2 off",
        metavar="PROTOCOLS", check=_check_http_protocol, allows_empty=False)
    proxy_protocol: bool = _setting(False, "expect a PROXY protocol v1/v2 header on each "
                                    "connection", metavar="MODE",
                                    value_words={"off": False, "v1": True, "v2": True,
                                                 "auto": True})


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
    # Load shedding: a request that waits this long for a thread (every thread busy in the
    # app) gets a fast 503 with Retry-After instead of waiting until its client gives up.
    max_queue_time: float = _setting(
        10.0, "seconds a request may wait for a free thread before it gets 503 Service "
        "Unavailable with Retry-After (when every thread is busy in the app); 0 disables",
        metavar="SECONDS", check=_at_least(0))
    # Slowloris defence: a client may not trickle a request head byte by byte forever.
    header_timeout: float = _setting(10.0, "seconds to receive a whole request head after "
                                     "its first byte; 0 disables", metavar="SECONDS",
                                     check=_at_least(0))
    # What gunicorn users script by hand: a leaking worker is replaced before the OOM killer
    # takes it with its requests.
    max_worker_memory: int = _setting(0, "replace a worker gracefully once its resident "
                                      "memory (RSS) passes this many MiB; 0 never",
                                      metavar="MIB", check=_at_least(0))


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
    # gunicorn's numbers are ssl.CERT_NONE, CERT_OPTIONAL and CERT_REQUIRED.
    cert_reqs: str = _setting("none", "client certificates: none, optional or required "
                              "(or gunicorn's 0, 1, 2)", metavar="MODE",
                              check=_one_of("none", "optional", "required"),
                              value_words={"0": "none", "1": "optional", "2": "required"})
    ssl_min_version: str = _setting("TLSv1.2", "oldest TLS version accepted: TLSv1.2 or "
                                    "TLSv1.3", metavar="VERSION",
                                    check=_one_of("TLSv1.2", "TLSv1.3"))
    ciphers: str = _setting("", "OpenSSL cipher list for TLS 1.2 (default: Python's)",
                            metavar="LIST")
    alpn: tuple[str, ...] = _setting((), "comma-separated ALPN protocols offered (default: "
                                     "from --http-protocols, h2 and http/1.1)",
                                     metavar="PROTOCOLS", check=_check_alpn)




@dataclass(frozen=True)
class Http2:
    """HTTP/2 (gunicorn 27's flags and meanings; --http-protocols turns it on and off)."""

    http2_cleartext: str = _setting(
        "prior-knowledge", "HTTP/2 without TLS (h2c): prior-knowledge (a connection opening "
        "with the HTTP/2 preface, on the same port as HTTP/1.1), upgrade (Upgrade: h2c, "
        "bodiless requests only: deprecated by RFC 9113), both, or off", metavar="MODE",
        check=_one_of("off", "prior-knowledge", "upgrade", "both"))
    http2_max_concurrent_streams: int = _setting(
        100, "streams one connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS)",
        metavar="N", check=_at_least(1))
    http2_initial_window_size: int = _setting(
        262144, "receive window of each stream in bytes: body bytes a client may send ahead "
        "of the app's reads", metavar="BYTES", check=_between(1, 2**31 - 1))
    http2_max_frame_size: int = _setting(16384, "largest frame payload accepted, in bytes",
                                         metavar="BYTES", check=_between(16384, 2**24 - 1))
    http2_max_header_list_size: int = _setting(
        65536, "largest decoded header list in bytes (HPACK bombs stop here)",
        metavar="BYTES", check=_at_least(1))
    http2_max_streams_in_app: int = _setting(
        0, "streams of one connection running in the app at once; the others wait their "
        "turn (0: --threads, so one connection cannot take more than the worker has)",
        metavar="N", check=_at_least(0))


@dataclass(frozen=True)
class Proxy:
    """Which peers are trusted to speak for the client."""

    forwarded_allow_ips: tuple[str, ...] = _setting(
        ("127.0.0.1", "::1"), "comma-separated peers (IPs, CIDRs or *) trusted for "
        "X-Forwarded-* and Forwarded headers", metavar="IPS", check=_check_ip)
    proxy_allow_ips: tuple[str, ...] = _setting(
        ("127.0.0.1", "::1"), "comma-separated peers (IPs, CIDRs or *) allowed to send a "
        "PROXY protocol header", metavar="IPS", aliases=("--proxy-allow-from",), check=_check_ip)


@dataclass(frozen=True)
class Logging:
    """Error log and access log."""

    access_logfile: str = _setting("", "access log file; - is stdout, empty is off",
                                   metavar="FILE")
    access_logformat: str = _setting(
        DEFAULT_ACCESS_LOG_FORMAT, "access line in gunicorn atoms, or json for one JSON "
        "object per line (default: Apache combined)", aliases=("--access-log-format",),
        metavar="FORMAT")
    error_logfile: str = _setting("-", "error log file; - is stderr", metavar="FILE",
                                  aliases=("--log-file",))
    log_level: str = _setting("info", "debug, info, warning, error or critical",
                              metavar="LEVEL",
                              check=_one_of("debug", "info", "warning", "error", "critical"))
    capture_output: bool = _setting(False, "send the app's stdout and stderr to the error log")
    log_config: str = _setting("", "logging.config.fileConfig INI file applied after the "
                               "settings above", metavar="FILE")
    log_config_json: str = _setting("", "logging.config.dictConfig JSON file applied after "
                                    "the settings above", metavar="FILE")
    log_config_dict: Mapping[str, Any] = _setting(
        {}, "logging.config.dictConfig table (TOML or JSON in the variable; no flag); wins "
        "over log_config_json and log_config")
    log_syslog: bool = _setting(False, "also send the error log (and the access log) to syslog")
    log_syslog_to: str = _setting("udp://localhost:514", "syslog address: udp://HOST:PORT, "
                                  "tcp://HOST:PORT or unix://PATH[#dgram|#stream]",
                                  metavar="ADDRESS", check=_check_syslog_address)
    log_syslog_prefix: str = _setting("", "syslog program name (default: the process name)",
                                      metavar="NAME")
    log_syslog_facility: str = _setting("user", "syslog facility name", metavar="FACILITY",
                                        check=_check_facility)
    disable_redirect_access_to_syslog: bool = _setting(
        False, "with --log-syslog, keep access lines out of syslog")
    statsd_host: str = _setting("", "send StatsD metrics (gunicorn's names) to HOST:PORT or "
                                "unix:PATH; empty is off", metavar="ADDRESS",
                                check=_check_statsd_host)
    statsd_prefix: str = _setting("", "prefix of every StatsD metric name (a dot is added)",
                                  metavar="PREFIX")
    dogstatsd_tags: str = _setting("", "comma-separated DogStatsD tags added to every metric, "
                                   "e.g. env:prod,app:shop", metavar="TAGS")


@dataclass(frozen=True)
class Metrics:
    """Prometheus metrics and health checks, served by the master."""

    metrics_bind: str = _setting("", "serve GET /metrics (Prometheus text format), /healthz "
                                 "and /readyz from the master at HOST:PORT or unix:PATH; "
                                 "empty is off", metavar="ADDRESS", check=_check_metrics_bind)


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
class WebSocket:
    """WebSockets: the server's own (docs/websockets.md) and those libraries take over."""

    # websockets (the Python library) defaults to 1 MiB, as we do.
    websocket_max_message_bytes: int = _setting(
        1 << 20, "largest WebSocket message accepted, in bytes after decompression (else "
        "close 1009)", metavar="BYTES", check=_at_least(1))
    websocket_max_connections: int = _setting(
        1000, "open WebSockets per worker at most, native and hijacked; more upgrades get "
        "503", metavar="N", check=_at_least(1))
    # websockets pings every 20 s and waits 20 s for the pong; nginx's proxy_read_timeout
    # (60 s) and most load balancers' idle timeouts are longer.
    websocket_ping_interval: float = _setting(
        20.0, "seconds between pings on a native WebSocket (keeps proxies from closing "
        "it); 0 disables", metavar="SECONDS", check=_at_least(0))
    websocket_ping_timeout: float = _setting(
        20.0, "seconds to wait for the pong before closing (1011)", metavar="SECONDS",
        check=_above(0))
    websocket_deflate: bool = _setting(
        True, "compress messages (permessage-deflate) when the client offers it")


# The name other packages import (the worker has its own WebSocket class).
WebSocketSettings = WebSocket


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration; ``config_path`` is the file loaded, if any."""

    server: Server = field(default_factory=Server)
    workers: Workers = field(default_factory=Workers)
    limits: Limits = field(default_factory=Limits)
    tls: TLS = field(default_factory=TLS)
    http2: Http2 = field(default_factory=Http2)
    proxy: Proxy = field(default_factory=Proxy)
    logging: Logging = field(default_factory=Logging)
    metrics: Metrics = field(default_factory=Metrics)
    hooks: Hooks = field(default_factory=Hooks)
    websocket: WebSocket = field(default_factory=WebSocket)
    config_path: str = ""


# TOML table name -> (section dataclass, --help group title)
SECTIONS: Final[Mapping[str, tuple[type[Any], str]]] = {
    "server": (Server, "server"),
    "workers": (Workers, "workers"),
    "limits": (Limits, "request limits"),
    "tls": (TLS, "TLS"),
    "http2": (Http2, "HTTP/2"),
    "proxy": (Proxy, "proxies"),
    "logging": (Logging, "logging"),
    "metrics": (Metrics, "metrics and health checks"),
    "hooks": (Hooks, "server hooks (each a dotted path module:callable, as in gunicorn)"),
    "websocket": (WebSocket, "WebSockets"),
}

_KINDS: Final[Mapping[object, str]] = {
    str: "str", int: "int", float: "float", bool: "bool", tuple[str, ...]: "list",
    Mapping[str, Any]: "table",
}


@dataclass(frozen=True)
class Setting:
    """One declared setting, as read from its section dataclass field."""

    section: str
    key: str
    # "str", "int", "float", "bool", "list" (of strings), "mode" (octal int) or "table"
    kind: str
    default: Any
    help: str
    flags: tuple[str, ...]  # primary long flag first; () for the positional APP
    metavar: str
    check: _Check | None  # applied to the value, or to each item of a list
    is_repeatable: bool  # a list flag given once per item (else comma-separated)
    is_positional: bool
    allows_empty: bool
    fallback_env: str  # a conventional variable supplying the default, e.g. WEB_CONCURRENCY
    value_words: Mapping[str, Any]  # other spellings (gunicorn's) of values, e.g. "2"

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.upper()

    @property
    def dest(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def long_flag(self) -> str:
        """``--max-requests``: the spelling the TOML key is made from (also for no-flag keys)."""
        return "--" + self.key.replace("_", "-")


def _declared() -> Iterator[Setting]:
    for section, (cls, _) in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            meta: _Meta = item.metadata["wsgiserve"]
            kind = "mode" if meta.is_mode else _KINDS[hints[item.name]]
            long_flag = meta.flag or "--" + item.name.replace("_", "-")
            flags = () if meta.is_positional or kind == "table" else (long_flag, *meta.aliases)
            if meta.short:
                flags = (meta.short, *flags)
            default = item.default
            if default is dataclasses.MISSING:
                default = item.default_factory()  # type: ignore[operator]  # set for tables
            yield Setting(section, item.name, kind, default, meta.help, flags,
                          meta.metavar, meta.check, meta.is_repeatable, meta.is_positional,
                          meta.allows_empty, meta.fallback_env, meta.value_words)


SETTINGS: Final[tuple[Setting, ...]] = tuple(_declared())
_BY_KEY: Final[Mapping[tuple[str, str], Setting]] = {(s.section, s.key): s for s in SETTINGS}
