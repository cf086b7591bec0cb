"""The ``wsgiserve`` command: argv -> Config -> logging -> Arbiter.

The only module that installs log handlers. Nothing in wsgiserve imports it except
``__main__``; the server gets its exit codes from ``exitcodes`` and its app from ``appload``.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Final, TextIO

from wsgiserve import __version__
from wsgiserve.config import (
    Config,
    ConfigError,
    Logging,
    UsageError,
    build_parser,
    dump_toml,
    parse_command_line,
    resolve,
    unknown_environment,
)
from wsgiserve.exitcodes import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from wsgiserve.log import (
    ACCESS_LOGGER,
    ERROR_LOG_DATE_FORMAT,
    ERROR_LOG_FORMAT,
    ERROR_LOGGER,
    AccessFormatter,
    ReopenableFileHandler,
)

__all__ = ["configure_logging", "main", "prepare_process"]

logger = logging.getLogger(__name__)

# Handler names mark what configure_logging installed, so a second call replaces them.
_ERROR_HANDLER: Final = "wsgiserve-error-log"
_ACCESS_HANDLER: Final = "wsgiserve-access-log"
_ARBITER_MODULE: Final = "wsgiserve.server.master.arbiter"


def _replace_handler(target: logging.Logger, name: str, handler: logging.Handler | None) -> None:
    for old in [h for h in target.handlers if h.get_name() == name]:
        target.removeHandler(old)
        if isinstance(old, logging.FileHandler):
            old.close()
    if handler is not None:
        handler.set_name(name)
        target.addHandler(handler)


def _open_handler(path: str, console: TextIO) -> logging.Handler:
    if path == "-":
        return logging.StreamHandler(console)
    return ReopenableFileHandler(path)


def configure_logging(settings: Logging, *, stdout: TextIO | None = None,
                      stderr: TextIO | None = None) -> None:
    """Install the error log on ``wsgiserve`` and the access log on ``wsgiserve.access``.

    Both stop propagating to the root logger (the app's own logging stays the app's). The
    access log is independent of ``log_level``: off when ``access_logfile`` is empty.
    Calling again replaces what the previous call installed.

    Raises:
        OSError: a log file cannot be opened; nothing is changed then.
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
    # Above CRITICAL when off, so AccessLog.log costs one level check per request.
    access_logger.setLevel(logging.INFO if access_handler else logging.CRITICAL + 1)
    access_logger.propagate = False
    _replace_handler(access_logger, _ACCESS_HANDLER, access_handler)


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
        logger.error("cannot serve: %s is not available in this installation", _ARBITER_MODULE)
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
    try:
        config = resolve(command_line, environ)
        _check_runtime(config)
    except ConfigError as exc:
        sys.stderr.write(f"wsgiserve: error: {exc}\n")
        return EXIT_ERROR if command_line.should_check_config else EXIT_USAGE
    if command_line.should_check_config:
        sys.stdout.write(f"config OK: {config.config_path or '(no config file)'}\n")
        return EXIT_OK
    if command_line.should_print_config:
        sys.stdout.write(dump_toml(config))
        return EXIT_OK
    try:
        prepare_process(config)
        configure_logging(config.logging)
    except OSError as exc:
        sys.stderr.write(f"wsgiserve: error: {exc.filename or ''}: {exc.strerror}\n")
        return EXIT_USAGE
    for name in unknown_environment(environ):
        logger.warning("ignoring %s: it names no setting", name)
    return _run_arbiter(config)
