#!/bin/bash
# compose_test.sh - deploy/compose.yaml run for real with podman-compose: the broker, two
# workers and the demo client up, from the image container_test.sh built and kept
# (localhost/mpbroker:latest, the name compose.yaml gives it; nothing is built here), then:
#   - the demo client ran Python's Manager example against the broker and exited 0;
#   - both workers registered, reaching the broker by its service name (the dnsname plugin);
#   - from the host, through the published ports: mpb pool apply square 7 -> 49 on a worker,
#     /metrics and the broker's health check;
#   - `podman-compose down -v` leaves no container and no volume of the project (the image
#     declares no VOLUME: no anonymous volume per container); its network podman-compose 1.0.3
#     leaves behind, so it is removed here (as deploy/README.md tells users to).
# compose.yaml and a fresh authkey are copied to --work (the source tree is never written);
# the host ports are free ones (MPBROKER_PORT, MPBROKER_HTTP_PORT) and the project name is
# unique, so that it runs beside anything else on the machine.
#
# Podman as podman_env.sh sets it up (the store container_test.sh used). Without podman,
# podman-compose or the image it says SKIP loudly and exits 77, or, with CI=true or
# MPB_REQUIRE_CONTAINER=1, fails. Each step is bounded by what is left of --budget.
#
# usage: compose_test.sh --source DIR --work DIR --mpb PATH [--budget SECONDS]
set -uo pipefail

SRC= WORK= MPB= BUDGET=200
while [ $# -gt 0 ]; do
    case "$1" in
    --source) SRC=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --mpb) MPB=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    *) echo "usage: $0 --source DIR --work DIR --mpb PATH [--budget S]" >&2; exit 2 ;;
    esac
done
[ -n "$SRC" ] && [ -n "$WORK" ] && [ -n "$MPB" ] || { echo "missing arguments" >&2; exit 2; }

TEST_NAME="compose test"
SKIP_PKGS=" podman-compose golang-github-containernetworking-plugin-dnsname"
T0=$(date +%s)
# shellcheck source=podman_env.sh
. "$(dirname "$0")/podman_env.sh"
PY=/usr/bin/python3
[ -x $PY ] || skip "/usr/bin/python3 is needed for free ports and HTTP checks"
command -v podman-compose >/dev/null || skip "podman-compose is not installed"
[ -x /usr/lib/cni/dnsname ] ||
    skip "the CNI plugin dnsname is not installed (golang-github-containernetworking-plugin-dnsname): the services could not find each other by name"
podman_setup
IMAGE=localhost/mpbroker:latest
P image exists "$IMAGE" || skip "no image $IMAGE in $PODDIR: container_test.sh builds it (ctest -R ops_container)"

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
chmod 0700 "$WORK"
PROJ=mpbcompose$$
D=$WORK/deploy
rm -rf "$D"
mkdir -p "$D"
cp "$SRC/deploy/compose.yaml" "$D/compose.yaml"
KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
printf '%s\n' "$KEY" >"$D/authkey"
chmod 0644 "$D/authkey" # read by uid 10001 inside; $WORK itself is 0700
read -r PORT HPORT < <(free_ports)
export MPBROKER_PORT=$PORT MPBROKER_HTTP_PORT=$HPORT
# The host's clients read a copy only root can read: a key file others can read is warned about.
cp "$D/authkey" "$WORK/hostkey"
chmod 0600 "$WORK/hostkey"
export MPB_ENDPOINT=tcp://127.0.0.1:$PORT MPB_AUTHKEY_FILE=$WORK/hostkey
unset MPB_AUTHKEY

PC() { # podman-compose on our copy, bounded; its chatter goes to the log
    timeout "$(step_timeout)" podman-compose -p "$PROJ" -f "$D/compose.yaml" "$@" \
        >>"$WORK/compose.log" 2>&1
}
project_containers() {
    PT=20 P ps -a --filter "label=io.podman.compose.project=$PROJ" --format '{{.Names}}' 2>/dev/null
}
cleanup() {
    CLEANUP=1
    PT=60 PC down -v -t 2
    for c in $(project_containers); do PT=20 P rm -f -v -t 1 "$c" >/dev/null 2>&1; done
    PT=20 P network rm -f "${PROJ}_default" >/dev/null 2>&1
    PT=20 P volume rm -f "${PROJ}_mpb-data" >/dev/null 2>&1
    rm -rf "$D"
}
trap cleanup EXIT
: >"$WORK/compose.log"

