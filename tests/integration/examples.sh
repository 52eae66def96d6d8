#!/bin/sh
# examples.sh - the example programs against a real broker, with their exact output:
# manager (4 forked workers fill a dict and a list) and pipeline (10,000 increments with 256 in
# flight, from its own poll loop). Usage: examples.sh MPBROKERD MANAGER PIPELINE
set -eu
BROKERD=$1 MANAGER=$2 PIPELINE=$3
T=$(mktemp -d)
BP=""
cleanup() { [ -n "$BP" ] && kill "$BP" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT INT TERM
"$BROKERD" --listen tcp://127.0.0.1:0 --endpoint-file "$T/ep" --data-dir "$T/data" \
    --log-level warn 2>"$T/broker.log" &
BP=$!
i=0
while [ ! -s "$T/ep" ] || [ ! -s "$T/data/authkey" ]; do
    i=$((i + 1)); [ $i -lt 200 ] || { cat "$T/broker.log"; exit 1; }; sleep 0.05
done
export MPB_AUTHKEY_FILE="$T/data/authkey"
EP=$(cat "$T/ep")

out=$(timeout 60 "$MANAGER" "$EP" 4)
echo "$out"
want="squares = {0: 0, 1: 1, 2: 4, 3: 9, 4: 16, 5: 25, 6: 36, 7: 49, 8: 64, 9: 81, 10: 100, 11: 121, 12: 144, 13: 169, 14: 196, 15: 225, 16: 256, 17: 289, 18: 324, 19: 361}"
echo "$out" | grep -qxF "$want" || { echo "FAIL: manager's squares"; exit 1; }
pids=$(echo "$out" | sed -n 's/^pids = \[\(.*\)\]$/\1/p' | tr ',' '\n' | grep -c '[0-9]')
[ "$pids" -eq 4 ] || { echo "FAIL: manager printed $pids pids, not 4"; exit 1; }

out=$(timeout 60 "$PIPELINE" "$EP" 10000)
echo "$out"
[ "$out" = "10000 increments, counters[hits] now 10000" ] || { echo "FAIL: pipeline"; exit 1; }
out=$(timeout 60 "$PIPELINE" "$EP" 2500)
[ "$out" = "2500 increments, counters[hits] now 12500" ] || { echo "FAIL: pipeline again: $out"; exit 1; }
kill -0 "$BP" || { echo "FAIL: the broker died"; cat "$T/broker.log"; exit 1; }
echo "examples: ok"
