"""systemd glue: ``sd_notify`` over ``$NOTIFY_SOCKET`` and ``$LISTEN_FDS`` socket activation.

Nothing else: no D-Bus, no journal. Workers never notify. A unit
whose master may be replaced by a USR2 upgrade needs ``NotifyAccess=all``, because the new
master announces itself with ``MAINPID=`` before systemd knows it as the main process.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Final

__all__ = ["ACTIVATION_VARIABLES", "LISTEN_FDS_START", "ListenFd", "Notifier", "Watchdog",
           "listen_fds", "watchdog_interval_s"]

_log = logging.getLogger(__name__)

# sd_listen_fds(3): passed descriptors start at 3 (SD_LISTEN_FDS_START).
LISTEN_FDS_START: Final = 3
# sd_listen_fds(3)'s variables: for the process systemd started, never for its children.
ACTIVATION_VARIABLES: Final = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


@dataclass(frozen=True)
class ListenFd:
    """One socket passed by systemd: its descriptor and its ``FileDescriptorName=``."""

    fd: int
    name: str


def listen_fds(environ: MutableMapping[str, str], *, pid: int | None = None,
               unset: bool = True) -> list[ListenFd]:
    """The sockets systemd passed to this process, as ``sd_listen_fds(3)`` reads them.

    ``LISTEN_PID`` must name this process (``pid``, default ``os.getpid()``): variables
    inherited by a child that systemd did not start are ignored. With ``unset`` the three
    variables are removed from ``environ`` so the workers and a re-executed master do not
    read them again.

    Returns:
        One ``ListenFd`` per passed descriptor, from fd 3 up; ``[]`` when none are for us.

    Raises:
        ValueError: ``LISTEN_FDS`` or ``LISTEN_PID`` is not a number.
    """
    try:
        expected_pid = environ.get("LISTEN_PID", "")
        count_text = environ.get("LISTEN_FDS", "")
        names_text = environ.get("LISTEN_FDNAMES", "")
        if not count_text:
            return []
        if not expected_pid.isdigit() or not count_text.isdigit():
            raise ValueError(f"LISTEN_PID={expected_pid!r} LISTEN_FDS={count_text!r}: "
                             "expected numbers")
        if int(expected_pid) != (os.getpid() if pid is None else pid):
            return []
        count = int(count_text)
        names = names_text.split(":") if names_text else []
        return [ListenFd(LISTEN_FDS_START + index, names[index] if index < len(names) else "")
                for index in range(count)]
    finally:
        if unset:
            for name in ACTIVATION_VARIABLES:
                environ.pop(name, None)


def watchdog_interval_s(environ: Mapping[str, str], *, pid: int | None = None) -> float | None:
    """How often to send ``WATCHDOG=1``: half of ``$WATCHDOG_USEC`` (as sd_watchdog_enabled(3)
    advises), or None when the watchdog is off or ``$WATCHDOG_PID`` names another process."""
    usec = environ.get("WATCHDOG_USEC", "")
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if watchdog_pid and watchdog_pid != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000 / 2


def _address(path: str) -> str | bytes | None:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()  # abstract namespace, sd_notify(3)
    if path.startswith("/"):
        return path
    return None


class Notifier:
    """Sends ``sd_notify`` datagrams to ``$NOTIFY_SOCKET``; does nothing when it is unset.

    The socket is opened once (close-on-exec, so workers and a re-executed master do not
    inherit it). A failed send is logged at debug level and otherwise ignored: a server must
    not stop because its supervisor went away.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
        self._address = _address(path)
        self._socket: socket.socket | None = None
        if path and self._address is None:
            _log.warning("ignoring NOTIFY_SOCKET=%r: not an absolute path or @abstract", path)
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.setblocking(False)
        self._status = ""

    @property
    def is_enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one datagram; True if sent."""
        if self._socket is None or self._address is None or not fields:
            return False
        message = "\n".join(fields).encode("utf-8", "replace")
        try:
            self._socket.sendto(message, self._address)
        except OSError as exc:
            _log.debug("sd_notify %r failed: %s", fields, exc)
            return False
        return True

    def notify_status(self, text: str) -> None:
        """Send ``STATUS=text`` unless that is the status last sent (the loop calls this on
        every tick; systemd needs only the changes)."""
        field = f"STATUS={text}"
        if field != self._status and self.is_enabled:
            self._status = field
            self.notify(field)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class Watchdog:
    """Sends ``WATCHDOG=1`` through a ``Notifier`` as often as ``$WATCHDOG_USEC`` asks."""

    def __init__(self, notifier: Notifier, environ: Mapping[str, str] | None = None) -> None:
        self._notifier = notifier
        self._interval_s = watchdog_interval_s(os.environ if environ is None else environ)
        self._next_ping_at = 0.0

    def ping(self) -> None:
        """Call often: sends ``WATCHDOG=1`` when due, nothing when the watchdog is off."""
        now = time.monotonic()
        if self._interval_s is not None and now >= self._next_ping_at:
            self._notifier.notify("WATCHDOG=1")
            self._next_ping_at = now + self._interval_s
