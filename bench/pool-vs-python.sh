#!/bin/sh
# pool-vs-python.sh - tiny-task throughput of the remote Pool (2 mpb-worker processes over
# TCP, square, default settings) beside Python's local multiprocessing.Pool(2) on the same
# machine, in one run: apply_async with 1 caller and with 50 callers, 16 in flight each
# (mpb-bench -t pool -c C -P 16; Python: one process keeping C x 16 apply_async in flight),
# map over N integers with chunksize 1, and over 10 N with chunksize 100 (so that both run long
# enough to time). Each side warms up first. The workers run with mpb-worker's defaults
# (concurrency 1, prefetch 64) unless $PREFETCH is set. Python's Pool feeds its workers' pipe
# with every task at once, an unbounded prefetch. With REPEAT=R both sides run R times in turns
# and the last lines give each figure's median and the ratios of the medians (one run of a few
# seconds moves by 10-20 % on a small shared machine).
# The broker, workers and callers speak over mpb:// (TCP without ZeroMQ, encrypted), the
# endpoint for programs on other hosts; TRANSPORT=tcp measures tcp:// (ZeroMQ, CURVE) instead.
# Usage: [PREFETCH=N] [REPEAT=R] [TRANSPORT=mpb|tcp] bench/pool-vs-python.sh [N] [BUILD]
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
TRANSPORT=${TRANSPORT:-mpb}
case $TRANSPORT in mpb|tcp) ;; *) echo "TRANSPORT is mpb or tcp, not $TRANSPORT" >&2; exit 2;; esac
echo "transport: $TRANSPORT://"
"$B/broker/mpbrokerd" --listen "$TRANSPORT://127.0.0.1:0" --endpoint-file "$T/ep" --data-dir "$T/data" \
    >/dev/null 2>"$T/broker.log" &
PIDS="$PIDS $!"
i=0
while [ ! -s "$T/ep" ] || [ ! -s "$T/data/authkey" ]; do
    i=$((i + 1)); [ $i -lt 200 ] || { cat "$T/broker.log"; exit 1; }; sleep 0.05
done
export MPB_ENDPOINT="$(cat "$T/ep")" MPB_AUTHKEY_FILE="$T/data/authkey"
for w in 1 2; do
    "$B/client/cli/mpb-worker" --lib "$B/examples/pool/libmpbdemo.so" --fn square \
        ${PREFETCH:+--prefetch "$PREFETCH"} >/dev/null 2>>"$T/workers.log" &
    WPIDS="$WPIDS $!"
done
sleep 0.5
PB=${MPB_POOL_BENCH:-$B/bench/mpb-pool-bench}
[ -x "$PB" ] || { echo "no $PB: build the bench target first" >&2; exit 1; }
MB=${MPB_BENCH:-$B/bench/mpb-bench}
R=${REPEAT:-1}
mpb_side() {
    for c in 1 50; do
        r=$("$MB" -t pool -c "$c" -P 16 -n "$N" --warmup 0.5 --csv -q | awk -F'"' '/pool/ {print $4}')
        printf 'mpbroker Pool (2 workers)  apply_async c=%-2d P=16: %10.0f tasks/s\n' "$c" "$r"
    done
    for cs in 1 100; do
        n=$N; [ "$cs" -eq 1 ] || n=$((N * 10))
        printf 'mpbroker Pool (2 workers)       map chunksize %3d: %10s tasks/s\n' "$cs" "$("$PB" "$n" "$cs")"
    done
}
py_side() {
/usr/bin/python3 - "$N" <<'PY'
import sys, time
from collections import deque
from multiprocessing import Pool
def square(x):
    return x * x
if __name__ == "__main__":
    n = int(sys.argv[1])
    with Pool(2) as p:
        p.map(square, range(100))
        for c in (1, 50):
            # c callers x 16 in flight, as mpb-bench -c C -P 16: a window of c * 16
            win, done, sent = c * 16, 0, 0
            pend = deque()
            t0 = time.time()
            while done < n:
                while sent < n and len(pend) < win:
                    pend.append(p.apply_async(square, (sent,)))
                    sent += 1
                pend.popleft().get()
                done += 1
            t1 = time.time()
            print(f"Python multiprocessing.Pool(2) apply_async c={c:<2} P=16: {n / (t1 - t0):>10.0f} tasks/s")
        for cs in (1, 100):
            m = n if cs == 1 else n * 10
            t0 = time.time()
            r = p.map(square, range(m), chunksize=cs)
            t1 = time.time()
            assert r == [i * i for i in range(m)]
            print(f"Python multiprocessing.Pool(2)      map chunksize {cs:>3}: {m / (t1 - t0):>10.0f} tasks/s")
PY
}
for i in $(seq "$R"); do
    [ "$R" -eq 1 ] || echo "-- run $i of $R"
    mpb_side | tee -a "$T/runs"
    py_side | tee -a "$T/runs"
done
[ "$R" -eq 1 ] && exit 0
echo "-- medians of $R runs each, in turns"
/usr/bin/python3 - "$T/runs" <<'PY'
import re, statistics, sys
vals = {}
for line in open(sys.argv[1]):
    m = re.match(r'(mpbroker|Python).*?(apply_async c=\d+|map chunksize +\d+).*?:\s*([\d.]+) tasks/s',
                 line)
    if m:
        vals.setdefault((m.group(1), ' '.join(m.group(2).split())), []).append(float(m.group(3)))
for (who, what), v in sorted(vals.items()):
    print('%-8s %-20s median %9.0f tasks/s  (%s)' % (who, what, statistics.median(v),
                                                   ' '.join('%.0f' % x for x in v)))
for what in sorted({w for _, w in vals}):
    a, b = vals.get(('mpbroker', what)), vals.get(('Python', what))
    if a and b:
        print('mpbroker / Python  %-20s %.2fx' % (what, statistics.median(a) / statistics.median(b)))
PY
