# podman_env.sh - sourced by container_test.sh and compose_test.sh: podman with a private
# configuration and store (TESTING.md: runc, cgroupfs, explicit rlimits), a time budget, the
# debootstrap'd base image, and what to do when no container runtime can be had.
#
# The store is one per machine, in $CACHE/podman (CACHE: $MPB_TEST_CACHE, default
# /var/cache/mpb-test), so that the build stage's layers (its apt-get install, ~116 MB of
# packages) are reused by every later run, from any build directory; runtime state is in
# /run/mpb-test-podman-*. The machine's own podman store is never touched, and never
# `podman system reset`.
#
# Without a runtime (no podman/runc, not root, no base image) a test says SKIP loudly and exits
# 77 (ctest SKIP_RETURN_CODE), unless it is required: with CI=true or MPB_REQUIRE_CONTAINER=1
# the same reason fails it (exit 1), since ctest shows a skip as a mere "Skipped".
#
# The caller sets TEST_NAME, T0 (start, date +%s) and BUDGET (seconds it may take in all, to
# stay under its ctest TIMEOUT), then calls podman_setup and, for the base image, base_image.
# It reports each check with ok or fail (which counts it in FAILS) and each phase with step.
PATH=$PATH:/usr/sbin:/sbin # runc and debootstrap live there
CACHE=${MPB_TEST_CACHE:-/var/cache/mpb-test}
PODDIR=$CACHE/podman
# runtime state on /run (gone at reboot, as podman expects), one folder per store
PODRUN=/run/mpb-test-podman-$(printf '%s' "$PODDIR" | md5sum | cut -c1-8)
BASE=localhost/mpb-test/debian:bookworm
REQUIRE=
if [ "${CI:-}" = true ] || [ "${MPB_REQUIRE_CONTAINER:-}" = 1 ]; then REQUIRE=1; fi

skip() {
    if [ -n "$REQUIRE" ]; then
        echo "FAIL: $TEST_NAME cannot run, and it is required here" \
            "(CI=${CI:-unset} MPB_REQUIRE_CONTAINER=${MPB_REQUIRE_CONTAINER:-unset}): $*"
        exit 1
    fi
    echo "########################################################################"
    echo "SKIP: $TEST_NAME did not run: $*"
    echo "SKIP: (apt-get install -y --no-install-recommends podman runc debootstrap${SKIP_PKGS:-})"
    echo "SKIP: with CI=true or MPB_REQUIRE_CONTAINER=1 this is a failure"
    echo "########################################################################"
    exit 77
}

# Seconds left of the budget.
left() {
    echo $((T0 + BUDGET - $(date +%s)))
}

FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
step() { echo "---- $* ($(( $(date +%s) - T0 )) s, $(left) s left)"; }

# Two free TCP ports on 127.0.0.1, on one line; the caller sets PY (a python3).
free_ports() {
    $PY -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])'
}

# timeout for a step: PT (default 120) or what is left of the budget, whichever is less.
step_timeout() {
    local t=${PT:-120} l
    l=$(left)
    [ -z "${CLEANUP:-}" ] && [ "$l" -lt "$t" ] && t=$l
    [ "$t" -lt 1 ] && t=1
    echo "$t"
}

# podman without systemd complains on stderr about health check timers it cannot make
# (TESTING.md: `podman healthcheck run` is run by hand instead); the rest of stderr stays.
P() {
    timeout "$(step_timeout)" podman "$@" 2> >(grep -v 'unable to get systemd connection' >&2)
}

podman_setup() {
    command -v podman >/dev/null || skip "podman is not installed"
    command -v runc >/dev/null || skip "runc is not installed"
    [ "$(id -u)" = 0 ] || skip "needs root (debootstrap, and podman with a private store)"
    mkdir -p "$PODDIR" "$PODRUN/tmp" || skip "cannot write $PODDIR and $PODRUN"
    chmod 0700 "$PODDIR" "$PODRUN"
    # written whole (rename), as every test writes the same text
    cat >"$PODDIR/containers.conf.$$" <<EOF
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$PODRUN/tmp"
EOF
    cat >"$PODDIR/storage.conf.$$" <<EOF
[storage]
driver = "overlay"
graphroot = "$PODDIR/graph"
runroot = "$PODRUN/run"
EOF
    mv "$PODDIR/containers.conf.$$" "$PODDIR/containers.conf"
    mv "$PODDIR/storage.conf.$$" "$PODDIR/storage.conf"
    export CONTAINERS_CONF="$PODDIR/containers.conf" CONTAINERS_STORAGE_CONF="$PODDIR/storage.conf"
    local out
    if ! out=$(PT=60 P info 2>&1); then
        skip "podman does not work here: $(echo "$out" | tail -3)"
    fi
}

# The base image: debootstrap once (cached as a tarball), imported into the store once.
base_image() {
    local TAR=$CACHE/bookworm-rootfs.tar rc
    (
        flock -w "$(left)" 9 || exit 1
        if [ ! -s "$TAR" ]; then
            command -v debootstrap >/dev/null || exit 3
            ROOTFS=$CACHE/rootfs.$$
            rm -rf "$ROOTFS"
            echo "debootstrap --variant=minbase bookworm (once; cached in $TAR)"
            if ! timeout "$(PT=300 step_timeout)" debootstrap --variant=minbase bookworm \
                "$ROOTFS" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1; then
                tail -5 "$CACHE/debootstrap.log"
                rm -rf "$ROOTFS"
                exit 4
            fi
            rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb
            tar -C "$ROOTFS" -cf "$TAR.tmp" . && mv "$TAR.tmp" "$TAR"
            rm -rf "$ROOTFS"
        fi
        if ! P image exists "$BASE"; then
            PT=120 P import -q "$TAR" "$BASE" >/dev/null || exit 5
        fi
    ) 9>"$CACHE/.lock"
    rc=$?
    case $rc in
    0) ;;
    3) skip "no base image: $TAR is missing and debootstrap is not installed" ;;
    4) skip "no base image: debootstrap could not reach Debian's archive (see $CACHE/debootstrap.log)" ;;
    5) echo "FAIL: podman import $TAR"; exit 1 ;;
    *) echo "FAIL: base image: cannot lock or write $CACHE (rc $rc)"; exit 1 ;;
    esac
}
