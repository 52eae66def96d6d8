#!/bin/sh
# pool-vs-python.sh - tiny-task throughput of the remote Pool (2 mpb-worker processes, square)
# beside Python's local multiprocessing.Pool(2) on the same machine, in one run: map over N
# integers with chunksize 1, and over 10 N with chunksize 100 (so that both run long enough to
# time). Each side warms up with a small map first. The workers have concurrency 1 and prefetch
# $PREFETCH (default 4): how many tasks beyond the one running a worker holds. Python's Pool
# feeds its workers' pipe with every task at once, an unbounded prefetch.
# Usage: [PREFETCH=N] bench/pool-vs-python.sh [N] [BUILD]
set -eu
N=${1:-20000}
B=${2:-build}
cd "$(dirname "$0")/.."
[ -x "$B/client/cli/mpb" ] || { echo "build first: cmake -S . -B $B && cmake --build $B" >&2; exit 1; }
T=$(mktemp -d)
PIDS=""
WPIDS=""
# workers first (they unregister from the broker and exit), then the broker; wait for all
cleanup() {
    for p in $WPIDS $PIDS; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT INT TERM
"$B/broker/mpbrokerd" --listen tcp://127.0.0.1:0 --endpoint-file "$T/ep" --data-dir "$T/data" \
    >/dev/null 2>"$T/broker.log" &
PIDS="$PIDS $!"
i=0
while [ ! -s "$T/ep" ] || [ ! -s "$T/data/authkey" ]; do
    i=$((i + 1)); [ $i -lt 200 ] || { cat "$T/broker.log"; exit 1; }; sleep 0.05
done
export MPB_ENDPOINT="$(cat "$T/ep")" MPB_AUTHKEY_FILE="$T/data/authkey"
for w in 1 2; do
    "$B/client/cli/mpb-worker" --lib "$B/examples/pool/libmpbdemo.so" --fn square \
        --concurrency 1 --prefetch ${PREFETCH:-4} >/dev/null 2>>"$T/workers.log" &
    WPIDS="$WPIDS $!"
done
sleep 0.5
PB=${MPB_POOL_BENCH:-$B/bench/mpb-pool-bench}
[ -x "$PB" ] || { echo "no $PB: build the bench target first" >&2; exit 1; }
for cs in 1 100; do
    n=$N; [ "$cs" -eq 1 ] || n=$((N * 10))
    printf 'mpbroker Pool (2 workers)       chunksize %3d: %10s tasks/s\n' "$cs" "$("$PB" "$n" "$cs")"
done
/usr/bin/python3 - "$N" <<'PY'
import sys, time
from multiprocessing import Pool
def square(x):
    return x * x
if __name__ == "__main__":
    n = int(sys.argv[1])
    with Pool(2) as p:
        p.map(square, range(100))
        for cs in (1, 100):
            m = n if cs == 1 else n * 10
            t0 = time.time()
            r = p.map(square, range(m), chunksize=cs)
            t1 = time.time()
            assert r == [i * i for i in range(m)]
            print(f"Python multiprocessing.Pool(2)  chunksize {cs:>3}: {m / (t1 - t0):>10.0f} tasks/s")
PY
