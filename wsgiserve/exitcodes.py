"""Process exit codes shared by the command line, the arbiter and the workers.

Named so that a supervisor (systemd, the arbiter) can tell a crash from a boot failure.
Imports nothing; any module may import it.
"""
from __future__ import annotations

from typing import Final

__all__ = ["EXIT_APP_LOAD", "EXIT_ERROR", "EXIT_OK", "EXIT_USAGE"]

EXIT_OK: Final = 0
# A runtime failure, and a failed --check-config (the issue asks for exactly 0 or 1 there).
EXIT_ERROR: Final = 1
# Bad command line or configuration: argparse's own code, so usage errors stay consistent.
EXIT_USAGE: Final = 2
# The app (or a hook) could not be imported or built. A worker exits with this on boot so the
# arbiter stops instead of respawning forever (gunicorn's WORKER_BOOT_ERROR is also 3).
EXIT_APP_LOAD: Final = 3
