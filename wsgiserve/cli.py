"""The ``wsgiserve`` command: argv -> Config -> logging -> (daemon) -> Arbiter.

The only module that installs log handlers: the error and access logs, syslog, StatsD
and a logging config file. Also ``--check-config`` (imports the app and loads the TLS
files as a worker would) and ``--from-gunicorn``.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Final, TextIO

from wsgiserve import __version__
from wsgiserve.appload import AppLoadError, error_location, load_app
from wsgiserve.config import (
    COMPAT_FLAGS,
    SYSLOG_FACILITIES,
    CommandLine,
    Config,
    ConfigError,
    Logging,
    UsageError,
    build_parser,
    dump_toml,
    parse_command_line,
    parse_syslog_address,
    resolve,
    translate_gunicorn_file,
    unknown_environment,
)
from wsgiserve.daemon import daemonize
from wsgiserve.exitcodes import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from wsgiserve.hooks import HookError, load_hooks
from wsgiserve.log import (
    ACCESS_LOGGER,
    ERROR_LOG_DATE_FORMAT,
    ERROR_LOG_FORMAT,
    ERROR_LOGGER,
    METRICS_LOGGER,
    AccessFormatter,
    MetricsHandler,
    ReopenableFileHandler,
)
from wsgiserve.statsd import StatsdClient

__all__ = ["check_app_and_files", "configure_logging", "main", "prepare_process"]

_log = logging.getLogger(__name__)

# Handler names mark what configure_logging installed, so a second call replaces them.
_ERROR_HANDLER: Final = "wsgiserve-error-log"
_ACCESS_HANDLER: Final = "wsgiserve-access-log"
_ERROR_SYSLOG: Final = "wsgiserve-error-syslog"
_ACCESS_SYSLOG: Final = "wsgiserve-access-syslog"
_METRICS_HANDLER: Final = "wsgiserve-statsd"
# A gunicorn logging config names gunicorn's loggers; their handlers serve ours.
_GUNICORN_LOGGERS: Final = {"gunicorn.error": ERROR_LOGGER, "gunicorn.access": ACCESS_LOGGER}
_ARBITER_MODULE: Final = "wsgiserve.server.master.arbiter"


def _replace_handler(target: logging.Logger, name: str, handler: logging.Handler | None) -> None:
    for old in [h for h in target.handlers if h.get_name() == name]:
        target.removeHandler(old)
        old.close()
    if handler is not None:
        handler.set_name(name)
        target.addHandler(handler)


def _open_handler(path: str, console: TextIO) -> logging.Handler:
    if path == "-":
        return logging.StreamHandler(console)
    return ReopenableFileHandler(path)


def _syslog_handler(settings: Logging, tag: str) -> logging.Handler:
    """gunicorn's syslog set-up: the address forms of ``log_syslog_to``, a facility, and
    lines tagged ``TAG[PID]:`` as syslog(3) writes them."""
    import logging.handlers  # here: most servers do not use syslog

    kind, where, port = parse_syslog_address(settings.log_syslog_to)
    socket_type = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM,
                   "unix-dgram": socket.SOCK_DGRAM, "unix-stream": socket.SOCK_STREAM}.get(kind)
    address: str | tuple[str, int] = where if kind.startswith("unix") else (where, port)
    handler = logging.handlers.SysLogHandler(
        address, SYSLOG_FACILITIES[settings.log_syslog_facility.lower()], socket_type)
    handler.setFormatter(logging.Formatter(f"{tag}[%(process)d]: [%(levelname)s] %(message)s"))
    return handler


def _apply_logging_config(settings: Logging) -> None:
    """The user's logging config, applied over ours as gunicorn does (dict, else JSON, else
    INI); loggers it does not name keep their handlers."""
    import logging.config  # here: most servers use none

    if settings.log_config_dict or settings.log_config_json:
        if settings.log_config_dict:
            config = json.loads(json.dumps(settings.log_config_dict))  # a mutable deep copy
        else:
            with open(settings.log_config_json, encoding="utf-8") as file:
                config = json.load(file)
        config.setdefault("version", 1)
        config.setdefault("disable_existing_loggers", False)
        logging.config.dictConfig(config)
    elif settings.log_config:
        import configparser  # loaded by logging.config already

        if not os.path.isfile(settings.log_config):
            raise OSError(2, "no such file", settings.log_config)
        try:
            logging.config.fileConfig(settings.log_config, disable_existing_loggers=False)
        except (KeyError, RuntimeError, configparser.Error) as exc:
            raise ValueError(f"{settings.log_config}: {type(exc).__name__}: {exc}") from None
    else:
        return
    for gunicorn_name, ours in _GUNICORN_LOGGERS.items():
        source = logging.Logger.manager.loggerDict.get(gunicorn_name)
        target = logging.getLogger(ours)
        # Adopted only when the config left our own logger alone.
        if isinstance(source, logging.Logger) and source.handlers and any(
                h.get_name() in (_ERROR_HANDLER, _ACCESS_HANDLER) for h in target.handlers):
            for handler in [h for h in target.handlers if h.get_name() in (
                    _ERROR_HANDLER, _ACCESS_HANDLER)]:
                target.removeHandler(handler)
                handler.close()
            for handler in source.handlers:
                target.addHandler(handler)
            if source.level != logging.NOTSET:
                target.setLevel(source.level)


def configure_logging(settings: Logging, *, stdout: TextIO | None = None,
                      stderr: TextIO | None = None, name: str = "") -> None:
    """Install the error log on ``wsgiserve`` and the access log on ``wsgiserve.access``,
    syslog and StatsD when configured, then the user's logging config over them.

    Both stop propagating to the root logger (the app's own logging stays the app's). The
    access log is independent of ``log_level``: off when ``access_logfile`` is empty.
    Calling again replaces what the previous call installed. ``name`` (the process name)
    tags syslog lines unless ``log_syslog_prefix`` is set.

    Raises:
        OSError: a log file or logging config cannot be opened.
        ValueError: a logging config is malformed (logging.config's message).
    """
    error_handler = _open_handler(settings.error_logfile or "-", stderr or sys.stderr)
    access_handler = None
    if settings.access_logfile:
        try:
            access_handler = _open_handler(settings.access_logfile, stdout or sys.stdout)
        except OSError:
            error_handler.close()
            raise
        access_handler.setFormatter(logging.Formatter("%(message)s"))
    error_handler.setFormatter(logging.Formatter(ERROR_LOG_FORMAT, ERROR_LOG_DATE_FORMAT))

    error_logger = logging.getLogger(ERROR_LOGGER)
    error_logger.setLevel(settings.log_level.upper())
    error_logger.propagate = False
    _replace_handler(error_logger, _ERROR_HANDLER, error_handler)

    access_logger = logging.getLogger(ACCESS_LOGGER)
    access_logger.propagate = False
    _replace_handler(access_logger, _ACCESS_HANDLER, access_handler)

    tag = settings.log_syslog_prefix or name or "wsgiserve"
    use_syslog = settings.log_syslog
    access_syslog = use_syslog and not settings.disable_redirect_access_to_syslog
    try:
        _replace_handler(error_logger, _ERROR_SYSLOG,
                         _syslog_handler(settings, tag) if use_syslog else None)
        _replace_handler(access_logger, _ACCESS_SYSLOG,
                         _syslog_handler(settings, tag + ".access") if access_syslog else None)
    except OSError as exc:  # a tcp:// or unix:// syslog that is not there
        raise OSError(exc.errno, exc.strerror, settings.log_syslog_to) from None
    # Above CRITICAL when off, so AccessLog.log costs one level check per request.
    has_access = access_handler is not None or access_syslog
    access_logger.setLevel(logging.INFO if has_access else logging.CRITICAL + 1)

    metrics_logger = logging.getLogger(METRICS_LOGGER)
    metrics_logger.propagate = False
    metrics = None
    if settings.statsd_host:
        try:
            client = StatsdClient(settings.statsd_host, settings.statsd_prefix,
                                  settings.dogstatsd_tags)
        except OSError as exc:  # a host name that does not resolve
            raise OSError(exc.errno, exc.strerror, settings.statsd_host) from None
        metrics = MetricsHandler(client)
    metrics_logger.setLevel(logging.INFO if metrics else logging.CRITICAL + 1)
    _replace_handler(metrics_logger, _METRICS_HANDLER, metrics)
    _replace_handler(error_logger, _METRICS_HANDLER, metrics)
    _apply_logging_config(settings)


def prepare_process(config: Config, environ: dict[str, str] | None = None) -> None:
    """Apply ``chdir``, ``pythonpath`` and ``env`` to this process before the app loads.

    The working directory goes on ``sys.path`` as with ``python -m``: the console script's
    own directory is there instead, and ``wsgiserve app:app`` must find ./app.py.

    Raises:
        OSError: ``chdir`` does not exist or cannot be entered.
    """
    target = os.environ if environ is None else environ
    if config.server.chdir:
        os.chdir(config.server.chdir)
    # Inserted in reverse so that sys.path reads pythonpath..., then the working directory.
    for directory in reversed((*config.server.pythonpath, os.getcwd())):
        directory = os.path.abspath(directory)
        if directory in sys.path:
            sys.path.remove(directory)
        sys.path.insert(0, directory)
    for pair in config.server.env:
        name, _, value = pair.partition("=")
        target[name] = value


def check_app_and_files(config: Config) -> None:
    """What ``--check-config`` adds to the config checks: import the app and the hooks as a
    worker would (after ``prepare_process``), and load the TLS certificate chain, key and
    client CA file as a worker will.

    Raises:
        AppLoadError: the app cannot be imported (see ``appload.error_location``).
        ConfigError: a hook cannot be imported, or a TLS file is unusable (the message
            names the setting and the file).
    """
    # Imported here: without TLS no process of the server loads the ssl module.
    from wsgiserve.tls import check_config as check_tls

    check_tls(config.tls)
    load_app(config.server.app)
    try:
        load_hooks(config.hooks)
    except HookError as exc:
        raise ConfigError(str(exc)) from None


def _check_logging_files(config: Config) -> None:
    settings = config.logging
    origin = config.config_path or "settings"
    try:
        if settings.log_config_json:
            with open(settings.log_config_json, encoding="utf-8") as file:
                json.load(file)
        if settings.log_config:
            import configparser

            parser = configparser.ConfigParser()
            if not parser.read(settings.log_config) or not parser.has_section("loggers"):
                raise ValueError(f"no [loggers] section in {settings.log_config}")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{origin}: [logging] log config: {exc}") from None


def _log_gunicorn_notices(command_line: CommandLine) -> None:
    """One line per gunicorn flag that wsgiserve accepted without needing it."""
    for flag, value in command_line.gunicorn_flags:
        setting = COMPAT_FLAGS[flag]
        level = logging.WARNING if setting.is_warning else logging.INFO
        shown = flag if value is None else f"{flag} {value}"
        _log.log(level, "%s: %s", shown, setting.note)


def _check_runtime(config: Config) -> None:
    """Checks that need other wsgiserve modules, which the config package must not import."""
    try:
        AccessFormatter(config.logging.access_logformat)
    except ValueError as exc:
        origin = "[logging] access_logformat"
        raise ConfigError(f"{config.config_path or 'settings'}: {origin}: {exc}") from None


def _run_arbiter(config: Config) -> int:
    try:
        # Imported here: the server is optional for config tools (--check-config) and tests.
        from wsgiserve.server.master.arbiter import Arbiter
    except ModuleNotFoundError as exc:
        if exc.name not in (_ARBITER_MODULE, "wsgiserve.server.master", "wsgiserve.server"):
            raise
        _log.error("cannot serve: %s is not available in this installation", _ARBITER_MODULE)
        return EXIT_USAGE
    return Arbiter(config).run()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run ``wsgiserve`` with ``argv`` (``sys.argv[1:]`` when None); returns the exit code.

    0 after ``--help``, ``--version``, ``--print-config`` and a good ``--check-config``;
    1 for a failed ``--check-config``; 2 for a bad command line or config; otherwise the
    arbiter's code (see ``wsgiserve.exitcodes``).
    """
    environ = os.environ if environ is None else environ
    try:
        command_line = parse_command_line(argv, version=__version__)
    except SystemExit as exc:  # --help and --version print, then exit
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except UsageError as exc:
        sys.stderr.write(build_parser().format_usage())
        sys.stderr.write(f"wsgiserve: error: {exc}\n")
        return EXIT_USAGE
    if command_line.from_gunicorn is not None:
        try:
            sys.stdout.write(translate_gunicorn_file(command_line.from_gunicorn))
        except ConfigError as exc:
            sys.stderr.write(f"wsgiserve: error: {exc}\n")
            return EXIT_ERROR
        return EXIT_OK
    try:
        config = resolve(command_line, environ)
        _check_runtime(config)
    except ConfigError as exc:
        sys.stderr.write(f"wsgiserve: error: {exc}\n")
        return EXIT_ERROR if command_line.should_check_config else EXIT_USAGE
    if command_line.should_check_config:
        return _check_config(config)
    if command_line.should_print_config:
        sys.stdout.write(dump_toml(config))
        return EXIT_OK
    try:
        prepare_process(config)
        configure_logging(config.logging, name=config.server.name)
    except OSError as exc:
        sys.stderr.write(f"wsgiserve: error: {exc.filename or ''}: {exc.strerror}\n")
        return EXIT_USAGE
    except ValueError as exc:  # a malformed logging config
        sys.stderr.write(f"wsgiserve: error: [logging] log config: {exc}\n")
        return EXIT_USAGE
    for name in unknown_environment(environ):
        _log.warning("ignoring %s: it names no setting", name)
    _log_gunicorn_notices(command_line)
    if config.server.daemon:
        daemonize(keep_stdio=config.server.enable_stdio_inheritance)
    return _run_arbiter(config)


def _check_config(config: Config) -> int:
    """``--check-config``: the config checks passed; now the app, hooks and files."""
    try:
        _check_logging_files(config)
        prepare_process(config)
        check_app_and_files(config)
    except AppLoadError as exc:
        where = error_location(exc)
        sys.stderr.write(f"wsgiserve: error: cannot load the app: {exc}\n")
        if where:
            sys.stderr.write(f"  at {where}\n")
        return EXIT_ERROR
    except ConfigError as exc:  # tls.TLSConfigError too
        sys.stderr.write(f"wsgiserve: error: {exc}\n")
        return EXIT_ERROR
    except OSError as exc:  # chdir
        sys.stderr.write(f"wsgiserve: error: {exc.filename or ''}: {exc.strerror}\n")
        return EXIT_ERROR
    sys.stdout.write(f"config OK: {config.config_path or '(no config file)'}\n")
    return EXIT_OK
