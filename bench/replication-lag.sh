#!/usr/bin/env bash
# Replication lag while the master takes its maximum durable write rate, and the same master's
# rate without the replica, in one run. Usage: bench/replication-lag.sh [SECONDS]
source "$(dirname "$0")/lib.sh"
secs=${1:-10}
build
start_node m --shard=2
start_node r --shard=2 --replica=true --master="http://127.0.0.1:$PORT_m"
for _ in $(seq 100); do grep -q "master link up" "$WORK/r.log" && break; sleep 0.1; done
echo "== with one replica"
"$EX/replag" "http://127.0.0.1:$PORT_m" "http://127.0.0.1:$PORT_r" "$secs"
kill -TERM "${PIDS[1]}"; wait "${PIDS[1]}" || true
echo "== same master, replica stopped"
"$EX/loadgen" "http://127.0.0.1:$PORT_m" put 50 "$secs"
