#!/usr/bin/env bash
# A node joins under load: the p99.9 of a client load at half the cluster's
# maximum throughput while a fourth node pulls its share of 10,000 keys,
# against the same load before the join, and how long the rebalance takes.
#
# Usage: scripts/bench-join.sh [--no-build] [--duration S]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD=true
DURATION=30
KEYS=10000
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=false ;;
        --duration) DURATION="${2:?}"; shift ;;
        *) echo "usage: $0 [--no-build] [--duration S]" >&2; exit 2 ;;
    esac
    shift
done
command -v jq >/dev/null || apt-get install -y jq >/dev/null
$BUILD && cargo build --release -p dynamo-http -p dynamo-bench
BIN="${CARGO_TARGET_DIR:-target}/release/dynamo"
BENCH="${CARGO_TARGET_DIR:-target}/release/dynamo-bench"
TMP="$(mktemp -d -t bench-join.XXXXXX)"
declare -a PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

SEEDS=127.0.0.1:19201,127.0.0.1:19202,127.0.0.1:19203
start() {
    "$BIN" serve --node-id "node$1" --http-addr "127.0.0.1:1820$1" --peer-addr "127.0.0.1:1920$1" \
        --data-dir "$TMP/node$1" --seeds "$SEEDS" > "$TMP/node$1.log" 2>&1 &
    PIDS[$1]=$!
}
wait_until() {
    local desc=$1 t=$2; shift 2
    local end=$((SECONDS + t))
    until "$@"; do
        [ $SECONDS -lt $end ] || { echo "timed out waiting for $desc" >&2; exit 1; }
        sleep 0.2
    done
}
members_up() { # K COUNT
    curl -sf "127.0.0.1:1820$1/status" | jq -e "[.members[] | select(.status == \"up\")] | length == $2" >/dev/null
}
stable_with_4() {
    curl -sf 127.0.0.1:18201/status |
        jq -e '.target_ring_version == null and ([.members[] | select(.partitions_owned > 0)] | length == 4)' >/dev/null
}
for k in 1 2 3; do start $k; done
for k in 1 2 3; do wait_until "node$k ready" 60 members_up $k 3; done
EP=http://127.0.0.1:18201,http://127.0.0.1:18202,http://127.0.0.1:18203
bench() { "$BENCH" --target dynamo --endpoints "$EP" --keys $KEYS --clients 64 --json "$@" 2>/dev/null | tail -1; }
bench --op get --preload --duration-s 1 --warmup-s 0 > /dev/null
MAX=$(bench --op mixed --duration-s 10 | jq .throughput_ops_s)
RATE=$(printf '%.0f' "$(echo "$MAX / 2" | bc -l)")
echo "max mixed throughput: $MAX ops/s; load at half: $RATE ops/s" >&2
BASE=$(bench --op mixed --rate "$RATE" --duration-s "$DURATION")
echo "before the join: $BASE" >&2

bench --op mixed --rate "$RATE" --duration-s "$DURATION" > "$TMP/join.json" &
LOAD=$!
sleep 2
T0=$SECONDS
start 4
wait_until "the ring to include node4" 300 stable_with_4
REBALANCE=$((SECONDS - T0))
wait $LOAD
JOIN=$(cat "$TMP/join.json")
echo "during the join: $JOIN" >&2
p_base=$(echo "$BASE" | jq .p999_ms)
p_join=$(echo "$JOIN" | jq .p999_ms)
echo
echo "a fourth node joins under a ${RATE} ops/s mixed load ($KEYS keys of 1 KiB)"
echo "  rebalance time:         ${REBALANCE} s (start of node4 to a stable ring with 4 owners)"
echo "  p99.9 before the join:  ${p_base} ms"
echo "  p99.9 during the join:  ${p_join} ms  (ratio $(echo "$p_join / $p_base" | bc -l | cut -c1-4))"
echo "  errors during the join: $(echo "$JOIN" | jq .errors)"
