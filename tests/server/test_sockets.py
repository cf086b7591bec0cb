"""Listeners: TCP v4/v6, unix sockets (mode, stale files), fd://N, and the fd hand-over."""
from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from wsgiserve.server.master import sockets


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_tcp_v4_listener_is_non_blocking_and_listening() -> None:
    sock = sockets.bind("127.0.0.1:0", backlog=16)
    try:
        assert sock.getblocking() is False
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert sock.get_inheritable() is False
        port = sock.getsockname()[1]
        assert sockets.describe(sock) == f"http://127.0.0.1:{port}"
        assert sockets.describe(sock, scheme="https").startswith("https://")
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        sock.close()


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_tcp_v6_listener_is_v6_only() -> None:
    sock = sockets.bind("[::1]:0", backlog=16)
    try:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        port = sock.getsockname()[1]
        assert sockets.describe(sock) == f"http://[::1]:{port}"
        assert sockets.listener_key(sock) == (socket.AF_INET6, ("::1", port))
    finally:
        sock.close()


def test_reuse_port_is_set_on_request() -> None:
    sock = sockets.bind("127.0.0.1:0", backlog=16, reuse_port=True)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    finally:
        sock.close()


def test_an_address_in_use_raises_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(sockets.ListenerError, match=f"127.0.0.1:{port}: .*in use"):
            sockets.bind(f"127.0.0.1:{port}", backlog=16)


@pytest.mark.parametrize("text", ["nonsense", "unix:", "fd://x", "[::1:80", "1.2.3.4:99999"])
def test_malformed_addresses_raise(text: str) -> None:
    with pytest.raises(sockets.ListenerError, match="HOST:PORT"):
        sockets.bind(text, backlog=16)


def test_unix_socket_mode_follows_the_umask_and_close_unlinks(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    sock = sockets.bind(f"unix:{path}", backlog=16, umask=0o077)
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert path.stat().st_mode & 0o777 == 0o700
    assert sockets.describe(sock) == f"unix:{path}"
    assert sockets.unix_path(sock) == str(path)
    assert sockets.listener_key(sock) == (socket.AF_UNIX, str(path))
    assert sockets.bind_key(f"unix:{path}") == sockets.listener_key(sock)
    sockets.close_listeners([sock], unlink=True)
    assert not path.exists()


def test_close_without_unlink_leaves_the_path_for_a_new_master(tmp_path: Path) -> None:
    path = tmp_path / "kept.sock"
    sockets.close_listeners([sockets.bind(f"unix:{path}", backlog=16)], unlink=False)
    assert path.exists()


def test_a_stale_unix_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    sock = sockets.bind(f"unix:{path}", backlog=16)
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(str(path))
    finally:
        sockets.close_listeners([sock], unlink=True)


def test_a_live_unix_socket_is_not_stolen(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen(1)
    try:
        with pytest.raises(sockets.ListenerError, match="another server is listening"):
            sockets.bind(f"unix:{path}", backlog=16)
        assert path.exists()
    finally:
        live.close()


def test_a_regular_file_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("precious")
    with pytest.raises(sockets.ListenerError, match="not a socket"):
        sockets.bind(f"unix:{path}", backlog=16)
    assert path.read_text() == "precious"


def test_fd_url_adopts_a_listening_socket() -> None:
    original = socket.socket()
    original.bind(("127.0.0.1", 0))
    original.listen(4)
    port = original.getsockname()[1]
    adopted = sockets.bind(f"fd://{original.detach()}", backlog=16)
    try:
        assert adopted.getblocking() is False
        assert adopted.getsockname()[1] == port
        assert adopted.family == socket.AF_INET
    finally:
        adopted.close()


def test_fd_url_refuses_what_is_not_a_listening_socket(tmp_path: Path) -> None:
    unconnected = socket.socket()
    try:
        with pytest.raises(sockets.ListenerError, match="not a listening"):
            sockets.adopt_fd(unconnected.fileno())
        assert unconnected.fileno() >= 0  # left open for its owner
    finally:
        unconnected.close()
    with open(tmp_path / "file", "w") as file, \
            pytest.raises(sockets.ListenerError, match="fd://"):
        sockets.adopt_fd(file.fileno())
    with pytest.raises(sockets.ListenerError):
        sockets.adopt_fd(987654)


def test_export_for_exec_makes_fds_inheritable_and_lists_them() -> None:
    first = sockets.bind("127.0.0.1:0", backlog=4)
    second = sockets.bind("127.0.0.1:0", backlog=4)
    try:
        value = sockets.export_for_exec([first, second])
        assert value == f"{first.fileno()},{second.fileno()}"
        assert first.get_inheritable() and second.get_inheritable()
        environ = {sockets.INHERITED_FDS_VARIABLE: value}
        assert sockets.inherited_fds(environ) == [first.fileno(), second.fileno()]
    finally:
        first.close()
        second.close()


def test_inherited_fds_parsing() -> None:
    assert sockets.inherited_fds({}) == []
    assert sockets.inherited_fds({"WSGISERVE_FDS": " 3, 4 "}) == [3, 4]
    with pytest.raises(sockets.ListenerError, match="WSGISERVE_FDS"):
        sockets.inherited_fds({"WSGISERVE_FDS": "3;4"})


def test_bind_key_matches_tcp_but_not_ephemeral_ports() -> None:
    assert sockets.bind_key("127.0.0.1:8123") == (socket.AF_INET, ("127.0.0.1", 8123))
    assert sockets.bind_key("127.0.0.1:0") is None
    assert sockets.bind_key(f"fd://{os.getpid() % 100 + 3}") is None
