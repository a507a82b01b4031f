#!/usr/bin/env bash
# kvd against Redis (and etcd) on this machine, the same workloads in one run, then a table.
#
#   workload (50 clients, 100-byte values, 100k keys)   kvd                           peer
#   durable put                          --sync=always, kvctl bench             Redis appendonly yes + appendfsync always
#   put, OS buffers                      --sync=none                            Redis appendfsync everysec
#   get (every key written first)        kvctl bench --ratio 0:1                Redis GET
#   pipelined put, 16 in flight          kvctl bench --pipeline 16              redis-benchmark -P 16 (always)
#   batched put, 16 keys per call        kvctl bench --batch 16 (keys/s)        redis-benchmark -P 16 (always)
#   durable put vs etcd                  the durable put above                  etcdctl check perf (see below)
#   one replica attached                 durable put on one master without, then with a replica
#                                        (the drop), replica lag p99 (bench/tools/src/bin/replag.rs),
#                                        and gets served by the replica
#
# Each row also gives the p99 latency of both, and the server CPU seconds per 100k operations
# (keys for batches), read from /proc/<pid>/stat before and after each run: client and server
# share the cores, so throughput alone hides what the server costs. "noise" is the share of the
# machine used during the run by anything but that server and its client: above ~10%, rerun.
#
# etcd: Debian ships no etcd benchmark tool (etcd's tools/benchmark is not packaged), and
# etcdctl alone (a process per put) cannot load it. The only load etcd ships is
# `etcdctl check perf`: 60 s, rate-limited, 256-byte keys, 1 KiB values, and --load=xl runs
# 1000 clients in the same 2 cores. So its figure is etcd under etcd's own workload, not the
# one above, and the ratio is marked "(approx.)". ETCD=0 skips it.
#
# What it installs (apt-get, root or sudo): redis-server redis-tools fio jq, and, optionally,
# etcd-server etcd-client. On a host with systemd, Debian starts the packaged redis/etcd services
# on their default ports; they are left alone (idle), and this script's servers use other ports.
#
# It builds kvd and kvctl in release (bench/lib.sh), starts every server on 127.0.0.1 in a
# mktemp -d directory and stops only the processes it started (by PID, on exit). Every load is
# bounded in count and time. About 5 minutes on a 2-core machine after the build (ETCD=0: 4).
#
# Usage: bench/compare.sh
#   SECS=5          length of each kvctl bench run
#   REDIS_N=200000  requests per unpipelined redis-benchmark run (-P 16: 5x as many)
#   ETCD=1          measure etcd with `etcdctl check perf` (ETCD_LOAD=xl; l, m or s are lighter)
#   QUIET_WAIT=30   most seconds to wait for an idle CPU before each run
#   NOISE_MAX=10    a run during which other processes used more than this % of the machine
#                   is run once more (the table shows the second run and its noise)
set -euo pipefail

SECS=${SECS:-5}
REDIS_N=${REDIS_N:-200000}
ETCD=${ETCD:-1}
ETCD_LOAD=${ETCD_LOAD:-xl}
C=50       # clients
D=100      # value bytes
R=100000   # keys

# --- install ---------------------------------------------------------------------------------
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
APT_UPDATED=0
apt_install() {  # apt_install PKG... ; runs `apt-get update` once if a package is not known
  local env=(env DEBIAN_FRONTEND=noninteractive)
  if ! $SUDO "${env[@]}" apt-get install -y -qq "$@" >/dev/null 2>&1; then
    if [ "$APT_UPDATED" = 0 ]; then
      APT_UPDATED=1
      $SUDO apt-get update -qq >/dev/null 2>&1 || true
    fi
    $SUDO "${env[@]}" apt-get install -y -qq "$@" >/dev/null 2>&1
  fi
}
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v fio >/dev/null || need+=(fio)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
  echo "compare: installing ${need[*]}"
  apt_install "${need[@]}" || { echo "compare: cannot install ${need[*]} (apt-get)"; exit 1; }
