#!/usr/bin/env bash
# Time for a new replica to copy N keys by full resync. Usage: bench/full-resync.sh [N]
source "$(dirname "$0")/lib.sh"
n=${1:-1000000}
build
start_node m --shard=2 --log-retention=1000
"$EX/loadgen" "http://127.0.0.1:$PORT_m" fill 50 600 4 "$n"
start=$(date +%s.%N)
start_node r --shard=2 --replica=true --master="http://127.0.0.1:$PORT_m"
for _ in $(seq 6000); do [ "$(grep -c 'full resync finished' "$WORK/r.log")" = 2 ] && break; sleep 0.1; done
end=$(date +%s.%N)
grep "full resync finished" "$WORK/r.log" | sed 's/.*INFO //'
echo "from replica start to every shard copied: $(echo "$end - $start" | bc) s for $n keys"
