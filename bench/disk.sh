#!/usr/bin/env bash
# Disk use after many overwrites, and the restart after a kill -9 at that point (issue #12,
# acceptance 2). A master (4 shards, --sync=always, the default --log-retention unless
# RETENTION is set) takes N overwrites of K keys of D-byte values (kvctl bench, batches of 16
# keys, 50 clients); then the data directory's size is compared with
#   live data (keys x (16-byte key + value)) + the retention + 64 MiB,
# (allocated bytes, as `du` counts them: fjall sizes its journal files sparsely), the node is killed with SIGKILL, and the time from the restart to its start-up line ("kvd
# started", after the log is read and replayed) is printed.
#
# Usage: bench/disk.sh            N=1000000 K=5000 D=200 RETENTION=256MiB
# It builds kvd and kvctl in release (bench/lib.sh), runs on 127.0.0.1 in a mktemp -d directory
# and stops only the processes it started. About a minute after the build.
set -euo pipefail
N=${N:-1000000}
K=${K:-5000}
D=${D:-200}
RETENTION=${RETENTION:-256MiB}
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
echo "disk: building kvd and kvctl (release)"
build
RET_BYTES=$(numfmt --from=iec-i "${RETENTION%B}")

start_node m --shard=4 --sync=always --log-retention="$RETENTION"
echo "disk: $N overwrites of $K keys of $D bytes, --log-retention=$RETENTION"
# The largest size seen during the writes, sampled every 0.2 s.
( peak=0; while kill -0 "$PID_m" 2>/dev/null; do
    now=$(du -sB1 "$WORK/m" 2>/dev/null | cut -f1); [ "${now:-0}" -gt "$peak" ] && peak=$now
    echo "$peak" > "$WORK/peak"; sleep 0.2
  done ) &
SAMPLER=$!
started=$(date +%s.%N)
timeout 600 "$KVCTL" -e "127.0.0.1:$PORT_m" -o json --timeout 10 bench --clients 50 --batch 16 \
  --value-size "$D" --keyspace "$K" --requests $((N / 16)) --ratio 1:0 >"$WORK/bench.json"
took=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $started }")
keys=$(jq '.keys' "$WORK/bench.json")
echo "disk: $keys keys written in ${took}s ($(jq '.keys_per_sec | floor' "$WORK/bench.json")/s, errors $(jq '.errors.total' "$WORK/bench.json"))"
# Let upkeep trim what fell out of retention (it runs every 200 ms).
for _ in $(seq 50); do
  [ "$(du -sB1 "$WORK/m/log" | cut -f1)" -le "$RET_BYTES" ] && break
  sleep 0.2
done
live=$((K * (16 + D)))
total=$(du -sB1 "$WORK/m" | cut -f1)
logb=$(du -sB1 "$WORK/m/log" | cut -f1)
shards=$((total - logb))
bound=$((live + RET_BYTES + 64 * 1024 * 1024))
mib() { awk "BEGIN { printf \"%.1f MiB\", $1 / 1048576 }"; }
echo "disk: data directory $(mib "$total") (log $(mib "$logb"), shards and the rest $(mib "$shards")); live data $(mib "$live")"
if [ "$total" -le "$bound" ]; then verdict=pass; else verdict=FAIL; fi
echo "disk: bound live + retention + 64 MiB = $(mib "$bound"): $verdict"
kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true
echo "disk: the largest size seen during the writes: $(mib "$(cat "$WORK/peak" 2>/dev/null || echo 0)")"

du -aB1 "$WORK/m" | sort -n | tail -6 | sed "s|$WORK/||; s/^/  du: /"
kill -KILL "$PID_m"
wait "$PID_m" 2>/dev/null || true
t0=$(date +%s.%N)
"$KVD" --port=0 --host=127.0.0.1 --data-dir="$WORK/m" --shard=4 --sync=always \
  --log-retention="$RETENTION" >"$WORK/m2.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do grep -q "kvd started" "$WORK/m2.log" && break; sleep 0.01; done
t1=$(date +%s.%N)
restart=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")
grep -q "kvd started" "$WORK/m2.log" || { echo "disk: the restart did not finish"; tail "$WORK/m2.log"; exit 1; }
grep -E "opened the log|replayed the log" "$WORK/m2.log" | sed 's/^/  /' | cut -c1-200
if awk "BEGIN { exit !($restart <= 2.0) }"; then rv=pass; else rv=FAIL; fi
echo "disk: restart after kill -9 took ${restart}s (bound 2 s): $rv"
