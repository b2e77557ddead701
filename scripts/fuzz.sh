#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#   FUZZ_TARGETS="frame_decode http_parse" scripts/fuzz.sh 300
#
# Installs cargo-fuzz if it is missing, builds the targets (own workspace,
# own target dir: fuzz/target), and runs each from its committed seeds
# (fuzz/corpus/<target>/, read-only) plus a working corpus that grows in
# fuzz/target/corpus/<target>/ (not committed). cargo-fuzz needs nightly
# features; RUSTC_BOOTSTRAP=1 lets the stable toolchain provide them.
# Targets are built with debug assertions, so integer overflow is a crash
# too. A crash leaves its input in fuzz/artifacts/<target>/: make it a test
# in tests/fuzz_regressions.rs, fix it, and run the target again.
#
# Prints one line per target and a final `N passed, N failed`; exits
# non-zero if any target crashed (or failed to build or run).
set -uo pipefail

seconds="${1:-60}"
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
if [ -z "$targets" ]; then
    echo "no fuzz targets found" >&2
    exit 1
fi

echo "== building fuzz targets"
if ! cargo fuzz build --debug-assertions; then
    echo "0 passed, $(echo "$targets" | wc -w) failed"
    exit 1
fi

logs=fuzz/target/logs
mkdir -p "$logs"
passed=0
failed=0
summary=()
for target in $targets; do
    work="fuzz/target/corpus/$target"
    seeds="fuzz/corpus/$target"
    mkdir -p "$work" "$seeds"
    log="$logs/$target.log"
    echo "== $target: ${seconds}s"
    # -timeout: one input taking over 10 s is a hang, reported as a crash.
    timeout "$((seconds + 300))" cargo fuzz run --debug-assertions "$target" "$work" "$seeds" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
        line="PASS $target: ${runs:-?} executions in ${took:-?} s"
    else
        failed=$((failed + 1))
        line="FAIL $target (exit $status): ${runs:-?} executions; see $log and fuzz/artifacts/$target/"
        grep -m1 -A3 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" | sed 's/^/    /'
    fi
    echo "$line"
    summary+=("$line")
done

echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
