"""Listening sockets: TCP (IPv4, ``[IPv6]``), ``unix:PATH``, ``fd://N`` and inherited fds.

The arbiter binds every listener once; workers inherit them across ``fork``. A USR2
upgrade passes them to the new master across ``exec`` by number in ``$WSGISERVE_FDS``.
Every listener is non-blocking.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from wsgiserve.config import BindAddress, parse_bind

__all__ = [
    "INHERITED_FDS_VARIABLE",
    "INHERITED_METRICS_FD_VARIABLE",
    "ListenerError",
    "adopt_fd",
    "bind",
    "bind_key",
    "close_listeners",
    "describe",
    "export_for_exec",
    "inherited_fds",
    "listener_key",
    "unix_path",
]

_log = logging.getLogger(__name__)

# Set by a master for the master it execs on USR2: comma-separated listening fds.
INHERITED_FDS_VARIABLE: Final = "WSGISERVE_FDS"
# The --metrics-bind listener, handed over the same way.
INHERITED_METRICS_FD_VARIABLE: Final = "WSGISERVE_METRICS_FD"


class ListenerError(Exception):
    """An address cannot be bound or a descriptor is not a listening socket; the message
    names the address and the reason."""


def _set_tcp_options(sock: socket.socket, *, reuse_port: bool) -> None:
    # Without SO_REUSEADDR a restart fails while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def _bind_tcp(address: BindAddress, *, backlog: int, reuse_port: bool) -> socket.socket:
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenerError(f"{address.host}:{address.port}: cannot resolve: {exc}") from exc
    family, kind, protocol, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, protocol)
    try:
        _set_tcp_options(sock, reuse_port=reuse_port)
        if family == socket.AF_INET6:
            # [::]:80 then means IPv6 only, as it reads; bind 0.0.0.0 too for both.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        shown = f"[{address.host}]" if ":" in address.host else address.host
        raise ListenerError(f"{shown}:{address.port}: {exc.strerror or exc}") from exc
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    """Unlink ``path`` if it is a socket nobody listens on; refuse to touch anything else."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(status.st_mode):
        raise ListenerError(f"unix:{path}: exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        _log.info("removing stale socket unix:%s", path)
        os.unlink(path)
        return
    except OSError as exc:
        raise ListenerError(f"unix:{path}: exists and cannot be probed: {exc}") from exc
    finally:
        probe.close()
    raise ListenerError(f"unix:{path}: another server is listening there")


def _bind_unix(address: BindAddress, *, backlog: int, umask: int) -> socket.socket:
    path = address.path
    _remove_stale_unix_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The socket file's mode is 0o777 less the umask (gunicorn applies --umask the same way).
    previous_umask = os.umask(umask)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenerError(f"unix:{path}: {exc.strerror or exc}") from exc
    finally:
        os.umask(previous_umask)
    return sock


def adopt_fd(fd: int) -> socket.socket:
    """Wrap an inherited listening descriptor (``fd://N``, systemd, ``$WSGISERVE_FDS``).

    Raises:
        ListenerError: ``fd`` is not open, not a socket, not a stream socket or not listening.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenerError(f"fd://{fd}: not a socket: {exc.strerror or exc}") from exc
    try:
        is_listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError as exc:
        sock.detach()
        raise ListenerError(f"fd://{fd}: {exc.strerror or exc}") from exc
    if sock.type != socket.SOCK_STREAM or not is_listening:
        sock.detach()
        raise ListenerError(f"fd://{fd}: not a listening stream socket")
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock


def bind(text: str, *, backlog: int, reuse_port: bool = False, umask: int = 0) -> socket.socket:
    """Create the non-blocking listener for one ``--bind`` value.

    Raises:
        ListenerError: the address is malformed, in use, not permitted, or (``fd://N``)
            not a listening socket. Nothing is left open then.
    """
    try:
        address = parse_bind(text)
    except ValueError as exc:
        raise ListenerError(str(exc)) from None
    if address.kind == "fd":
        return adopt_fd(address.fd)
    if address.kind == "unix":
        sock = _bind_unix(address, backlog=backlog, umask=umask)
    else:
        sock = _bind_tcp(address, backlog=backlog, reuse_port=reuse_port)
    sock.setblocking(False)
    return sock


def listener_key(sock: socket.socket) -> tuple[int, object]:
    """What identifies a listener's address, to match a ``--bind`` value to an inherited fd."""
    name = sock.getsockname()
    if sock.family == socket.AF_INET6:
        return (sock.family, (name[0], name[1]))
    if isinstance(name, bytes):
        name = name.decode("utf-8", "surrogateescape")
    return (sock.family, name)


def bind_key(text: str) -> tuple[int, object] | None:
    """``listener_key`` of what ``--bind text`` would bind, when known without binding."""
    address = parse_bind(text)
    if address.kind == "unix":
        return (socket.AF_UNIX, address.path)
    if address.kind == "tcp" and address.port:
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(
                address.host, address.port, type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE)[0]
        except socket.gaierror:
            return None
        return (family, (sockaddr[0], sockaddr[1]))
    return None


def describe(sock: socket.socket, *, scheme: str = "http") -> str:
    """``http://127.0.0.1:8000``, ``http://[::1]:8000`` or ``unix:/run/app.sock``."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        if isinstance(name, bytes):
            name = "@" + name[1:].decode("utf-8", "replace")
        return f"unix:{name}"
    if sock.family == socket.AF_INET6:
        return f"{scheme}://[{name[0]}]:{name[1]}"
    return f"{scheme}://{name[0]}:{name[1]}"


def unix_path(sock: socket.socket) -> str | None:
    """The filesystem path of a unix listener, or None (TCP, abstract, unnamed)."""
    if sock.family != socket.AF_UNIX:
        return None
    name = sock.getsockname()
    # Linux returns str for a path, bytes starting with NUL for an abstract name.
    return name if isinstance(name, str) and name else None


def close_listeners(listeners: Iterable[socket.socket], *, unlink: bool) -> None:
    """Close each listener; with ``unlink``, remove unix socket files too.

    Pass ``unlink=False`` while another process (a new master after USR2) still serves on
    the same path: the file is its way in.
    """
    for sock in listeners:
        path = unix_path(sock) if unlink else None
        sock.close()
        if path:
            try:
                os.unlink(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    _log.warning("cannot remove unix:%s: %s", path, exc.strerror)


def export_for_exec(listeners: Sequence[socket.socket]) -> str:
    """Make the listeners survive ``exec`` and return the ``$WSGISERVE_FDS`` value.

    Call in the forked child just before ``exec``: the parent's descriptors stay
    close-on-exec.
    """
    for sock in listeners:
        sock.set_inheritable(True)
    return ",".join(str(sock.fileno()) for sock in listeners)


def inherited_fds(environ: Mapping[str, str]) -> list[int]:
    """Descriptor numbers a parent master passed in ``$WSGISERVE_FDS`` (``[]`` if unset).

    Raises:
        ListenerError: the variable is malformed.
    """
    text = environ.get(INHERITED_FDS_VARIABLE, "").strip()
    if not text:
        return []
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise ListenerError(f"{INHERITED_FDS_VARIABLE}={text!r}: expected numbers like 3,4")
    return [int(part) for part in parts]
