#!/usr/bin/env bash
# What a join costs in CPU, with no client load: 3 nodes hold the data, a
# fourth joins; prints each node's CPU time over the pull (start of node4 to
# a stable ring with four owners) and over the handover (to no node holding
# what it no longer replicates), and the CPU per MB pulled. With
# PERF_DATA=FILE it also records a system-wide CPU profile of the pull.
#
# Usage: scripts/bench-join-cost.sh [--no-build] [--keys N] [--value-size B]
# (default 65,536 keys of 4 KiB: some 166 MB pulled).
NAME=bench-join-cost
PORT=22
ARGS=("$@")
[[ " ${ARGS[*]} " == *" --keys "* ]] || ARGS+=(--keys 65536)
[[ " ${ARGS[*]} " == *" --value-size "* ]] || ARGS+=(--value-size 4096)
set -- "${ARGS[@]}"
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

stable_with_4() {
    curl -sf "127.0.0.1:18${PORT}1/status" |
        jq -e '.target_ring_version == null and ([.members[] | select(.partitions_owned > 0)] | length == 4)' >/dev/null
}
handed_over() {
    local k
    for k in 1 2 3 4; do
        curl -sf "127.0.0.1:18${PORT}$k/status" |
            jq -e '.rebalance.partitions_to_hand_over == 0 and (.transfers | length == 0)' >/dev/null || return 1
    done
}
faults() { # K: minor page faults of node K so far
    awk '{print $10}' "/proc/${PIDS[$1]}/stat"
}
# Polls fast: the pull of the default data takes a few seconds.
wait_fast() { # DESC CMD...
    local desc=$1; shift
    local end=$((SECONDS + 900))
    until "$@"; do
        [ $SECONDS -lt $end ] || { echo "timed out waiting for $desc" >&2; exit 1; }
        sleep 0.2
    done
}

for k in 1 2 3; do start $k; done
for k in 1 2 3; do wait_until "node$k ready" 60 members_up $k 3; done
bench --op get --preload --preload-timeout-s 1800 --duration-s 1 --warmup-s 0 > /dev/null
# Let the preload's flushes and compactions finish before measuring: until
# the three nodes use under 2 % of a core for 3 s (at most 2 minutes).
for _ in $(seq 40); do
    before=$(nodes_cpu_ms 3)
    sleep 3
    after=$(nodes_cpu_ms 3)
    [ "$(echo "$after - $before < 60" | bc)" = 1 ] && break
done
declare -a C0 C1 C2
for k in 1 2 3; do C0[$k]=$(node_cpu_ms $k); F0[$k]=$(faults $k); done
T0=$(date +%s.%N)
start 4
C0[4]=0
F0[4]=0
if [ -n "${PERF_DATA:-}" ]; then
    perf record -a ${PERF_CALLGRAPH:--g} -F 499 -o "$PERF_DATA" 2>/dev/null &
    PERF=$!
fi
wait_fast "the ring to include node4" stable_with_4
T1=$(date +%s.%N)
[ -n "${PERF_DATA:-}" ] && kill -INT "$PERF" && wait "$PERF" || true
for k in 1 2 3 4; do C1[$k]=$(node_cpu_ms $k); F1[$k]=$(faults $k); done
wait_fast "the old owners to hand over" handed_over
T2=$(date +%s.%N)
for k in 1 2 3 4; do C2[$k]=$(node_cpu_ms $k); done
PULLED=$(grep -o 'done, [0-9]* keys, [0-9]* bytes' "$TMP/node4.log" | awk '{b += $4} END {print b + 0}')
MB=$(echo "$PULLED / 1000000" | bc -l)
echo
echo "a fourth node joins, no client load ($KEYS keys of $VALUE_SIZE B); node4 pulled $(printf '%.1f' "$MB") MB"
printf '  pull:     %5.1f s, %5.1f MB/s;' "$(echo "$T1 - $T0" | bc -l)" "$(echo "$MB / ($T1 - $T0)" | bc -l)"
pull_total=0
for k in 1 2 3 4; do
    d=$(echo "${C1[$k]} - ${C0[$k]}" | bc -l); pull_total=$(echo "$pull_total + $d" | bc -l)
    printf ' node%d %6.0f ms' "$k" "$d"
done
printf '; %.2f CPU-ms per MB\n' "$(echo "$pull_total / $MB" | bc -l)"
printf '  page faults over the pull:'
for k in 1 2 3 4; do printf ' node%d %d' "$k" "$((F1[$k] - F0[$k]))"; done
echo
printf '  handover: %5.1f s;               ' "$(echo "$T2 - $T1" | bc -l)"
for k in 1 2 3 4; do printf ' node%d %6.0f ms' "$k" "$(echo "${C2[$k]} - ${C1[$k]}" | bc -l)"; done
echo
