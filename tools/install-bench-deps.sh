#!/bin/sh
# Installs what benchmarks/bench_server.py needs on a Debian machine (run as root, or with sudo
# available): wrk and strace, libev and a compiler for meinheld's and bjoern's C builds, the
# package with its [test,bench] extras (gunicorn and Flask come with test; granian, bjoern,
# greenlet and py-spy, pinned, with bench), and meinheld 1.0.2 without its dependencies: it
# pins greenlet<0.5, which does not build on Python 3.11, and runs on the bench extra's greenlet.
set -eu
cd "$(dirname "$0")/.."
./tools/apt-install.sh wrk strace libev-dev gcc
python3 -m pip install -q --disable-pip-version-check -c tools/test-constraints.txt -e '.[test,bench]'
python3 -m pip install -q --disable-pip-version-check --no-deps meinheld==1.0.2
