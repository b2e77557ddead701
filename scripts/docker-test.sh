#!/usr/bin/env bash
# End-to-end test of the docker-compose deployment (SPEC §6): build the
# release binary and the FROM-scratch image, start the three-node cluster of
# docker-compose.yml, then
#   - wait for every node's health check and for one cluster of three;
#   - write and read through different nodes (curl and the dynamo CLI);
#   - `docker stop` one node: writes with w=2 still succeed (w=3 gets 503);
#   - start it again: what it stored before is still there, and what was
#     written while it was down reaches it;
#   - cut it off with `docker network disconnect`: the majority side still
#     takes writes with w=2; reconnect it: it takes w=3 writes again;
#   - `docker-compose down -v`.
# Skipped (exit 0) when no Docker engine answers. The cluster part is bounded
# by DOCKER_TEST_BUDGET seconds (default 240) and always cleaned up; the
# cargo build before it by DOCKER_TEST_BUILD_TIMEOUT (default 2400: a cold
# release build, RocksDB included, took 17 minutes on two cores; an
# incremental one takes well under one).
# Ends with "N passed, N failed"; exits non-zero on any failure.
#
# Host ports: NODE1_PORT..NODE3_PORT (default 28001-28003, so a running
# `scripts/dev` or the real deployment on 8001-8003 is not in the way).
# Compose project: DOCKER_TEST_PROJECT (default dynamo-test).
set -uo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."

PROJECT=${DOCKER_TEST_PROJECT:-dynamo-test}
BUDGET=${DOCKER_TEST_BUDGET:-240}
BUILD_TIMEOUT=${DOCKER_TEST_BUILD_TIMEOUT:-2400}
export NODE1_PORT=${NODE1_PORT:-28001}
export NODE2_PORT=${NODE2_PORT:-28002}
export NODE3_PORT=${NODE3_PORT:-28003}
BIN="${CARGO_TARGET_DIR:-target}/release/dynamo"

log() { echo "[$(date +%H:%M:%S)] $*"; }

compose() { timeout 120 "${COMPOSE[@]}" -p "$PROJECT" "$@"; }

find_compose() {
  if command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  else
    return 1
  fi
}

# ---------------------------------------------------------------------------
# The cluster phase: run by the outer script under `timeout`.
# ---------------------------------------------------------------------------

