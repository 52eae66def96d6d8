#!/bin/sh
# deps.sh - installs what mpbroker needs to build, test and benchmark, from Debian 12's
# archive. Runs apt-get only for packages that are missing (root, or sudo when available).
set -eu
PKGS="build-essential cmake pkg-config git
libzmq3-dev libmsgpack-dev libssl-dev libcmocka-dev libjansson-dev libmicrohttpd-dev
python3 python3-yaml python3-kubernetes yamllint
podman runc debootstrap
redis-server redis-tools python3-zmq python3-msgpack"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "deps: installing$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
