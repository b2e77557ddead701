# Shared by the cluster benchmarks (bench-ae.sh, bench-join.sh, ...);
# sourced, not run. Before sourcing set NAME (the temp dir's name) and PORT
# (a two-digit prefix: node K gets HTTP on 18<PORT>K and peers on
# 19<PORT>K). Parses [--no-build] [--duration S] [--keys N] [--value-size B]
# [--rate R], builds, and provides: start K, members_up K COUNT, wait_until
# DESC TIMEOUT CMD..., half_load CMD..., bench ARGS... (its runs share one
# file of write contexts), node_cpu_ms K, nodes_cpu_ms K, and the variables
# BIN, BENCH, TMP, DURATION, KEYS, VALUE_SIZE, EP.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD=true
DURATION=30
KEYS=10000
VALUE_SIZE=1024
LOAD_RATE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=false ;;
        --duration) DURATION="${2:?}"; shift ;;
        --keys) KEYS="${2:?}"; shift ;;
        --value-size) VALUE_SIZE="${2:?}"; shift ;;
        --rate) LOAD_RATE="${2:?}"; shift ;;
        *) echo "usage: $0 [--no-build] [--duration S] [--keys N] [--value-size B] [--rate R]" >&2; exit 2 ;;
    esac
    shift
done
command -v jq >/dev/null || apt-get install -y jq >/dev/null
$BUILD && cargo build --release -p dynamo-http -p dynamo-bench
# DYNAMO_BIN runs another build of the node (an A/B comparison).
BIN="${DYNAMO_BIN:-${CARGO_TARGET_DIR:-target}/release/dynamo}"
BENCH="${CARGO_TARGET_DIR:-target}/release/dynamo-bench"
TMP="$(mktemp -d -t "$NAME.XXXXXX")"
declare -a PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

SEEDS="127.0.0.1:19${PORT}1,127.0.0.1:19${PORT}2,127.0.0.1:19${PORT}3"
EP="http://127.0.0.1:18${PORT}1,http://127.0.0.1:18${PORT}2,http://127.0.0.1:18${PORT}3"
start() { # K
    "$BIN" serve --node-id "node$1" --http-addr "127.0.0.1:18${PORT}$1" --peer-addr "127.0.0.1:19${PORT}$1" \
        --data-dir "$TMP/node$1" --seeds "$SEEDS" > "$TMP/node$1.log" 2>&1 &
    PIDS[$1]=$!
}
members_up() { # K COUNT: node K serves (has a ring) and sees COUNT members up
    # Members show as up a moment before the first ring reaches every node;
    # until then a node answers 503 "not serving yet", and a load started on
    # member status alone saw its first writes refused.
    curl -sf "127.0.0.1:18${PORT}$1/health" >/dev/null &&
        curl -sf "127.0.0.1:18${PORT}$1/status" | jq -e "[.members[] | select(.status == \"up\")] | length == $2" >/dev/null
}
wait_until() { # DESC TIMEOUT CMD...
    local desc=$1 t=$2; shift 2
    local end=$((SECONDS + t))
    until "$@"; do
        [ $SECONDS -lt $end ] || { echo "timed out waiting for $desc" >&2; exit 1; }
        sleep 1
    done
}
node_cpu_ms() { # K: user + system CPU of node K so far, in ms
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / hz}' "/proc/${PIDS[$1]}/stat"
}
nodes_cpu_ms() { # K: the same of nodes 1..K together
    local k total=0
    for k in $(seq "$1"); do total=$(echo "$total + $(node_cpu_ms "$k")" | bc); done
    echo "$total"
}
bench() { # the runs share their write contexts, so no run adds siblings
    # Its progress goes to $TMP/bench.err; a preload that could not write
    # every key (reads of the missing keys would count as 404 errors) is
    # reported here.
    "$BENCH" --target dynamo --endpoints "$EP" --keys "$KEYS" --value-size "$VALUE_SIZE" --clients 64 --json \
        --contexts "$TMP/contexts" "$@" 2>"$TMP/bench.err" |
        tail -1
    grep -h -e 'could not be written' -e 'failed, by kind' -e '^warning' "$TMP/bench.err" | grep -v '; 0 key(s)' >&2 || true
}
half_load() { # CMD...: the load a script runs, --rate R if given, else half
    # the throughput the bench run CMD measures (printed to stderr)
    if [ -n "$LOAD_RATE" ]; then
        echo "load: $LOAD_RATE ops/s (given, maximum not probed)" >&2
        echo "$LOAD_RATE"
        return
    fi
    local max rate
    max=$("$@" | jq .throughput_ops_s)
    rate=$(printf '%.0f' "$(echo "$max / 2" | bc -l)")
    echo "max throughput: $max ops/s; load at half: $rate ops/s" >&2
    echo "$rate"
}
