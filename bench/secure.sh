#!/usr/bin/env bash
# The cost of authentication and TLS (issue #11): one run, three masters on 127.0.0.1, the same
# kvctl bench workloads against each, and the ratio to the plain node.
#
#   plain         kvd                                    kvctl
#   auth          kvd --auth-file                        kvctl --token-file (write role)
#   tls + auth    kvd --auth-file --tls-cert --tls-key   kvctl --token-file --cacert
#
#   workloads (50 clients, 100-byte values, 100k keys): durable put (--sync=always, the default),
#   and get (every key written first, --prefill).
#
# Certificates are made here with openssl (a throwaway CA in the temporary directory). Tokens and
# TLS cost once per connection (the handshakes) and per byte (encryption); kvctl bench keeps its
# connections open, as applications using the client library do, so the run measures the steady
# state. Builds in release (bench/lib.sh); about 2 minutes after the build.
#
# Usage: bench/secure.sh      SECS=5 length of each run, ROUNDS=3 runs per node and workload
set -euo pipefail
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
build

# --- certificates and a token -----------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=bench CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$WORK/node.key" -out "$WORK/node.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >"$WORK/san.ext"
openssl x509 -req -in "$WORK/node.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 1 -extfile "$WORK/san.ext" -out "$WORK/node.crt" >/dev/null 2>&1
"$KVD" token new --role write --name bench --auth-file "$WORK/tokens" >"$WORK/token" 2>/dev/null

start_node plain
start_node auth --auth-file="$WORK/tokens"
start_node tls --auth-file="$WORK/tokens" --tls-cert="$WORK/node.crt" --tls-key="$WORK/node.key"

declare -A FLAGS=(
  [plain]=""
  [auth]="--token-file $WORK/token"
  [tls]="--token-file $WORK/token --cacert $WORK/ca.crt"
)

run() {  # run NAME OUT ARGS... : kvctl bench against node NAME, JSON to OUT
  local name=$1 out=$2; shift 2
  local port_var="PORT_$name"
  # shellcheck disable=SC2086
  "$KVCTL" -e "127.0.0.1:${!port_var}" ${FLAGS[$name]} -o json bench --duration "$SECS" \
    --clients 50 --value-size 100 --keyspace 100000 "$@" >"$out"
}

field() { jq -r "$1" "$2"; }

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# Rounds alternate the nodes (plain, auth, tls, plain, ...) so that a slow moment of the disk or
# the machine does not land on one node only; the table shows each node's median.
for wl in put get; do
  for round in $(seq "$ROUNDS"); do
    for name in plain auth tls; do
      out="$WORK/$wl-$name-$round.json"
      wait_quiet
      if [ "$wl" = put ]; then run "$name" "$out" --ratio 1:0; else run "$name" "$out" --ratio 0:1 --prefill; fi
      errs=$(field .errors.total "$out")
      [ "$errs" = 0 ] || { echo "$wl on $name: $errs errors"; field .errors "$out"; exit 1; }
    done
  done
done

printf '%-8s %-7s %10s %10s %9s   %s\n' workload node "ops/s" "p99 us" "vs plain" "every round (ops/s)"
for wl in put get; do
  for name in plain auth tls; do
    all=$(for r in $(seq "$ROUNDS"); do field .ops_per_sec "$WORK/$wl-$name-$r.json"; done)
    ops=$(echo "$all" | median)
    p99=$(for r in $(seq "$ROUNDS"); do field .latency_us.p99 "$WORK/$wl-$name-$r.json"; done | median)
    printf -v "OPS_${wl}_$name" '%s' "$ops"
    base_var="OPS_${wl}_plain"
    ratio=$(awk -v a="$ops" -v b="${!base_var}" 'BEGIN { printf "%.2f", a / b }')
    printf '%-8s %-7s %10.0f %10s %9s   %s\n' "$wl" "$name" "$ops" "$p99" "$ratio" \
      "$(echo "$all" | awk '{ printf "%.0f ", $1 }')"
  done
done
