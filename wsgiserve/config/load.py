"""Resolving a Config: defaults < config file < ``WSGISERVE_*`` environment < command line.

Also the checks that involve two settings, and the ``WSGISERVE_*`` variables that name no
setting. Imports only the config modules; outside them, import ``resolve``, ``load`` and
``unknown_environment`` from wsgiserve.config.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from wsgiserve.config.checks import ConfigError, _BadValue
from wsgiserve.config.command_line import CommandLine, parse_command_line
from wsgiserve.config.convert import _checked, _from_text
from wsgiserve.config.settings import (
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    SECTIONS,
    SETTINGS,
    Config,
    Setting,
)
from wsgiserve.config.toml import _read_file


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
        origin = f"argument {'/'.join(setting.flags) or setting.metavar}"
        try:
            values[dest] = _checked(setting, value)
        except _BadValue as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        origins[dest] = origin
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
    # FDS, METRICS_FD: listening descriptors a USR2 parent master hands to its successor.
    known = {s.env_var for s in SETTINGS} | {ENV_PREFIX + "CONFIG", ENV_PREFIX + "FDS",
                                              ENV_PREFIX + "METRICS_FD"}
    return sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)
