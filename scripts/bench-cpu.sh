#!/usr/bin/env bash
# CPU per operation at fixed loads: 3 nodes hold the data, and a mixed
# open-loop load runs for 20 s at each rate in turn (and closed-loop at
# "max"); prints the nodes' CPU per second and per operation, the load
# generator's CPU, and the latency. Shows how much of a node's CPU an
# operation costs at light load, where no batching amortizes its wakeups.
#
# Usage: scripts/bench-cpu.sh [--no-build] [--keys N] [--value-size B]
# (default 65,536 keys of 4 KiB); RATES="1000 2000 max" picks the loads.
NAME=bench-cpu
PORT=23
ARGS=("$@")
[[ " ${ARGS[*]} " == *" --keys "* ]] || ARGS+=(--keys 65536)
[[ " ${ARGS[*]} " == *" --value-size "* ]] || ARGS+=(--value-size 4096)
set -- "${ARGS[@]}"
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

for k in 1 2 3; do start $k; done
for k in 1 2 3; do wait_until "node$k ready" 60 members_up $k 3; done
bench --op get --preload --preload-timeout-s 1800 --duration-s 1 --warmup-s 0 > /dev/null
# Until the preload's flushes and compactions are done: under 2 % of a
# core for 3 s (at most 2 minutes).
for _ in $(seq 40); do
    before=$(nodes_cpu_ms 3); sleep 3
    [ "$(echo "$(nodes_cpu_ms 3) - $before < 60" | bc)" = 1 ] && break
done
before=$(nodes_cpu_ms 3); sleep 10
echo "idle: $(echo "$(nodes_cpu_ms 3) - $before" | bc) CPU-ms of the nodes in 10 s" >&2
for rate in ${RATES:-250 500 1000 2000 4000 max}; do
    if [ "$rate" = max ]; then args=(); else args=(--rate "$rate"); fi
    before=$(nodes_cpu_ms 3)
    # Its own CPU, from time(1): user and system seconds.
    /usr/bin/time -f "%U %S" -o "$TMP/bench.time" \
        "$BENCH" --target dynamo --endpoints "$EP" --keys "$KEYS" --value-size "$VALUE_SIZE" --clients 64 \
        --json --contexts "$TMP/contexts" --op mixed --duration-s 20 --warmup-s 0 "${args[@]}" \
        2>"$TMP/bench.err" | tail -1 > "$TMP/run.json"
    used=$(echo "$(nodes_cpu_ms 3) - $before" | bc)
    ops=$(jq .ops "$TMP/run.json")
    printf 'rate %-5s %7.0f ops/s  nodes %5.0f CPU-ms/s, %4.0f us/op  load generator %4.0f CPU-ms/s  p50 %s p99 %s p99.9 %s ms\n' \
        "$rate" "$(jq .throughput_ops_s "$TMP/run.json")" "$(echo "$used / 20" | bc -l)" \
        "$(echo "$used * 1000 / $ops" | bc -l)" "$(awk '{print ($1 + $2) * 1000 / 20}' "$TMP/bench.time")" \
        "$(jq .p50_ms "$TMP/run.json")" "$(jq .p99_ms "$TMP/run.json")" "$(jq .p999_ms "$TMP/run.json")"
done
