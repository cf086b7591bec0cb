"""The master's listeners: where they come from, rebinding on reload, and closing them.

At start they are inherited (``$WSGISERVE_FDS`` from a USR2 parent, or systemd's
``LISTEN_FDS``) or bound from ``--bind``. On reload a changed ``--bind`` binds the new
addresses and keeps the sockets of unchanged ones. A unix socket file is removed only by the
master that bound it, or that inherited it from the master it replaced. The sockets
themselves live in the generations that use them.
"""
from __future__ import annotations

import enum
import logging
import os
import socket
from collections.abc import Sequence

from wsgiserve.config import Config
from wsgiserve.server.master import sockets, systemd

__all__ = ["ListenerSource", "Listeners"]

_log = logging.getLogger(__name__)


class ListenerSource(enum.Enum):
    """Where this master's listeners came from; only ``BIND`` rebinds on reload."""

    BIND = "bind"
    SYSTEMD = "systemd"
    UPGRADE = "upgrade"


def _scheme(config: Config) -> str:
    return "https" if config.tls.certfile else "http"


class Listeners:
    """Opens, rebinds and closes the master's listening sockets; remembers the unix socket
    files it created, which it alone may remove."""

    def __init__(self, master_pid: int) -> None:
        self.source = ListenerSource.BIND
        # The --bind values the serving listeners were bound for.
        self.bound_for: tuple[str, ...] = ()
        self._master_pid = master_pid
        self._ids: tuple[int | None, int | None] = (None, None)
        self._unix_paths_owned: set[str] = set()

    @property
    def is_from_old_master(self) -> bool:
        """True when a USR2 parent handed the listeners over (this master is the new one)."""
        return self.source is ListenerSource.UPGRADE

    def open(self, config: Config, *, ids: tuple[int | None, int | None]) -> list[socket.socket]:
        """Inherit ($WSGISERVE_FDS from a USR2 parent, or systemd's) or bind ``--bind``.

        ``ids`` (uid, gid) own the unix socket files bound now and on reload.

        Raises:
            ListenerError: an address cannot be bound or a descriptor is not a listener.
            ValueError: systemd's ``LISTEN_FDS``/``LISTEN_PID`` are malformed.
        """
        self._ids = ids
        listeners = self._inherit_or_bind(config)
        self.bound_for = config.server.bind
        return listeners

    def _inherit_or_bind(self, config: Config) -> list[socket.socket]:
        inherited = sockets.inherited_fds(os.environ)
        os.environ.pop(sockets.INHERITED_FDS_VARIABLE, None)
        if inherited:
            self.source = ListenerSource.UPGRADE
            listeners = [sockets.adopt_fd(fd) for fd in inherited]
        else:
            activated = systemd.listen_fds(os.environ)
            if activated:
                self.source = ListenerSource.SYSTEMD
                listeners = [sockets.adopt_fd(item.fd) for item in activated]
            else:
                return self._bind_all(config, [])
        _log.info("using %d inherited listener(s) from %s; --bind is not used",
                    len(listeners), "the old master" if inherited else "systemd")
        return listeners

    def log_listening(self, listeners: Sequence[socket.socket], config: Config) -> None:
        for sock in listeners:
            _log.info("Listening at: %s (%d)", sockets.describe(sock, scheme=_scheme(config)),
                        self._master_pid)

    def close_after_failed_start(self, listeners: Sequence[socket.socket]) -> None:
        """Close what ``open`` returned when start-up fails later (inherited files stay)."""
        sockets.close_listeners(listeners, unlink=self.source is ListenerSource.BIND)

    def for_reload(self, config: Config,
                   current: list[socket.socket]) -> list[socket.socket]:
        """The listeners for a reloaded ``config``: ``current`` unless ``--bind`` changed.

        Raises:
            ListenerError: a new address cannot be bound; nothing new is left open.
        """
        if self.source is not ListenerSource.BIND or config.server.bind == self.bound_for:
            return current
        _log.info("bind changed: %s -> %s", ", ".join(self.bound_for),
                    ", ".join(config.server.bind))
        listeners = self._bind_all(config, current)
        self.log_listening(listeners, config)
        return listeners

    def mark_serving(self, config: Config) -> None:
        """The generation running ``config`` now serves: its ``--bind`` is the current one."""
        if config.server.bind != self.bound_for and self.source is ListenerSource.BIND:
            self.bound_for = config.server.bind

    def _bind_all(self, config: Config, keep: Sequence[socket.socket]) -> list[socket.socket]:
        """Listeners for ``config.server.bind``, reusing those in ``keep`` with the same
        address. Raises ListenerError with nothing new left open."""
        reusable = {sockets.listener_key(sock): sock for sock in keep}
        listeners: list[socket.socket] = []
        try:
            for text in config.server.bind:
                key = sockets.bind_key(text)
                if key is not None and key in reusable:
                    listeners.append(reusable.pop(key))
                    continue
                sock = sockets.bind(text, backlog=config.server.backlog,
                                    reuse_port=config.server.reuse_port,
                                    umask=config.server.umask)
                path = sockets.unix_path(sock)
                if path:
                    self._unix_paths_owned.add(path)
                    self._chown_unix_socket(path)
                listeners.append(sock)
        except sockets.ListenerError:
            sockets.close_listeners([s for s in listeners if s not in keep], unlink=True)
            raise
        return listeners

    def _chown_unix_socket(self, path: str) -> None:
        uid, gid = self._ids
        if uid is not None or gid is not None:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)

    def close_unused(self, candidates: Sequence[socket.socket],
                     in_use: Sequence[socket.socket]) -> None:
        """Close (and unlink) each of ``candidates`` that is not in ``in_use``."""
        unused = [s for s in candidates if all(s is not x for x in in_use)]
        for sock in unused:
            path = sockets.unix_path(sock)
            if path:
                self._unix_paths_owned.discard(path)
        sockets.close_listeners(unused, unlink=True)

    def close_for_stop(self, listeners: Sequence[socket.socket], *, unlink: bool) -> None:
        """Close every listener at stop; with ``unlink``, remove the socket files we own
        (pass False while a new master from USR2 serves on them)."""
        for sock in listeners:
            path = sockets.unix_path(sock)
            owned = bool(path) and path in self._unix_paths_owned or self.is_from_old_master
            sockets.close_listeners([sock], unlink=unlink and owned)