if [ "${1:-}" = "--cluster-phase" ]; then
  find_compose || exit 1
  RESULTS=$2

  pass() { log "PASS: $*"; echo pass >>"$RESULTS"; }
  fail() { log "FAIL: $*"; echo fail >>"$RESULTS"; }
  # check DESCRIPTION COMMAND...: one counted result.
  check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
  }

  port() { eval "echo \$NODE${1}_PORT"; }
  url() { echo "http://127.0.0.1:$(port "$1")"; }
  cid() { compose ps -q "node$1"; }

  # req METHOD NODE PATH [curl args...]: sets STATUS (000 when unreachable)
  # and BODY.
  req() {
    local method=$1 node=$2 path=$3
    shift 3
    local out
    out=$(mktemp)
    STATUS=$(curl -s -m 10 -o "$out" -w '%{http_code}' -X "$method" "$@" "$(url "$node")$path") || true
    [ -n "$STATUS" ] || STATUS=000
    BODY=$(cat "$out")
    rm -f "$out"
  }
  # expect STATUS METHOD NODE PATH [curl args...]
  expect() {
    local want=$1
    shift
    req "$@"
    if [ "$STATUS" != "$want" ]; then
      log "  $1 node$2 $3: got $STATUS, want $want: $BODY"
      return 1
    fi
  }
  # expect_value VALUE NODE PATH: GET answers 200 with exactly VALUE.
  expect_value() {
    local value=$1 node=$2 path=$3
    expect 200 GET "$node" "$path" || return 1
    if [ "$BODY" != "$value" ]; then
      log "  GET node$node $path: body '$BODY', want '$value'"
      return 1
    fi
  }
  # until_ok SECONDS COMMAND...: retry once a second until it succeeds;
  # only the last attempt may speak.
  until_ok() {
    local deadline=$((SECONDS + $1))
    shift
    while [ "$SECONDS" -lt "$deadline" ]; do
      "$@" >/dev/null 2>&1 && return 0
      sleep 1
    done
    "$@"
  }
  healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$(cid "$1")" 2>/dev/null)" = healthy ]; }
  all_healthy() { healthy 1 && healthy 2 && healthy 3; }
  # Every node's /status lists three members, all up.
  one_cluster() {
    local i
    for i in 1 2 3; do
      req GET "$i" /status
      [ "$STATUS" = 200 ] || return 1
      [ "$(grep -o '"status":"up"' <<<"$BODY" | wc -l)" = 3 ] || return 1
    done
  }
  b64() { printf '%s' "$1" | base64 | tr -d '\n'; }
  # NODE holds VALUE for KEY in its own replica (GET /admin/local/KEY).
  local_has() {
    req GET "$1" "/admin/local/$2"
    [ "$STATUS" = 200 ] && grep -q "\"$(b64 "$3")\"" <<<"$BODY"
  }

  log "preparing the image context and building the image"
  check "image context prepared (binary + the libraries it links)" docker/prepare-context.sh --no-build
  check "image builds FROM scratch, from local material only" compose build node1
  log "starting the cluster (project $PROJECT, ports $NODE1_PORT $NODE2_PORT $NODE3_PORT)"
  if ! compose up -d; then
    fail "docker-compose up -d"
    exit 1
  fi
  pass "docker-compose up -d"
  started=$SECONDS
  check "all three health checks pass (within 60 s)" until_ok 60 all_healthy
  check "one cluster: every node lists three members up (within 30 s)" until_ok 30 one_cluster
  log "cluster ready $((SECONDS - started)) s after up"
  "$BIN" status --node "$(url 2)" || true

  log "writes and reads through different nodes"
  check "PUT greeting via node1: 204" expect 204 PUT 1 /kv/greeting --data-binary 'hello docker' -H 'Content-Type: text/plain'
  check "GET greeting via node2: the value" expect_value 'hello docker' 2 /kv/greeting
  check "GET greeting via node3: the value" expect_value 'hello docker' 3 /kv/greeting
  check "CLI put via node3" "$BIN" --node "$(url 3)" put cli-key 'from the cli'
  check "CLI get via node1: the value" test "$("$BIN" get cli-key --node "$(url 1)")" = 'from the cli'
  check "PUT before-stop via node1 with w=3: 204" expect 204 PUT 1 '/kv/before-stop?w=3' --data-binary 'kept on disk'

  log "docker stop node3"
  c3=$(cid 3)
  check "docker stop node3 (SIGTERM)" timeout 60 docker stop "$c3"
  check "node3 exited 0 on SIGTERM" test "$(docker inspect -f '{{.State.ExitCode}}' "$c3")" = 0
  check "PUT during-stop via node1 with w=2: 204" expect 204 PUT 1 '/kv/during-stop?w=2' --data-binary 'written while node3 was down'
  check "PUT greeting via node2 with w=2: 204" expect 204 PUT 2 '/kv/greeting?w=2' --data-binary 'hello again'
  check "GET during-stop via node2 with r=2: the value" expect_value 'written while node3 was down' 2 '/kv/during-stop?r=2'
  check "PUT via node1 with w=3 while node3 is down: honest 503" expect 503 PUT 1 '/kv/needs-three?w=3' --data-binary x

  log "docker start node3"
  check "docker start node3" timeout 60 docker start "$c3"
  check "node3 healthy again (within 60 s)" until_ok 60 healthy 3
  check "node3's own replica still holds before-stop (/admin/local)" local_has 3 before-stop 'kept on disk'
  check "GET before-stop via node3 with r=3: the value" until_ok 15 expect_value 'kept on disk' 3 '/kv/before-stop?r=3'
  check "GET during-stop via node3 with r=3: the value" until_ok 15 expect_value 'written while node3 was down' 3 '/kv/during-stop?r=3'
  check "during-stop reaches node3's replica (hint or read repair, within 30 s)" \
    until_ok 30 local_has 3 during-stop 'written while node3 was down'

  log "partition: docker network disconnect node3"
  net=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$c3" | awk '{print $1}')
  ip_before=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$c3")
  check "disconnect node3 from $net" timeout 30 docker network disconnect "$net" "$c3"
  cut_off() { [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$(url 3)/health")" != 200 ]; }
  check "node3 is cut off (its published port no longer answers)" until_ok 10 cut_off
  check "PUT during-partition via node1 with w=2: 204" expect 204 PUT 1 '/kv/during-partition?w=2' --data-binary 'majority side'
  check "PUT greeting via node2 with w=2: 204" expect 204 PUT 2 '/kv/greeting?w=2' --data-binary 'hello majority'
  check "GET during-partition via node2 with r=2: the value" expect_value 'majority side' 2 '/kv/during-partition?r=2'

  log "reconnecting node3"
  check "reconnect node3 (alias node3)" timeout 30 docker network connect --alias node3 "$net" "$c3"
  ip_after=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$c3")
  log "node3's address: $ip_before before, $ip_after after"
  if [ "$ip_before" != "$ip_after" ]; then
    log "NOTE: node3 came back on a new address; its peer listener is bound to the old one"
    log "      (peer_addr is resolved once, at start), so peers cannot reach it until it restarts"
  fi
  check "node3 answers again (within 30 s)" until_ok 30 healthy 3
  check "PUT via node3 with w=3 after the partition heals: 204 (within 20 s)" \
    until_ok 20 expect 204 PUT 3 '/kv/after-partition?w=3' --data-binary 'all three again'
  check "GET during-partition via node3 with r=3: the value" \
    until_ok 15 expect_value 'majority side' 3 '/kv/during-partition?r=3'
  check "node3 lists three members up" until_ok 15 one_cluster

  if grep -q fail "$RESULTS"; then
    log "logs of the nodes (tails):"
    compose logs --tail 25 || true
  fi
  exit 0
