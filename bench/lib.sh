# Sourced by the bench scripts: build, start kvd nodes on loopback ports the OS picks, in a
# temporary directory, and stop only the processes started here.
#
#   build                  release kvd + kvctl and the probes of bench/tools; sets KVD, KVCTL, EX
#   start_node NAME ARGS   starts kvd, sets PORT_<NAME> and PID_<NAME>
#   track PID              adds a process this script started (a peer server) to PIDS
#   stop_pid PID           stops one of them now (TERM, then KILL after 10 s)
#   wait_quiet             waits, bounded by QUIET_WAIT seconds, for the CPU to be idle
#   measure "PID [PID..]" OUT CMD..
#                          runs CMD (bounded by MAX_RUN seconds), stdout to OUT, stderr to
#                          OUT.err; sets M_SRV_CPU (CPU seconds of the first PID during the run)
#                          and M_OTHERS (% of the machine used by anything but the PIDs and CMD)
#
# On exit every PID in PIDS is sent TERM, and KILL if still alive 10 s later.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/kvd-bench.XXXXXX)
PIDS=()
QUIET_WAIT=${QUIET_WAIT:-30}   # most seconds to wait for an idle CPU before a measurement
QUIET_BUSY=${QUIET_BUSY:-15}   # "idle": machine-wide CPU busy below this percent
MAX_RUN=${MAX_RUN:-300}        # most seconds any measured command may run
HZ=$(getconf CLK_TCK)

# alive PID: the process exists and is not a zombie
alive() {
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

track() { PIDS+=("$1"); }

build() {
  (cd "$ROOT" && cargo build --release -q -p kvd -p kvctl && cargo build --release -q -p kvd-bench-tools)
  KVD=$ROOT/target/release/kvd
  KVCTL=$ROOT/target/release/kvctl
  EX=$ROOT/target/release
}

# start_node NAME ARGS... : starts kvd, waits for its start-up line, sets PORT_<NAME> and PID_<NAME>
start_node() {
  local name=$1; shift
  "$KVD" --port=0 --host=127.0.0.1 --data-dir="$WORK/$name" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  printf -v "PID_$name" '%s' "$!"
  for _ in $(seq 300); do grep -q "kvd started" "$WORK/$name.log" && break; sleep 0.1; done
  local port
  port=$(grep -o 'listen=[0-9.:]*' "$WORK/$name.log" | head -1 | cut -d: -f2)
  [ -n "$port" ] || { echo "kvd $name did not start:"; cat "$WORK/$name.log"; exit 1; }
  printf -v "PORT_$name" '%s' "$port"
}

# "task total" jiffies of the whole machine: task = user+nice+system (time charged to processes;
# softirq work such as loopback TCP is left out), total = every state up to steal
machine_jiffies() {
  local _cpu user nice system idle iowait irq softirq steal _rest
  read -r _cpu user nice system idle iowait irq softirq steal _rest < /proc/stat
  echo "$((user + nice + system)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

pid_jiffies() {  # utime+stime of live processes, all their threads (0 for those gone)
  local pid sum=0 j
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    j=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}') || j=0
    sum=$((sum + ${j:-0}))
  done
  echo "$sum"
}

wait_quiet() {
  local waited=0 t0 k0 t1 k1 busy
  while :; do
    read -r k0 t0 < <(machine_jiffies); sleep 1; read -r k1 t1 < <(machine_jiffies)
    busy=$(( t1 > t0 ? 100 * (k1 - k0) / (t1 - t0) : 0 ))
    waited=$((waited + 1))
    (( busy < QUIET_BUSY || waited >= QUIET_WAIT )) && break
  done
}

measure() {
  local srvs=$1 out=$2; shift 2
  local k0 t0 k1 t1 s0 s1 a0 a1 res rc client
  local -a all
  read -r -a all <<<"$srvs"
  read -r k0 t0 < <(machine_jiffies); s0=$(pid_jiffies "${all[0]:-}"); a0=$(pid_jiffies "${all[@]}")
  # The subshell waits for CMD, so its children's CPU (cutime + cstime) is CMD's CPU.
  res=$(me=$BASHPID
        if timeout -k 5 "$MAX_RUN" "$@" >"$out" 2>"$out.err"; then r=0; else r=$?; fi
        echo "$r $(sed 's/^.*) //' "/proc/$me/stat" | awk '{print $14 + $15}')")
  read -r k1 t1 < <(machine_jiffies); s1=$(pid_jiffies "${all[0]:-}"); a1=$(pid_jiffies "${all[@]}")
  rc=${res% *}; client=${res#* }
  M_SRV_CPU=$(awk -v j=$((s1 - s0)) -v hz="$HZ" 'BEGIN {printf "%.2f", j / hz}')
  local others=$(( (k1 - k0) - (a1 - a0) - client ))
  (( others < 0 )) && others=0
  M_OTHERS=$(( t1 > t0 ? 100 * others / (t1 - t0) : 0 ))
  return "$rc"
}
