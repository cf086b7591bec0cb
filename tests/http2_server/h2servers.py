"""Starting the HTTP/2 test servers: ``python -m wsgiserve`` on 127.0.0.1:0 serving
``h2_apps`` (see ``serving.Server``), trustme certificates for the TLS ones, and the
command-line clients that talk to them (curl)."""
from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from processes import wait_for_log  # noqa: E402
from serving import Server  # noqa: E402

APP = "tests.http2_server.h2_apps:app"


def start_server(directory: Path, *args: str, app: str = APP) -> Server:
    """A started server with four threads and the access log on its output."""
    return Server(directory, app, "--threads", "4", "--access-logfile", "-", *args).start()


def wait_for_line(server: Server, text: str, timeout_s: float = 10.0) -> None:
    """Wait until ``text`` is in the server's log: an access log line is written after
    its response went, so a client may read the response first."""
    wait_for_log(server.log, server.process, re.escape(text), timeout_s)


def tool(name: str) -> str:
    """The path of an installed client program; the test is skipped without it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install curl nghttp2-client)")
    return path


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([tool("curl"), "--silent", "--show-error", "--max-time", "20",
                           *args], capture_output=True, timeout=30, check=False)


class Certificates:
    """A trustme CA and a server certificate for localhost and 127.0.0.1, in files."""

    def __init__(self, directory: Path) -> None:
        import trustme

        self.ca = trustme.CA()
        certificate = self.ca.issue_cert("localhost", "127.0.0.1")
        self.cert_path = directory / "server.pem"
        self.key_path = directory / "server.key"
        self.ca_path = directory / "ca.pem"
        certificate.private_key_pem.write_to_path(str(self.key_path))
        certificate.cert_chain_pems[0].write_to_path(str(self.cert_path))
        self.ca.cert_pem.write_to_path(str(self.ca_path))

    def server_args(self) -> tuple[str, ...]:
        return ("--certfile", str(self.cert_path), "--keyfile", str(self.key_path))

    def client_context(self, alpn: tuple[str, ...] = ("h2",)) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.set_alpn_protocols(list(alpn))
        return context
