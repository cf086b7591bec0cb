"""A worker process: its loop, connections, protocols, exchanges and transport."""
from __future__ import annotations
