#!/bin/bash
# container_test.sh - builds the image from deploy/Containerfile with podman and runs it the way
# an operator would (read-only root, no capabilities, no-new-privileges, the authkey as a mounted
# file, /data a volume, ports published on 127.0.0.1), then from the host:
#   - mpb info / set / get reach the broker inside; a wrong key is refused;
#   - the process runs as a non-root user, PID 1 is mpbrokerd, no capabilities, root read-only;
#   - `podman healthcheck run` passes (the image's HEALTHCHECK), /healthz and /readyz answer 200
#     to a curl-free client, /metrics counts what was done;
#   - Pool workers: mpb-worker from the image (in the broker's network namespace) and, if the
#     build has one, mpb-worker from the build on the host, each serve `mpb pool apply`;
#   - podman stop finishes fast (PID 1 stops on SIGTERM) with exit status 0, and the log never
#     holds the authkey;
# then removes the containers, the volume and the image.
#
# Podman runs with a private configuration and store under --work (TESTING.md: runc, cgroupfs,
# explicit rlimits), so the machine's own containers are never touched. The base image is made
# by debootstrap once and cached in $MPB_TEST_CACHE (default /var/cache/mpb-test) as a tarball.
# Where no container runtime can be had (no podman/runc, not root, no base image), it says SKIP
# and why, and exits 77 (ctest SKIP_RETURN_CODE). Never `podman system reset`.
#
# usage: container_test.sh --source DIR --work DIR --mpb PATH [--worker PATH --demo-lib PATH]
set -uo pipefail
PATH=$PATH:/usr/sbin:/sbin # runc and debootstrap live there

SRC= WORK= MPB= WORKER= DEMOLIB=
while [ $# -gt 0 ]; do
    case "$1" in
    --source) SRC=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --mpb) MPB=$2; shift 2 ;;
    --worker) WORKER=$2; shift 2 ;;
    --demo-lib) DEMOLIB=$2; shift 2 ;;
    *) echo "usage: $0 --source DIR --work DIR --mpb PATH [--worker PATH --demo-lib PATH]" >&2
       exit 2 ;;
    esac
done
[ -n "$SRC" ] && [ -n "$WORK" ] && [ -n "$MPB" ] || { echo "missing arguments" >&2; exit 2; }

skip() { echo "SKIP: container test: $*"; echo "SKIP: (CI installs: apt-get install -y --no-install-recommends podman runc debootstrap)"; exit 77; }
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
step() { echo "---- $* ($(( $(date +%s) - T0 )) s)"; }
T0=$(date +%s)

command -v podman >/dev/null || skip "podman is not installed"
command -v runc >/dev/null || command -v /usr/sbin/runc >/dev/null || skip "runc is not installed"
[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, and podman with a private store)"
PY=/usr/bin/python3
[ -x $PY ] || skip "/usr/bin/python3 is needed for free ports and HTTP checks"

# ---- podman, privately -------------------------------------------------------------------------
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
chmod 0700 "$WORK"
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$WORK/graph"
runroot = "$WORK/run"
EOF
export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"
# podman without systemd complains on stderr about health check timers it cannot make
# (TESTING.md: `podman healthcheck run` is run by hand instead); the rest of stderr stays.
P() {
    timeout "${PT:-120}" podman "$@" 2> >(grep -v 'unable to get systemd connection' >&2)
}
if ! out=$(P info 2>&1); then
    skip "podman does not work here: $(echo "$out" | tail -3)"
fi

# ---- the base image: debootstrap once, cached ----------------------------------------------
CACHE=${MPB_TEST_CACHE:-/var/cache/mpb-test}
TAR=$CACHE/bookworm-rootfs.tar
BASE=localhost/mpb-test/debian:bookworm
step "base image"
mkdir -p "$CACHE"
(
    flock -w 600 9 || exit 1
    if [ ! -s "$TAR" ]; then
        command -v debootstrap >/dev/null || exit 3
        ROOTFS=$CACHE/rootfs.$$
        rm -rf "$ROOTFS"
        echo "debootstrap --variant=minbase bookworm (once; cached in $TAR)"
        if ! timeout 600 debootstrap --variant=minbase bookworm "$ROOTFS" \
            http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1; then
            tail -5 "$CACHE/debootstrap.log"
            rm -rf "$ROOTFS"
            exit 4
        fi
        rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb
        tar -C "$ROOTFS" -cf "$TAR.tmp" . && mv "$TAR.tmp" "$TAR"
        rm -rf "$ROOTFS"
    fi
) 9>"$CACHE/.lock"
case $? in
0) ;;
3) skip "no base image: $TAR is missing and debootstrap is not installed" ;;
4) skip "no base image: debootstrap could not reach Debian's archive (see $CACHE/debootstrap.log)" ;;
*) fail "base image: cannot lock or write $CACHE"; exit 1 ;;
esac
if ! P image exists "$BASE"; then
    PT=300 P import -q "$TAR" "$BASE" >/dev/null || { fail "podman import $TAR"; exit 1; }
