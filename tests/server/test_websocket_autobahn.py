"""A bounded part of the Autobahn WebSocket suite (kosoku) against a real worker, both
native styles and Flask-Sock: every case OK (or NON-STRICT / INFORMATIONAL), no UNCLEAN
close. The whole suite (``tools/run_autobahn.py``, about 12 minutes) is in the README.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# One or more cases of every section the README reports: framing, pings, reserved
# bits, opcodes, fragmentation, UTF-8, close codes, limits, deflate.
CASES = ["1.1.*", "1.2.8", "2.*", "3.*", "4.*", "5.*", "6.1.*", "6.2.*", "6.4.*", "6.12.1",
         "7.1.*", "7.3.*", "7.5.1", "7.7.*", "7.9.*", "9.1.1", "9.2.1", "10.1.1", "12.1.1",
         "12.2.3", "13.1.1", "13.3.2", "13.7.1"]


@pytest.mark.parametrize(("target", "allow_failed"), [
    ("native-event", False),
    ("native-blocking", False),
    # simple-websocket answers a Ping sent between a message's fragments after the
    # message (5.6, 5.19 fail); its closes are clean.
    ("flask-sock", True),
])
def test_autobahn_cases(tmp_path: Path, target: str, allow_failed: bool) -> None:
    command = [sys.executable, str(ROOT / "tools" / "run_autobahn.py"), target,
               "-o", str(tmp_path), "--timeout", "300"]
    if allow_failed:
        command.append("--allow-failed")
    for case in CASES:
        command += ["-i", case]
    result = subprocess.run(command, capture_output=True, text=True, timeout=360)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.splitlines()[0]
    assert "UNCLEAN" not in result.stdout and " cases in " in summary, result.stdout
    if not allow_failed:
        assert "FAILED" not in result.stdout, result.stdout
