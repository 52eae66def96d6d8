#!/bin/sh
# get_promtool.sh - promtool, Prometheus's checker of the text format, from Debian's prometheus
# package: downloaded with `apt-get download` and only promtool unpacked into a cache folder.
# Nothing is installed: no service, nothing in /usr. Prints promtool's path; a second run only
# prints it. The metrics test (test_ops_metrics) runs it when promtool is not on PATH.
#
#   usage: get_promtool.sh [CACHE]      (default $MPB_TEST_CACHE, else /var/cache/mpb-test)
#
# Needs Debian's package lists (apt-get update) and write access to CACHE.
set -eu
CACHE=${1:-${MPB_TEST_CACHE:-/var/cache/mpb-test}}
DIR=$CACHE/prometheus
P=$DIR/usr/bin/promtool
mkdir -p "$CACHE"
exec 9>"$CACHE/.promtool.lock"
flock -w 200 9 || { echo "get_promtool: $CACHE/.promtool.lock is held for 200 s" >&2; exit 1; }
if [ ! -x "$P" ]; then
    tmp=$(mktemp -d "$CACHE/prometheus-dl.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    chmod 0755 "$tmp" # apt's _apt user writes the download there
    if ! (cd "$tmp" && timeout 150 apt-get download -q prometheus >"$tmp/apt.log" 2>&1); then
        cat "$tmp/apt.log" >&2
        echo "get_promtool: 'apt-get download prometheus' failed (no package lists? run apt-get update)" >&2
        exit 1
    fi
    mkdir -p "$tmp/x"
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp/x" ./usr/bin/promtool
    rm -rf "$DIR"
    mv "$tmp/x" "$DIR"
fi
"$P" --version >/dev/null 2>&1 || { echo "get_promtool: $P does not run" >&2; exit 1; }
echo "$P"