fi
ok "base image $BASE"

# ---- names, ports, the key, and cleanup ---------------------------------------------------------
TAG=$$
NAME=mpb-ops-$TAG
IMAGE=localhost/mpbroker-test:$TAG
VOL=$NAME-data
HOSTWORKER_PID=
cleanup() {
    [ -n "$HOSTWORKER_PID" ] && kill "$HOSTWORKER_PID" 2>/dev/null && wait "$HOSTWORKER_PID" 2>/dev/null
    PT=30 P rm -f -v -t 2 "$NAME-w" >/dev/null 2>&1
    PT=30 P rm -f -v -t 2 "$NAME" >/dev/null 2>&1
    PT=30 P volume rm -f "$VOL" >/dev/null 2>&1
    PT=60 P rmi -f "$IMAGE" >/dev/null 2>&1
    PT=60 P image prune -f >/dev/null 2>&1 # the build stage (this store is ours alone)
    rm -rf "$WORK/context" "$WORK/authkey" "$WORK/wrongkey"
}
trap cleanup EXIT

read -r PORT HPORT < <($PY -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
printf '%s\n' "$KEY" >"$WORK/authkey"
chmod 0644 "$WORK/authkey" # read by uid 10001 inside; $WORK itself is 0700
printf 'wrong-%s\n' "$KEY" >"$WORK/wrongkey"
export MPB_ENDPOINT=tcp://127.0.0.1:$PORT MPB_AUTHKEY_FILE=$WORK/authkey
unset MPB_AUTHKEY

http() { # http PATH -> "STATUS BODY..."
    $PY - "$HPORT" "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=5) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)
except Exception as e:
    print(0, e)
EOF
}

# ---- build --------------------------------------------------------------------------------------
# The context, copied: the source as git sees it (tracked and new files, not ignored ones),
# else the source tree without build trees (directories holding a CMakeCache.txt, this test's
# own store among them). .dockerignore then applies as it would for a user.
step "build context"
CTX=$WORK/context
rm -rf "$CTX"
mkdir -p "$CTX"
if git -C "$SRC" rev-parse --show-toplevel >/dev/null 2>&1; then
    (cd "$SRC" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
        [ -e "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf -) |
        tar -C "$CTX" -xf - || { fail "copying the build context"; exit 1; }
else
    tar -C "$SRC" --exclude=./.git --exclude-tag-all=CMakeCache.txt -cf - . |
        tar -C "$CTX" -xf - || { fail "copying the build context"; exit 1; }
fi
echo "context: $(du -sh "$CTX" | cut -f1)"
step "podman build (deploy/Containerfile, BASE=$BASE)"
if ! PT=700 P build --pull=never --format docker --build-arg "BASE=$BASE" \
    -f "$CTX/deploy/Containerfile" -t "$IMAGE" "$CTX" >"$WORK/build.log" 2>&1; then
    tail -40 "$WORK/build.log"
    fail "podman build (log: $WORK/build.log)"
    exit 1
fi
ok "image built ($(P image inspect --format '{{.Size}}' "$IMAGE") bytes)"
[ "$(P image inspect --format '{{.Config.User}}' "$IMAGE")" = "10001:10001" ] &&
    ok "image USER 10001:10001" || fail "image USER is $(P image inspect --format '{{.Config.User}}' "$IMAGE")"
HC=$(P image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE" 2>/dev/null)
case "$HC" in *mpb-healthcheck*) ok "image HEALTHCHECK kept: $HC" ;; *) fail "no HEALTHCHECK in the image: $HC" ;; esac

# ---- run ------------------------------------------------------------------------------------------
step "podman run"
if ! P run -d --name "$NAME" \
    -p "127.0.0.1:$PORT:5555" -p "127.0.0.1:$HPORT:8080" \
    --read-only --cap-drop ALL --security-opt no-new-privileges \
    -v "$VOL:/data" \
    -v "$WORK/authkey:/run/secrets/mpb_authkey:ro" -e MPB_AUTHKEY_FILE=/run/secrets/mpb_authkey \
    "$IMAGE" >/dev/null; then
    fail "podman run"
    exit 1
fi
ready=
for _ in $(seq 1 100); do
    [ "$(http /readyz | head -1)" = 200 ] && { ready=1; break; }
    [ "$(P inspect --format '{{.State.Running}}' "$NAME")" = true ] || break
    sleep 0.2
done
if [ -z "$ready" ]; then
    P logs "$NAME" | tail -20
    fail "the broker in the container did not get ready"
    exit 1
fi
ok "ready on 127.0.0.1:$PORT (HTTP 127.0.0.1:$HPORT) after $(( $(date +%s) - T0 )) s"

step "clients from the host"
out=$("$MPB" info 2>&1) && ok "mpb info" || fail "mpb info: $out"
out=$("$MPB" set dict/container greeting '"hello from the host"' 2>&1) && ok "mpb set" || fail "mpb set: $out"
out=$("$MPB" get dict/container greeting 2>&1)
[ "$out" = '"hello from the host"' ] && ok "mpb get" || fail "mpb get: $out"
out=$(MPB_AUTHKEY_FILE=$WORK/wrongkey "$MPB" ping 2>&1) && fail "a wrong key was accepted" || ok "a wrong key is refused: $out"

step "inside the container"
uid=$(P exec "$NAME" id -u)
[ -n "$uid" ] && [ "$uid" != 0 ] && ok "runs as uid $uid" || fail "runs as uid '$uid'"
pid1=$(P exec "$NAME" cat /proc/1/cmdline | tr '\0' ' ')
case "$pid1" in mpbrokerd*) ok "PID 1 is $pid1" ;; *) fail "PID 1 is '$pid1'" ;; esac
cap=$(P exec "$NAME" sh -c 'grep ^CapEff /proc/1/status' | awk '{print $2}')
[ "$cap" = 0000000000000000 ] && ok "no effective capabilities" || fail "CapEff $cap"
P exec "$NAME" sh -c 'touch /probe' 2>/dev/null && fail "the root filesystem is writable" ||
    ok "the root filesystem is read-only"
