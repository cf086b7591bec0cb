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
the heartbeat, deadlines (slowloris, keep-alive, lingering close), and the numbered stop
sequence.
"""
from __future__ import annotations

import collections
import errno
import faulthandler
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from wsgiserve.config import Config
from wsgiserve.http import HttpLimits
from wsgiserve.log import make_access_log, reopen_log_files
from wsgiserve.server.counters import Recorder, WorkerCounters
from wsgiserve.server.heartbeat import Heartbeat
from wsgiserve.server.signals import WORKER_SIGNALS, SignalQueue
from wsgiserve.server.worker.connection import Connection, Outcome, make_base_environ
from wsgiserve.server.worker.context import ServerContext
from wsgiserve.server.worker.states import CLOSE, WAIT_READABLE
from wsgiserve.server.worker.forwarded import ProxySettings
from wsgiserve.server.worker.http2 import http2_limits
from wsgiserve.server.worker.metrics import sample_gauges
from wsgiserve.server.worker.preamble import preamble_settings
from wsgiserve.server.worker.protocol import Protocol
from wsgiserve.server.worker.websocket import WebSocketProtocol

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

_log = logging.getLogger(__name__)

# Housekeeping period: deadlines are checked and the heartbeat sent this often.
TICK_S: Final = 0.25
# Connections accepted per listener wake-up before serving others (nginx multi_accept).
ACCEPT_BATCH: Final = 64
# While requests flow (one came in the last STANDBY_IDLE_AFTER_S), the watchdog looks
# this often for serving threads all held up in the app, and wakes a standby thread.
WATCHDOG_S: Final = 0.002
STANDBY_IDLE_AFTER_S: Final = 0.5
# Load shedding: when no serving thread has polled for this long (all held up in the app),
# the housekeeping thread polls in their place and starts counting queue time.
SHED_POLL_AFTER_S: Final = 0.05
# While stopping, a keep-alive connection idle this long is closed; a busier one is
# closed after answering its next request (see _close_idle).
STOP_IDLE_GRACE_S: Final = 1.0
EXIT_ABORTED: Final = 134  # 128 + SIGABRT, what a shell reports for an aborted process
# A connection is registered once for both directions, edge-triggered (nginx's choice).
_CONNECTION_EVENTS: Final = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
_LISTEN: Final = select.EPOLLIN | select.EPOLLEXCLUSIVE


def limits_from_config(config: Config) -> HttpLimits:
    limits = config.limits
    return HttpLimits(
        max_request_line_bytes=limits.limit_request_line,
        max_fields=limits.limit_request_fields,
        max_field_bytes=limits.limit_request_field_size,
        max_head_bytes=limits.limit_request_head,
        max_chunk_line_bytes=limits.limit_chunk_ext,
        max_trailer_bytes=limits.limit_trailer,
        max_body_bytes=limits.limit_request_body,
    )


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
        logging_settings = config.logging
        access_log = make_access_log(logging_settings)
        self.context = ServerContext(
            app=app, limits=limits_from_config(config), keepalive_s=workers.keep_alive,
            header_timeout_s=workers.header_timeout,
            body_timeout_s=workers.timeout if workers.timeout > 0 else 30.0,
            script_name=config.server.script_name.rstrip("/"), access_log=access_log,
            hooks=self.hooks, worker=self, use_sendfile=config.server.sendfile,
            proxy=ProxySettings.from_config(config.proxy),
            # Builds the SSLContext once per worker process (so a HUP's new workers read
            # renewed certificates); None when neither TLS nor the PROXY protocol is on.
            preamble=preamble_settings(config.tls, config.proxy,
                                       config.server.proxy_protocol,
                                       config.server.http_protocols))
        http2 = config.http2
        if "h2" in config.server.http_protocols:
            self.context.http2_limits = http2_limits(
                http2.http2_max_concurrent_streams, http2.http2_initial_window_size,
                http2.http2_max_frame_size, http2.http2_max_header_list_size)
            self.context.http2_cleartext = http2.http2_cleartext
            self.context.http2_max_streams_in_app = \
                http2.http2_max_streams_in_app or self.threads
        self.context.on_request_done = self._count_request
        self.context.submit = self.submit
        if counters is not None:
            self.context.metrics = Recorder(counters)
        self._add_websocket_services(config)
        self._epoll = select.epoll()
        # Every open connection by descriptor; ``_registered`` those in the epoll set.
        self._connections: dict[int, Connection] = {}
        self._registered: set[int] = set()
        self._listener_by_fd: dict[int, tuple[socket.socket, dict[str, Any]]] = {}
        self._accepting = False
        self._accept_lock = threading.Lock()
        self._poll_lock = threading.Lock()
        # Work for the serving threads: epoll events (fd, mask) and tasks (callables).
        self._ready: collections.deque[
            tuple[int, int] | tuple[int, int, float] | Callable[[], object]] = collections.deque()
        self._last_events_at = 0.0
        self._standby = threading.Semaphore(0)
        self._max_queue_s = config.workers.max_queue_time
        # Load shedding looks at the queue a few times per max_queue_time.
        self._idle_tick_s = min(TICK_S, max(WATCHDOG_S, self._max_queue_s / 4)) \
            if self._max_queue_s > 0 else TICK_S

        self._standing_by = 0
        self._progress = 0  # events handled, for the watchdog
        self._progress_seen = -1
        self._signals = SignalQueue()
        self._is_done = False
        self._stop_deadline = 0.0
        self._served = 0
        self._is_hung_reported = False

    # -- the process -----------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stopped; returns the exit code."""
        self._install_signals()
        for listener in self.listeners:
            listener.setblocking(False)
            if listener.family in (socket.AF_INET, socket.AF_INET6):
                # Accepted sockets inherit it (Linux): no setsockopt per connection.
                listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._listener_by_fd[listener.fileno()] = (listener, self._base_environ(listener))
        self._resume_accepting()
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
            if self._max_queue_s > 0 and not self.context.is_stopping:
                self._shed_overload(time.monotonic())
            now = time.monotonic()
            if now < next_tick:
                continue
            next_tick = now + TICK_S
            self._beat(now)
            self._expire(now)
            if self.context.metrics is not None:
                sample_gauges(self.context.metrics, list(self._connections.values()),
                              list(self.context.in_app))
            if not self._accepting and not self.context.is_stopping \
                    and len(self._connections) < self.config.workers.worker_connections:
                # accept() paused on EMFILE/ENOMEM with no connection of ours left to
                # close (and so to resume it): retry each tick, never stop for good.
                with self._accept_lock:
                    self._resume_accepting()
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
            self._dump_and_abort()
        return None

    def _dump_and_abort(self) -> None:
        """SIGABRT from the arbiter: this worker stopped beating. Say where every thread is."""
        _log.critical("WORKER TIMEOUT (pid:%d): stacks of all threads follow", self.pid)
        stream = _error_log_stream()
        try:
            faulthandler.dump_traceback(file=stream, all_threads=True)
            stream.flush()
        except (OSError, ValueError):
            faulthandler.dump_traceback(file=2, all_threads=True)
        hook = self.hooks.get("worker_abort")
        if hook is not None:
            try:
                hook(self)
            except Exception:  # noqa: BLE001 - aborting anyway
                _log.exception("worker_abort hook failed")
        for handler in logging.getLogger().handlers + logging.getLogger("wsgiserve").handlers:
            handler.flush()
        os._exit(EXIT_ABORTED)

    def _beat(self, now: float) -> None:
        """Beat unless some request has run longer than the timeout (then the arbiter acts)."""
        timeout = self.config.workers.timeout
        if timeout > 0:
            started = list(self.context.in_app.values())
            if started and now - min(started) > timeout:
                if not self._is_hung_reported:
                    self._is_hung_reported = True
                    _log.warning("A request has run for more than %.0f s; withholding the "
                                 "heartbeat", timeout)
                return
        self._is_hung_reported = False
        self.heartbeat.beat()

    def _expire(self, now: float) -> None:
        for conn in list(self._connections.values()):
            if conn.deadline <= now and conn.lock.acquire(blocking=False):
                self._settle(conn, self._call(conn, conn.on_timeout))

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
        # 1. Take what is already in the backlog (those clients connected before the
        # stop and deserve an answer), then close our copies of the listeners.
        with self._accept_lock:
            self._pause_accepting()
            accepted = []
            for listener, base in self._listener_by_fd.values():
                accepted += self._accept_some(listener, base, limit=1024)
            self._ready.extend([(conn.fileno, select.EPOLLIN) for conn in accepted])
            for listener, _ in self._listener_by_fd.values():
                listener.close()
            self._listener_by_fd.clear()
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

    def _shed_overload(self, now: float) -> None:
        """Load shedding. While every serving thread is busy in the app, nobody polls:
        this thread does and queues what came for the threads. Every queued event says when
        it came; one still unserved after ``max_queue_time`` gets 503 with Retry-After at
        once (``Protocol.shed``) instead of waiting until its client gives up."""
        ready = self._ready
        if self._standing_by == 0 and \
                now - self._last_events_at > min(SHED_POLL_AFTER_S, self._max_queue_s / 2) \
                and self._poll_lock.acquire(blocking=False):
            # No thread has polled for a while, none polls now and none stands by: all
            # are held up in the app.
            try:
                events = self._epoll.poll(0, 64)
            except OSError:
                events = []
            finally:
                self._poll_lock.release()
            for fd, mask in events:
                entry = self._listener_by_fd.get(fd)
                if entry is not None:
                    with self._accept_lock:
                        accepted = self._accept_some(*entry, ACCEPT_BATCH) \
                            if self._accepting else []
                    ready.extend([(conn.fileno, select.EPOLLIN, now) for conn in accepted])
                else:
                    ready.append((fd, mask, now))
            if events:
                self._last_events_at = now
        # The oldest unserved events are at the front of the queue.
        expired = now - self._max_queue_s
        while ready:
            try:
                item = ready.popleft()
            except IndexError:
                break
            if type(item) is not tuple or len(item) < 3 or item[2] > expired:
                ready.appendleft(item)  # in time (or a task: it runs, whatever its wait)
                break
            self._shed_connection(item[0])

    def _shed_connection(self, fd: int) -> None:
        conn = self._connections.get(fd)
        if conn is not None and conn.lock.acquire(blocking=False):
            try:
                outcome = conn.shed()
            except OSError:
                outcome = CLOSE
            self._settle(conn, WAIT_READABLE if outcome is None else outcome)

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
            entry = self._listener_by_fd.get(fd)
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
            if fd not in self._registered:
                try:
                    self._epoll.register(fd, _CONNECTION_EVENTS)
                except OSError:
                    self._forget(conn)
                    return
                self._registered.add(fd)
            conn.lock.release()
            # An event recorded before the release is ours to run; one recorded after it
            # finds the lock free and is run by the thread that got it.
            if not conn.events or not conn.lock.acquire(blocking=False):
                return
            events = conn.events
            conn.events = 0
            outcome = self._call(conn, conn.handle, events)

    def _accept_ready(self, listener: socket.socket, base: dict[str, Any]) -> None:
        with self._accept_lock:
            if not self._accepting:
                return
            accepted = self._accept_some(listener, base, ACCEPT_BATCH)
        if accepted:
            # Served at once: the request is usually there already. The rest go to the
            # queue the serving threads take events from.
            first, *rest = accepted
            self._ready.extend([(conn.fileno, select.EPOLLIN) for conn in rest])
            self._handle_event(first.fileno, select.EPOLLIN)

    def _accept_some(self, listener: socket.socket, base: dict[str, Any],
                     limit: int) -> list[Connection]:
        cap = self.config.workers.worker_connections
        connections = self._connections
        context = self.context
        accepted = []
        for _ in range(limit):
            if len(connections) >= cap:
                # Leave further clients in the kernel backlog rather than fail them.
                self._pause_accepting()
                break
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    _log.error("accept() failed: %s; pausing accepts", exc)
                    self._pause_accepting()
                    break
                if exc.errno == errno.EBADF:
                    break
                continue  # ECONNABORTED and friends: that client is gone
            # Left in blocking mode: the transport passes MSG_DONTWAIT on every call.
            conn = Connection(sock, peer, context, base.copy())
            connections[conn.fileno] = conn
            accepted.append(conn)
        if accepted and context.metrics is not None:
            context.metrics.connections_accepted(len(accepted))
        return accepted

    def _pause_accepting(self) -> None:
        if self._accepting:
            self._accepting = False
            for fd in self._listener_by_fd:
                self._unregister(fd)

    def _resume_accepting(self) -> None:
        if not self._accepting and not self.context.is_stopping:
            self._accepting = True
            for fd in self._listener_by_fd:
                try:
                    self._epoll.register(fd, _LISTEN)
                except FileExistsError:
                    pass

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
        if not self._accepting and not self.context.is_stopping \
                and len(self._connections) < self.config.workers.worker_connections:
            with self._accept_lock:
                self._resume_accepting()


def _error_log_stream() -> Any:
    """The stream the error log writes to (for faulthandler), else stderr."""
    for handler in logging.getLogger("wsgiserve").handlers + logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        if stream is not None:
            try:
                stream.fileno()
                return stream
            except (OSError, ValueError, AttributeError):
                continue
    return sys.stderr
