#!/usr/bin/env bash
# A node joins under load: the p99.9 of a client load at half the cluster's
# maximum throughput while a fourth node pulls its share of the data,
# against the same load before the join; how long the pull takes and at
# what rate, and how long until the old owners have handed over and
# dropped what they no longer replicate.
#
# Usage: scripts/bench-join.sh [--no-build] [--duration S] [--keys N] [--value-size B] [--rate R]
# (1 GiB: --keys 262144 --value-size 4096 --duration 60). With --rate the
# load is R ops/s and the maximum is not probed: a 10 s probe varies by
# 10-20 % between runs, so builds compared at "half the maximum" otherwise
# carry different loads.
NAME=bench-join
PORT=20
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

stable_with_4() {
    curl -sf 127.0.0.1:18201/status |
        jq -e '.target_ring_version == null and ([.members[] | select(.partitions_owned > 0)] | length == 4)' >/dev/null
}
handed_over() { # no node holds a partition it no longer replicates
    local k
    for k in 1 2 3 4; do
        curl -sf "127.0.0.1:1820$k/status" |
            jq -e '.rebalance.partitions_to_hand_over == 0 and (.transfers | length == 0)' >/dev/null || return 1
    done
}

for k in 1 2 3; do start $k; done
for k in 1 2 3; do wait_until "node$k ready" 60 members_up $k 3; done
T_LOAD=$SECONDS
bench --op get --preload --preload-timeout-s 1800 --duration-s 1 --warmup-s 0 > /dev/null
echo "preloaded $KEYS keys of $VALUE_SIZE B in $((SECONDS - T_LOAD)) s" >&2
RATE=$(half_load bench --op mixed --duration-s 10)
idle_ticks() { awk '/^cpu / {print $5 + $6}' /proc/stat; }
C_BASE=$(nodes_cpu_ms 3)
BASE=$(bench --op mixed --rate "$RATE" --duration-s "$DURATION")
C_BASE=$(echo "$(nodes_cpu_ms 3) - $C_BASE" | bc)
echo "before the join: $BASE" >&2

bench --op mixed --rate "$RATE" --duration-s "$DURATION" --timeline "$TMP/timeline.jsonl" > "$TMP/join.json" &
LOAD=$!
sleep 2
T0=$SECONDS
T0_NS=$(date +%s.%N)
C_JOIN=$(nodes_cpu_ms 3)
I_JOIN=$(idle_ticks)
start 4
wait_until "the ring to include node4" 900 stable_with_4
REBALANCE=$((SECONDS - T0))
C_JOIN=$(echo "$(nodes_cpu_ms 4) - $C_JOIN" | bc)
I_JOIN=$(($(idle_ticks) - I_JOIN))
W_JOIN=$(echo "$(date +%s.%N) - $T0_NS" | bc -l)
wait_until "the old owners to hand over" 900 handed_over
HANDOVER=$((SECONDS - T0))
for k in 1 2 3 4; do # how much admission control held the transfer back
    echo "node$k admission: $(curl -sf "127.0.0.1:1820$k/status" | jq -c .admission)" >&2
done
wait $LOAD
JOIN=$(cat "$TMP/join.json")
echo "during the join: $JOIN" >&2
# What node4 pulled, from its transfer log lines.
PULLED=$(grep -o 'done, [0-9]* keys, [0-9]* bytes' "$TMP/node4.log" | awk '{b += $4} END {print b + 0}')
# Seconds node4 spent pulling (one partition at a time), from the same lines.
PULL_SECS=$(grep -o 'bytes in [0-9.]* s' "$TMP/node4.log" | awk '{t += $3} END {print t + 0}')
p_base=$(echo "$BASE" | jq .p999_ms)
p_join=$(echo "$JOIN" | jq .p999_ms)
echo
echo "a fourth node joins under a ${RATE} ops/s mixed load ($KEYS keys of $VALUE_SIZE B)"
echo "  pulled by node4:        $PULLED bytes"
echo "  rebalance time:         ${REBALANCE} s (start of node4 to a stable ring with 4 owners)"
echo "  pull rate:              $(echo "$PULLED / $REBALANCE / 1000000" | bc -l | cut -c1-5) MB/s over that time"
echo "  while pulling:          $(echo "$PULLED / $PULL_SECS / 1000000" | bc -l | cut -c1-5) MB/s over the ${PULL_SECS} s node4 spent pulling"
echo "  handover time:          ${HANDOVER} s (start of node4 to no node holding what it no longer replicates)"
echo "  p99.9 before the join:  ${p_base} ms"
echo "  p99.9 during the join:  ${p_join} ms  (ratio $(echo "$p_join / $p_base" | bc -l | cut -c1-4))"
echo "  errors during the join: $(echo "$JOIN" | jq .errors)"
# What the pull cost under load: the nodes' CPU from node4's start to the
# stable ring, less what the same load used per operation before the join.
per_op=$(echo "$C_BASE / $(echo "$BASE" | jq .ops)" | bc -l)
load_ms=$(echo "$per_op * $RATE * $W_JOIN" | bc -l)
printf '  CPU before the join:    %.0f us per operation (nodes 1-3)\n' "$(echo "$per_op * 1000" | bc -l)"
printf '  CPU until the ring:     %.0f ms in %.1f s, of which the load at that cost %.0f ms;\n' \
    "$C_JOIN" "$W_JOIN" "$load_ms"
printf '                          the pull %.1f CPU-ms per MB; machine idle %.0f %%\n' \
    "$(echo "($C_JOIN - $load_ms) * 1000000 / $PULLED" | bc -l)" \
    "$(echo "$I_JOIN * 100 / ($W_JOIN * $(getconf CLK_TCK) * $(nproc))" | bc -l)"
