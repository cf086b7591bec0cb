"""Load shedding (workers.max_queue_time): while every serving thread is held up in the
app, nobody polls; the housekeeping thread then polls in their place and queues what came,
each event with the time it came. One still unserved after max_queue_time gets 503 with
Retry-After at once (``Protocol.shed``) instead of waiting until its client gives up.
"""
from __future__ import annotations

import collections
import select
import threading
from collections.abc import Callable
from typing import Final

from wsgiserve.server.worker.accept import ACCEPT_BATCH, Acceptor
from wsgiserve.server.worker.connection import Connection
from wsgiserve.server.worker.states import CLOSE, WAIT_READABLE, Outcome

__all__ = ["LoadShedder", "ReadyQueue"]

# When no serving thread has polled for this long (all held up in the app), the
# housekeeping thread polls in their place and starts counting queue time.
SHED_POLL_AFTER_S: Final = 0.05

# The serving threads' work: epoll events (fd, mask), the same with the time they were
# queued (with load shedding), and tasks (callables).
ReadyQueue = collections.deque[tuple[int, int] | tuple[int, int, float] | Callable[[], object]]


class LoadShedder:
    """Polls for held-up serving threads, and sheds what waited too long."""

    def __init__(self, max_queue_s: float, epoll: select.epoll, poll_lock: threading.Lock,
                 ready: ReadyQueue, acceptor: Acceptor, connections: dict[int, Connection],
                 hand_back: Callable[[Connection, Outcome], None]) -> None:
        """``poll_lock``: held by the thread that polls ``epoll``; ``ready``: the serving
        threads' queue; ``hand_back``: the loop's, to let go of a connection whose lock
        this thread holds (never running its handler)."""
        self.max_queue_s = max_queue_s
        # How long no thread may have polled before this one polls in their place.
        self.poll_after_s = min(SHED_POLL_AFTER_S, max_queue_s / 2)
        self._epoll = epoll
        self._poll_lock = poll_lock
        self._ready = ready
        self._acceptor = acceptor
        self._connections = connections
        self._hand_back = hand_back

    def poll_in_place(self, now: float) -> bool:
        """Poll for the serving threads (none polls now: they are all held up in the app)
        and queue what came, stamped ``now``; True if anything came."""
        if not self._poll_lock.acquire(blocking=False):
            return False
        try:
            events = self._epoll.poll(0, 64)
        except OSError:
            events = []
        finally:
            self._poll_lock.release()
        ready = self._ready
        acceptor = self._acceptor
        for fd, mask in events:
            entry = acceptor.listener_by_fd.get(fd)
            if entry is not None:
                with acceptor.lock:
                    accepted = acceptor.accept(*entry, ACCEPT_BATCH) \
                        if acceptor.is_accepting else []
                ready.extend([(conn.fileno, select.EPOLLIN, now) for conn in accepted])
            else:
                ready.append((fd, mask, now))
        return bool(events)

    def shed_expired(self, now: float) -> None:
        """Answer 503 to what has waited in the queue longer than max_queue_time."""
        ready = self._ready
        # The oldest stamped events are at the front of the queue, among tasks and events
        # the serving threads queued themselves (unstamped: they keep their places).
        expired = now - self.max_queue_s
        kept: list[Callable[[], object] | tuple[int, int] | tuple[int, int, float]] = []
        while ready:
            try:
                item = ready.popleft()
            except IndexError:
                break
            if type(item) is not tuple or len(item) < 3:
                kept.append(item)  # a task runs, whatever its wait
            elif item[2] > expired:
                ready.appendleft(item)  # in time, and so is everything behind it
                break
            else:
                self._shed_connection(item[0], item[1])
        ready.extendleft(reversed(kept))

    def _shed_connection(self, fd: int, mask: int) -> None:
        conn = self._connections.get(fd)
        if conn is None:
            return
        conn.events |= mask
        if not conn.lock.acquire(blocking=False):
            return  # a serving thread has it, and runs this event next (Worker._settle)
        events = conn.events
        conn.events = 0
        try:
            outcome = conn.shed()
        except OSError:
            outcome = CLOSE
        if outcome is None:
            # Not shed (an open WebSocket, a request under way, a closing HTTP/2
            # connection): the event goes back to the serving threads, without its time.
            self._ready.append((fd, events))
            outcome = WAIT_READABLE
        self._hand_back(conn, outcome)
