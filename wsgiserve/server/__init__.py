"""The server: arbiter (master process), workers, connections, listeners, systemd glue."""
from __future__ import annotations
