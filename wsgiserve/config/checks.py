"""Checks on single setting values, and the errors that report a bad value.

Each check returns None or a problem such as "must be > 0, got -1"; the declarations in
settings name them. Also here: ``parse_bind`` for ``bind`` entries, and how a value
is spelled in TOML, in messages and by ``dump_toml``. Imports only the standard library;
outside the config modules, import these names from wsgiserve.config.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final


class ConfigError(Exception):
    """A setting is malformed; the message names the source, the key and the problem.

    For example ``site.toml: [limits] limit_request_line: must be > 0, got -1``.
    """


class UsageError(ConfigError):
    """The command line itself is malformed; the message is argparse's, naming the flag."""


class _BadValue(Exception):
    """Internal: a value failed a type or range check; ``args[0]`` is the problem."""


# --- spelling values as TOML (in messages here, and by dump_toml) ------------------------

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


def _toml_key(key: str) -> str:
    bare = key and all(char.isascii() and (char.isalnum() or char in "-_") for char in key)
    return key if bare else _toml_string(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):  # an inline table, on one line as TOML 1.0 wants
        pairs = ", ".join(f"{_toml_key(str(key))} = {_toml_value(item)}"
                          for key, item in value.items())
        return "{" + (f" {pairs} " if pairs else "") + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


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


def _between(low: int, high: int) -> _Check:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else \
            f"must be within {low}..{high}, got {_show(value)}"
    return check


def _check_http_protocol(value: Any) -> str | None:
    # gunicorn 27's --http-protocols names: h1 (HTTP/1.1) and h2 (HTTP/2).
    return None if value in ("h1", "h2") else f"must be h1 or h2, got {_show(value)}"


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


# syslog(3) facility names, with their numbers as logging.handlers.SysLogHandler takes them.
SYSLOG_FACILITIES: Final = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}


def _check_facility(value: Any) -> str | None:
    if value.lower() in SYSLOG_FACILITIES:
        return None
    return f"must be a syslog facility ({', '.join(SYSLOG_FACILITIES)}), got {_show(value)}"


def parse_syslog_address(text: str) -> tuple[str, str, int]:
    """Split gunicorn's syslog address into (kind, host or path, port).

    ``udp://HOST:PORT`` and ``tcp://HOST:PORT`` (port 514 when omitted, host localhost when
    empty), ``unix://PATH``, ``unix://PATH#dgram`` and ``unix://PATH#stream``: kind is
    "udp", "tcp", "unix", "unix-dgram" or "unix-stream".

    Raises:
        ValueError: naming the accepted forms.
    """
    problem = ("must be udp://HOST:PORT, tcp://HOST:PORT or unix://PATH[#dgram|#stream], "
               f"got {_show(text)}")
    scheme, separator, rest = text.partition("://")
    if not separator or not rest and scheme == "unix":
        raise ValueError(problem)
    if scheme == "unix":
        path, _, socket_type = rest.partition("#")
        if socket_type not in ("", "dgram", "stream") or not path:
            raise ValueError(problem)
        return ("unix-" + socket_type if socket_type else "unix"), path, 0
    if scheme not in ("udp", "tcp"):
        raise ValueError(problem)
    if rest.startswith("["):
        host, bracket, port = rest[1:].partition("]")
        port = port.removeprefix(":")
        if not bracket:
            raise ValueError(problem)
    else:
        host, _, port = rest.partition(":")
    if port and (not port.isdigit() or int(port) > 65535):
        raise ValueError(problem)
    return scheme, host or "localhost", int(port) if port else 514


def _check_syslog_address(value: Any) -> str | None:
    try:
        parse_syslog_address(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_statsd_host(value: Any) -> str | None:
    # gunicorn's forms: HOST:PORT, [IPV6]:PORT, unix:PATH (and unix://PATH).
    if value == "" or (value.startswith("unix:") and value.removeprefix("unix:").strip("/")):
        return None
    host, colon, port = value.rpartition(":")
    if colon and host and port.isdigit() and int(port) <= 65535:
        return None
    return f"must be HOST:PORT or unix:PATH, got {_show(value)}"


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


def _check_metrics_bind(value: Any) -> str | None:
    if value == "":
        return None
    try:
        address = parse_bind(value)
    except ValueError:
        address = None
    if address is None or address.kind == "fd":
        return f"must be HOST:PORT, [IPV6]:PORT or unix:PATH, got {_show(value)}"
    return None
