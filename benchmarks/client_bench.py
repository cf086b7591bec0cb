"""Many small GETs over one keep-alive connection: wsgiserve's client beside the others.

Usage: python3 benchmarks/client_bench.py [--requests N] [--rounds R] [--nginx]

The server runs in its own process (so it does not share the client's GIL): a raw-socket
responder that answers every request with the same 13-byte body, or nginx with --nginx.
Each client does N sequential GETs per round on one keep-alive connection; rounds are
interleaved and the median is reported. Absolute numbers drift between runs on shared
machines: compare the columns of one run.
"""
from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESPONDER = r"""
import socket, sys, threading
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!"
def serve(conn):
    buffer = b""
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buffer += data
            count = buffer.count(b"\r\n\r\n")
            if count:
                buffer = buffer[buffer.rindex(b"\r\n\r\n") + 4:]
                conn.sendall(RESPONSE * count)
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

NGINX_CONFIG = """
daemon off; master_process on; user {user}; worker_processes 1;
error_log {prefix}/error.log error; pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{ access_log off; keepalive_requests 1000000;
  client_body_temp_path {prefix}/b; proxy_temp_path {prefix}/p; fastcgi_temp_path {prefix}/f;
  uwsgi_temp_path {prefix}/u; scgi_temp_path {prefix}/s;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "Hello, World!"; }} }} }}
"""


def start_responder() -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen([sys.executable, "-c", RESPONDER], stdout=subprocess.PIPE)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def start_nginx(prefix: str) -> tuple[subprocess.Popen[bytes], int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    config = os.path.join(prefix, "nginx.conf")
    with open(config, "w") as file:
        file.write(NGINX_CONFIG.format(prefix=prefix, port=port,
                                       user="root" if os.geteuid() == 0 else "nobody"))
    process = subprocess.Popen([nginx, "-p", prefix, "-c", config],
                               pass_fds=[listener.fileno()],
                               env={"NGINX": f"{listener.fileno()};"})
    listener.close()
    return process, port


def make_clients(url: str, host: str, port: int) -> dict[str, Callable[[int], None]]:
    from wsgiserve.client import Pool, Timeouts
    clients: dict[str, Callable[[int], None]] = {}

    pool = Pool(timeouts=Timeouts(), trust_env=False)

    def wsgiserve_client(count: int) -> None:
        for _ in range(count):
            body = pool.get(url).read()
            assert body == b"Hello, World!"
    clients["wsgiserve.client"] = wsgiserve_client

    connection = http.client.HTTPConnection(host, port)

    def stdlib_client(count: int) -> None:
        for _ in range(count):
            connection.request("GET", "/")
            assert connection.getresponse().read() == b"Hello, World!"
    clients["http.client"] = stdlib_client

    try:
        import urllib3
        urllib3_pool = urllib3.HTTPConnectionPool(host, port, maxsize=1)

        def urllib3_client(count: int) -> None:
            for _ in range(count):
                assert urllib3_pool.request("GET", "/").data == b"Hello, World!"
        clients[f"urllib3 {urllib3.__version__}"] = urllib3_client
    except ImportError:
        pass

    try:
        import requests
        session = requests.Session()
        session.trust_env = False

        def requests_client(count: int) -> None:
            for _ in range(count):
                assert session.get(url).content == b"Hello, World!"
        clients[f"requests {requests.__version__}"] = requests_client
    except ImportError:
        pass
    return clients


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nginx", action="store_true", help="use nginx as the server")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as prefix:
        process, port = start_nginx(prefix) if options.nginx else start_responder()
        try:
            host = "127.0.0.1"
            clients = make_clients(f"http://{host}:{port}/", host, port)
            for run in clients.values():
                run(200)   # warm up: connect, import, caches
            timings: dict[str, list[float]] = {name: [] for name in clients}
            for _ in range(options.rounds):
                for name, run in clients.items():
                    started = time.perf_counter()
                    run(options.requests)
                    timings[name].append(time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait(10)
    server = "nginx" if options.nginx else "raw-socket responder (own process)"
    print(f"{options.requests} GETs x {options.rounds} rounds over keep-alive, server: {server}")
    print("| client | median req/s | us/request | vs http.client |")
    print("|---|---|---|---|")
    baseline = statistics.median(timings["http.client"])
    for name, values in sorted(timings.items(), key=lambda item: statistics.median(item[1])):
        median = statistics.median(values)
        print(f"| {name} | {options.requests / median:,.0f} | "
              f"{median / options.requests * 1e6:.1f} | {baseline / median:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