fi
ETCD_NOTE=""
if [ "$ETCD" = 1 ]; then
  if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    echo "compare: installing etcd-server etcd-client"
    apt_install etcd-server etcd-client || true
  fi
  command -v etcd >/dev/null && command -v etcdctl >/dev/null \
    || ETCD_NOTE="not measured: etcd-server/etcd-client could not be installed"
else
  ETCD_NOTE="not measured: ETCD=0"
fi

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
echo "compare: building kvd and kvctl (release)"
build

free_port() {  # a loopback port nothing listens on
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
per100k() {  # per100k CPU_SECONDS OPS
  if [ "${2:-0}" -gt 0 ] 2>/dev/null; then calc "%.2f" "$1 / $2 * 100000"; else echo "-"; fi
}

# --- the machine ------------------------------------------------------------------------------
fsync_line() {
  local out="$WORK/fio.json"
  if timeout 60 fio --name=fsync --directory="$WORK" --ioengine=sync --rw=write --bs=4k \
       --size=16m --fsync=1 --runtime=5 --output-format=json --output="$out" >/dev/null 2>&1; then
    jq -r '.jobs[0] | "\(.write.iops | floor) fsyncs/s, 4 KiB write + fsync p50 \(.sync.lat_ns.percentile["50.000000"] / 1000 | floor) µs, p99 \(.sync.lat_ns.percentile["99.000000"] / 1000 | floor) µs"' "$out"
  else
    echo "fio failed"
  fi
  rm -f "$WORK"/fsync.*
}
echo "compare: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
wait_quiet
echo "compare: disk under $WORK: $(fsync_line)"
echo "compare: kvd $("$KVD" --version | awk '{print $2}'), $(redis-server --version | awk '{print $1, $3}')"

# --- runs -------------------------------------------------------------------------------------
# Each run sets: RATE, P99 (ms), OPS (operations, keys for batches), CPU (server s), NOISE (%)

NOISE_MAX=${NOISE_MAX:-10}   # a run where others used more than this % of the machine is run again, once

kvd_run() {  # kvd_run NODE LABEL BENCH-FLAGS...
  kvd_run_once "$@"
  if (( NOISE > NOISE_MAX )); then echo "  (noise ${NOISE}%: once more)"; kvd_run_once "$@"; fi
}

kvd_run_once() {
  local node=$1 label=$2; shift 2
  local pid_var="PID_$node" port_var="PORT_$node" out="$WORK/$label.json"
  wait_quiet
  # ALSO: other nodes of the cluster under test, left out of the noise figure
  if measure "${!pid_var} ${ALSO:-}" "$out" "$KVCTL" -e "127.0.0.1:${!port_var}" -o json --timeout 10 \
       bench --clients "$C" --value-size "$D" --keyspace "$R" --duration "$SECS" "$@"; then
    RATE=$(jq '.keys_per_sec | floor' "$out")
    P99=$(jq '.latency_us.p99 / 1000' "$out")
    OPS=$(jq '.keys' "$out")
    local missing errs
    missing=$(jq '.get.keys_missing' "$out"); errs=$(jq '.errors.total' "$out")
    [ "$missing" = 0 ] || echo "  note: $missing keys read were absent"
    [ "$errs" = 0 ] || echo "  note: $errs calls failed: $(jq -c '.errors.by_kind' "$out")"
  else
    echo "  kvctl bench failed: $(tail -3 "$out.err")"
    RATE=0; P99=0; OPS=0
  fi
  CPU=$M_SRV_CPU; NOISE=$M_OTHERS
  echo "  kvd   $label: $RATE/s p99 ${P99} ms server_cpu=${CPU}s noise=${NOISE}%"
}

start_redis() {  # start_redis NAME always|everysec ; sets RPORT_<NAME>, RPID_<NAME>
  local name=$1 fsync=$2 dir="$WORK/redis-$1" port
  mkdir -p "$dir"
  for _ in 1 2 3; do
    port=$(free_port)
    cat >"$dir/redis.conf" <<EOF
bind 127.0.0.1
port $port
protected-mode yes
daemonize no
dir $dir
logfile $dir/redis.log
save ""
appendonly yes
appendfsync $fsync
# no AOF rewrite (a fork) in the middle of a measurement
auto-aof-rewrite-percentage 0
EOF
    redis-server "$dir/redis.conf" &
    local pid=$!
    track "$pid"
    for _ in $(seq 100); do
      if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
        printf -v "RPORT_$name" '%s' "$port"; printf -v "RPID_$name" '%s' "$pid"
        return 0
      fi
      alive "$pid" || break
      sleep 0.1
    done
    stop_pid "$pid"
  done
  echo "compare: redis ($name) did not start:"; tail -5 "$dir/redis.log"; exit 1
}

redis_prefill() {  # writes key:000000000000 .. key:<R-1> with D-byte values of x, as SETs
  local port=$1
  awk -v n="$R" -v d="$D" 'BEGIN {
    v = sprintf("%" d "s", ""); gsub(/ /, "x", v)
    for (i = 0; i < n; i++) {
      k = sprintf("key:%012d", i)
      printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, d, v
    }
  }' | timeout 120 redis-cli -p "$port" --pipe >/dev/null
}

