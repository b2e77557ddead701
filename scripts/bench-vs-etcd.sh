#!/usr/bin/env bash
# Runs the same workload against a local 3-node dynamo cluster and a local
# 3-member etcd cluster (its v3 HTTP/JSON gateway), one after the other, and
# prints a comparison: PUT and GET throughput and p99.9, and the peak RSS of
# every node.
#
# Workload: N=3 R=2 W=2, 1 KiB values, 10,000 keys, 64 concurrent clients
# spread round-robin over the three nodes; closed loop, 2 s warm-up, 20 s
# measured per operation. GETs run after a preload of every key.
#
# Usage: scripts/bench-vs-etcd.sh [--sync] [--etcd-only | --dynamo-only]
#                                 [--duration S] [--clients C] [--keys K]
#                                 [--value-size B] [--no-build]
#   --sync         start dynamo with --sync-writes true (an fsync per write,
#                  as etcd does on every commit)
#   --etcd-only    only the etcd half (no dynamo build or cluster)
#   --dynamo-only  only the dynamo half
#   --no-build     use the binaries as they are
# Environment: BENCH_BIN, DYNAMO_BIN (default target/release/...); a binary
# given this way is not built. ETCD_BIN (default: etcd on the PATH).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SYNC=false
RUN_DYNAMO=true
RUN_ETCD=true
BUILD=true
DURATION=20
WARMUP=2
CLIENTS=64
KEYS=10000
VALUE_SIZE=1024
THREADS=2

die() { echo "bench-vs-etcd: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --sync) SYNC=true ;;
        --etcd-only) RUN_DYNAMO=false ;;
        --dynamo-only) RUN_ETCD=false ;;
        --no-build) BUILD=false ;;
        --duration) DURATION="${2:?}"; shift ;;
        --clients) CLIENTS="${2:?}"; shift ;;
        --keys) KEYS="${2:?}"; shift ;;
        --value-size) VALUE_SIZE="${2:?}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
$RUN_DYNAMO || $RUN_ETCD || die "--etcd-only and --dynamo-only exclude each other"

# ---------------------------------------------------------------- tools
need_apt() {
    # need_apt COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "bench-vs-etcd: installing $2" >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y "$2" >/dev/null || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
    else
        sudo apt-get install -y "$2" >/dev/null
    fi
    command -v "$1" >/dev/null 2>&1 || die "$1 not found (package $2)"
}
need_apt curl curl
need_apt jq jq
if $RUN_ETCD; then
    if [ -z "${ETCD_BIN:-}" ]; then
        need_apt etcd etcd-server
        ETCD_BIN="$(command -v etcd)"
    fi
fi

# ---------------------------------------------------------------- build
PKGS=()
if [ -z "${BENCH_BIN:-}" ]; then
    BENCH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/dynamo-bench"
    PKGS+=(-p dynamo-bench)
fi
if $RUN_DYNAMO && [ -z "${DYNAMO_BIN:-}" ]; then
    DYNAMO_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/dynamo"
    PKGS+=(-p dynamo-http)
