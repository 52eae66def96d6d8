#!/bin/sh
# deps.sh - installs what mpbroker needs to build, test and benchmark, from Debian 12's
# archive. Runs apt-get only for packages that are missing (root, or sudo when available).
set -eu
PKGS="build-essential cmake pkg-config git
libzmq3-dev libssl-dev libcmocka-dev libjansson-dev libmicrohttpd-dev libedit-dev uthash-dev clang-format
python3 python3-yaml python3-kubernetes yamllint
python3-dev python3-venv python3-pip python3-setuptools
podman runc debootstrap
redis-server redis-tools python3-zmq python3-msgpack openssl
podman-compose golang-github-containernetworking-plugin-dnsname"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js and npm (the Kubernetes manifest check): Debian's, unless some other packaging of
# them is there already (Debian's npm conflicts with a Node.js that bundles its own).
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ -n "$missing" ]; then
    echo "deps: installing$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# promtool for ops_metrics: Debian's prometheus .deb downloaded, only promtool unpacked into
# /var/cache/mpb-test/prometheus (no service installed). The test fetches it too if this fails.
$SUDO sh "$(dirname "$0")/../tests/ops/get_promtool.sh" >/dev/null ||
    echo "deps: promtool not fetched now; ops_metrics will try again"
