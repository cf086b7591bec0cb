#!/bin/sh
# Installs everything the test suite needs on a fresh Debian machine (run as root, or with
# sudo available): the package itself with its [test] extra, and the programs the
# integration tests drive (nginx, curl, openssl, systemd-socket-activate, wrk, chromium,
# nghttp and h2load; podman, runc and debootstrap build and run deploy/Containerfile's
# image).
# Python packages are pinned, transitive ones included, by tools/test-constraints.txt.
set -eu
cd "$(dirname "$0")/.."
./tools/apt-install.sh nginx curl openssl systemd wrk apache2-utils chromium logrotate podman runc debootstrap nghttp2-client
python3 -m pip install -q --disable-pip-version-check -c tools/test-constraints.txt -e '.[test]'