fi
if $BUILD && [ ${#PKGS[@]} -gt 0 ]; then
    cargo build --release "${PKGS[@]}"
fi
[ -x "$BENCH_BIN" ] || die "no load generator at $BENCH_BIN"
if $RUN_DYNAMO; then [ -x "$DYNAMO_BIN" ] || die "no dynamo binary at $DYNAMO_BIN"; fi

# ---------------------------------------------------------------- processes
TMP="$(mktemp -d -t bench-vs-etcd.XXXXXX)"
PIDS=()

BENCH_PID=""

stop_all() {
    local pid deadline
    if [ -n "$BENCH_PID" ]; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
        BENCH_PID=""
    fi
    [ ${#PIDS[@]} -gt 0 ] || return 0
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 10))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [ $rc -ne 0 ] && [ -d "$TMP" ]; then
        for f in "$TMP"/*.log; do
            [ -f "$f" ] || continue
            echo "---- last lines of $(basename "$f")" >&2
            tail -n 15 "$f" >&2
        done
    fi
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for DESCRIPTION TIMEOUT_S PID COMMAND...: runs COMMAND until it succeeds,
# failing if the process PID dies or TIMEOUT_S passes.
wait_for() {
    local what="$1" timeout="$2" pid="$3"
    shift 3
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || die "$what: the process exited"
        [ $SECONDS -lt $deadline ] || die "$what: not ready after ${timeout}s"
        sleep 0.2
    done
}

http_ok() { curl -sf --max-time 2 -o /dev/null "$1"; }

members_are() {
    # members_are URL COUNT: /status lists COUNT members.
    local n
    n="$(curl -sf --max-time 2 "$1/status" | jq '.members | length')" || return 1
    [ "$n" = "$2" ]
}

vmhwm_mib() {
    # Peak resident set size of a process in MiB (VmHWM), or "?".
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024; found = 1 } END { if (!found) print "?" }' \
        "/proc/$1/status" 2>/dev/null || echo "?"
}

# bench TARGET OP ENDPOINTS [extra args...]: one measured run; its JSON summary
# goes to $TMP/TARGET-OP.json.
bench() {
    local target="$1" op="$2" endpoints="$3"
    shift 3
    echo "== $target $op: $CLIENTS clients, ${DURATION}s" >&2
    # In the background and waited for, so that a signal stops it at once.
    timeout $((DURATION + WARMUP + 360)) "$BENCH_BIN" --target "$target" --op "$op" \
        --endpoints "$endpoints" --clients "$CLIENTS" --keys "$KEYS" \
        --value-size "$VALUE_SIZE" --duration-s "$DURATION" --warmup-s "$WARMUP" \
        --threads "$THREADS" --json "$@" >"$TMP/$target-$op.json" &
    BENCH_PID=$!
    wait "$BENCH_PID" || die "$target $op: the load generator failed"
    BENCH_PID=""
    jq -c '{op, target, ops, errors, errors_by_kind, throughput_ops_s, p50_ms, p99_ms, p999_ms, max_ms}' \
        "$TMP/$target-$op.json" >&2
}

# ---------------------------------------------------------------- dynamo
DYNAMO_RSS=()
if $RUN_DYNAMO; then
    SEEDS=127.0.0.1:19001,127.0.0.1:19002,127.0.0.1:19003
    DYNAMO_PIDS=()
    DYNAMO_URLS=()
    for k in 1 2 3; do
        "$DYNAMO_BIN" serve --node-id "node$k" \
            --http-addr "127.0.0.1:1800$k" --peer-addr "127.0.0.1:1900$k" \
            --data-dir "$TMP/node$k" --seeds "$SEEDS" --n 3 --r 2 --w 2 \
            --sync-writes "$SYNC" >"$TMP/dynamo-node$k.log" 2>&1 &
        PIDS+=($!)
        DYNAMO_PIDS+=($!)
        DYNAMO_URLS+=("http://127.0.0.1:1800$k")
    done
    for i in 0 1 2; do
        wait_for "dynamo node$((i + 1)) /health" 60 "${DYNAMO_PIDS[$i]}" http_ok "${DYNAMO_URLS[$i]}/health"
    done
    for i in 0 1 2; do
        wait_for "dynamo node$((i + 1)) membership" 60 "${DYNAMO_PIDS[$i]}" members_are "${DYNAMO_URLS[$i]}" 3
    done
    echo "dynamo: 3 nodes up (sync_writes=$SYNC)" >&2
    ENDPOINTS="$(IFS=,; echo "${DYNAMO_URLS[*]}")"
    bench dynamo put "$ENDPOINTS"
    bench dynamo get "$ENDPOINTS" --preload
    for i in 0 1 2; do DYNAMO_RSS+=("$(vmhwm_mib "${DYNAMO_PIDS[$i]}")"); done
    stop_all
fi

# ---------------------------------------------------------------- etcd
ETCD_RSS=()
if $RUN_ETCD; then
    CLIENT_PORTS=(2379 22379 32379)
    PEER_PORTS=(2380 22380 32380)
    CLUSTER="e1=http://127.0.0.1:2380,e2=http://127.0.0.1:22380,e3=http://127.0.0.1:32380"
    ETCD_PIDS=()
    ETCD_URLS=()
    for i in 0 1 2; do
        name="e$((i + 1))"
        "$ETCD_BIN" --name "$name" --data-dir "$TMP/etcd-$name" \
            --listen-client-urls "http://127.0.0.1:${CLIENT_PORTS[$i]}" \
            --advertise-client-urls "http://127.0.0.1:${CLIENT_PORTS[$i]}" \
            --listen-peer-urls "http://127.0.0.1:${PEER_PORTS[$i]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${PEER_PORTS[$i]}" \
            --initial-cluster "$CLUSTER" --initial-cluster-state new \
            --initial-cluster-token bench-vs-etcd >"$TMP/etcd-$name.log" 2>&1 &
        PIDS+=($!)
        ETCD_PIDS+=($!)
        ETCD_URLS+=("http://127.0.0.1:${CLIENT_PORTS[$i]}")
    done
    etcd_healthy() { curl -sf --max-time 2 "$1/health" | grep -q '"health": *"true"'; }
    for i in 0 1 2; do
        wait_for "etcd e$((i + 1)) /health" 60 "${ETCD_PIDS[$i]}" etcd_healthy "${ETCD_URLS[$i]}"
    done
    # The gateway's path: /v3 since etcd 3.4, /v3beta in 3.3, /v3alpha before.
    PREFIX=""
    for p in /v3 /v3beta /v3alpha; do
        if curl -sf --max-time 2 -o /dev/null -X POST -H 'Content-Type: application/json' \
            -d '{"key":"YmVuY2gtcHJvYmU=","value":"eA=="}' "${ETCD_URLS[0]}$p/kv/put"; then
            PREFIX="$p"
            break
        fi
    done
    [ -n "$PREFIX" ] || die "etcd: no HTTP/JSON gateway answers on /v3, /v3beta or /v3alpha"
    echo "etcd: 3 members up ($("$ETCD_BIN" --version | head -n 1)), gateway $PREFIX" >&2
    ENDPOINTS="$(IFS=,; echo "${ETCD_URLS[*]}")"
    bench etcd put "$ENDPOINTS" --etcd-prefix "$PREFIX"
    bench etcd get "$ENDPOINTS" --etcd-prefix "$PREFIX" --preload
    for i in 0 1 2; do ETCD_RSS+=("$(vmhwm_mib "${ETCD_PIDS[$i]}")"); done
    stop_all
fi

# ---------------------------------------------------------------- report
fig() {
    # fig TARGET OP FIELD: a figure from a run's summary, or "-".
    local f="$TMP/$1-$2.json"
    [ -f "$f" ] && jq -r ".$3" "$f" || echo "-"
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}
echo
echo "dynamo vs etcd: $CLIENTS clients, $KEYS keys, $VALUE_SIZE B values, ${DURATION}s per op, N=3 R=2 W=2, dynamo sync_writes=$SYNC"
printf '%-22s %14s %14s %14s\n' "" "dynamo" "etcd" "dynamo/etcd"
for op in put get; do
    OP="$(echo "$op" | tr a-z A-Z)"
    for field in throughput_ops_s p50_ms p99_ms p999_ms errors; do
        case "$field" in
            throughput_ops_s) label="$OP ops/s" ;;
            p50_ms) label="$OP p50 ms" ;;
            p99_ms) label="$OP p99 ms" ;;
            p999_ms) label="$OP p99.9 ms" ;;
            errors) label="$OP errors" ;;
        esac
        d="$(fig dynamo "$op" "$field")"
        e="$(fig etcd "$op" "$field")"
        r="-"
        case "$field" in throughput_ops_s|p999_ms) r="$(ratio "$d" "$e")" ;; esac
        printf '%-22s %14s %14s %14s\n' "$label" "$d" "$e" "$r"
    done
done
echo
for i in 0 1 2; do
    printf '%-22s %14s %14s\n' "peak RSS node $((i + 1)) MiB" "${DYNAMO_RSS[$i]:--}" "${ETCD_RSS[$i]:--}"
done
