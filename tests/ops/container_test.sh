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
#   - the worker's container has no volume of its own (the image declares none), and a broker
#     started with `--http 0.0.0.0:9000` after the image name is healthy (the health check
#     reads the address the broker writes in /data/http.addr, not the image's MPB_HTTP);
# then removes the containers and the volume, and keeps the image as localhost/mpbroker:latest
# for compose_test.sh (the name compose.yaml gives it).
#
# Podman runs as podman_env.sh sets it up: a private configuration and a store kept per machine
# in $MPB_TEST_CACHE (default /var/cache/mpb-test), so the build stage's layers (its apt-get
# install) are reused from one run to the next; only a fresh machine builds cold. The base image
# is made by debootstrap once. Where no container runtime can be had it says SKIP loudly and
# exits 77 (ctest SKIP_RETURN_CODE), or, with CI=true or MPB_REQUIRE_CONTAINER=1, fails. Every
# step's timeout is cut to what is left of --budget (default 780 s), so the whole test ends
# within its ctest TIMEOUT (900 s), cleanup included.
#
# usage: container_test.sh --source DIR --work DIR --mpb PATH [--worker PATH --demo-lib PATH]
#                          [--budget SECONDS]
set -uo pipefail

SRC= WORK= MPB= WORKER= DEMOLIB= BUDGET=780
while [ $# -gt 0 ]; do
    case "$1" in
    --source) SRC=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --mpb) MPB=$2; shift 2 ;;
    --worker) WORKER=$2; shift 2 ;;
    --demo-lib) DEMOLIB=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    *) echo "usage: $0 --source DIR --work DIR --mpb PATH [--worker PATH --demo-lib PATH] [--budget S]" >&2
       exit 2 ;;
    esac
done
[ -n "$SRC" ] && [ -n "$WORK" ] && [ -n "$MPB" ] || { echo "missing arguments" >&2; exit 2; }

TEST_NAME="container test"
T0=$(date +%s)
# shellcheck source=podman_env.sh
. "$(dirname "$0")/podman_env.sh"
PY=/usr/bin/python3
[ -x $PY ] || skip "/usr/bin/python3 is needed for free ports and HTTP checks"
podman_setup
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
chmod 0700 "$WORK"

step "base image"
base_image
ok "base image $BASE"

# ---- names, ports, the key, and cleanup ---------------------------------------------------------
TAG=$$
NAME=mpb-ops-$TAG
IMAGE=localhost/mpbroker-test:$TAG
KEEP=localhost/mpbroker:latest # for compose_test.sh, as compose.yaml names it
BUILDCACHE=localhost/mpb-test/build-stage:latest
VOL=$NAME-data
HOSTWORKER_PID=
cleanup() {
    CLEANUP=1 # past the budget, each of these still gets its 20 s
    [ -n "$HOSTWORKER_PID" ] && kill "$HOSTWORKER_PID" 2>/dev/null && wait "$HOSTWORKER_PID" 2>/dev/null
    PT=20 P rm -f -v -t 2 "$NAME-w" "$NAME-h" >/dev/null 2>&1
    PT=20 P rm -f -v -t 2 "$NAME" >/dev/null 2>&1
    PT=20 P volume rm -f "$VOL" "$VOL-h" >/dev/null 2>&1
    PT=20 P rmi "$IMAGE" >/dev/null 2>&1 # the tag only, when $KEEP holds the layers
    rm -rf "$WORK/context" "$WORK/authkey" "$WORK/hostkey" "$WORK/wrongkey"
}
trap cleanup EXIT

read -r PORT HPORT < <(free_ports)
KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
printf '%s\n' "$KEY" >"$WORK/authkey"
chmod 0644 "$WORK/authkey" # read by uid 10001 inside; $WORK itself is 0700
printf 'wrong-%s\n' "$KEY" >"$WORK/wrongkey"
# The host's clients read a copy only root can read: a key file others can read is warned about.
cp "$WORK/authkey" "$WORK/hostkey"
chmod 0600 "$WORK/hostkey" "$WORK/wrongkey"
export MPB_ENDPOINT=tcp://127.0.0.1:$PORT MPB_AUTHKEY_FILE=$WORK/hostkey
unset MPB_AUTHKEY

