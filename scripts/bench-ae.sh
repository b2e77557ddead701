#!/usr/bin/env bash
# Anti-entropy under load: how long three nodes take to refill a replica
# whose data dir was wiped (10,000 keys of 1 KiB), and what that does to the
# p99.9 of a client load running at half the cluster's maximum throughput.
#
#   1. start 3 nodes (N=3 R=2 W=2, default anti-entropy interval), write
#      10,000 keys;
#   2. measure the maximum mixed (50% GET / 50% PUT) throughput, closed loop;
#   3. run an open-loop load at half of it: the no-repair p99.9;
#   4. stop node3, wipe its data dir, start it again (a new store epoch);
#   5. run the same open-loop load while anti-entropy refills node3, and time
#      the refill (node3's /status storage.keys reaching 10,000 and each of
#      200 random preloaded keys found in its /admin/local).
#
# Usage: scripts/bench-ae.sh [--no-build] [--duration S]
NAME=bench-ae
PORT=10
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

for k in 1 2 3; do start $k; done
for k in 1 2 3; do wait_until "node$k ready" 60 members_up $k 3; done

bench --op get --preload --duration-s 1 --warmup-s 0 > /dev/null
# The client load uses other keys (bench-100000..), so only anti-entropy
# can bring the preloaded ones back to node3.
load() { bench --key-offset 100000 "$@"; }
RATE=$(half_load load --op mixed --duration-s 10)
BASE=$(load --op mixed --rate "$RATE" --duration-s "$DURATION")
echo "no repair: $BASE" >&2

kill -TERM "${PIDS[3]}"; wait "${PIDS[3]}" 2>/dev/null || true
rm -rf "$TMP/node3"
start 3
wait_until "node3 back" 60 members_up 3 3
T0=$SECONDS
load --op mixed --rate "$RATE" --duration-s "$DURATION" > "$TMP/repair.json" &
LOAD=$!
# node3 also receives the load's own keys, so its key count says only that
# it may be done: it is refilled once it also holds every key of a random
# sample of 200 preloaded ones. Each poll checks the keys still missing,
# up to the first one it finds missing.
SAMPLE=$(shuf -i 0-$((KEYS - 1)) -n 200 | tr '\n' ' ')
refilled() {
    local n i left=""
    n=$(curl -sf 127.0.0.1:18103/status | jq .storage.keys) || return 1
    [ "$n" -ge "$KEYS" ] || return 1
    for i in $SAMPLE; do
        if [ -z "$left" ] && curl -sf "127.0.0.1:18103/admin/local/bench-$i" | jq -e '.versions | length >= 1' >/dev/null; then
            continue
        fi
        left="$left $i"
    done
    SAMPLE=$left
    [ -z "$SAMPLE" ]
}
wait_until "node3 refilled" 120 refilled
REFILL=$((SECONDS - T0))
wait $LOAD
REPAIR=$(cat "$TMP/repair.json")
echo "during repair: $REPAIR" >&2
p_base=$(echo "$BASE" | jq .p999_ms)
p_rep=$(echo "$REPAIR" | jq .p999_ms)
echo
echo "anti-entropy refill of a wiped replica ($KEYS keys of 1 KiB) under a ${RATE} ops/s mixed load"
echo "  refill time:            ${REFILL} s (node3 storage.keys >= $KEYS and all 200 sampled keys there)"
echo "  p99.9 without repair:   ${p_base} ms"
echo "  p99.9 during repair:    ${p_rep} ms  (ratio $(echo "$p_rep / $p_base" | bc -l | cut -c1-4))"
echo "  keys repaired:          $(for k in 1 2 3; do curl -sf 127.0.0.1:1810$k/status | jq .anti_entropy.keys_repaired; done | paste -sd+ | bc)"
