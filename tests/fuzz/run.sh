#!/usr/bin/env bash
# tests/fuzz/run.sh [--build DIR] [--time SECONDS] [TARGET...] [-- LIBFUZZER-OPTIONS...]
# Runs the libFuzzer targets built in DIR (default build-fuzz, configured with -DTASKMILL_FUZZ=ON)
# for SECONDS each (default 20) with their dictionaries. Each keeps a working corpus in
# DIR/fuzz/corpus/TARGET, seeded from tests/fuzz/seeds/TARGET (never written to); crash inputs
# go to DIR/fuzz/artifacts/, logs to DIR/fuzz/logs/. TARGET: names request ipc conf multipart
# range net (default: all). Exits 1 when any target crashed, leaked, timed out or hit UB.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$src/build-fuzz
secs=20
targets=()
extra=()
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$(realpath "$2"); shift 2 ;;
    --time) secs=$2; shift 2 ;;
    -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "usage: tests/fuzz/run.sh [--build DIR] [--time SECONDS] [TARGET...] [-- OPTIONS]" >&2
        exit 2 ;;
    *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(names request ipc conf multipart range net)

out=$build/fuzz
mkdir -p "$out/artifacts" "$out/logs"
# libFuzzer reports leaks itself; these make the stacks readable and UB fatal.
export ASAN_OPTIONS=detect_leaks=1:symbolize=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
unset LSAN_OPTIONS

failed=()
for t in "${targets[@]}"; do
    bin=$build/tests/fuzz/fuzz_$t
    if [ ! -x "$bin" ]; then
        echo "fuzz_$t: not built in $build (cmake -DTASKMILL_FUZZ=ON)" >&2
        failed+=("$t")
        continue
    fi
    corpus=$out/corpus/$t
    mkdir -p "$corpus"
    # The shipped config is a seed too, read from the tree so it never goes stale.
    [ "$t" = conf ] && cp "$src/conf/taskmill.conf" "$corpus/shipped.conf"
    log=$out/logs/$t.log
    rc=0
    (cd "$out/logs" && "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -dict="$src/tests/fuzz/dict/$t.dict" -artifact_prefix="$out/artifacts/$t-" \
        -print_final_stats=1 "${extra[@]}" "$corpus" "$src/tests/fuzz/seeds/$t") >"$log" 2>&1 ||
        rc=$?
    stats=$(grep -E '^#[0-9]+' "$log" | tail -n 1 |
        sed -E 's/^#([0-9]+)[[:space:]]+[A-Z]+[[:space:]]+/\1 execs, /' || true)
    if [ $rc -ne 0 ]; then
        echo "fuzz_$t: FAILED (exit $rc); log $log" >&2
        grep -E -A40 '^==[0-9]+==ERROR|runtime error|deadly signal|ERROR: libFuzzer' "$log" |
            head -n 60 >&2 || tail -n 40 "$log" >&2
        ls -t "$out/artifacts/$t-"* 2>/dev/null | head -n 1 | sed 's/^/reproducer: /' >&2
        failed+=("$t")
    else
        echo "fuzz_$t: ok in ${secs}s: $stats"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing failed: ${failed[*]}" >&2
    exit 1
fi
