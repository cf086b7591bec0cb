"""Access-log lines byte for byte (text and JSON), escaping, and reopening after rename."""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsgiserve.cli import configure_logging
from wsgiserve.config import Logging
from wsgiserve.log import (
    ACCESS_LOGGER,
    ERROR_LOGGER,
    AccessFormatter,
    AccessLog,
    AccessRecord,
    reopen_log_files,
)

COMBINED = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
# 2024-01-01T00:00:00Z plus 250 ms.
START = 1704067200.25


@pytest.fixture
def fixed_timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # POSIX TZ: "XYZ-02" is two hours east of UTC; needs no tz database.
    monkeypatch.setenv("TZ", "XYZ-02")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    names = (ERROR_LOGGER, ACCESS_LOGGER)
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in names}
    yield
    for name, (handlers, level, propagate) in saved.items():
        target = logging.getLogger(name)
        for handler in target.handlers:
            if handler not in handlers:
                handler.close()
        target.handlers[:] = handlers
        target.setLevel(level)
        target.propagate = propagate


BASE_RECORD = AccessRecord(
    remote_addr="192.0.2.7", remote_port=51234, method="GET", target="/a/b?x=1&y=2",
    version="HTTP/1.1", status=200, response_bytes=1234, start_time=START, duration_s=0.0123456,
    request_headers=[(b"host", b"example.test"), (b"referer", b"http://r.test/"),
                     (b"user-agent", b"curl/8.0"), (b"x-forwarded-for", b"10.0.0.1"),
                     (b"x-forwarded-for", b"10.0.0.2")],
    response_headers=[("Content-Type", "text/plain"), ("Set-Cookie", "a=1"),
                      ("Set-Cookie", "b=2")],
    pid=4242)


def record(**changes: Any) -> AccessRecord:
    return dataclasses.replace(BASE_RECORD, **changes)


LINES = [
    pytest.param(COMBINED, record(),
                 '192.0.2.7 - - [01/Jan/2024:02:00:00 +0200] "GET /a/b?x=1&y=2 HTTP/1.1" 200 '
                 '1234 "http://r.test/" "curl/8.0"', id="combined"),
    pytest.param(COMBINED, record(response_bytes=0, request_headers=[], remote_user="bob"),
                 '192.0.2.7 - bob [01/Jan/2024:02:00:00 +0200] "GET /a/b?x=1&y=2 HTTP/1.1" 200 '
                 '- "-" "-"', id="combined-no-body-no-headers"),
    pytest.param("%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s", record(response_bytes=0),
                 "GET|/a/b|x=1&y=2|HTTP/1.1|200|0|-", id="request-parts"),
    pytest.param("%(T)s %(M)s %(D)s %(L)s %(p)s", record(duration_s=2.0123456),
                 "2 2012 2012345 2.012346 <4242>", id="durations-and-pid"),
    pytest.param("%({x-forwarded-for}i)s %({CONTENT-TYPE}o)s %({set-cookie}o)s %({x-none}i)s",
                 record(), "10.0.0.1,10.0.0.2 text/plain a=1,b=2 -", id="header-atoms"),
    pytest.param("%({WSGISERVE_TEST_VAR}e)s %({WSGISERVE_UNSET_VAR}e)s", record(), "hello -",
                 id="environment-atoms"),
    pytest.param("%(U)s", record(target="http://h.test:80/p?q"), "/p", id="absolute-form"),
    pytest.param("100%% %(s)s", record(), "100% 200", id="literal-percent"),
    pytest.param('"%(r)s" "%(a)s"',
                 record(target='/x\ny"z\\', request_headers=[(b"user-agent", b"a\x1b[31m\x7f")]),
                 '"GET /x\\x0ay\\"z\\\\ HTTP/1.1" "a\\x1b[31m\\x7f"', id="escaping"),
]


@pytest.mark.parametrize(("log_format", "access", "expected"), LINES)
def test_text_lines_byte_for_byte(fixed_timezone: None, monkeypatch: pytest.MonkeyPatch,
                                  log_format: str, access: AccessRecord, expected: str) -> None:
    monkeypatch.setenv("WSGISERVE_TEST_VAR", "hello")
    monkeypatch.delenv("WSGISERVE_UNSET_VAR", raising=False)
    assert AccessFormatter(log_format).format(access) == expected


def test_time_atom_west_of_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "ABC+05:30")
    time.tzset()
    try:
        line = AccessFormatter("%(t)s").format(record())
    finally:
        monkeypatch.undo()
        time.tzset()
    assert line == "[31/Dec/2023:18:30:00 -0530]"


def test_json_line_byte_for_byte() -> None:
    line = AccessFormatter("json").format(record())
    assert line == (
        '{"time":"2024-01-01T00:00:00.250+00:00","remote_addr":"192.0.2.7","method":"GET",'
        '"path":"/a/b","query":"x=1&y=2","protocol":"HTTP/1.1","status":200,"bytes":1234,'
        '"duration_ms":12.346,"referer":"http://r.test/","user_agent":"curl/8.0","pid":4242}')