redis_run() {  # redis_run NAME LABEL N redis-benchmark-flags...
  redis_run_once "$@"
  if (( NOISE > NOISE_MAX )); then echo "  (noise ${NOISE}%: once more)"; redis_run_once "$@"; fi
}

redis_run_once() {
  local name=$1 label=$2 n=$3; shift 3
  local port_var="RPORT_$name" pid_var="RPID_$name" out="$WORK/$label.csv"
  wait_quiet
  if measure "${!pid_var}" "$out" redis-benchmark -h 127.0.0.1 -p "${!port_var}" -c "$C" \
       -n "$n" -d "$D" -r "$R" --csv "$@"; then
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    RATE=$(awk -F'","' 'NR == 2 {printf "%d", $2}' "$out")
    P99=$(awk -F'","' 'NR == 2 {print $7}' "$out")
    OPS=$n
  else
    echo "  redis-benchmark failed: $(tail -3 "$out.err")"
    RATE=0; P99=0; OPS=0
  fi
  CPU=$M_SRV_CPU; NOISE=$M_OTHERS
  echo "  redis $label: $RATE/s p99 ${P99} ms server_cpu=${CPU}s noise=${NOISE}%"
}

# --- the table --------------------------------------------------------------------------------
ROWS=()
row() {  # row WORKLOAD KVD_RATE KVD_P99 KVD_CPU KVD_OPS KVD_NOISE PEER PEER_RATE PEER_P99 PEER_CPU PEER_OPS PEER_NOISE GOAL
  local w=$1 kr=$2 kp=$3 kc=$4 ko=$5 kn=$6 peer=$7 pr=$8 pp=$9 pc=${10} po=${11} pn=${12} goal=${13}
  local ratio="-" verdict=""
  if [ "${pr:-0}" != "-" ] && [ "${pr:-0}" -gt 0 ] 2>/dev/null; then ratio=$(calc "%.2f" "$kr / $pr"); fi
  if [ -n "$goal" ] && [ "$ratio" != "-" ]; then
    # goal: "min_ratio" or "min_ratio,p99": the ratio at least min_ratio (and kvd's p99 <= peer's)
    local min=${goal%%,*} target missed=""
    target=">=${min}x"
    awk "BEGIN { exit !($ratio >= $min) }" || missed="ratio"
    if [[ $goal == *,p99 ]]; then
      target="$target, p99 <= peer's"
      awk "BEGIN { exit !($kp <= $pp) }" || missed="${missed:+$missed, }p99"
    fi
    verdict="$target: ${missed:+MISSED ($missed)}"
    [ -n "$missed" ] || verdict="${verdict}met"
  fi
  local noise=$kn
  [ "${pn:-0}" != "-" ] && (( pn > kn )) && noise=$pn
  ROWS+=("$(printf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s' "$w" "$kr" "$peer" "$pr" "$ratio" \
    "$(calc "%.2f" "$kp")" "$pp" "$(per100k "$kc" "$ko")" "$(per100k "$pc" "$po")" "${noise}%" "$verdict")")
}

