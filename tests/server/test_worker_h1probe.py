"""The shared HTTP/1.1 conformance prober (shared/probes/h1probe.py, beside the repository)
against a real ``python -m wsgiserve``: every case must pass."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from processes import REPO_ROOT

PROBE = REPO_ROOT.parent / "shared" / "probes" / "h1probe.py"


@pytest.mark.timeout(180)
def test_h1probe_passes_every_case() -> None:
    if not PROBE.exists():
        pytest.skip(f"{PROBE} is not there (it comes with the shared folder)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, str(PROBE), "--server",
         "{python} -m wsgiserve --bind 127.0.0.1:{port} --workers 1 {app}"],
        capture_output=True, text=True, timeout=170, cwd=REPO_ROOT, env=env, check=False)
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert last.startswith("h1probe: ") and "passed" in last, last