step "podman-compose up -d ($PROJ, 127.0.0.1:$PORT and :$HPORT)"
t=$(date +%s)
if ! PT=120 PC up -d; then
    tail -30 "$WORK/compose.log"
    fail "podman-compose up (log: $WORK/compose.log)"
    exit 1
fi
ok "up in $(( $(date +%s) - t )) s: $(project_containers | tr '\n' ' ')"

step "the demo client"
demo=${PROJ}_demo_1
code=$(PT=90 P wait "$demo" 2>/dev/null)
out=$(P logs "$demo" 2>&1)
case "$code:$out" in
0:*"squares = {0: 0, 1: 1, 2: 4"*"dict/squares"*) ok "the demo ran the Manager example and exited 0" ;;
*) fail "the demo exited '$code': $out" ;;
esac

step "the workers, by the broker's service name"
workers=
for _ in $(seq 1 100); do
    workers=$($PY - "$HPORT" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5) as r:
        for l in r.read().decode().splitlines():
            if l.startswith("mpb_pool_workers "):
                print(l.split()[1])
except Exception as e:
    print(0)
EOF
)
    [ "$workers" = 2 ] && break
    sleep 0.2
done
[ "$workers" = 2 ] && ok "2 workers registered (mpb_pool_workers from the host's /metrics)" ||
    { fail "workers registered: '$workers'"; for w in 1 2; do P logs "${PROJ}_worker_$w" 2>&1 | tail -3; done; }
out=$(timeout 60 "$MPB" pool apply square 7 --timeout 30 2>&1)
[ "$out" = 49 ] && ok "mpb pool apply square 7 from the host: 49" || fail "pool apply: $out"
out=$(timeout 30 "$MPB" get dict/squares 2>&1)
case "$out" in *"[4,16]"*"[19,361]"*|*"[19,361]"*"[4,16]"*) ok "the demo's dict/squares, from the host: 20 pairs" ;;
*) fail "mpb get dict/squares: $out" ;; esac
PT=30 P healthcheck run "${PROJ}_broker_1" >/dev/null 2>&1 && ok "the broker's health check passes" ||
    fail "podman healthcheck run ${PROJ}_broker_1: $(PT=30 P healthcheck run "${PROJ}_broker_1" 2>&1)"

step "podman-compose down -v"
vols=$(for c in $(project_containers); do
    P inspect --format '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' "$c"; done)
[ "$(echo $vols)" = "${PROJ}_mpb-data" ] && ok "one volume in all, the broker's named one: $vols" ||
    fail "volumes of the project's containers: '$vols' (want only ${PROJ}_mpb-data)"
t=$(date +%s)
PT=90 PC down -v -t 5 || fail "podman-compose down -v (log: $WORK/compose.log)"
ok "down in $(( $(date +%s) - t )) s"
left_c=$(project_containers | tr '\n' ' ')
[ -z "$left_c" ] && ok "no container left" || fail "containers left: $left_c"
left_v=
for v in $vols; do P volume exists "$v" && left_v="$left_v $v"; done
[ -z "$left_v" ] && ok "no volume left" || fail "volumes left:$left_v"
if P network exists "${PROJ}_default"; then # podman-compose 1.0.3 does not remove it
    PT=20 P network rm -f "${PROJ}_default" >/dev/null && ok "network ${PROJ}_default removed" ||
        fail "podman network rm ${PROJ}_default"
else
    ok "no network left"
fi

step "done"
if [ $FAILS -gt 0 ]; then
    echo "$FAILS check(s) failed (podman-compose's log: $WORK/compose.log)"
    exit 1
fi
echo "compose test passed in $(( $(date +%s) - T0 )) s"
