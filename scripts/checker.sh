#!/usr/bin/env bash
# The lost-write checker, long version: the same tests as the CI run
# (tests/checker.rs: real processes killed, paused and restarted; an
# in-process cluster partitioned with lossy and slow links), with bigger
# parameters, in release mode, for each node count in CHECKER_NODES_LIST.
#
#   scripts/checker.sh                                  # 3 and 5 nodes, 300 s or 100000 writes per test
#   CHECKER_SECONDS=60 CHECKER_NODES_LIST=3 scripts/checker.sh
#   CHECKER_SEED=0x18eb... CHECKER_NODES_LIST=5 scripts/checker.sh   # replay a printed seed
#   CHECKER_ROUNDS=10 scripts/checker.sh                # ten rounds, a fresh seed each
#
# Knobs (env): CHECKER_OPS (writes, all clients together), CHECKER_SECONDS
# (workload duration bound), CHECKER_CLIENTS, CHECKER_KEYS,
# CHECKER_CONVERGE_SECONDS, CHECKER_SEED, CHECKER_NODES_LIST, CHECKER_ROUNDS,
# CHECKER_FILTER (a test-name filter: "processes" or "partitions").
# Prints one summary line per run and exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

export CHECKER_OPS="${CHECKER_OPS:-100000}"
export CHECKER_SECONDS="${CHECKER_SECONDS:-300}"
export CHECKER_CONVERGE_SECONDS="${CHECKER_CONVERGE_SECONDS:-120}"
nodes_list="${CHECKER_NODES_LIST:-3 5}"
rounds="${CHECKER_ROUNDS:-1}"
filter="${CHECKER_FILTER:-}"

cargo build --release --workspace --bins
cargo test --release --test checker --no-run

log_dir="${TMPDIR:-/tmp}/dynamo-checker-$$"
mkdir -p "$log_dir"
echo "logs in $log_dir"
for round in $(seq 1 "$rounds"); do
  for nodes in $nodes_list; do
    log="$log_dir/round$round-nodes$nodes.log"
    echo "== round $round: $nodes nodes, up to ${CHECKER_SECONDS}s / ${CHECKER_OPS} writes per test"
    start=$(date +%s)
    if CHECKER_NODES="$nodes" cargo test --release --test checker -- --nocapture --test-threads 1 $filter \
         >"$log" 2>&1; then
      grep -E '^checker\[[a-z-]+\] .*\|' "$log" | sort -u
      echo "   ok in $(( $(date +%s) - start ))s"
    else
      grep -E '^checker\[[a-z-]+\] .*\|' "$log" | sort -u || true
      grep -E '^  (lost|phantom|divergent|stale|unexpected)' "$log" | head -40 || true
      grep -E 'panicked|replay with' "$log" | head -10 || true
      echo "FAILED after $(( $(date +%s) - start ))s: full log $log" >&2
      exit 1
    fi
  done
done
echo "all checker runs passed"
