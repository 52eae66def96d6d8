#!/bin/sh
# run.sh - the two-host example on one machine: a broker on a TCP address, then the consumer
# and the producer started apart, as they would be on two hosts (give the broker's host name
# instead of 127.0.0.1 there, and the same key file on each host).
set -e
here=$(dirname "$0")
dir=$(mktemp -d)
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$dir"' EXIT
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/key"
python3 -m mpbroker broker --listen tcp://127.0.0.1:0 --authkey-file "$dir/key" \
    --endpoint-file "$dir/endpoint" --data-dir "$dir/data" --log-level warn &
broker=$!
while [ ! -s "$dir/endpoint" ]; do sleep 0.05; done
endpoint=$(cat "$dir/endpoint")
export MPB_AUTHKEY_FILE="$dir/key"
python3 "$here/consumer.py" "$endpoint" > "$dir/consumer.out" &
consumer=$!
python3 "$here/producer.py" "$endpoint" 100
wait $consumer
cat "$dir/consumer.out"