fi

# ---------------------------------------------------------------------------
# The outer script: skip, build, run the cluster phase bounded, clean up.
# ---------------------------------------------------------------------------

if ! command -v docker >/dev/null 2>&1; then
  echo "SKIP: docker-test: no docker command on this machine (the compose deployment is not tested)"
  exit 0
fi
if ! timeout 20 docker info >/dev/null 2>&1; then
  echo "SKIP: docker-test: no Docker engine answers 'docker info' (the compose deployment is not tested)"
  exit 0
fi
if ! find_compose; then
  echo "SKIP: docker-test: a Docker engine is present but neither docker-compose nor 'docker compose' is"
  exit 0
fi
for tool in curl base64 timeout; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "docker-test: $tool is required" >&2
    exit 1
  fi
done

RESULTS=$(mktemp)
cleanup() {
  log "cleaning up: docker-compose -p $PROJECT down -v"
  timeout 60 "${COMPOSE[@]}" -p "$PROJECT" down -v --remove-orphans --timeout 10 >/dev/null 2>&1 ||
    echo "docker-test: cleanup failed; run: ${COMPOSE[*]} -p $PROJECT down -v" >&2
  rm -f "$RESULTS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
log "building the release binary (bounded by ${BUILD_TIMEOUT} s)"
if ! timeout "$BUILD_TIMEOUT" cargo build --release -p dynamo-http --bin dynamo; then
  echo "FAIL: cargo build --release"
  echo "0 passed, 1 failed"
  exit 1
fi
log "built in $((SECONDS - t0)) s"

# Leftovers of an interrupted earlier run would be in the way.
timeout 60 "${COMPOSE[@]}" -p "$PROJECT" down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true

t1=$SECONDS
timeout -k 10 "$BUDGET" "$SELF" --cluster-phase "$RESULTS"
rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  log "FAIL: the cluster phase did not finish within ${BUDGET} s"
  echo fail >>"$RESULTS"
elif [ "$rc" != 0 ]; then
  log "FAIL: the cluster phase stopped early (exit $rc)"
  echo fail >>"$RESULTS"
fi
passed=$(grep -c '^pass$' "$RESULTS")
failed=$(grep -c '^fail$' "$RESULTS")
log "cluster phase took $((SECONDS - t1)) s; whole script so far $((SECONDS - t0)) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