P exec "$NAME" sh -c 'touch /data/probe && rm /data/probe' && ok "/data is writable" ||
    fail "/data is not writable"
for tool in curl wget gcc cc; do
    P exec "$NAME" sh -c "command -v $tool" >/dev/null 2>&1 && fail "the runtime image has $tool"
done

step "health"
out=$(PT=30 P healthcheck run "$NAME" 2>&1) && ok "podman healthcheck run: ${out:-healthy}" ||
    fail "podman healthcheck run: $out"
r=$(http /healthz)
[ "$(echo "$r" | head -1)" = 200 ] && ok "/healthz 200 from the host" || fail "/healthz: $r"
[ "$(http /no-such-path | head -1)" = 404 ] && ok "unknown path 404" || fail "unknown path not 404"
m=$(http /metrics)
echo "$m" | grep -qx 'mpb_requests_total{op="dict.set",result="ok"} 1' &&
    ok "/metrics counts the dict.set" || fail "/metrics: no dict.set 1"
echo "$m" | grep -qx 'mpb_objects{kind="dict"} 1' && ok "/metrics: 1 dict" || fail "/metrics: dict count"
echo "$m" | grep -q "$KEY" && fail "the authkey is in /metrics"

step "the demo client and --check-config, from the image"
out=$(P run --rm --network "container:$NAME" --read-only --cap-drop ALL \
    --security-opt no-new-privileges \
    -v "$WORK/authkey:/run/secrets/mpb_authkey:ro" -e MPB_AUTHKEY_FILE=/run/secrets/mpb_authkey \
    -e MPB_ENDPOINT=tcp://127.0.0.1:5555 --entrypoint /bin/sh "$IMAGE" \
    -c 'mpb-example-manager && mpb ls' 2>&1)
case "$out" in *"squares = {0: 0, 1: 1, 2: 4"*"dict/squares"*) ok "the compose demo's command runs" ;;
*) fail "the demo: $out" ;; esac
out=$(P run --rm "$IMAGE" --check-config 2>&1)
case "$out" in *"listen = tcp://0.0.0.0:5555  # env MPB_LISTEN"*"http = 0.0.0.0:8080  # env MPB_HTTP"*)
    ok "flags reach mpbrokerd: --check-config shows the image's ENV" ;;