# --- 1. sync=always: kvd against Redis appendfsync always ------------------------------------
echo "== durable (kvd --sync=always, Redis appendonly yes + appendfsync always)"
start_node a --sync=always
start_redis always always
kvd_run a put --ratio 1:0
read -r K_PUT K_PUT_P99 K_PUT_CPU K_PUT_OPS K_PUT_N <<<"$RATE $P99 $CPU $OPS $NOISE"
redis_run always set "$REDIS_N" -t set
row "durable put" "$K_PUT" "$K_PUT_P99" "$K_PUT_CPU" "$K_PUT_OPS" "$K_PUT_N" "redis always" "$RATE" "$P99" "$CPU" "$OPS" "$NOISE" "1.5,p99"

kvd_run a put-pipeline16 --ratio 1:0 --pipeline 16
read -r k1 k2 k3 k4 k5 <<<"$RATE $P99 $CPU $OPS $NOISE"
redis_run always set-P16 $((REDIS_N * 5)) -t set -P 16
read -r R_P16 R_P16_P99 R_P16_CPU R_P16_OPS R_P16_N <<<"$RATE $P99 $CPU $OPS $NOISE"
row "put, 16 in flight" "$k1" "$k2" "$k3" "$k4" "$k5" "redis always -P 16" "$R_P16" "$R_P16_P99" "$R_P16_CPU" "$R_P16_OPS" "$R_P16_N" "1.0"

kvd_run a put-batch16 --ratio 1:0 --batch 16
row "put, 16 keys/call (keys/s)" "$RATE" "$P99" "$CPU" "$OPS" "$NOISE" "redis always -P 16" "$R_P16" "$R_P16_P99" "$R_P16_CPU" "$R_P16_OPS" "$R_P16_N" "1.0"

echo "  writing all $R keys in kvd (kvctl bench --prefill) and Redis (redis-cli --pipe)"
"$KVCTL" -e "127.0.0.1:$PORT_a" bench --prefill --ratio 0:1 --requests 1 --keyspace "$R" \
  --value-size "$D" -o json >/dev/null
redis_prefill "$RPORT_always"
kvd_run a get --ratio 0:1
read -r k1 k2 k3 k4 k5 <<<"$RATE $P99 $CPU $OPS $NOISE"
redis_run always get "$REDIS_N" -t get
row "get" "$k1" "$k2" "$k3" "$k4" "$k5" "redis" "$RATE" "$P99" "$CPU" "$OPS" "$NOISE" "1.0"

kvd_run a get-batch16 --ratio 0:1 --batch 16
read -r k1 k2 k3 k4 k5 <<<"$RATE $P99 $CPU $OPS $NOISE"
redis_run always get-P16 $((REDIS_N * 5)) -t get -P 16
row "get, 16 keys/call (keys/s)" "$k1" "$k2" "$k3" "$k4" "$k5" "redis -P 16" "$RATE" "$P99" "$CPU" "$OPS" "$NOISE" ""
stop_pid "$PID_a"; stop_pid "$RPID_always"

# --- 2. sync=none: kvd against Redis appendfsync everysec ------------------------------------
echo "== OS buffers (kvd --sync=none, Redis appendfsync everysec)"
start_node n --sync=none
start_redis everysec everysec
kvd_run n put-nosync --ratio 1:0
read -r k1 k2 k3 k4 k5 <<<"$RATE $P99 $CPU $OPS $NOISE"
redis_run everysec set-everysec "$REDIS_N" -t set
row "put, no fsync" "$k1" "$k2" "$k3" "$k4" "$k5" "redis everysec" "$RATE" "$P99" "$CPU" "$OPS" "$NOISE" ""
stop_pid "$PID_n"; stop_pid "$RPID_everysec"

