"""Logger names, the access-log line (gunicorn atoms or JSON), metrics and log reopening.

Workers build one ``AccessLog`` with ``make_access_log(config.logging)`` and call
``log(record)`` per response, which also sends the request's StatsD metrics; the arbiter
reports gauges with ``report_gauge``; the arbiter and workers call ``reopen_log_files()`` on
SIGUSR1. This module installs no handler (only ``cli`` does).
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from wsgiserve.config import ACCESS_LOG_JSON, Logging
from wsgiserve.statsd import LOG_PREFIX, StatsdClient

__all__ = [
    "ACCESS_LOGGER",
    "ERROR_LOGGER",
    "ERROR_LOG_DATE_FORMAT",
    "ERROR_LOG_FORMAT",
    "AccessFormatter",
    "AccessLog",
    "AccessRecord",
    "METRICS_LOGGER",
    "MetricsHandler",
    "ReopenableFileHandler",
    "make_access_log",
    "reopen_log_files",
    "report_gauge",
]

# Every wsgiserve module logs under this name via logging.getLogger(__name__).
ERROR_LOGGER: Final = "wsgiserve"
ACCESS_LOGGER: Final = "wsgiserve.access"
# Gauges travel as records of this logger (gunicorn's extra metric/value/mtype); it is
# enabled only while a MetricsHandler sends them.
METRICS_LOGGER: Final = "wsgiserve.metrics"
# A gauge reported every arbiter tick is sent when it changes, else at most this often
# (gunicorn sends its worker gauge once per arbiter loop, about every second).
GAUGE_REPEAT_S: Final = 1.0
# gunicorn's error log layout, so existing log parsers keep working.
ERROR_LOG_FORMAT: Final = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
ERROR_LOG_DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S %z"

# CLF dates use English month names whatever the locale (Apache's %t).
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                  "Dec")
# Like nginx and Apache: control characters (C0, DEL, C1) become \xHH, and " and \ are
# backslashed, so a request cannot forge a second log line or end a quoted field.
_ESCAPES: Final[dict[int, str]] = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))},
    ord('"'): '\\"', ord("\\"): "\\\\",
}
_NEEDS_ESCAPE: Final = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')
_ATOM: Final = re.compile(r"%\(([^)]*)\)")
_HEADER_ATOM: Final = re.compile(r"\{([^}]+)\}([ioe])")


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """What the access log needs to know about one finished response."""

    remote_addr: str
    remote_port: int
    method: str
    target: str  # the raw request target, e.g. "/a?b=1"
    version: str  # "HTTP/1.1"
    status: int
    response_bytes: int  # body bytes sent
    start_time: float  # time.time() when the request head arrived
    duration_s: float
    request_headers: Sequence[tuple[bytes, bytes]]  # names lowercased
    response_headers: Sequence[tuple[str, str]]
    pid: int
    remote_user: str = "-"
    # A WebSocket's line (written when it closes): bytes received, and its close code.
    received_bytes: int = 0
    close_code: int = 0


def _escape(text: str) -> str:
    return text.translate(_ESCAPES) if _NEEDS_ESCAPE.search(text) else text


def _split_target(target: str) -> tuple[str, str]:
    """Path and query of a request target; absolute-form loses its scheme and authority."""
    if "://" in target[:8]:
        slash = target.find("/", target.index("://") + 3)
        target = target[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    return path, query


def _request_header(record: AccessRecord, name: bytes) -> str | None:
    values = [value for key, value in record.request_headers if key == name]
    return b",".join(values).decode("latin-1") if values else None


def _clf_time(timestamp: float) -> str:
    local = time.localtime(timestamp)
    offset = (local.tm_gmtoff or 0) // 60
    sign = "-" if offset < 0 else "+"
    return (f"[{local.tm_mday:02d}/{_MONTHS[local.tm_mon - 1]}/{local.tm_year}:"
            f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} "
            f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}]")


_Getter = Callable[[AccessRecord], str]

# gunicorn's atoms (docs: "Access log format"); b follows Apache (a dash for no body).
_SIMPLE_ATOMS: Final[dict[str, _Getter]] = {
    "h": lambda r: r.remote_addr or "-",
    "l": lambda r: "-",
    "u": lambda r: _escape(r.remote_user) or "-",
    "r": lambda r: _escape(f"{r.method} {r.target} {r.version}"),
    "m": lambda r: _escape(r.method),
    "U": lambda r: _escape(_split_target(r.target)[0]),
    "q": lambda r: _escape(_split_target(r.target)[1]),
    "H": lambda r: _escape(r.version),
    "s": lambda r: str(r.status),
    "B": lambda r: str(r.response_bytes),
    "b": lambda r: str(r.response_bytes) if r.response_bytes else "-",
    "f": lambda r: _escape(_request_header(r, b"referer") or "-"),
    "a": lambda r: _escape(_request_header(r, b"user-agent") or "-"),
    "T": lambda r: str(int(r.duration_s)),
    "M": lambda r: str(int(r.duration_s * 1_000)),
    "D": lambda r: str(int(r.duration_s * 1_000_000)),
    "L": lambda r: f"{r.duration_s:.6f}",
    "p": lambda r: f"<{r.pid}>",
}


def _header_getter(name: str, kind: str) -> _Getter:
    lowered = name.lower()
    if kind == "i":
        encoded = lowered.encode("latin-1")
        return lambda r: _escape(_request_header(r, encoded) or "-")
    if kind == "o":
        def response_header(record: AccessRecord) -> str:
            values = [v for k, v in record.response_headers if k.lower() == lowered]
            return _escape(",".join(values)) if values else "-"
        return response_header
    return lambda r: _escape(os.environ.get(name, "-"))


class AccessFormatter:
    """Turns an ``AccessRecord`` into one line, compiled once from the format.

    The format is gunicorn's: ``%(h)s %(r)s %(s)s %(D)s``, ``%({x-real-ip}i)s`` (request
    header), ``%({content-type}o)s`` (response header), ``%({HOME}e)s`` (environment),
    or the word ``json`` for one JSON object per line.
    """

    def __init__(self, log_format: str) -> None:
        """Raises ValueError naming an unknown atom or a malformed format."""
        self.log_format = log_format
        self.is_json = log_format == ACCESS_LOG_JSON
        self._getters: list[tuple[str, _Getter]] = []
        self._last_second = -1
        self._last_clf_time = ""
        self._has_time = False
        if self.is_json:
            return
        atoms = _ATOM.findall(log_format)
        for key in dict.fromkeys(atoms):
            if key in _SIMPLE_ATOMS:
                self._getters.append((key, _SIMPLE_ATOMS[key]))
            elif (match := _HEADER_ATOM.fullmatch(key)) is not None:
                self._getters.append((key, _header_getter(match[1], match[2])))
            elif key != "t":
                raise ValueError(f"unknown access log atom %({key})s")
        self._has_time = "t" in atoms
        try:
            log_format % {key: "-" for key in [*(k for k, _ in self._getters), "t"]}
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"malformed access log format: {exc}") from None

    def _time(self, timestamp: float) -> str:
        # Every line in a busy second shares one date string.
        second = int(timestamp)
        if second != self._last_second:
            self._last_second, self._last_clf_time = second, _clf_time(second)
        return self._last_clf_time

    def format(self, record: AccessRecord) -> str:
        """The access line for ``record``, without a newline; never contains one."""
        if self.is_json:
            return self._format_json(record)
        values = {key: getter(record) for key, getter in self._getters}
        if self._has_time:
            values["t"] = self._time(record.start_time)
        return self.log_format % values

    @staticmethod
    def _format_json(record: AccessRecord) -> str:
        path, query = _split_target(record.target)
        moment = datetime.datetime.fromtimestamp(record.start_time, datetime.UTC)
        # ensure_ascii also escapes U+2028/U+2029, which some line splitters treat as EOL.
        return json.dumps({
            "time": moment.isoformat(timespec="milliseconds"),
            "remote_addr": record.remote_addr,
            "method": record.method,
            "path": path,
            "query": query,
            "protocol": record.version,
            "status": record.status,
            "bytes": record.response_bytes,
            "duration_ms": round(record.duration_s * 1000, 3),
            "referer": _request_header(record, b"referer"),
            "user_agent": _request_header(record, b"user-agent"),
            "pid": record.pid,
        }, ensure_ascii=True, separators=(",", ":"))


class AccessLog:
    """Formats and emits access lines to the ``wsgiserve.access`` logger.

    Costs one ``isEnabledFor`` check per request while the access log is off.
    """

    def __init__(self, log_format: str, logger_name: str = ACCESS_LOGGER,
                 statsd: StatsdClient | None = None) -> None:
        """Raises ValueError for a malformed format (see ``AccessFormatter``).

        With ``statsd``, every response also sends gunicorn's request metrics, whether or
        not the access log is on.
        """
        self.formatter = AccessFormatter(log_format)
        self.statsd = statsd
        self._logger = logging.getLogger(logger_name)

    def log(self, record: AccessRecord) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._logger.info("%s", self.formatter.format(record))
        if self.statsd is not None:
            self.statsd.request(record.status, record.duration_s)

    def log_websocket(self, record: AccessRecord) -> None:
        """The line of a WebSocket that closed: the format's line for its upgrade request
        (status 101, ``response_bytes`` the bytes sent, the duration its whole life), then
        its close code and the bytes received and sent (JSON: extra keys)."""
        if self._logger.isEnabledFor(logging.INFO):
            line = self.formatter.format(record)
            if self.formatter.is_json:
                fields = json.loads(line)
                fields.update(ws_close_code=record.close_code,
                              ws_bytes_received=record.received_bytes,
                              ws_bytes_sent=record.response_bytes)
                line = json.dumps(fields, ensure_ascii=True, separators=(",", ":"))
            else:
                line += (f" ws_close={record.close_code} ws_in={record.received_bytes}"
                         f" ws_out={record.response_bytes} ws_seconds={record.duration_s:.3f}")
            self._logger.info("%s", line)
        if self.statsd is not None:
            self.statsd.request(record.status, record.duration_s)


def make_access_log(settings: Logging) -> AccessLog | None:
    """The worker's AccessLog, or None when neither the access log nor StatsD is on.

    Call it in the worker process: its StatsD socket is that process's own.

    Raises:
        ValueError: a malformed access log format or StatsD address.
        OSError: the StatsD host name does not resolve.
    """
    if not settings.access_logfile and not settings.statsd_host:
        return None
    statsd = None
    if settings.statsd_host:
        statsd = StatsdClient(settings.statsd_host, settings.statsd_prefix,
                              settings.dogstatsd_tags)
    return AccessLog(settings.access_logformat, statsd=statsd)


def report_gauge(name: str, value: int | float) -> None:
    """Report a gauge (e.g. ``gunicorn.workers``); costs one level check while unsent."""
    metrics = logging.getLogger(METRICS_LOGGER)
    if metrics.isEnabledFor(logging.INFO):
        metrics.info("%s=%s", name, value,
                     extra={"metric": name, "value": value, "mtype": "gauge"})


class MetricsHandler(logging.Handler):
    """Sends to StatsD what logging carries: gauges from ``report_gauge``, and one counter
    per warning, error, critical and exception record (gunicorn's ``gunicorn.log.*``)."""

    def __init__(self, statsd: StatsdClient) -> None:
        # No handler level: gauges come at INFO, log records count from WARNING (emit).
        super().__init__()
        self.statsd = statsd
        self._gauges: dict[str, tuple[object, float]] = {}

    def close(self) -> None:
        self.statsd.close()
        super().close()

    def emit(self, record: logging.LogRecord) -> None:
        metric = getattr(record, "metric", None)
        if metric is None:
            if record.levelno < logging.WARNING:
                return
            if record.levelno >= logging.ERROR and record.exc_info:
                kind = "exception"  # gunicorn counts logger.exception() apart from error
            else:
                kind = record.levelname.lower()
            self.statsd.increment(LOG_PREFIX + kind)
            return
        value = getattr(record, "value", 0)
        if getattr(record, "mtype", "gauge") != "gauge":
            self.statsd.increment(str(metric), int(value))
            return
        now = time.monotonic()
        last = self._gauges.get(metric)
        if last is not None and last[0] == value and now - last[1] < GAUGE_REPEAT_S:
            return
        self._gauges[metric] = (value, now)
        self.statsd.gauge(str(metric), value)


class ReopenableFileHandler(logging.FileHandler):
    """A log file that ``reopen_log_files()`` reopens after logrotate renames it."""

    def __init__(self, filename: str) -> None:
        super().__init__(filename, mode="a", encoding="utf-8", errors="backslashreplace")

    def reopen(self) -> None:
        """Open the path afresh; on failure keep writing to the old file and raise OSError."""
        self.acquire()
        try:
            new_stream = self._open()
            old_stream, self.stream = self.stream, new_stream
            if old_stream is not None:
                old_stream.close()
        finally:
            self.release()


def reopen_log_files() -> int:
    """Reopen every ``ReopenableFileHandler`` attached to any logger; returns how many.

    Call from the main loop (not the signal handler) after SIGUSR1. A file that cannot be
    reopened is logged and kept open as it was.
    """
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [item for item in logging.Logger.manager.loggerDict.values()
                if isinstance(item, logging.Logger)]
    handlers = {id(h): h for lg in loggers for h in lg.handlers
                if isinstance(h, ReopenableFileHandler)}
    count = 0
    for handler in handlers.values():
        try:
            handler.reopen()
        except OSError:
            logging.getLogger(__name__).exception("cannot reopen %s", handler.baseFilename)
        else:
            count += 1
    return count