*) fail "--check-config in the image: $out" ;; esac
P run --rm "$IMAGE" --max-frame 1 >/dev/null 2>&1
[ $? = 2 ] && ok "a bad flag: exit 2" || fail "a bad flag does not exit 2"
size=$(P image inspect --format '{{.Size}}' "$IMAGE")
bsize=$(P image inspect --format '{{.Size}}' "$BASE")
[ $((size - bsize)) -lt 40000000 ] && ok "the image adds $(((size - bsize) / 1000000)) MB to its base" ||
    fail "the image adds $(((size - bsize) / 1000000)) MB to its base (apt caches, build tools left in?)"

step "pool workers"
if P exec "$NAME" test -x /usr/bin/mpb-worker -a -f /usr/lib/mpb/libmpbdemo.so; then
    if P run -d --name "$NAME-w" --network "container:$NAME" \
        --read-only --cap-drop ALL --security-opt no-new-privileges \
        -v "$WORK/authkey:/run/secrets/mpb_authkey:ro" -e MPB_AUTHKEY_FILE=/run/secrets/mpb_authkey \
        -e MPB_ENDPOINT=tcp://127.0.0.1:5555 --entrypoint mpb-worker "$IMAGE" \
        --lib /usr/lib/mpb/libmpbdemo.so --fn square,fail,sleep_ms >/dev/null; then
        out=$(timeout 60 "$MPB" pool apply square 7 --timeout 30 2>&1)
        [ "$out" = 49 ] && ok "the image's mpb-worker served square(7) = 49" ||
            { fail "pool apply through the image's worker: $out"; P logs "$NAME-w" | tail -5; }
        t=$(date +%s%N)
        PT=30 P stop -t 10 "$NAME-w" >/dev/null
        ms=$(( ($(date +%s%N) - t) / 1000000 ))
        [ $ms -lt 5000 ] && ok "worker container stopped in $ms ms" || fail "worker stop took $ms ms"
        PT=30 P rm -f -v "$NAME-w" >/dev/null
    else
        fail "podman run of the image's mpb-worker"
    fi
else
    echo "SKIPPED PART: the image has no /usr/bin/mpb-worker or /usr/lib/mpb/libmpbdemo.so"
fi
if [ -n "$WORKER" ] && [ -x "$WORKER" ] && [ -f "$DEMOLIB" ]; then
    "$WORKER" --lib "$DEMOLIB" --fn square,fail,sleep_ms >"$WORK/hostworker.log" 2>&1 &
    HOSTWORKER_PID=$!
    out=$(timeout 60 "$MPB" pool map square '[1,2,3,4]' --timeout 30 2>&1)
    [ "$(echo "$out" | tr -d ' \n')" = "[1,4,9,16]" ] &&
        ok "mpb-worker on the host served pool map: $out" ||
        { fail "pool map through the host's worker: $out"; tail -5 "$WORK/hostworker.log"; }
    kill "$HOSTWORKER_PID" 2>/dev/null
    wait "$HOSTWORKER_PID" 2>/dev/null
    HOSTWORKER_PID=
else
    echo "SKIPPED PART: no mpb-worker in this build (${WORKER:-not given}) or no demo library (${DEMOLIB:-not given})"
fi

step "stop"
out=$("$MPB" get dict/container greeting 2>&1)
[ "$out" = '"hello from the host"' ] && ok "still serving after all that" || fail "mpb get: $out"
t=$(date +%s%N)
PT=30 P stop -t 10 "$NAME" >/dev/null
ms=$(( ($(date +%s%N) - t) / 1000000 ))
[ $ms -lt 5000 ] && ok "podman stop took $ms ms (PID 1 stops on SIGTERM)" || fail "podman stop took $ms ms"
code=$(P inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$code" = 0 ] && ok "exit status 0" || fail "exit status $code"
logs=$(P logs "$NAME" 2>&1)
echo "$logs" | grep -q "shutting down" && ok "the log says it shut down" || fail "no shutdown line in: $logs"
echo "$logs" | grep -q "$KEY" && fail "the authkey is in the container's log" || ok "the authkey is not in the log"
echo "$logs" | grep -qv '^ts=[^ ]* level=[a-z]* msg="' && fail "a log line is not logfmt: $logs"

step "done"
if [ $FAILS -gt 0 ]; then
    echo "$FAILS check(s) failed"
    exit 1
fi
echo "container test passed in $(( $(date +%s) - T0 )) s"
