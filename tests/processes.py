"""What every test that starts a real ``python -m wsgiserve`` needs, whichever helper
module drives it (``server/serving.py``, ``server/arbiter_processes.py``,
``e2e/deploy_helpers.py``): the child's environment and log, its workers in /proc, waits
with deadlines, and clean-up by PID.

Servers bind ``127.0.0.1:0`` and their address is read from the log ("Listening at: ...");
no test picks a free port in advance. This module is on sys.path through
``pythonpath = tests`` in setup.cfg's [tool:pytest].
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"Listening at: (\S+)")
READY = r"ready: \d+ worker"

_T = TypeVar("_T")


def wait_until(predicate: Callable[[], _T | None], timeout_s: float, *,
               interval_s: float = 0.02, message: str = "condition") -> _T:
    """Poll ``predicate`` until it is truthy (returned, so never None) or ``timeout_s``
    passes (raises AssertionError)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {message}")
        time.sleep(interval_s)


# --- /proc ------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) from /proc/PID/stat, or None once the process is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    return rest[0].decode(), int(rest[1])


def is_alive(pid: int) -> bool:
    state = _stat(pid)
    return state is not None and state[0] not in ("Z", "X")


def runs_wsgiserve(pid: int) -> bool:
    """Alive and still running wsgiserve (the number was not reused)."""
    try:
        return b"wsgiserve" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def children_of(pid: int) -> list[int]:
    """Live (not zombie) child processes of ``pid``, sorted."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            state = _stat(int(name))
            if state is not None and state[1] == pid and state[0] not in ("Z", "X"):
                found.append(int(name))
    return sorted(found)


# --- starting and reading a server -------------------------------------------------------


def child_environment(pythonpath: Sequence[Path] = (),
                      env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the repository root first on PYTHONPATH (so the
    checkout is what runs), then ``pythonpath``, then any inherited PYTHONPATH; ``env``
    last, overriding."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *map(str, pythonpath),
         *filter(None, [environment.get("PYTHONPATH")])])
    environment.update(env or {})
    return environment


def spawn(command: Sequence[str], log_path: Path, *, cwd: Path, env: Mapping[str, str],
          pass_fds: Sequence[int] = (), start_new_session: bool = False
          ) -> subprocess.Popen[bytes]:
    """Start ``command`` with no stdin and its stdout and stderr in ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, pass_fds=tuple(pass_fds),
            start_new_session=start_new_session)


def wait_for_log(read_log: Callable[[], str], process: subprocess.Popen[Any] | None,
                 pattern: str, timeout_s: float, *, count: int = 1,
                 while_running: bool = True) -> str:
    """Wait until ``pattern`` (a regex) has matched ``count`` times in ``read_log()``;
    returns the log. With ``while_running``, fail early if ``process`` exits first. The
    failure carries the end of the log."""
    compiled = re.compile(pattern)

    def found() -> str | None:
        exited = process is not None and process.poll() is not None
        text = read_log()  # read after poll(): nothing written before the exit is missed
        if len(compiled.findall(text)) >= count:
            return text
        if while_running and exited:
            assert process is not None
            raise AssertionError(f"wsgiserve exited ({process.returncode}) before "
                                 f"{pattern!r}:\n{text[-3000:]}")
        return None
    try:
        return wait_until(found, timeout_s, message=pattern)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- wsgiserve log ---\n{read_log()[-3000:]}") from None


def listening_url(log: str) -> str:
    """The first address the server reports listening at (``http://127.0.0.1:PORT``)."""
    match = LISTENING.search(log)
    assert match, log
    return match.group(1)


def listening_port(log: str) -> int:
    return int(listening_url(log).rsplit(":", 1)[1])


# --- stopping ---------------------------------------------------------------------------


def kill_by_pid(pids: Iterable[int]) -> None:
    """SIGKILL each PID; one already gone (or no longer ours to signal) is skipped."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def stop_by_pid(process: subprocess.Popen[bytes], remembered: set[int], *,
                timeout_s: float = 10.0, kill_wait_s: float = 5.0,
                still_ours: Callable[[int], bool] = is_alive) -> int | None:
    """SIGTERM the master ``process`` and wait ``timeout_s``; if it outlives that, SIGKILL
    it and its children and wait ``kill_wait_s``. Then SIGKILL every PID in ``remembered``
    (its current children are added first) for which ``still_ours`` holds: workers
    orphaned by a master that died first. Returns the master's exit status."""
    if process.poll() is None:
        remembered.update(children_of(process.pid))
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_by_pid([process.pid, *children_of(process.pid)])
            process.wait(timeout=kill_wait_s)
    kill_by_pid([pid for pid in remembered if pid != process.pid and still_ours(pid)])
    return process.returncode
