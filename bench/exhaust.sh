#!/usr/bin/env bash
# Connections that try to exhaust a node (issue #11, acceptance 5): one kvd master on 127.0.0.1
# with --auth-file, 1,000 authenticated connections that stay idle and 200 that send the header
# and half the body of a maximum-size frame, then stop; meanwhile 100 gets by an authenticated
# client. bench/tools/src/bin/exhaust.rs measures and prints the table, and PASS/FAIL against
# the bounds: RSS growth at most 64 MiB, get p99 at most 2x the baseline, every stalled and idle
# connection closed within its timeout + 1 s. Exits non-zero on FAIL.
#
# The attacker runs in a process of its own at niceness 19 (ATTACKER_NICE=0 to run it at the
# node's priority): it stands for a client on another machine, whose CPU is not the node's.
# The gets run on a thread and runtime of their own, apart from the attacker's tasks.
#
# Short timeouts so the run is short: FRAME_MS=2000 (--frame-timeout-ms), IDLE_SECS=5
# (--idle-timeout-secs). Builds in release into $CARGO_TARGET_DIR (default target/). About 15 s
# after the build, per round.
#
# Usage: [ROUNDS=3] bench/exhaust.sh [IDLE] [STALLED]     (default 1000 200)
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
# ROUNDS rounds (default 3) against the same node, one after the other. Every check must pass
# in every round, except the p99 ratio, which is judged by its median over the rounds: one
# round's p99 of 100 gets is its second-slowest get, and this machine's own hiccups move it
# (with no attack at all, 0 idle and 0 stalled, single rounds measured ratios of 0.72 to 1.75).
rounds=${ROUNDS:-3}
ratios=()
others_ok=1
for r in $(seq "$rounds"); do
  echo "== round $r of $rounds"
  # shellcheck disable=SC2154  # PID_a and PORT_a are set by start_node
  "$EX/exhaust" "$PID_a" "127.0.0.1:$PORT_a" "$WORK/token" "$FRAME_MS" "$IDLE_SECS" \
    "$idle" "$stalled" >"$WORK/round$r" || true
  cat "$WORK/round$r"
  ratio=$(awk '/^p99 ratio/ {print $3}' "$WORK/round$r")
  [ -n "$ratio" ] || { echo "round $r printed no p99 ratio"; exit 1; }
  ratios+=("$ratio")
  # Any other check that failed (the lines of the table end in PASS or FAIL).
  if grep -v '^p99 ratio' "$WORK/round$r" | grep -q ' FAIL$'; then others_ok=0; fi
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
ratio_ok=$(awk -v m="$median" 'BEGIN {print (m <= 2.0) ? 1 : 0}')
echo "== p99 ratios by round: ${ratios[*]}; median $median (bound 2.0): $([ "$ratio_ok" = 1 ] && echo PASS || echo FAIL)"
echo "== other checks in every round: $([ "$others_ok" = 1 ] && echo PASS || echo FAIL)"
if [ "$ratio_ok" = 1 ] && [ "$others_ok" = 1 ]; then echo PASS; else echo FAIL; exit 1; fi