# --- 3. etcd ----------------------------------------------------------------------------------
if [ -z "$ETCD_NOTE" ]; then
  echo "== etcd (etcdctl check perf --load=$ETCD_LOAD)"
  export ETCDCTL_API=3
  CP=$(free_port); PP=$(free_port)
  while [ "$PP" = "$CP" ]; do PP=$(free_port); done
  etcd --name kvdpeer --data-dir "$WORK/etcd" \
    --listen-client-urls "http://127.0.0.1:$CP" --advertise-client-urls "http://127.0.0.1:$CP" \
    --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "kvdpeer=http://127.0.0.1:$PP" --initial-cluster-state new \
    --logger=zap --log-outputs="$WORK/etcd.log" >/dev/null 2>&1 &
  EPID=$!
  track "$EPID"
  up=0
  for _ in $(seq 100); do
    if etcdctl --endpoints="127.0.0.1:$CP" --dial-timeout=1s endpoint health >/dev/null 2>&1; then up=1; break; fi
    alive "$EPID" || break
    sleep 0.2
  done
  if [ "$up" = 1 ]; then
    puts() { curl -s --max-time 5 "http://127.0.0.1:$CP/metrics" 2>/dev/null \
               | awk '/^etcd_mvcc_put_total/ {print $2 + 0; f = 1} END {if (!f) print 0}'; }
    p0=$(puts)
    wait_quiet
    measure "$EPID" "$WORK/etcd.out" timeout 150 etcdctl --endpoints="127.0.0.1:$CP" \
      check perf --load="$ETCD_LOAD" --auto-compact || true
    p1=$(puts)
    text=$(tr '\r' '\n' <"$WORK/etcd.out")
    E_RATE=$(grep -oE 'Throughput (is|too low:) [0-9]+' <<<"$text" | grep -oE '[0-9]+$' || true)
    slowest=$(grep -oE 'Slowest request took[^0-9]*[0-9.]+' <<<"$text" | grep -oE '[0-9.]+$' || true)
    if [ -n "$E_RATE" ]; then
      E_OPS=$(awk -v a="$p0" -v b="$p1" 'BEGIN {printf "%d", b - a}')
      echo "  etcd  put: $E_RATE/s slowest ${slowest:-?} s server_cpu=${M_SRV_CPU}s noise=${M_OTHERS}% ($E_OPS puts)"
      row "durable put vs etcd (approx.)" "$K_PUT" "$K_PUT_P99" "$K_PUT_CPU" "$K_PUT_OPS" "$K_PUT_N" \
        "etcd check perf $ETCD_LOAD" "$E_RATE" "n/a" "$M_SRV_CPU" "$E_OPS" "$M_OTHERS" "10"
      ETCD_NOTE="etcd: etcdctl check perf --load=$ETCD_LOAD (1000 clients for xl, 256-B keys, 1-KiB values, rate-limited to 15k/s, 60 s; slowest request ${slowest:-?} s, no p99): etcd's own load, not the kvd workload, so its ratio is approximate"
    else
      ETCD_NOTE="etcd: not measured: check perf gave no throughput ($(tail -2 <<<"$text" | tr '\n' ' '))"
    fi
  else
    ETCD_NOTE="etcd: not measured: the server did not start ($(tail -2 "$WORK/etcd.log" 2>/dev/null | tr '\n' ' '))"
  fi
  stop_pid "$EPID"
fi

# --- 4. one replica attached ------------------------------------------------------------------
echo "== one replica (kvd --sync=always master, without and then with a replica)"
start_node m --sync=always
"$KVCTL" -e "127.0.0.1:$PORT_m" bench --prefill --ratio 0:1 --requests 1 --keyspace "$R" \
  --value-size "$D" -o json >/dev/null
