"""docs/ kept honest: the gunicorn migration table against gunicorn's own settings and
wsgiserve's declarations, the signal table against what the arbiter handles, and every
deploy/ or docs/ path the docs name exists."""
from __future__ import annotations

import re

import pytest
from processes import REPO_ROOT

from wsgiserve.config import SETTINGS, build_parser

DOCS = REPO_ROOT / "docs"
MIGRATION = DOCS / "migrating-from-gunicorn.md"


def _table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``heading``."""
    section = text[text.index(heading):]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows[1:]  # without the header row


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _wsgiserve_flags() -> set[str]:
    parser = build_parser(version="0")
    return {flag for action in parser._actions for flag in action.option_strings}


def test_every_gunicorn_setting_is_in_the_migration_table() -> None:
    gunicorn_config = pytest.importorskip("gunicorn.config")
    rows = _table_rows(MIGRATION.read_text(), "## Flag by flag")
    listed = {token for row in rows for token in _ticked(row[0])}
    missing = []
    for setting in gunicorn_config.KNOWN_SETTINGS:
        names = list(setting.cli or []) or [setting.name]
        missing += [name for name in names if name not in listed]
    assert not missing, f"gunicorn settings missing from {MIGRATION.name}: {missing}"
    known = {flag for s in gunicorn_config.KNOWN_SETTINGS for flag in (s.cli or [])} | \
        {s.name for s in gunicorn_config.KNOWN_SETTINGS}
    assert listed <= known, f"not gunicorn settings: {sorted(listed - known)}"


def test_every_wsgiserve_flag_named_in_the_migration_guide_exists() -> None:
    text = MIGRATION.read_text()
    flags = _wsgiserve_flags()
    rows = _table_rows(text, "## Flag by flag")
    for row in rows:
        assert len(row) == 3, row
        for token in _ticked(row[1]):
            assert token in flags or token == "APP", (row, token)
    only_ours = _table_rows(text, "## Only in wsgiserve")
    for row in only_ours:
        for token in _ticked(row[0]):
            assert token in flags, (row, token)


def test_every_wsgiserve_setting_appears_in_the_migration_guide() -> None:
    text = MIGRATION.read_text()
    missing = [setting.flags for setting in SETTINGS if setting.flags
               and not any(f"`{flag}`" in text for flag in setting.flags)]
    assert not missing, f"wsgiserve flags the migration guide does not mention: {missing}"


def test_signal_table_matches_the_signals_the_arbiter_handles() -> None:
    rows = _table_rows((DOCS / "signals.md").read_text(), "## The master")
    documented = {token for row in rows for token in _ticked(row[0])}
    source = (REPO_ROOT / "wsgiserve" / "server" / "master" / "arbiter.py").read_text()
    handled = set(re.findall(r"signal\.SIG([A-Z0-9]+)", source[source.index(
        "def _handle_signals"):source.index("# --- workers")]))
    assert {f"SIG{name}" for name in handled} == documented


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")) + ["../README.md"])
def test_paths_named_in_the_docs_exist(page: str) -> None:
    text = (DOCS / page).read_text()
    for path in set(re.findall(r"(?<![\w/.])((?:deploy|docs|conf|examples|tests|tools)"
                               r"/[\w./@*-]*\w)", text)):
        assert list(REPO_ROOT.glob(path)), f"{page} names {path}, which does not exist"
    for link in re.findall(r"\]\(([\w.-]+\.md)\)", text):
        assert (DOCS / page).parent.joinpath(link).exists(), f"{page} links to {link}"
