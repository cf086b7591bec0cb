"""Static checks run as part of the suite: mypy --strict on the package, ruff on everything."""
from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_strict_on_the_package() -> None:
    pytest.importorskip("mypy")
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "wsgiserve"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint() -> None:
    if shutil.which("ruff") is None and pytest.importorskip("ruff") is None:
        pytest.skip("ruff not installed")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "wsgiserve", "tests",
                             "benchmarks", "tools"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _name(requirement: str) -> str:
    # PEP 503 normalisation: Django, django and WSGIProxy2 / wsgiproxy2 are one name.
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]).lower()


def test_every_test_requirement_is_pinned_in_the_constraints_file() -> None:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    required = [line.strip() for line in parser["options.extras_require"]["test"].splitlines()
                if line.strip()]
    pins = {}
    for line in (ROOT / "tools" / "test-constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[_name(name)] = version
    for requirement in required:
        assert _name(requirement) in pins, f"{requirement} is not in tools/test-constraints.txt"
        if "==" in requirement:
            assert pins[_name(requirement)] == requirement.partition("==")[2], requirement
    assert "-c tools/test-constraints.txt" in (ROOT / "tools" / "install-test-deps.sh").read_text()


# Scripts run by hand (benchmarks, tools): each must at least start. Modules imported by the
# others are not scripts.
_NOT_SCRIPTS = {"_parse_adapter.py", "servers.py", "wrk.py", "flask_hello.py", "worker_profile.py"}
SCRIPTS = sorted(path.relative_to(ROOT).as_posix()
                 for folder in ("benchmarks", "tools") for path in (ROOT / folder).glob("*.py")
                 if path.name not in _NOT_SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_starts_and_explains_itself(script: str) -> None:
    result = subprocess.run([sys.executable, script, "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage:" in result.stdout, result.stdout
