#!/usr/bin/env bash
# The write pause of switchovers under load: a master and two replicas (release build), WRITERS
# clients writing through the client library, ROUNDS switchovers A->B->C->A... one every SECS
# seconds. Usage: bench/switchover.sh [WRITERS] [SECS] [ROUNDS]   (default 50 4 3)
source "$(dirname "$0")/lib.sh"
writers=${1:-50}; secs=${2:-4}; rounds=${3:-3}
build
start_node a --shard=2
start_node b --shard=2 --replica=true --master="http://127.0.0.1:$PORT_a"
start_node c --shard=2 --replica=true --master="http://127.0.0.1:$PORT_a"
for n in b c; do
  for _ in $(seq 100); do grep -q "master link up" "$WORK/$n.log" && break; sleep 0.1; done
done
"$EX/switchover" "127.0.0.1:$PORT_a,127.0.0.1:$PORT_b,127.0.0.1:$PORT_c" "$writers" "$secs" "$rounds"
"$KVCTL" -e "127.0.0.1:$PORT_a,127.0.0.1:$PORT_b,127.0.0.1:$PORT_c" verify | tail -1
