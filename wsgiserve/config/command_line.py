"""The ``wsgiserve`` command line: every setting is a flag, grouped by section.

``parse_command_line`` returns a ``CommandLine`` holding only the settings argv gives, for
load to layer over the file and the environment, and the gunicorn flags that wsgiserve
accepts without needing them. Imports only the config modules; outside them, import
these names from wsgiserve.config.
"""
from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from wsgiserve.config.checks import UsageError, _BadValue
from wsgiserve.config.convert import _from_text
from wsgiserve.config.gunicorn import COMPAT_FLAGS
from wsgiserve.config.settings import DEFAULT_CONFIG_FILE, SECTIONS, SETTINGS, Setting

_HELP_MAX_WIDTH: Final = 80


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


class _GunicornFlag(argparse.Action):
    """A gunicorn flag wsgiserve does not need: recorded as (flag, value) for the notice."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        given = list(getattr(namespace, _GUNICORN_DEST, []))
        given.append((option_string or "", values if isinstance(values, str) else None))
        setattr(namespace, _GUNICORN_DEST, given)


_GUNICORN_DEST: Final = "gunicorn_flags"


def _paste_app(text: str) -> str:
    # gunicorn's --paste FILE[#NAME] is PasteDeploy's config: URI with an absolute path.
    path, hash_sign, name = text.partition("#")
    return f"config:{os.path.abspath(path)}{hash_sign}{name}"


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
               "config file < environment < command line. See docs/configuration.md. "
               "gunicorn's other flags are accepted with a notice or refused with advice: "
               "see docs/migrating-from-gunicorn.md.")
    general = parser.add_argument_group("configuration")
    general.add_argument("-c", "--config", metavar="FILE", dest="config_file",
                         help=f"TOML config file (default: ./{DEFAULT_CONFIG_FILE} if present;"
                              " also $WSGISERVE_CONFIG)")
    general.add_argument("--check-config", action="store_true",
                         help="check the configuration and exit (0 if valid, else 1)")
    general.add_argument("--print-config", action="store_true",
                         help="print the resolved configuration as TOML and exit")
    general.add_argument("--from-gunicorn", metavar="FILE",
                         help="print a gunicorn.conf.py's settings as wsgiserve TOML and exit "
                              "(the file is executed, as gunicorn does)")
    if version:
        general.add_argument("--version", action="version", version=f"wsgiserve {version}")
    for section, (_, title) in SECTIONS.items():
        group = parser.add_argument_group(title)
        for setting in (s for s in SETTINGS if s.section == section):
            if setting.is_positional:
                parser.add_argument(setting.dest, nargs="?", metavar=setting.metavar,
                                    type=_argparse_type(setting), help=argparse.SUPPRESS)
            elif not setting.flags:
                continue  # a table: the file or the variable only
            elif setting.kind == "bool":
                group.add_argument(*setting.flags, dest=setting.dest, help=setting.help,
                                   action=argparse.BooleanOptionalAction)
            else:
                group.add_argument(*setting.flags, dest=setting.dest, help=setting.help,
                                   metavar=setting.metavar, type=_argparse_type(setting),
                                   action="append" if setting.is_repeatable else "store")
    parser.add_argument("--paste", "--paster", dest="server.app", metavar="FILE[#NAME]",
                        type=_paste_app, help="serve a PasteDeploy app from an ini file "
                        "(APP config:FILE#NAME; needs PasteDeploy)")
    for flag, gunicorn_setting in COMPAT_FLAGS.items():
        parser.add_argument(flag, dest=_GUNICORN_DEST, action=_GunicornFlag,
                            nargs=None if gunicorn_setting.takes_value else 0,
                            help=argparse.SUPPRESS)
    return parser


@dataclass(frozen=True)
class CommandLine:
    """What the command line said: settings given (by ``"section.key"``) and actions."""

    values: Mapping[str, Any] = field(default_factory=dict)
    config_file: str | None = None
    should_check_config: bool = False
    should_print_config: bool = False
    # gunicorn flags accepted but not needed, as (flag, value or None), in argv's order
    gunicorn_flags: tuple[tuple[str, str | None], ...] = ()
    from_gunicorn: str | None = None


def parse_command_line(argv: Sequence[str] | None, version: str = "") -> CommandLine:
    """Parse argv (``sys.argv[1:]`` when None).

    Raises:
        UsageError: a malformed or unknown flag or value, with a message naming the flag;
            a gunicorn flag wsgiserve refuses, saying what to do instead.
        SystemExit: after printing ``--help`` or ``--version``.
    """
    parser = build_parser(version)
    argv = _read_value_words(sys.argv[1:] if argv is None else argv)
    _refuse_unknown_options(parser, argv)
    namespace = vars(parser.parse_args(argv))
    config_file = namespace.pop("config_file", None)
    should_check = bool(namespace.pop("check_config", False))
    should_print = bool(namespace.pop("print_config", False))
    from_gunicorn = namespace.pop("from_gunicorn", None)
    gunicorn_flags = tuple(namespace.pop(_GUNICORN_DEST, ()))
    for flag, value in gunicorn_flags:
        refusal = COMPAT_FLAGS[flag].refusal_for(value)
        if refusal is not None:
            raise UsageError(f"{flag}{'' if value is None else ' ' + value}: {refusal}")
    values = {dest: (tuple(v) if isinstance(v, list) else v) for dest, v in namespace.items()}
    return CommandLine(values, config_file, should_check, should_print, gunicorn_flags,
                       from_gunicorn)


def _read_value_words(argv: Sequence[str]) -> list[str]:
    """gunicorn's valued spelling of a switch (``--proxy-protocol v2``, ``=off``) becomes the
    switch or its ``--no-`` form. The next word is taken only when it is a value word, so
    ``--proxy-protocol app:app`` still names the app."""
    switches = {flag: s for s in SETTINGS if s.kind == "bool" and s.value_words
                for flag in s.flags if flag.startswith("--")}
    out: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        flag, equals, word = token.partition("=")
        setting = switches.get(flag)
        if setting is None or token == "--":
            out.append(token)
            if token == "--":
                out.extend(tokens)
            continue
        if not equals:
            following = next(tokens, None)
            if following is not None and following.strip().lower() in setting.value_words:
                word = following
            elif following is not None:
                out.extend((flag, following))
                continue
            else:
                out.append(flag)
                continue
        if word.strip().lower() not in setting.value_words:
            names = "/".join((flag, f"--no-{flag[2:]}"))
            raise UsageError(f"argument {names}: must be one of "
                             f"{', '.join(setting.value_words)}, got {word!r}")
        is_on = bool(setting.value_words[word.strip().lower()])
        out.append(flag if is_on else f"--no-{flag[2:]}")
    return out


def _refuse_unknown_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Name an unknown ``--flag`` (and the closest known one) before argparse reads on and
    complains about the value that follows it instead."""
    known = list(parser._option_string_actions)
    for token in argv:
        if token == "--":
            return
        if not token.startswith("--"):
            continue
        name = token.partition("=")[0]
        if name not in parser._option_string_actions:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(f"unrecognized option {name}{hint}")
