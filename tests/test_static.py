"""Static checks run as part of the suite: mypy --strict on the package, ruff on everything."""
from __future__ import annotations

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
