"""What the master checks and works out before its first fork: the user and group to run
workers as, the directory the command ran in, the app's label, and the TLS material.
"""
from __future__ import annotations

import grp
import os
import pwd

from wsgiserve.appload import DEMO_APP
from wsgiserve.config import Config, ConfigError

__all__ = ["app_label", "check_tls", "resolve_ids", "start_directory"]


def start_directory(config: Config) -> str:
    """The directory the command ran in, before ``--chdir``: HUP re-reads the config and USR2
    re-executes from there. ``$PWD`` is used only when it is consistent with ``--chdir``."""
    here = os.getcwd()
    if not config.server.chdir:
        return here
    candidate = os.environ.get("PWD", "")
    path = config.config_path
    try:
        is_consistent = bool(candidate) and os.path.samefile(
            os.path.join(candidate, config.server.chdir), here)
    except OSError:
        return here
    if is_consistent and (not path or os.path.isabs(path)
                          or os.path.isfile(os.path.join(candidate, path))):
        return candidate
    return here


def app_label(config: Config) -> str:
    return config.server.name or config.server.app or DEMO_APP


def resolve_ids(config: Config) -> tuple[int | None, int | None]:
    """uid and gid for ``--user``/``--group``; raises ConfigError for unknown names."""
    uid = gid = None
    user, group = config.server.user, config.server.group
    try:
        if user:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
            uid, gid = entry.pw_uid, entry.pw_gid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"[server] user/group: unknown user {user!r} or group {group!r}") from None
    return uid, gid


def check_tls(config: Config) -> None:
    """Build (and drop) the server SSLContext when TLS is on, so a bad certificate fails
    before any fork. The ssl module (~5 MiB in every process) is imported only then.

    Raises:
        tls.TLSConfigError (a ConfigError): the certificate, key or CA file is unusable.
    """
    if config.tls.certfile:
        from wsgiserve import tls
        tls.check_config(config.tls)
