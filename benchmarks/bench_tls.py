"""TLS keep-alive hello-world requests/s: wsgiserve against gunicorn with TLS, side by side.

    python benchmarks/bench_tls.py [--rounds 3] [--duration 5] [--connections 50]

Both servers get the same certificate (made with trustme now, never committed), one worker
with 4 threads (gunicorn's gthread worker: its sync worker closes every connection, which
would turn a keep-alive benchmark into a handshake benchmark), and the same 13-byte app.
wrk drives ``https://127.0.0.1:PORT/`` with keep-alive. Servers alternate A/B per round;
the medians and their ratio are printed, with plain-HTTP wsgiserve as a reference for
what TLS costs. Figures on a shared 2-core machine drift 20-50% between runs; the ratio
taken in one run is what counts.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
APP = '''
def app(environ, start_response):
    body = b"Hello, World!"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''
LISTENING = re.compile(r"Listening at: https?://[^ ]*:(\d+)")
REQUESTS = re.compile(r"Requests/sec:\s+([\d.]+)")
PROBLEMS = re.compile(r"(Socket errors: .*|Non-2xx or 3xx responses: \d+)")


def make_certificates(directory: Path) -> tuple[str, str, str]:
    import trustme  # a test dependency: only the benchmark needs it

    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    certfile, keyfile, cafile = (directory / "server.crt", directory / "server.key",
                                 directory / "ca.pem")
    leaf.private_key_pem.write_to_path(str(keyfile))
    certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(cafile))
    return str(certfile), str(keyfile), str(cafile)


class Running:
    """A server process started with ``--bind 127.0.0.1:0``; its port read from its log."""

    def __init__(self, command: list[str], directory: Path) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(directory)]))
        self.process = subprocess.Popen(command, cwd=directory, env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.log: list[str] = []
        found = threading.Event()
        self.port = 0

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.log.append(line)
                match = LISTENING.search(line)
                if match and not self.port:
                    self.port = int(match.group(1))
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(30) or not self.port:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.log[-30:]))

    def wait_answering(self, cafile: str | None, timeout_s: float = 30.0) -> None:
        """Until GET / answers 200 (workers booted), on a fresh connection each try."""
        context = ssl.create_default_context(cafile=cafile) if cafile else None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
                    sock = context.wrap_socket(raw, server_hostname="localhost") \
                        if context else raw
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n"
                                 b"Connection: close\r\n\r\n")
                    if sock.recv(100).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server never answered:\n" + "".join(self.log[-30:]))
            # Boot takes a moment; this polls a readiness condition, not a result.
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(15)


def run_wrk(scheme: str, port: int, duration_s: int, connections: int) -> tuple[float, str]:
    url = f"{scheme}://127.0.0.1:{port}/"
    subprocess.run(["wrk", "-t2", f"-c{connections}", "-d1s", url], capture_output=True,
                   text=True, timeout=60, check=False)  # warm-up
    result = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", url],
                            capture_output=True, text=True, timeout=duration_s + 60,
                            check=False)
    match = REQUESTS.search(result.stdout)
    problems = "; ".join(PROBLEMS.findall(result.stdout))
    return (float(match.group(1)) if match else 0.0), problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=4)
    options = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("gunicorn") is None:
        print("needs wrk and gunicorn on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        (directory / "hello_app.py").write_text(APP)
        certfile, keyfile, cafile = make_certificates(directory)
        tls_flags = ["--certfile", certfile, "--keyfile", keyfile]
        threads = str(options.threads)
        servers = {
            "wsgiserve https": ([sys.executable, "-m", "wsgiserve", "--bind", "127.0.0.1:0",
                                 "--workers", "1", "--threads", threads, *tls_flags,
                                 "hello_app:app"], "https"),
            "gunicorn gthread https": (["gunicorn", "--bind", "127.0.0.1:0", "--workers", "1",
                                        "--threads", threads, "--worker-class", "gthread",
                                        *tls_flags, "hello_app:app"], "https"),
            "wsgiserve http (reference)": ([sys.executable, "-m", "wsgiserve", "--bind",
                                            "127.0.0.1:0", "--workers", "1", "--threads",
                                            threads, "hello_app:app"], "http"),
        }
        results: dict[str, list[float]] = {name: [] for name in servers}
        for round_number in range(1, options.rounds + 1):
            for name, (command, scheme) in servers.items():
                server = Running(command, directory)
                try:
                    server.wait_answering(cafile if scheme == "https" else None)
                    rate, problems = run_wrk(scheme, server.port, options.duration,
                                             options.connections)
                finally:
                    server.stop()
                results[name].append(rate)
                note = f"  ({problems})" if problems else ""
                print(f"round {round_number}  {name:28} {rate:10.0f} req/s{note}",
                      flush=True)
        print()
        medians = {name: statistics.median(rates) for name, rates in results.items()}
        for name, median in medians.items():
            print(f"median  {name:28} {median:10.0f} req/s")
        baseline = medians["gunicorn gthread https"]
        ratio = medians["wsgiserve https"] / baseline if baseline else float("inf")
        print(f"bench_tls: wsgiserve/gunicorn TLS keep-alive = {ratio:.2f}x "
              f"({medians['wsgiserve https']:.0f} vs {baseline:.0f} req/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