http() { # http PATH [status] -> "STATUS\nBODY..." (with "status": STATUS only)
    $PY - "$HPORT" "$1" "${2:-}" <<'EOF'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=5) as r:
        print(r.status)
        if not sys.argv[3]:
            print(r.read().decode())
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
# One build at a time in the shared store: the prune below must not take a layer another
# build is making. The build stage is tagged too, so that prune keeps its layers (the apt-get
# install above all) for the next run; it drops only what no tag holds any more.
(
    flock -w "$(left)" 9 || exit 1
    PT=420 P build --pull=never --layers --format docker --build-arg "BASE=$BASE" \
        -f "$CTX/deploy/Containerfile" -t "$IMAGE" "$CTX" >"$WORK/build.log" 2>&1 || exit 2
    PT=120 P build --pull=never --layers --format docker --build-arg "BASE=$BASE" \
        --target build -f "$CTX/deploy/Containerfile" -t "$BUILDCACHE" "$CTX" \
        >"$WORK/build-stage.log" 2>&1 || exit 3
    PT=60 P image prune -f >/dev/null 2>&1
    exit 0
) 9>"$CACHE/.build.lock"
case $? in
0) ;;
1) fail "podman build: the build lock $CACHE/.build.lock was held past the budget"; exit 1 ;;
2) tail -40 "$WORK/build.log"; fail "podman build (log: $WORK/build.log)"; exit 1 ;;
*) tail -20 "$WORK/build-stage.log"; fail "tagging the build stage (log: $WORK/build-stage.log)"; exit 1 ;;
esac
# the line after the build stage's RUN apt-get says whether that layer was reused
if awk '/^\[1\/2\] STEP [0-9\/]*: RUN apt-get update/ { getline; print; exit }' "$WORK/build.log" |
    grep -q "Using cache"; then
    ok "the build stage's apt-get install came from the layer cache"
else
    echo "NOTE: the build stage was built cold (its apt-get install downloaded); later runs reuse it"
fi
ok "image built ($(P image inspect --format '{{.Size}}' "$IMAGE") bytes), $(( $(date +%s) - T0 )) s so far"
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
    [ "$(http /readyz status)" = 200 ] && { ready=1; break; }
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
[ "$(echo "$r" | sed -n 1p)" = 200 ] && ok "/healthz 200 from the host" || fail "/healthz: $r"
[ "$(http /no-such-path status)" = 404 ] && ok "unknown path 404" || fail "unknown path not 404"
a=$(P exec "$NAME" cat /data/http.addr)
[ "$a" = 0.0.0.0:8080 ] && ok "/data/http.addr says $a" || fail "/data/http.addr: '$a'"
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
        m=$(P inspect --format '{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}' "$NAME-w")
        [ "$m" = "bind:/run/secrets/mpb_authkey " ] &&
            ok "the worker's container has no volume (mounts: $m)" ||
            fail "the worker's container mounts: '$m' (an anonymous volume from the image?)"
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

step "a broker with --http after the image name is healthy"
if P run -d --name "$NAME-h" --read-only --cap-drop ALL --security-opt no-new-privileges \
    -v "$VOL-h:/data" "$IMAGE" --http 0.0.0.0:9000 >/dev/null; then
    hok=
    for _ in $(seq 1 50); do
        PT=30 P healthcheck run "$NAME-h" >/dev/null 2>&1 && { hok=1; break; }
        sleep 0.2
    done
    if [ -n "$hok" ]; then
        ok "healthy with --http 0.0.0.0:9000 (/data/http.addr: $(P exec "$NAME-h" cat /data/http.addr))"
    else
        fail "podman healthcheck run with --http 0.0.0.0:9000: $(PT=30 P healthcheck run "$NAME-h" 2>&1)"
        P logs "$NAME-h" | tail -5
    fi
    PT=30 P rm -f -t 2 "$NAME-h" >/dev/null
    PT=30 P volume rm -f "$VOL-h" >/dev/null
else
    fail "podman run $IMAGE --http 0.0.0.0:9000"
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
PT=30 P tag "$IMAGE" "$KEEP" && ok "the image is kept as $KEEP (for compose_test.sh)"
echo "container test passed in $(( $(date +%s) - T0 )) s"
