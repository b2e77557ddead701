#!/usr/bin/env bash
# A node joins under load: the p99.9 of a client load at half the cluster's
# maximum throughput while a fourth node pulls its share of 10,000 keys,
# against the same load before the join, and how long the rebalance takes.
#
# Usage: scripts/bench-join.sh [--no-build] [--duration S]
NAME=bench-join
PORT=20
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

stable_with_4() {
    curl -sf 127.0.0.1:18201/status |
        jq -e '.target_ring_version == null and ([.members[] | select(.partitions_owned > 0)] | length == 4)' >/dev/null
}
for k in 1 2 3; do start $k; done
for k in 1 2 3; do wait_until "node$k ready" 60 members_up $k 3; done
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
