"""A worker process: one epoll set, served by ``threads`` threads, and a housekeeping loop.

Every connection is registered once, edge-triggered for reading and writing (as nginx
does), so serving a request costs no epoll_ctl call. One thread runs a connection at a
time (its ``lock``); an event for a connection another thread is running is recorded on it
and run by that thread before it lets go. No thread ever hands a request to another: the
thread that reads a complete head runs the app and writes the response itself (the
loop-to-pool hand-off is what makes gunicorn's gthread worker slow). Idle keep-alive
connections cost no thread; a response that fills the socket buffer waits for the
socket's writable edge without one. A new connection is served straight from accept():
its request is usually there already, and a ``Connection: close`` request is then
answered and closed without ever entering the epoll set.

The main thread only does housekeeping: signals (recorded by handlers, acted on here),
the heartbeat (withheld for a hung request: ``hang``), deadlines (slowloris, keep-alive,
lingering close), load shedding (``shedding``) and the numbered stop sequence. The
listeners are an ``accept.Acceptor``; ``settings`` builds the context from the config.
"""
from __future__ import annotations

import collections
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from wsgiserve.config import Config
from wsgiserve.log import reopen_log_files
from wsgiserve.server.counters import Recorder, WorkerCounters
from wsgiserve.server.heartbeat import Heartbeat
from wsgiserve.server.signals import WORKER_SIGNALS, SignalQueue
from wsgiserve.server.worker.accept import ACCEPT_BATCH, Acceptor
from wsgiserve.server.worker.connection import Connection, Outcome, make_base_environ
from wsgiserve.server.worker.hang import HeartbeatGate, dump_and_abort
from wsgiserve.server.worker.metrics import sample_gauges
from wsgiserve.server.worker.protocol import Protocol
from wsgiserve.server.worker.settings import context_from_config, limits_from_config
from wsgiserve.server.worker.shedding import LoadShedder, ReadyQueue
from wsgiserve.server.worker.states import CLOSE, WAIT_READABLE
from wsgiserve.server.worker.websocket import WebSocketProtocol

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

__all__ = ["Worker", "limits_from_config"]  # limits_from_config: its home is settings.py

_log = logging.getLogger(__name__)

# Housekeeping period: deadlines are checked and the heartbeat sent this often.
TICK_S: Final = 0.25
# While requests flow (one came in the last STANDBY_IDLE_AFTER_S), the watchdog looks
# this often for serving threads all held up in the app, and wakes a standby thread.
WATCHDOG_S: Final = 0.002
STANDBY_IDLE_AFTER_S: Final = 0.5
# While stopping, a keep-alive connection idle this long is closed; a busier one is
# closed after answering its next request (see _close_idle).
STOP_IDLE_GRACE_S: Final = 1.0
# A connection is registered once for both directions, edge-triggered (nginx's choice).
_CONNECTION_EVENTS: Final = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET


