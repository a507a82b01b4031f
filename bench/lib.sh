# Sourced by the bench scripts: build, start kvd nodes on loopback ports the OS picks, in a
# temporary directory, and stop only the processes started here.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/kvd-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

build() {
  (cd "$ROOT" && cargo build --release -q -p kvd -p kvctl && cargo build --release -q -p e2e --examples)
  KVD=$ROOT/target/release/kvd
  EX=$ROOT/target/release/examples
}

# start_node NAME ARGS... : starts kvd, waits for its start-up line, sets PORT_<NAME>
start_node() {
  local name=$1; shift
  "$KVD" --port=0 --host=127.0.0.1 --data-dir="$WORK/$name" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 300); do grep -q "kvd started" "$WORK/$name.log" && break; sleep 0.1; done
  local port
  port=$(grep -o 'listen=[0-9.:]*' "$WORK/$name.log" | head -1 | cut -d: -f2)
  [ -n "$port" ] || { echo "kvd $name did not start:"; cat "$WORK/$name.log"; exit 1; }
  printf -v "PORT_$name" '%s' "$port"
}
