"""The ``wsgiserve`` command line: every setting is a flag, grouped by section.

``parse_command_line`` returns a ``CommandLine`` holding only the settings argv gives, for
load to layer over the file and the environment. Imports only the config modules;
outside them, import these names from wsgiserve.config.
"""
from __future__ import annotations

import argparse
import shutil
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from wsgiserve.config.checks import UsageError, _BadValue
from wsgiserve.config.convert import _from_text
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
