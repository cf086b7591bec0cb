"""Detaching from the terminal for ``--daemon``, as gunicorn's daemon mode does.

Fork, new session, fork again: the grandchild goes on (so the arbiter writes its own pid
to ``--pid``), is no session leader (it cannot get a controlling terminal back), and its
standard streams go to /dev/null unless ``--enable-stdio-inheritance`` keeps them.
"""
from __future__ import annotations

import os
import sys

__all__ = ["daemonize"]


def daemonize(*, keep_stdio: bool = False) -> None:
    """Return in the detached grandchild; the calling process and the child exit 0.

    Standard input always reads /dev/null; stdout and stderr too unless ``keep_stdio``.
    The working directory and umask are left as they are (``--chdir`` and ``--umask``
    already set them).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork():
        os._exit(0)  # the command returns to the shell at once
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    if not keep_stdio:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    if devnull > 2:
        os.close(devnull)
