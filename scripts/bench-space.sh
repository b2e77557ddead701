#!/usr/bin/env bash
# Disk space and memory under a steady overwrite load: three nodes, a
# preloaded keyspace, then PUTs of random keys at half the cluster's
# maximum PUT throughput, in rounds. After each round, per node: bytes in
# its RocksDB dir, resident memory, and whether blob GC is running (from its
# log), with the round's p99.9. Overwrites turn old values into garbage in
# RocksDB's blob files; the space it takes should stay bounded without
# compactions rewriting the live data all the time.
#
# Usage: scripts/bench-space.sh [--no-build] [--duration S] [--keys N] [--value-size B]
# (the figures in BENCHMARKS.md: --keys 65536 --value-size 4096 --duration 240)
NAME=bench-space
PORT=21
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

ROUND=30
for k in 1 2 3; do start $k; done
for k in 1 2 3; do wait_until "node$k ready" 60 members_up $k 3; done
bench --op get --preload --preload-timeout-s 1800 --duration-s 1 --warmup-s 0 > /dev/null
RATE=$(half_load bench --op put --duration-s 10)

gc_state() { # K: on or off, by the node's last blob GC log line for data
    local last
    last=$(grep -o 'blob GC o[nf]* for data' "$TMP/node$1.log" | tail -1 | awk '{print $3}')
    echo "${last:-off}"
}
sample() { # ROUND-LABEL P999
    local k line="$1 p99.9 $2 ms"
    for k in 1 2 3; do
        line+=" | node$k $(du -sm "$TMP/node$k/rocksdb" | cut -f1) MiB"
        line+=" rss $(($(ps -o rss= -p "${PIDS[$k]}") / 1024)) MiB gc $(gc_state $k)"
    done
    echo "$line"
}
echo
echo "$KEYS keys of $VALUE_SIZE B ($((KEYS * VALUE_SIZE / 1048576)) MiB of values a node), PUTs at $RATE ops/s"
sample "after the preload:" "-"
for r in $(seq $((DURATION / ROUND))); do
    P=$(bench --op put --rate "$RATE" --duration-s "$ROUND" | jq .p999_ms)
    sample "after $((r * ROUND)) s:" "$P"
done
for k in 1 2 3; do
    echo "node$k blob GC: $(grep -c 'blob GC on for' "$TMP/node$k.log") times on, $(grep -c 'blob GC off for' "$TMP/node$k.log") off"
done