def test_json_escapes_control_characters_so_one_request_is_one_line() -> None:
    hostile = record(target="/a\nb\r\u2028c\"d?e\x00", request_headers=[
        (b"user-agent", b"x\ny"), (b"referer", "\u00e9".encode("latin-1"))])
    line = AccessFormatter("json").format(hostile)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and line.isascii()
    data = json.loads(line)
    assert data["path"] == "/a\nb\r\u2028c\"d"
    assert data["query"] == "e\x00"
    assert data["user_agent"] == "x\ny"
    assert data["referer"] == "\u00e9"


def test_json_missing_headers_are_null() -> None:
    data = json.loads(AccessFormatter("json").format(record(request_headers=[])))
    assert data["referer"] is None and data["user_agent"] is None


@pytest.mark.parametrize(("log_format", "message"), [
    pytest.param("%(z)s", "unknown access log atom %(z)s", id="unknown-atom"),
    pytest.param("%(h)s %", "malformed access log format", id="dangling-percent"),
    pytest.param("%(h)d", "malformed access log format", id="wrong-conversion"),
])
def test_bad_formats_are_rejected_up_front(log_format: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AccessFormatter(log_format)


def test_access_log_off_emits_nothing(restore_loggers: None,
                                      caplog: pytest.LogCaptureFixture) -> None:
    configure_logging(Logging(access_logfile=""))
    access = AccessLog(COMBINED)
    logging.getLogger(ACCESS_LOGGER).propagate = True  # let caplog see anything emitted
    with caplog.at_level(logging.DEBUG):
        access.log(record())
    assert not logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO)
    assert [r for r in caplog.records if r.name == ACCESS_LOGGER] == []


def test_reopen_after_rename_writes_a_new_file_at_the_old_path(
        tmp_path: Path, restore_loggers: None, fixed_timezone: None) -> None:
    access_path, error_path = tmp_path / "access.log", tmp_path / "error.log"
    configure_logging(Logging(access_logfile=str(access_path), error_logfile=str(error_path),
                              access_logformat="%(s)s %(U)s"))
    access = AccessLog("%(s)s %(U)s")
    error_logger = logging.getLogger(ERROR_LOGGER + ".test")
    access.log(record(target="/before"))
    error_logger.info("before rotation")

    access_path.rename(tmp_path / "access.log.1")  # what logrotate does
    error_path.rename(tmp_path / "error.log.1")
    access.log(record(target="/between"))  # still goes to the renamed file
    assert reopen_log_files() == 2
    access.log(record(target="/after"))
    error_logger.info("after rotation")
    for handler in (logging.getLogger(ERROR_LOGGER).handlers
                    + logging.getLogger(ACCESS_LOGGER).handlers):
        handler.flush()

    assert (tmp_path / "access.log.1").read_text() == "200 /before\n200 /between\n"
    assert access_path.read_text() == "200 /after\n"
    assert "before rotation" in (tmp_path / "error.log.1").read_text()
    rotated_errors = error_path.read_text()
    assert "after rotation" in rotated_errors and "before rotation" not in rotated_errors
    assert "[INFO] after rotation" in rotated_errors


def test_error_log_level_and_stderr(restore_loggers: None, tmp_path: Path) -> None:
    stream_path = tmp_path / "stderr.txt"
    with stream_path.open("w") as stream:
        configure_logging(Logging(log_level="warning"), stderr=stream)
        logging.getLogger("wsgiserve.server.worker.loop").info("hidden")
        logging.getLogger("wsgiserve.server.worker.loop").warning("shown %d", 7)
    lines = stream_path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith("[WARNING] shown 7")


def test_configure_logging_twice_replaces_its_handlers(restore_loggers: None,
                                                       tmp_path: Path) -> None:
    # Only what configure_logging installed is replaced: a handler someone else attached
    # (pytest attaches its capture handlers to non-propagating loggers) stays.
    foreign = logging.NullHandler()
    logging.getLogger(ACCESS_LOGGER).addHandler(foreign)
    before = {name: set(logging.getLogger(name).handlers) for name in (ACCESS_LOGGER,
                                                                        ERROR_LOGGER)}
    configure_logging(Logging(access_logfile=str(tmp_path / "a.log")))
    configure_logging(Logging(access_logfile=str(tmp_path / "b.log")))
    added = {name: [h for h in logging.getLogger(name).handlers if h not in handlers]
             for name, handlers in before.items()}
    assert [h.baseFilename for h in added[ACCESS_LOGGER]] == [  # type: ignore[attr-defined]
        str(tmp_path / "b.log")]
    assert len(added[ERROR_LOGGER]) == 1
    assert foreign in logging.getLogger(ACCESS_LOGGER).handlers