kvd_run m put-no-replica --ratio 1:0
read -r B_PUT B_P99 B_CPU B_OPS B_N <<<"$RATE $P99 $CPU $OPS $NOISE"
start_node r --replica=true --master="http://127.0.0.1:$PORT_m"
behind() {  # operations the replica is behind, summed over shards (1 when unknown)
  "$KVCTL" -e "127.0.0.1:$PORT_m" replicas -o json 2>/dev/null \
    | jq '[.. | .ops_behind? // empty] | if length == 0 then 1 else add end' 2>/dev/null || echo 1
}
for _ in $(seq 600); do [ "$(behind)" = 0 ] && break; sleep 0.2; done
echo "  replica caught up: $(behind) operations behind"
ALSO="$PID_r" kvd_run m put-replica --ratio 1:0
read -r k1 k2 k3 k4 k5 <<<"$RATE $P99 $CPU $OPS $NOISE"
wait_quiet
if measure "$PID_m $PID_r" "$WORK/replag.out" "$EX/replag" "http://127.0.0.1:$PORT_m" \
     "http://127.0.0.1:$PORT_r" "$SECS" "$C"; then
  LAG_OPS=$(sed -n 's/^lag in operations.*p99 \([0-9]*\).*/\1/p' "$WORK/replag.out")
  LAG_MS=$(sed -n 's/^lag in time.*p99 \([0-9.]*\) ms.*/\1/p' "$WORK/replag.out")
  sed 's/^/  replag: /' "$WORK/replag.out"
else
  echo "  replag failed: $(tail -3 "$WORK/replag.out.err")"
  LAG_OPS="?"; LAG_MS="?"
fi
ALSO="$PID_m" kvd_run r get-replica --ratio 0:1
read -r g1 g2 g3 g4 g5 <<<"$RATE $P99 $CPU $OPS $NOISE"

# --- report -----------------------------------------------------------------------------------
echo
echo "== kvd vs peers: $C clients, $D-byte values, $R keys; kvd runs ${SECS} s each (kvctl bench,"
echo "   4 connections, 1 client thread), redis-benchmark $REDIS_N requests (-P 16: $((REDIS_N * 5)))"
{
  echo "workload|kvd/s|peer|peer/s|kvd/peer|kvd p99 ms|peer p99 ms|kvd cpu s/100k|peer cpu s/100k|noise|goal"
  printf '%s\n' "${ROWS[@]}"
} | awk -F'|' '  # columns as wide as their widest cell; numbers right-aligned
  { for (i = 1; i <= NF; i++) { cell[NR, i] = $i; n = length($i); if (n > w[i]) w[i] = n }
    if (NF > nf) nf = NF; rows = NR }
  END { for (r = 1; r <= rows; r++) { line = ""
          for (i = 1; i <= nf; i++) {
            c = cell[r, i]; pad = w[i] - length(c); fill = sprintf("%" pad "s", "")
            if (i == 1 || i == 3 || i == nf) line = line c fill; else line = line fill c
            if (i < nf) line = line "  " }
          sub(/ +$/, "", line); print line } }'
echo
drop="?"; drop_ok="MISSED"
if [ "$B_PUT" -gt 0 ] 2>/dev/null; then
  drop=$(calc "%.1f" "(1 - $k1 / $B_PUT) * 100")
  awk "BEGIN { exit !($drop <= 15) }" && drop_ok="met"
fi
lag_ok="MISSED"
if [ -n "$LAG_MS" ] && [ "$LAG_MS" != "?" ] && awk "BEGIN { exit !($LAG_MS < 50) }"; then lag_ok="met"; fi
echo "one replica, same master: durable put $B_PUT/s without it (p99 $B_P99 ms, noise $B_N%), $k1/s with it (p99 $k2 ms, master cpu $(per100k "$k3" "$k4") s/100k, noise $k5%): ${drop}% lower (goal <= 15%: $drop_ok)"
echo "replica lag p99: ${LAG_MS} ms from the master's ack to readable on the replica, ${LAG_OPS} operations behind (goal < 50 ms: $lag_ok)"
echo "get from the replica: $g1/s (p99 ${g2} ms, noise $g5%)"
echo "${ETCD_NOTE}"
echo "noise: % of the machine used during a run by processes other than the server and its client (above ~10%: rerun)"
