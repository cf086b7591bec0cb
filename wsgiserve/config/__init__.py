"""Settings: each one declared once, as a field of a frozen section dataclass.

From that single declaration come the TOML loader, the ``WSGISERVE_*`` environment reader,
the argparse parser, ``--print-config`` and ``docs/configuration.md``. Precedence is
defaults < config file < ``WSGISERVE_*`` environment < command line. Data only: the config
modules import no other wsgiserve module but each other, and any module may import them.

This package is the one to import from (``wsgiserve.config``); it re-exports the names
of the modules that hold them:

- ``checks``: ConfigError, UsageError, the value checks, ``parse_bind``
- ``settings``: the section dataclasses, Config, SECTIONS and SETTINGS
- ``convert``: TOML and text values converted and checked for one setting
- ``command_line``: the argparse parser and ``parse_command_line``
- ``toml``: reading a config file, and ``dump_toml``
- ``load``: ``resolve`` and ``load``, layering the sources by precedence
- ``gunicorn``: what becomes of each gunicorn setting, and ``--from-gunicorn``
"""
from __future__ import annotations

from wsgiserve.config.checks import (
    SYSLOG_FACILITIES,
    BindAddress,
    ConfigError,
    UsageError,
    parse_bind,
    parse_syslog_address,
)
from wsgiserve.config.command_line import CommandLine, build_parser, parse_command_line
from wsgiserve.config.gunicorn import (
    COMPAT_FLAGS,
    GUNICORN_SETTINGS,
    GunicornSetting,
    Treatment,
    read_gunicorn_file,
    translate_gunicorn_file,
)
from wsgiserve.config.load import load, resolve, unknown_environment
from wsgiserve.config.settings import (
    ACCESS_LOG_JSON,
    DEFAULT_ACCESS_LOG_FORMAT,
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    SECTIONS,
    SETTINGS,
    TLS,
    Config,
    Hooks,
    Http2,
    Limits,
    Logging,
    Metrics,
    Proxy,
    Server,
    Setting,
    WebSocketSettings,
    Workers,
)

# Not public: tools/gen_config_docs.py writes each default with it.
from wsgiserve.config.toml import _setting_toml as _setting_toml
from wsgiserve.config.toml import dump_toml

__all__ = [
    "ACCESS_LOG_JSON",
    "COMPAT_FLAGS",
    "GUNICORN_SETTINGS",
    "SYSLOG_FACILITIES",
    "GunicornSetting",
    "Treatment",
    "parse_syslog_address",
    "read_gunicorn_file",
    "translate_gunicorn_file",
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
    "Http2",
    "Limits",
    "Logging",
    "Metrics",
    "Proxy",
    "Server",
    "Setting",
    "UsageError",
    "WebSocketSettings",
    "Workers",
    "build_parser",
    "dump_toml",
    "load",
    "parse_bind",
    "parse_command_line",
    "resolve",
    "unknown_environment",
]
