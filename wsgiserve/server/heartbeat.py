"""Worker liveness shared between the arbiter and one worker, without files or syscalls.

The arbiter creates one ``Heartbeat`` per worker before forking; it lives in an anonymous
shared memory page, so ``beat()`` in the worker is a store and ``age()`` in the arbiter a
load.
"""
from __future__ import annotations

import mmap
import struct
import time
from typing import Final

_FORMAT: Final = struct.Struct("d")


class Heartbeat:
    """A monotonic timestamp in shared memory: the last time the worker said it was alive."""

    __slots__ = ("_memory",)

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, _FORMAT.size, flags=mmap.MAP_SHARED)
        self.beat()

    def beat(self) -> None:
        """Record that the worker is alive now (worker side)."""
        _FORMAT.pack_into(self._memory, 0, time.monotonic())

    def age(self) -> float:
        """Seconds since the last beat (arbiter side)."""
        return time.monotonic() - float(_FORMAT.unpack_from(self._memory, 0)[0])

    def close(self) -> None:
        self._memory.close()
