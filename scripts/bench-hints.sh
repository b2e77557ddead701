#!/usr/bin/env bash
# A node down, then back: what the cluster does meanwhile, and how fast the
# hints it missed reach it.
#
#   1. start 3 nodes (N=3 R=2 W=2); closed-loop PUT throughput, all up;
#   2. SIGKILL node3; once node1 sees it down, the same PUT run through
#      node1 and node2 (their coordinators keep hints for node3);
#   3. write 100,000 more keys (bench-200000..) with node3 down, and the
#      load's 10,000 (bench-500000..): hints;
#   4. an open-loop mixed load at half the all-up PUT throughput, through
#      node1 and node2, on other keys: the p99.9 without handoff;
#   5. restart node3; once node1 sees it up, the same load again while its
#      hints are handed back: the p99.9 during handoff, and the delivery
#      rate (hints pending, over the time from node3 seen up to none).
#
# Usage: scripts/bench-hints.sh [--no-build] [--duration S]
NAME=bench-hints
PORT=12
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
HINT_KEYS=100000
EP12="http://127.0.0.1:18${PORT}1,http://127.0.0.1:18${PORT}2"
bench12() { "$BENCH" --target dynamo --endpoints "$EP12" --clients 64 --json "$@" 2>/dev/null | tail -1; }
status() { curl -sf "127.0.0.1:18${PORT}$1/status"; }
pending() { # hints held by node1 and node2 together
    echo $(( $(status 1 | jq .hints.pending) + $(status 2 | jq .hints.pending) ))
}
seen_as() { # K STATUS: node1 sees node K as STATUS
    status 1 | jq -e ".members[] | select(.node_id == \"node$1\") | .status == \"$2\"" >/dev/null
}
now() { date +%s.%N; }

for k in 1 2 3; do start $k; done
for k in 1 2 3; do wait_until "node$k ready" 60 members_up $k 3; done

UP=$(bench --op put --duration-s "$DURATION")
echo "all up: $UP" >&2
kill -KILL "${PIDS[3]}"; wait "${PIDS[3]}" 2>/dev/null || true
wait_until "node3 seen down" 30 seen_as 3 down
DOWN=$(bench12 --op put --keys "$KEYS" --duration-s "$DURATION")
echo "node3 down: $DOWN" >&2

bench12 --op get --preload --keys $HINT_KEYS --key-offset 200000 --duration-s 1 --warmup-s 0 > /dev/null
# The load's own keys exist before it reads them (no 404s to count).
bench12 --op get --preload --keys "$KEYS" --key-offset 500000 --duration-s 1 --warmup-s 0 > /dev/null
HINTS=$(pending)
echo "hints pending: $HINTS" >&2

RATE=${LOAD_RATE:-$(printf '%.0f' "$(echo "$(echo "$UP" | jq .throughput_ops_s) / 2" | bc -l)")}
load() { bench12 --op mixed --rate "$RATE" --keys "$KEYS" --key-offset 500000 --warmup-s 1 "$@"; }
BASE=$(load --duration-s 10)
echo "load without handoff: $BASE" >&2

start 3
wait_until "node3 seen up" 60 seen_as 3 up
T0=$(now)
# The load starts once node3 is back, so its p99.9 is that of the handoff,
# not of a process starting up on the same two cores.
load --duration-s 10 > "$TMP/handoff.json" &
LOAD=$!
no_hints() { [ "$(pending)" -eq 0 ]; }
wait_until "hints delivered" ${HINTS_TIMEOUT:-300} no_hints
T1=$(now)
wait $LOAD
DURING=$(cat "$TMP/handoff.json")
echo "load during handoff: $DURING" >&2

f() { echo "$1" | jq ".$2"; }
ratio() { echo "$1 / $2" | bc -l | cut -c1-4; }
SECS=$(echo "$T1 - $T0" | bc -l)
echo
echo "one node of three down, then back (N=3 R=2 W=2, 64 clients, 1 KiB values)"
echo "  PUT all up:             $(f "$UP" throughput_ops_s) ops/s, p99.9 $(f "$UP" p999_ms) ms"
echo "  PUT node3 down:         $(f "$DOWN" throughput_ops_s) ops/s, p99.9 $(f "$DOWN" p999_ms) ms" \
     "(throughput $(ratio "$(f "$DOWN" throughput_ops_s)" "$(f "$UP" throughput_ops_s)")x, p99.9 $(ratio "$(f "$DOWN" p999_ms)" "$(f "$UP" p999_ms)")x)"
echo "  hints delivered:        $HINTS in $(printf '%.1f' "$SECS") s ($(printf '%.0f' "$(echo "$HINTS / $SECS" | bc -l)") hints/s)"
echo "  load p99.9 (${RATE} ops/s mixed): $(f "$BASE" p999_ms) ms without handoff," \
     "$(f "$DURING" p999_ms) ms during ($(ratio "$(f "$DURING" p999_ms)" "$(f "$BASE" p999_ms)")x); errors $(f "$BASE" errors) / $(f "$DURING" errors)"
