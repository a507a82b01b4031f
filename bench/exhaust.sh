#!/usr/bin/env bash
# Connections that try to exhaust a node (issue #11, acceptance 5): one kvd master on 127.0.0.1
# with --auth-file, 1,000 authenticated connections that stay idle and 200 that send the header
# and half the body of a maximum-size frame, then stop; meanwhile 100 gets by an authenticated
# client. bench/tools/src/bin/exhaust.rs measures and prints the table, and PASS/FAIL against
# the bounds: RSS growth at most 64 MiB, get p99 at most 2x the baseline, every stalled and idle
# connection closed within its timeout + 1 s. Exits non-zero on FAIL.
#
# Short timeouts so the run is short: FRAME_MS=2000 (--frame-timeout-ms), IDLE_SECS=5
# (--idle-timeout-secs). Builds in release into $CARGO_TARGET_DIR (default target/). About 15 s
# after the build.
#
# Usage: bench/exhaust.sh [IDLE] [STALLED]     (default 1000 200)
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
idle=${1:-1000}; stalled=${2:-200}
FRAME_MS=${FRAME_MS:-2000}
IDLE_SECS=${IDLE_SECS:-5}

# 1,200 connections on each side, plus the node's own files: raise the descriptor limit for
# kvd and the tool (both started from this shell).
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) >= idle + stalled + 256 )) || { echo "ulimit -n is $(ulimit -n): too low"; exit 1; }

# Only kvd and the probes are needed; honours CARGO_TARGET_DIR.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q -p kvd -p kvd-bench-tools)
KVD=$TARGET/release/kvd
EX=$TARGET/release

"$KVD" token new --role admin --name bench --auth-file "$WORK/tokens" >"$WORK/token" 2>/dev/null
chmod 600 "$WORK/token"

start_node a --auth-file="$WORK/tokens" --frame-timeout-ms="$FRAME_MS" \
  --idle-timeout-secs="$IDLE_SECS" --max-connections-per-ip=2000 --max-connections=4000
# shellcheck disable=SC2154  # PID_a and PORT_a are set by start_node
"$EX/exhaust" "$PID_a" "127.0.0.1:$PORT_a" "$WORK/token" "$FRAME_MS" "$IDLE_SECS" "$idle" "$stalled"
