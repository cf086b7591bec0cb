"""Turning a raw value into a checked value of one setting.

``_from_toml`` takes what tomllib read, ``_from_text`` a string from the environment or the
command line; both check the type, run the setting's check and raise ``_BadValue``. The
caller reports it naming where the value came from: a ConfigError, or on the command line a
UsageError through argparse. Internal to the config modules.
"""
from __future__ import annotations

import json
import math
from types import MappingProxyType
from typing import Any, Final

from wsgiserve.config.checks import _BadValue, _show
from wsgiserve.config.settings import Setting


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


def _word(setting: Setting, value: object) -> object:
    """A value spelled as one of the setting's ``value_words`` becomes what it stands for."""
    if setting.value_words and isinstance(value, (str, int)) and not isinstance(value, bool):
        return setting.value_words.get(str(value).strip().lower(), value)
    return value


def _from_toml(setting: Setting, value: object) -> Any:
    """Convert a value read by tomllib, checking its type; raises _BadValue."""
    kind = setting.kind
    value = _word(setting, value)
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
    if kind == "table" and isinstance(value, dict):
        return _checked(setting, MappingProxyType(value))
    expected = {"str": "a string", "int": "an integer", "float": "a number",
                "bool": "true or false", "list": "an array of strings",
                "mode": "an integer or an octal string", "table": "a table"}[kind]
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
    word = _word(setting, text)
    if word is not text:
        return _checked(setting, word)
    if kind == "str":
        return _checked(setting, text)
    if kind == "table":
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise _BadValue(f"must be a JSON object: {exc}") from None
        if not isinstance(value, dict):
            raise _BadValue(f"must be a JSON object, got {_type_name(value)}")
        return _checked(setting, MappingProxyType(value))
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
