"""The HTTP/2 client against real servers over TLS (ALPN h2): nginx, hypercorn, granian and
wsgiserve. Each: a GET, a 50 MB streamed upload, a 200 MB download
in flat memory, 100 requests from 10 threads over one connection; with nginx, GOAWAYs in
the middle of a run (``keepalive_requests``) fail no request.

Certificates come from trustme at test time. nginx and hypercorn get a listening socket
bound here on 127.0.0.1:0 (nginx through its ``NGINX`` variable, hypercorn as
``fd://N``); granian binds the port of a socket reserved here with SO_REUSEPORT and
reports neither its port nor its readiness, so that test connects until it is accepted.
"""
from __future__ import annotations

import hashlib
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from client_apps import PATTERN, pattern_digest
from client_peers import Peer, PeerConnection, respond

from wsgiserve.client import Pool, TLSSettings, Timeouts

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
UPLOAD_BYTES = 50 << 20
DOWNLOAD_BYTES = 200 << 20
# What the client may hold while streaming 200 MB: the connection window (16 MiB, our
# CLIENT_LIMITS) and one joined read piece, with room for the interpreter's own noise.
MAX_RSS_GROWTH_BYTES = 40 << 20
TIMEOUTS = Timeouts(connect_s=10, read_s=30, write_s=30, total_s=120)
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Server:
    name: str
    port: int
    ca_file: str
    prefix: Path
    # Distinct server-side connection ids of the requests whose path contains ``tag``
    # (nginx's access log), or None when the server keeps no such record.
    connections_of: Callable[[str], set[str]] | None = None
    extra: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("h2-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = {"ca": directory / "ca.pem", "cert": directory / "cert.pem",
             "key": directory / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(paths["cert"]), append=True)
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return {name: str(path) for name, path in paths.items()}


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# -- nginx ------------------------------------------------------------------------------------
NGINX_CONFIG = """
daemon off;
master_process on;
user {user};
worker_processes 1;
error_log {prefix}/error.log info;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    log_format tagged '$connection $request_uri $status';
    access_log {prefix}/access.log tagged;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 64m;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {prefix}/www;
    location_placeholder
    server {{
        listen 127.0.0.1:{port} ssl{listen_http2};{http2_on}
        keepalive_requests 1000;
        location /up/ {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_http_version 1.1;
            proxy_request_buffering off;
        }}
    }}
    server {{
        listen 127.0.0.1:{goaway_port} ssl{listen_http2};{http2_on}
        keepalive_requests 25;
    }}
}}
""".replace("    location_placeholder\n", "")


def _nginx_has_http2_directive(nginx: str) -> bool:
    """nginx 1.25.1 replaced ``listen ... http2`` with the ``http2 on;`` directive."""
    output = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", output)
    return match is not None and tuple(map(int, match.groups())) >= (1, 25, 1)


