#!/usr/bin/env python3
"""Serves a WSGI app with meinheld or bjoern, started the way bench_server.py starts every server.

    python benchmarks/peer_server.py meinheld --workers 2 --bind 127.0.0.1:0 tests.apps:hello

Neither C server has a pre-fork master of its own, so this one binds the socket, imports
the app (a wrong path fails here, before anything listens), logs 'Listening at:
http://HOST:PORT', and forks the workers, which all serve that socket. SIGTERM or SIGINT
stops the workers by PID; a worker that dies stops the others and exits 1.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import socket
import sys
import traceback
from typing import Final
from wsgiref.types import WSGIApplication

# wsgiserve's default keep_alive; meinheld closes every connection unless this is set.
KEEPALIVE_S: Final = 5
BACKLOG: Final = 1024  # bjoern's and granian's default listen queue
STOP_GRACE_S: Final = 5.0
_HANDLED: Final = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def load_app(target: str) -> WSGIApplication:
    module_name, _, attribute = target.partition(":")
    app: WSGIApplication = getattr(importlib.import_module(module_name), attribute or "application")
    return app


def serve(server: str, sock: socket.socket, app: WSGIApplication) -> None:
    if server == "meinheld":
        from meinheld import server as meinheld_server
        meinheld_server.set_keepalive(KEEPALIVE_S)
        # Its access log to stderr is on by default; every other server's is off.
        meinheld_server.set_access_logger(None)
        meinheld_server.set_listen_socket(sock.fileno())
        meinheld_server.run(app)
    else:
        import bjoern
        bjoern.server_run(sock, app)


def stop_workers(pids: set[int]) -> None:
    """SIGTERM each worker, reap them for up to STOP_GRACE_S, then SIGKILL the rest."""
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    remaining = STOP_GRACE_S
    while pids and remaining > 0:
        reap(pids)
        if pids and signal.sigtimedwait({signal.SIGCHLD}, min(remaining, 0.5)) is None:
            remaining -= 0.5
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def reap(pids: set[int]) -> list[int]:
    """Reap the workers that exited; returns their PIDs (and drops them from ``pids``)."""
    exited = []
    for pid in list(pids):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            pids.discard(pid)
            exited.append(pid)
    return exited


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", choices=["meinheld", "bjoern"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bind", default="127.0.0.1:0", help="HOST:PORT (port 0: any)")
    parser.add_argument("app", help="MODULE:CALLABLE")
    args = parser.parse_args(argv)
    host, _, port = args.bind.rpartition(":")
    app = load_app(args.app)
    sock = socket.create_server((host, int(port)), backlog=BACKLOG)
    print(f"Listening at: http://{host}:{sock.getsockname()[1]} ({os.getpid()})",
          file=sys.stderr, flush=True)
    # Blocked before forking so that a signal arriving between two forks waits for sigwait.
    signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
    workers: set[int] = set()
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
            code = 0
            try:
                serve(args.server, sock, app)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        workers.add(pid)
    while True:
        received = signal.sigwait(_HANDLED)
        if received == signal.SIGCHLD:
            dead = reap(workers)
            if dead:
                print(f"worker(s) {dead} exited; stopping", file=sys.stderr, flush=True)
                stop_workers(workers)
                return 1
        else:
            stop_workers(workers)
            return 0


if __name__ == "__main__":
    sys.exit(main())
