"""The config file format: reading a TOML file's settings, and writing a Config as TOML.

Unknown tables and keys are errors, with a suggestion when one is close; ``dump_toml``
writes what ``load`` reads back to an equal Config. Imports only the config modules;
outside them, import ``dump_toml`` from wsgiserve.config.
"""
from __future__ import annotations

import difflib
import textwrap
import tomllib
from collections.abc import Sequence
from typing import Any

from wsgiserve.config.checks import ConfigError, _BadValue, _toml_value
from wsgiserve.config.convert import _from_toml, _type_name
from wsgiserve.config.settings import _BY_KEY, SECTIONS, SETTINGS, Config, Setting

# --- reading -----------------------------------------------------------------------------


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


# --- writing -----------------------------------------------------------------------------


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
                flags = ", ".join(setting.flags) or (f"positional {setting.metavar}"
                                                     if setting.is_positional else "none")
                lines.append("")
                lines += textwrap.wrap(setting.help + ".", 86, initial_indent="# ",
                                       subsequent_indent="# ")
                lines.append(f"# Flag: {flags}. Variable: {setting.env_var}.")
            lines.append(_setting_toml(setting, getattr(values, setting.key)))
    return "\n".join(lines) + "\n"