class Worker:
    """Serves the inherited listeners until told to stop. See the module docstring."""

    def __init__(self, *, config: Config, listeners: Sequence[socket.socket],
                 app: WSGIApplication, heartbeat: Heartbeat, worker_id: int,
                 max_requests: int = 0,
                 hooks: Mapping[str, Callable[..., object]] | None = None,
                 counters: WorkerCounters | None = None) -> None:
        self.config = config
        self.listeners = list(listeners)
        self.app = app
        self.heartbeat = heartbeat
        self.worker_id = worker_id
        self.max_requests = max_requests
        self.hooks = dict(hooks or {})
        self.pid = os.getpid()
        self.ppid = os.getppid()
        self.threads = max(1, config.workers.threads)
        workers = config.workers
        self.context = context_from_config(config, app, self.hooks, self, self.threads)
        self.context.on_request_done = self._count_request
        self.context.submit = self.submit
        if counters is not None:
            self.context.metrics = Recorder(counters)
        self._add_websocket_services(config)
        self._epoll = select.epoll()
        # Every open connection by descriptor; ``_registered`` those in the epoll set.
        self._connections: dict[int, Connection] = {}
        self._registered: set[int] = set()
        self._acceptor = Acceptor(self._epoll, self._connections, self.context,
                                  workers.worker_connections)
        self._poll_lock = threading.Lock()
        # Work for the serving threads: epoll events (fd, mask) and tasks (callables).
        self._ready: ReadyQueue = collections.deque()
        self._last_events_at = 0.0
        self._standby = threading.Semaphore(0)
        self._max_queue_s = workers.max_queue_time
        self._shedder: LoadShedder | None = None
        self._idle_tick_s = TICK_S
        if self._max_queue_s > 0:
            self._shedder = LoadShedder(self._max_queue_s, self._epoll, self._poll_lock,
                                        self._ready, self._acceptor, self._connections,
                                        self._hand_back)
            # Load shedding looks at the queue a few times per max_queue_time.
            self._idle_tick_s = min(TICK_S, max(WATCHDOG_S, self._max_queue_s / 4))
        self._heartbeat_gate = HeartbeatGate(heartbeat, workers.timeout, self.context.in_app)
        self._standing_by = 0
        self._progress = 0  # events handled, for the watchdog
        self._progress_seen = -1
        self._signals = SignalQueue()
        self._is_done = False
        self._stop_deadline = 0.0
        self._served = 0

    # -- the process -----------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stopped; returns the exit code."""
        self._install_signals()
        for listener in self.listeners:
            self._acceptor.add(listener, self._base_environ(listener))
        self._acceptor.resume()
        threads = [threading.Thread(target=self._serve_forever, name=f"wsgiserve-{i}",
                                    daemon=True) for i in range(self.threads)]
        for thread in threads:
            thread.start()
        if "post_worker_init" in self.hooks:
            self.hooks["post_worker_init"](self)
        _log.info("Booting worker with pid: %d", self.pid)
        try:
            code = self._housekeep_forever()
        finally:
            self._is_done = True
            self.context.end_hijacked()
            for conn in list(self._connections.values()):
                conn.close()
            if self.context.metrics is not None:
                self.context.metrics.flush()  # the last sums, before the master reads them
            if "worker_exit" in self.hooks:
                try:
                    self.hooks["worker_exit"](self)
                except Exception:  # noqa: BLE001 - exiting anyway
                    _log.exception("worker_exit hook failed")
        return code

    def _base_environ(self, listener: socket.socket) -> dict[str, Any]:
        address = listener.getsockname()
        if isinstance(address, tuple):
            host, port = str(address[0]), str(address[1])
        else:
            host, port = "localhost", ""
        scheme = "https" if self.config.tls.certfile else "http"
        return make_base_environ(host, port, scheme, multithread=self.threads > 1,
                                 multiprocess=self.config.workers.workers > 1)

    def _install_signals(self) -> None:
        self._signals.install(WORKER_SIGNALS)
        for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH,
                       signal.SIGUSR2):
            signal.signal(signum, signal.SIG_IGN)  # the master's business
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    # -- housekeeping (main thread) ------------------------------------------------------
    def _housekeep_forever(self) -> int:
        next_tick = 0.0
        while True:
            deferred = self.context.deferred_flushes
            busy = (self.threads > 1 or bool(deferred)) and \
                time.monotonic() - self._last_events_at < STANDBY_IDLE_AFTER_S
            self._signals.wait(WATCHDOG_S if busy else self._idle_tick_s)
            while deferred:
                try:
                    deferred.pop()()
                except (KeyError, OSError):
                    pass
            while (signum := self._signals.pop()) is not None:
                code = self._handle_signal(signum)
                if code is not None:
                    return code
            if busy:
                self._watch_pollers()
            shedder = self._shedder
            if shedder is not None and not self.context.is_stopping:
                now = time.monotonic()
                if self._standing_by == 0 and now - self._last_events_at > shedder.poll_after_s \
                        and shedder.poll_in_place(now):
                    self._last_events_at = now
                shedder.shed_expired(now)
            now = time.monotonic()
            if now < next_tick:
                continue
            next_tick = now + TICK_S
            self._heartbeat_gate.beat(now)
            self._expire(now)
            if self.context.metrics is not None:
                sample_gauges(self.context.metrics, list(self._connections.values()),
                              list(self.context.in_app))
            # accept() paused on EMFILE/ENOMEM with no connection of ours left to close
            # (and so to resume it): retry each tick, never stop for good.
            self._acceptor.resume_if_room()
            if os.getppid() != self.ppid and not self.context.is_stopping:
                _log.warning("Parent changed (master gone); worker %d stopping", self.pid)
                self._begin_graceful_stop(min(5.0, self.config.workers.graceful_timeout))
            if self.context.is_stopping:
                self._close_idle()
                if not self._connections:
                    return 0
                if now >= self._stop_deadline:
                    _log.info("Graceful timeout: closing %d connections", len(self._connections))
                    return 0

    def _handle_signal(self, signum: int) -> int | None:
        if signum == signal.SIGTERM:
            self._begin_graceful_stop(self.config.workers.graceful_timeout)
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            return 0
        elif signum == signal.SIGUSR1:
            reopen_log_files()
        elif signum == signal.SIGABRT:
            dump_and_abort(self, self.pid, self.hooks)
        return None

    def _expire(self, now: float) -> None:
        for conn in list(self._connections.values()):
            if conn.deadline <= now and conn.lock.acquire(blocking=False):
                self._hand_back(conn, self._call(conn, conn.on_timeout))

    def _close_idle(self) -> None:
        """As the worker stops, ask every connection to begin closing (each tick until it
        is gone): each protocol closes when that loses nothing (see
        ``Protocol.start_graceful_close``). HTTP/1.1 closes a keep-alive connection quiet
        for STOP_IDLE_GRACE_S; one in steady use is answered with "Connection: close"."""
        quiet_since = time.monotonic() - min(STOP_IDLE_GRACE_S, self.context.keepalive_s)
        for conn in list(self._connections.values()):
            if conn.lock.acquire(blocking=False):
                try:
                    outcome = conn.start_graceful_close(quiet_since)
                except OSError:
                    outcome = CLOSE
                self._settle(conn, WAIT_READABLE if outcome is None else outcome)

    def _begin_graceful_stop(self, timeout_s: float) -> None:
        """The stop sequence: 1. stop accepting; 2. close idle keep-alive connections;
        3. let in-flight requests finish (they answer with Connection: close); 4. at the
        deadline, force-close the rest (the caller returns and the process exits)."""
        context = self.context
        if context.is_stopping:
            return
        context.is_stopping = True
        self._stop_deadline = time.monotonic() + timeout_s
        _log.info("Worker %d stopping gracefully (%d connections)", self.pid,
                  len(self._connections))
        # 1. Serve what is already in the backlog, and accept no more.
        accepted = self._acceptor.close()
        self._ready.extend([(conn.fileno, select.EPOLLIN) for conn in accepted])
        self._close_idle()
        context.close_websockets()  # Close 1001 to each; their peers answer, then they end

    def _count_request(self) -> None:
        self._served += 1
        if self.max_requests and self._served >= self.max_requests \
                and not self.context.is_stopping:
            _log.info("Worker %d reached max_requests (%d)", self.pid, self.max_requests)
            self._signals.push(signal.SIGTERM)

    # -- WebSockets ---------------------------------------------------------------------------
    def _add_websocket_services(self, config: Config) -> None:
        """What WebSocket connections need from the loop (see context.py)."""
        context = self.context
        context.websocket = config.websocket
        make_protocol: Callable[..., Protocol] = WebSocketProtocol  # checked by mypy
        context.websocket_protocol = make_protocol
        context.resume_reading = self._resume_reading
        context.release = self._release

    def _resume_reading(self, fileno: int) -> None:
        """Queue a readable event for a connection (a WebSocket whose callbacks are done)."""
        self._ready.append((fileno, select.EPOLLIN))

    def _release(self, fileno: int) -> None:
        """Take a descriptor out of the epoll set: its socket now belongs to the app."""
        self._unregister(fileno)
        self._registered.discard(fileno)

    # -- serving (server threads) ----------------------------------------------------------
    def _serve_forever(self) -> None:
        """One server thread: take a ready event, or become the poller and fetch some.

        One thread polls at a time (``_poll_lock``) and serves the first event it gets
        itself; the rest go to ``_ready``, which it also works through. A thread that finds
        another one polling does not queue on the lock (each release would wake it and move
        the next request, and the GIL, to another thread: what makes gunicorn's gthread slow): it
        waits on ``_standby``, which only the watchdog (``_watch_pollers``) releases, when
        no event has been finished for WATCHDOG_S while work waits, i.e. when the serving
        threads are held up in the app. A run of fast requests so stays on one thread, and a slow request holds up the
        others for about WATCHDOG_S at most.
        """
        poll = self._epoll.poll
        ready = self._ready
        poll_lock = self._poll_lock
        standby = self._standby
        monotonic = time.monotonic
        while not self._is_done:
            try:
                item = ready.popleft()
            except IndexError:
                if not poll_lock.acquire(blocking=False):
                    self._standing_by += 1
                    standby.acquire(timeout=TICK_S)
                    self._standing_by -= 1
                    continue
                try:
                    if ready:
                        continue
                    events = poll(TICK_S, 64)
                except InterruptedError:
                    continue
                except OSError:
                    if self._is_done:
                        return
                    raise
                finally:
                    poll_lock.release()
                if not events:
                    continue
                now = monotonic()
                if now - self._last_events_at > STANDBY_IDLE_AFTER_S and self.threads > 1:
                    self._signals.wake()  # the watchdog switches to its fast tick
                self._last_events_at = now
                item = events[0]
                if len(events) > 1:
                    if self._max_queue_s > 0:
                        # With load shedding, each queued event says when it came.
                        ready.extend([(fd, mask, now) for fd, mask in events[1:]])
                    else:
                        ready.extend(events[1:])
            if type(item) is tuple:
                self._handle_event(*item)
            else:
                self._run_task(item)  # type: ignore[arg-type]  # the other member of the union
            self._progress += 1

    def submit(self, task: Callable[[], object]) -> None:
        """Run ``task`` on a serving thread (protocols hand work to the pool this way: an
        HTTP/2 stream's app call, a WebSocket callback). The submitting thread takes it
        itself when it is free, unless a standby thread does first (see _serve_forever)."""
        self._ready.append(task)

    @staticmethod
    def _run_task(task: Callable[[], object]) -> None:
        try:
            task()
        except Exception:  # noqa: BLE001 - never let one task kill a thread
            _log.exception("Unexpected error in a task")

    def _watch_pollers(self) -> None:
        """Wake a standby thread when no event was finished since the last look while
        work waits (queued events, or nobody polling): the serving threads are held up."""
        progress = self._progress
        if progress == self._progress_seen and self._standing_by > 0 \
                and (self._ready or not self._poll_lock.locked()):
            self._standby.release()
        self._progress_seen = progress

    def _handle_event(self, fd: int, mask: int, queued_at: float = 0.0) -> None:
        conn = self._connections.get(fd)
        if conn is None:
            entry = self._acceptor.listener_by_fd.get(fd)
            if entry is not None:
                self._accept_ready(*entry)
            return
        conn.events |= mask
        if conn.lock.acquire(blocking=False):
            events = conn.events
            conn.events = 0
            self._settle(conn, self._call(conn, conn.handle, events))

    def _call(self, conn: Connection, method: Callable[..., Outcome], *args: int) -> Outcome:
        """Run one of the connection's methods; a failure closes it (never the thread)."""
        try:
            return method(*args)
        except OSError as exc:
            _log.debug("connection from %s failed: %s", conn.remote_addr, exc)
        except Exception:  # noqa: BLE001 - never let one connection kill a thread
            _log.exception("Unexpected error on a connection")
        return CLOSE

    def _settle(self, conn: Connection, outcome: Outcome) -> None:
        """Act on ``outcome`` for the connection whose lock this thread holds, then let go,
        first running the events other threads recorded meanwhile."""
        while True:
            if outcome is CLOSE:
                self._forget(conn)  # the lock stays taken: nothing runs it again
                return
            fd = conn.fileno
            if fd not in self._registered and not self._register(conn):
                return
            conn.lock.release()
            # An event recorded before the release is ours to run; one recorded after it
            # finds the lock free and is run by the thread that got it.
            if not conn.events or not conn.lock.acquire(blocking=False):
                return
            events = conn.events
            conn.events = 0
            outcome = self._call(conn, conn.handle, events)

    def _register(self, conn: Connection) -> bool:
        """Add the connection to epoll (once: edge-triggered); False if it was closed."""
        try:
            self._epoll.register(conn.fileno, _CONNECTION_EVENTS)
        except OSError:
            self._forget(conn)
            return False
        self._registered.add(conn.fileno)
        return True

    def _hand_back(self, conn: Connection, outcome: Outcome) -> None:
        """``_settle`` for the housekeeping thread (timeouts, load shedding), which never
        runs a connection's handler (that may call the app): events other threads recorded
        while it held the connection go to the serving threads' queue instead."""
        if outcome is CLOSE:
            self._forget(conn)
            return
        fd = conn.fileno
        if fd not in self._registered and not self._register(conn):
            return
        conn.lock.release()
        if conn.events:
            self._ready.append((fd, 0))  # the thread that takes it runs what was recorded

    def _accept_ready(self, listener: socket.socket, base: dict[str, Any]) -> None:
        acceptor = self._acceptor
        with acceptor.lock:
            if not acceptor.is_accepting:
                return
            accepted = acceptor.accept(listener, base, ACCEPT_BATCH)
        if accepted:
            # Served at once: the request is usually there already. The rest go to the
            # queue the serving threads take events from.
            first, *rest = accepted
            self._ready.extend([(conn.fileno, select.EPOLLIN) for conn in rest])
            self._handle_event(first.fileno, select.EPOLLIN)

    def _unregister(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass

    def _forget(self, conn: Connection) -> None:
        """Close the connection and drop it (closing the socket takes it out of epoll)."""
        fd = conn.fileno
        if self._connections.get(fd) is conn:
            del self._connections[fd]
            self._registered.discard(fd)
        conn.close()
        acceptor = self._acceptor
        if not acceptor.is_accepting:
            acceptor.resume_if_room()

