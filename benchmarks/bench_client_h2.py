"""1,000 small GETs from 10 threads to one origin over TLS: wsgiserve's client over HTTP/2
(one multiplexed connection), over HTTP/1.1 (a connection per thread), and httpx with
``http2=True``, side by side in one run.

Usage: python3 benchmarks/bench_client_h2.py [--requests N] [--threads T] [--rounds R]

The server is nginx (Debian package) with TLS and HTTP/2, answering every GET with a
13-byte body; its certificate comes from trustme (the test extra). httpx is optional and
bench-only: ``pip install 'httpx[http2]'`` (its column is left out when it is missing).
Each client warms up (connections made, TLS done), then runs R interleaved rounds of
N requests spread over T threads; the median round is reported. Absolute numbers drift
on a shared machine: compare the columns of one run.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsgiserve.client import HttpVersion, Pool, TLSSettings  # noqa: E402  (path set above)

NGINX_CONFIG = """
daemon off; master_process on; user {user}; worker_processes 1;
error_log {prefix}/error.log error; pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{ access_log off; keepalive_requests 1000000;
  client_body_temp_path {prefix}/b; proxy_temp_path {prefix}/p; fastcgi_temp_path {prefix}/f;
  uwsgi_temp_path {prefix}/u; scgi_temp_path {prefix}/s;
  server {{ listen 127.0.0.1:{port} ssl{listen_http2};{http2_on}
    ssl_certificate {prefix}/cert.pem; ssl_certificate_key {prefix}/key.pem;
    location / {{ return 200 "Hello, World!"; }} }} }}
"""

Run = Callable[[], None]      # one GET, read to its end; raises on any failure


def start_nginx(prefix: str) -> tuple[subprocess.Popen[bytes], int, str]:
    import trustme
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.private_key_pem.write_to_path(os.path.join(prefix, "key.pem"))
    cert.cert_chain_pems[0].write_to_path(os.path.join(prefix, "cert.pem"))
    ca_file = os.path.join(prefix, "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version)
    has_directive = found is not None and tuple(map(int, found.groups())) >= (1, 25, 1)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    config = os.path.join(prefix, "nginx.conf")
    with open(config, "w") as file:
        file.write(NGINX_CONFIG.format(
            prefix=prefix, port=port, user="root" if os.geteuid() == 0 else "nobody",
            listen_http2="" if has_directive else " http2",
            http2_on=" http2 on;" if has_directive else ""))
    process = subprocess.Popen([nginx, "-p", prefix, "-c", config],
                               pass_fds=[listener.fileno()],
                               env={"NGINX": f"{listener.fileno()};"})
    listener.close()
    return process, port, ca_file


def make_clients(url: str, ca_file: str, threads: int) -> tuple[dict[str, Run], list[object]]:
    """Each client's per-thread run, and the objects to close afterwards."""
    clients: dict[str, Run] = {}
    closers: list[object] = []
    tls = TLSSettings(cafile=ca_file)
    for name, version in (("wsgiserve h2", HttpVersion.HTTP_2),
                          ("wsgiserve h1.1", HttpVersion.HTTP_1_1)):
        pool = Pool(tls=tls, trust_env=False, http_version=version,
                    max_idle_per_origin=threads)
        closers.append(pool)

        def run(pool: Pool = pool, expected: str = version.value) -> None:
            response = pool.get(url)
            if response.read() != b"Hello, World!" or \
                    response.http_version != ("2" if expected == "2" else "1.1"):
                raise AssertionError(f"unexpected answer {response!r}")
        clients[name] = run
    try:
        import httpx
    except ImportError:
        print("httpx is not installed (pip install 'httpx[http2]'): its column is left out")
        return clients, closers
    for name, is_h2 in (("httpx h2", True), ("httpx h1.1", False)):
        limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
        client = httpx.Client(http2=is_h2, http1=not is_h2, verify=ca_file, limits=limits,
                              trust_env=False)
        closers.append(client)

        def run_httpx(client: httpx.Client = client, is_h2: bool = is_h2) -> None:
            response = client.get(url)
            if response.content != b"Hello, World!" or \
                    response.http_version != ("HTTP/2" if is_h2 else "HTTP/1.1"):
                raise AssertionError(f"unexpected answer {response!r}")
        clients[name] = run_httpx
    return clients, closers


def timed_round(run: Run, requests: int, threads: int) -> tuple[float, list[str]]:
    """Seconds for ``requests`` GETs over ``threads`` threads, and the failures (a failed
    request counts, and the thread goes on with the next)."""
    share, extra = divmod(requests, threads)
    failures: list[str] = []

    def work(count: int) -> None:
        for _ in range(count):
            try:
                run()
            except Exception as exc:      # counted and shown: the point of the column
                failures.append(f"{type(exc).__name__}: {exc}"[:160])
    workers = [threading.Thread(target=work, args=(share + (index < extra),))
               for index in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    return time.perf_counter() - started, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as prefix:
        os.chmod(prefix, 0o755)
        process, port, ca_file = start_nginx(prefix)
        try:
            url = f"https://localhost:{port}/"
            clients, closers = make_clients(url, ca_file, options.threads)
            for run in clients.values():
                timed_round(run, options.threads * 2, options.threads)    # warm up
            results: dict[str, list[float]] = {name: [] for name in clients}
            failed: dict[str, list[str]] = {name: [] for name in clients}
            for _ in range(options.rounds):
                for name, run in clients.items():
                    elapsed, failures = timed_round(run, options.requests, options.threads)
                    results[name].append(elapsed)
                    failed[name] += failures
            for closer in closers:
                closer.close()  # type: ignore[attr-defined]  # Pool and httpx.Client
        finally:
            process.terminate()
            process.wait(10)
    print(f"{options.requests} GETs from {options.threads} threads to nginx over TLS, "
          f"median of {options.rounds} rounds (Python {sys.version.split()[0]})")
    print("| client | requests/s | ms per round | vs wsgiserve h2 | failed requests |")
    print("|---|---|---|---|---|")
    base = statistics.median(results["wsgiserve h2"])
    for name, times in results.items():
        median = statistics.median(times)
        total = options.requests * options.rounds
        print(f"| {name} | {options.requests / median:,.0f} | {median * 1000:,.0f} "
              f"| {base / median:.2f}x | {len(failed[name])} of {total} |")
    for name, failures in failed.items():
        for text in sorted(set(failures))[:3]:
            print(f"{name}: {failures.count(text)} x {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
