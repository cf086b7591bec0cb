#!/bin/sh
# Installs everything the test suite needs on a fresh Debian machine (run as root, or with
# sudo available): the package itself with its [test] extra, and the programs the
# integration tests drive (nginx, curl, openssl, systemd-socket-activate, wrk, chromium,
# nghttp and h2load; podman, runc and debootstrap build and run deploy/Containerfile's
# image).
# Python packages are pinned, transitive ones included, by tools/test-constraints.txt.
set -eu
cd "$(dirname "$0")/.."
APT_PACKAGES="nginx curl openssl systemd wrk apache2-utils chromium logrotate podman runc debootstrap nghttp2-client"
missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
python3 -m pip install -q --disable-pip-version-check -c tools/test-constraints.txt -e '.[test]'
