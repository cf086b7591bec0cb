"""A StatsD sender with gunicorn's metric names, for dashboards made for gunicorn.

Datagrams go over UDP (``HOST:PORT``) or a unix datagram socket (``unix:PATH``) from a
non-blocking socket: sending never blocks and never raises; a datagram that cannot be sent
is dropped and counted in ``dropped``. A request's three metrics share one datagram
(StatsD reads one metric per line).
"""
from __future__ import annotations

import socket
from typing import Final

__all__ = [
    "LOG_PREFIX",
    "REQUESTS",
    "REQUEST_DURATION",
    "REQUEST_STATUS",
    "WORKERS",
    "StatsdClient",
    "parse_statsd_address",
]

# gunicorn's names (gunicorn/instrument/statsd.py and its arbiter), so existing dashboards
# and alerts keep working.
REQUESTS: Final = "gunicorn.requests"  # counter, one per response
REQUEST_DURATION: Final = "gunicorn.request.duration"  # timer, milliseconds
REQUEST_STATUS: Final = "gunicorn.request.status.%d"  # counter per status code
WORKERS: Final = "gunicorn.workers"  # gauge, from the arbiter
LOG_PREFIX: Final = "gunicorn.log."  # counters: .critical, .error, .warning, .exception


def parse_statsd_address(text: str) -> tuple[socket.AddressFamily, str | tuple[str, int]]:
    """``HOST:PORT``, ``[IPV6]:PORT``, ``unix:PATH`` or ``unix://PATH`` as (family, address).

    Raises:
        ValueError: not one of these forms.
    """
    if text.startswith("unix:"):
        path = text[len("unix://"):] if text.startswith("unix://") else text[len("unix:"):]
        if path:
            return socket.AF_UNIX, path
    host, colon, port = text.rpartition(":")
    if colon and host and port.isdigit():
        if host.startswith("[") and host.endswith("]"):
            return socket.AF_INET6, (host[1:-1], int(port))
        return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))
    raise ValueError(f"StatsD address must be HOST:PORT or unix:PATH, got {text!r}")


class StatsdClient:
    """Sends counters, timers and gauges to one StatsD server; safe to share by threads."""

    def __init__(self, address: str, prefix: str = "", tags: str = "") -> None:
        """Resolve ``address`` once (a host name is looked up here, not per metric).

        Args:
            prefix: put before every name, with one dot between (gunicorn's rule).
            tags: DogStatsD tags (``env:prod,app:shop``) added to every metric.

        Raises:
            ValueError: a malformed address. OSError: a host name that does not resolve.
        """
        family, target = parse_statsd_address(address)
        if isinstance(target, tuple):
            found = socket.getaddrinfo(target[0], target[1], family, socket.SOCK_DGRAM)
            family, target = found[0][0], (str(found[0][4][0]), int(found[0][4][1]))
        self.address = target
        self.prefix = prefix.rstrip(".") + "." if prefix.rstrip(".") else ""
        self._suffix = f"|#{tags}" if tags else ""
        self.dropped = 0  # datagrams that could not be sent
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def _line(self, name: str, value: float | int, kind: str) -> str:
        rate = "|@1.0" if kind == "c" else ""  # gunicorn writes the sample rate on counters
        return f"{self.prefix}{name}:{value}|{kind}{rate}{self._suffix}"

    def send_lines(self, lines: list[str]) -> bool:
        """Send metric lines in one datagram; False (and counted) when it was dropped."""
        try:
            self._socket.sendto("\n".join(lines).encode("ascii", "replace"), self.address)
        except OSError:  # full buffer, no listener (ECONNREFUSED), closed: never the caller's
            self.dropped += 1
            return False
        return True

    def increment(self, name: str, value: int = 1) -> bool:
        return self.send_lines([self._line(name, value, "c")])

    def timer(self, name: str, milliseconds: float) -> bool:
        return self.send_lines([self._line(name, milliseconds, "ms")])

    def gauge(self, name: str, value: float | int) -> bool:
        return self.send_lines([self._line(name, value, "g")])

    def histogram(self, name: str, value: float | int) -> bool:
        return self.send_lines([self._line(name, value, "h")])

    def request(self, status: int, duration_s: float) -> bool:
        """One response's metrics: duration timer (ms), request counter, status counter."""
        return self.send_lines([
            self._line(REQUEST_DURATION, round(duration_s * 1000, 3), "ms"),
            self._line(REQUESTS, 1, "c"),
            self._line(REQUEST_STATUS % status, 1, "c"),
        ])

    def close(self) -> None:
        self._socket.close()