def _hash_upload(connection: PeerConnection) -> None:
    while (request := connection.read_request()) is not None:
        text = f"{len(request.body)} {hashlib.sha256(request.body).hexdigest()}".encode()
        connection.send(respond(200, text))


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, tls_files: dict[str, str]) -> Iterator[Server]:
    if NGINX is None:
        pytest.skip("the nginx binary is not installed (Debian package nginx)")
    prefix = tmp_path_factory.mktemp("nginx-h2")
    www = prefix / "www"
    www.mkdir()
    (www / "small.txt").write_bytes(b"hello over h2\n")
    with open(www / "big.bin", "wb") as file:
        for _ in range(DOWNLOAD_BYTES // len(PATTERN)):
            file.write(PATTERN)
    prefix.chmod(0o755)
    upstream = Peer(_hash_upload)
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    for listener in listeners:
        listener.setblocking(False)    # nginx expects its inherited listeners non-blocking
    port, goaway_port = (listener.getsockname()[1] for listener in listeners)
    has_directive = _nginx_has_http2_directive(NGINX)
    config = prefix / "nginx.conf"
    config.write_text(NGINX_CONFIG.format(
        user="root" if os.geteuid() == 0 else "nobody", prefix=prefix, port=port,
        goaway_port=goaway_port, upstream_port=upstream.port, cert=tls_files["cert"],
        key=tls_files["key"], listen_http2="" if has_directive else " http2",
        http2_on=" http2 on;" if has_directive else ""))
    fds = [listener.fileno() for listener in listeners]
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(config)], pass_fds=fds,
        env={"NGINX": "".join(f"{fd};" for fd in fds)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    for listener in listeners:
        listener.close()
    log = prefix / "access.log"

    def connections_of(tag: str) -> set[str]:
        # nginx writes each line once the request is done; the client has read every
        # response by then, but the line may trail the last byte slightly.
        return {line.split()[0] for line in log.read_text().splitlines() if tag in line}
    try:
        yield Server("nginx", port, tls_files["ca"], prefix, connections_of,
                     {"goaway_port": goaway_port})
    finally:
        _stop(process)
        upstream.stop()


# -- hypercorn and granian --------------------------------------------------------------------
@pytest.fixture(scope="module")
def hypercorn(tmp_path_factory: pytest.TempPathFactory,
              tls_files: dict[str, str]) -> Iterator[Server]:
    program = BIN / "hypercorn"
    if not program.exists():
        pytest.skip("hypercorn is not installed (pip install -c tools/test-constraints.txt "
                    "-e '.[test]')")
    prefix = tmp_path_factory.mktemp("hypercorn")
    config = prefix / "hypercorn.toml"
    # Hypercorn reads a WSGI request body whole before the app runs, up to 16 MiB by default.
    config.write_text(f"wsgi_max_body_size = {2 * UPLOAD_BYTES}\n")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    process = subprocess.Popen(
        [str(program), "--config", str(config), "--bind", f"fd://{listener.fileno()}",
         "--certfile", tls_files["cert"], "--keyfile", tls_files["key"], "--workers", "1",
         "client_apps:app"],
        pass_fds=[listener.fileno()], cwd=HERE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    listener.close()
    try:
        yield Server("hypercorn", port, tls_files["ca"], prefix)
    finally:
        _stop(process)


def _connect_until_accepted(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    pause = threading.Event()
    while time.monotonic() < end and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pause.wait(0.05)
    raise AssertionError("granian did not accept connections in time")


@pytest.fixture(scope="module")
def granian(tmp_path_factory: pytest.TempPathFactory,
            tls_files: dict[str, str]) -> Iterator[Server]:
    program = BIN / "granian"
    if not program.exists():
        pytest.skip("granian is not installed (pip install -c tools/test-constraints.txt "
                    "-e '.[test]')")
    reserved = socket.socket()
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reserved.bind(("127.0.0.1", 0))     # never listens: no connection lands on it
    port = reserved.getsockname()[1]
    process = subprocess.Popen(
        [str(program), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
         "--http", "2", "--no-ws", "--workers", "1", "--blocking-threads", "4",
         "--ssl-certificate", tls_files["cert"], "--ssl-keyfile", tls_files["key"],
         "client_apps:app"],
        cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _connect_until_accepted(port, process, 20)
        reserved.close()
        yield Server("granian", port, tls_files["ca"], tmp_path_factory.mktemp("granian"))
    finally:
        reserved.close()
        _stop(process)


# -- wsgiserve ---------------------------------------------------------------------------------
_LISTENING_RE = re.compile(rb"Listening at: https?://127\.0\.0\.1:(\d+)")


@pytest.fixture(scope="module")
def wsgiserve_h2(tmp_path_factory: pytest.TempPathFactory,
                 tls_files: dict[str, str]) -> Iterator[Server]:
    process = subprocess.Popen(
        [sys.executable, "-m", "wsgiserve", "--bind", "127.0.0.1:0", "--workers", "1",
         "--certfile", tls_files["cert"], "--keyfile", tls_files["key"],
         "--pythonpath", str(HERE), "client_apps:app"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stderr, selectors.EVENT_READ)
        end = time.monotonic() + 20
        seen = b""
        while (match := _LISTENING_RE.search(seen)) is None:
            remaining = end - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise AssertionError(f"wsgiserve did not report its address: {seen[-2000:]!r}")
            data = os.read(process.stderr.fileno(), 65536)
            if not data:
                raise AssertionError(f"wsgiserve exited: {seen[-2000:]!r}")
            seen += data
        yield Server("wsgiserve", int(match.group(1)), tls_files["ca"],
                     tmp_path_factory.mktemp("wsgiserve"))
    finally:
        _stop(process)


@pytest.fixture(params=["nginx", "hypercorn", "granian", "wsgiserve_h2"])
def server(request: pytest.FixtureRequest) -> Server:
    served: Server = request.getfixturevalue(request.param)
    return served


@pytest.fixture
def notes() -> list[str]:
    return []


@pytest.fixture
def h2_pool(server: Server, notes: list[str]) -> Iterator[Pool]:
    with Pool(timeouts=TIMEOUTS, trust_env=False, tls=TLSSettings(cafile=server.ca_file),
              trace=notes.append) as pool:
        yield pool


def _paths(server: Server) -> dict[str, str]:
    if server.name == "nginx":
        return {"small": "/small.txt", "big": "/big.bin", "upload": "/up/digest"}
    return {"small": f"/big?{len(b'hello over h2')}", "big": f"/big?{DOWNLOAD_BYTES}",
            "upload": "/digest"}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


# -- the tests --------------------------------------------------------------------------------
def test_get(server: Server, h2_pool: Pool) -> None:
    response = h2_pool.get(server.url(_paths(server)["small"]))
    assert (response.status, response.http_version) == (200, "2")
    body = response.read()
    expected = b"hello over h2\n" if server.name == "nginx" else PATTERN[:len(body)]
    assert body == expected and len(body) >= 13


def test_post_50_mb_streamed(server: Server, h2_pool: Pool) -> None:
    piece = hashlib.sha256(b"upload").digest() * 2048     # 64 KiB
    count = UPLOAD_BYTES // len(piece)
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(piece)
    response = h2_pool.post(server.url(_paths(server)["upload"]),
                            (piece for _ in range(count)))   # an iterator: no length
    assert (response.status, response.http_version) == (200, "2")
    assert response.read() == f"{UPLOAD_BYTES} {digest.hexdigest()}".encode()


def test_200_mb_download_in_flat_memory(server: Server, h2_pool: Pool) -> None:
    response = h2_pool.get(server.url(_paths(server)["big"]))
    assert response.status == 200
    digest = hashlib.sha256()
    received = 0
    start = peak = _rss_bytes()
    for piece in response:
        digest.update(piece)
        received += len(piece)
        if received % (8 << 20) < len(piece):
            peak = max(peak, _rss_bytes())
    assert received == DOWNLOAD_BYTES
    assert digest.hexdigest() == pattern_digest(DOWNLOAD_BYTES)
    assert peak - start < MAX_RSS_GROWTH_BYTES, f"RSS grew by {(peak - start) >> 20} MiB"


def _run_threads(pool: Pool, base: str, path_of: Callable[[int, int], str]) -> None:
    """10 threads, 10 GETs each; every response must be a 200 read to its end."""
    failures: list[BaseException] = []
    bodies: list[bytes] = []

    def work(index: int) -> None:
        try:
            for number in range(10):
                response = pool.get(base + path_of(index, number))
                assert response.status == 200
                bodies.append(response.read())
        except BaseException as exc:     # reported below: a thread's failure fails the test
            failures.append(exc)
    threads = [threading.Thread(target=work, args=(index,)) for index in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == [] and len(bodies) == 100


def test_100_requests_from_10_threads_over_one_connection(
        server: Server, h2_pool: Pool, notes: list[str]) -> None:
    tag = f"run{os.getpid()}-{time.monotonic_ns()}"
    small = _paths(server)["small"]
    if server.name == "nginx":
        _run_threads(h2_pool, server.url(""), lambda i, n: f"{small}?{tag}-{i}-{n}")
    else:
        _run_threads(h2_pool, server.url(""), lambda i, n: small)
    assert sum(note.startswith("connecting to") for note in notes) == 1
    if server.connections_of is not None:
        assert len(server.connections_of(tag)) == 1


def test_goaway_in_the_middle_of_a_run_fails_nothing(
        nginx: Server, notes: list[str]) -> None:
    """nginx sends GOAWAY after 25 requests on a connection: 100 requests from 10 threads
    see four or more of them, and every request succeeds (those above a GOAWAY's last
    stream id are sent again on a new connection)."""
    tag = f"goaway{os.getpid()}-{time.monotonic_ns()}"
    with Pool(timeouts=TIMEOUTS, trust_env=False, tls=TLSSettings(cafile=nginx.ca_file),
              trace=notes.append) as pool:
        _run_threads(pool, f"https://localhost:{nginx.extra['goaway_port']}",
                     lambda i, n: f"/small.txt?{tag}-{i}-{n}")
    assert nginx.connections_of is not None
    assert len(nginx.connections_of(tag)) >= 4
    assert sum(note.startswith("connecting to") for note in notes) >= 4
