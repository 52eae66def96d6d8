#!/bin/sh
# demo.sh - from a fresh Debian 12 machine to a running broker: installs dependencies, builds,
# starts mpbrokerd on tcp://127.0.0.1:5555 (state and authkey in ./demo), then shows processes
# sharing a dict and a list, and a Pool map over two workers. The broker keeps running.
# MPB_ENDPOINT and MPB_DEMO_HTTP (default 127.0.0.1:8080; /healthz /readyz /metrics) choose
# other addresses, for a machine where those ports are taken.
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
B=build
mkdir -p demo
EP=${MPB_ENDPOINT:-tcp://127.0.0.1:5555}
HTTP=${MPB_DEMO_HTTP:-127.0.0.1:8080}
if [ -f demo/broker.pid ] && kill -0 "$(cat demo/broker.pid)" 2>/dev/null; then
    echo "demo: a broker is already running (pid $(cat demo/broker.pid))"
else
    $B/broker/mpbrokerd --listen "$EP" --data-dir demo/data --http "$HTTP" \
        >/dev/null 2>demo/broker.log &
    echo $! >demo/broker.pid
    i=0
    while [ ! -f demo/data/authkey ] || ! grep -q ready demo/broker.log; do
        i=$((i + 1))
        [ $i -lt 100 ] || { cat demo/broker.log; exit 1; }
        sleep 0.1
    done
fi
export MPB_ENDPOINT="$EP" MPB_AUTHKEY_FILE="$PWD/demo/data/authkey"
echo "== a broker runs at $EP (pid $(cat demo/broker.pid), log demo/broker.log)"
echo "== 4 processes fill a shared dict and append their pids to a shared list"
$B/examples/manager/manager "$EP" 4
echo "== two workers serve the demo functions; a client maps square over them"
for n in 1 2; do
    $B/client/cli/mpb-worker --lib $B/examples/pool/libmpbdemo.so --fn square,fail,sleep_ms,add \
        --concurrency 2 --name demo-worker-$n >/dev/null 2>>demo/workers.log &
    echo $! >>demo/workers.pid
done
$B/client/cli/mpb pool map square '[0,1,2,3,4,5,6,7,8,9]'
$B/client/cli/mpb pool
kill $(cat demo/workers.pid) 2>/dev/null || true
rm -f demo/workers.pid
echo "== the objects, as an operator sees them"
$B/client/cli/mpb ls
cat <<MSG

The broker is still running. Try:
  export MPB_ENDPOINT=$EP MPB_AUTHKEY_FILE=$PWD/demo/data/authkey
  $B/client/cli/mpb get dict/squares
  $B/client/cli/mpb incr dict/counters hits
  curl -s http://$HTTP/metrics | head
Stop it with: kill \$(cat demo/broker.pid)
MSG
