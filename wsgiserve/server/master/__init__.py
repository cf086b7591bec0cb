"""The master process: the arbiter and what it delegates to (workers, spawn, listeners,
reload, upgrade, pid file, systemd)."""
from __future__ import annotations
