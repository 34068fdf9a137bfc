#!/usr/bin/env bash
# Runs the cargo-fuzz targets of this crate for a bounded time each and summarises the result.
#
#   fuzz/run.sh                  # every target, FUZZ_SECONDS (default 60) each
#   fuzz/run.sh wal_record       # only the named target(s)
#   FUZZ_SECONDS=600 fuzz/run.sh
#
# Environment:
#   FUZZ_SECONDS        fuzzing time per target, passed as -max_total_time (default 60)
#   FUZZ_BUILD_SECONDS  time limit for building one target (default 1800)
#   FUZZ_TOOLCHAIN      toolchain for `cargo +<toolchain> fuzz` (default nightly)
#
# Per target it prints the number of executions, the last cov/ft figures libFuzzer reported,
# and whether a crash was found (with the artifact path). It exits non-zero when any target
# crashed, failed to build, or did not finish within its time limit. The full libFuzzer log of
# each target is kept in fuzz/target/fuzz-logs/<target>.log.
#
# One fuzzing process, one worker: no -jobs/-workers/-fork, so libFuzzer runs in-process.
set -euo pipefail

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_BUILD_SECONDS="${FUZZ_BUILD_SECONDS:-1800}"
FUZZ_TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
# Extra time on top of -max_total_time for loading the corpus, a crash report and exit.
RUN_MARGIN_SECONDS=120

if ! [[ "$FUZZ_SECONDS" =~ ^[1-9][0-9]*$ ]]; then
    echo "FUZZ_SECONDS must be a positive integer, got '$FUZZ_SECONDS'" >&2
    exit 2
fi

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ_DIR"
CARGO=(cargo "+$FUZZ_TOOLCHAIN")

if ! "${CARGO[@]}" --version >/dev/null 2>&1; then
    echo "toolchain '$FUZZ_TOOLCHAIN' is not installed (rustup toolchain install $FUZZ_TOOLCHAIN)" >&2
    exit 2
fi

if ! "${CARGO[@]}" fuzz --version >/dev/null 2>&1; then
    echo "== cargo fuzz not found, installing cargo-fuzz"
    timeout 1800 cargo install cargo-fuzz --locked
fi

# --- seed corpus -----------------------------------------------------------------------------

# CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of the bytes given as decimal arguments.
crc32c() {
    local crc=$((0xFFFFFFFF)) byte
    for byte in "$@"; do
        crc=$((crc ^ byte))
        for _ in 0 1 2 3 4 5 6 7; do
            crc=$(((crc >> 1) ^ (0x82F63B78 & -(crc & 1))))
        done
    done
    echo $(((crc ^ 0xFFFFFFFF) & 0xFFFFFFFF))
}

# Little-endian bytes of $1 over $2 bytes, as decimal numbers.
le_bytes() {
    local value=$1 n=$2 i
    for ((i = 0; i < n; i++)); do
        echo $(((value >> (8 * i)) & 0xFF))
    done
}

# Writes decimal byte values (arguments) to stdout as raw bytes.
emit_bytes() {
    local byte
    for byte in "$@"; do
        # shellcheck disable=SC2059 # the format is an octal escape built on purpose
        printf "\\$(printf '%03o' "$byte")"
    done
}

# One encoded log record (layout in crates/storage/src/record.rs): len u32, crc32c u32 over
# epoch..payload, epoch u64, lsn u64, payload; all little-endian.
wal_record_bytes() {
    local epoch=$1 lsn=$2 payload=$3
    local -a body payload_bytes
    local i
    for ((i = 0; i < ${#payload}; i++)); do
        payload_bytes+=("$(printf '%d' "'${payload:i:1}")")
    done
    mapfile -t body < <(le_bytes "$epoch" 8; le_bytes "$lsn" 8)
    body+=("${payload_bytes[@]}")
    local crc
    crc=$(crc32c "${body[@]}")
    local -a header
    mapfile -t header < <(le_bytes "${#payload}" 4; le_bytes "$crc" 4)
    emit_bytes "${header[@]}" "${body[@]}"
}

# shellcheck disable=SC2016 # the '$' in RESP headers is literal
seed_resp_parse() {
    local dir=$1
    printf '*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n' >"$dir/seed-set-multibulk"
    printf 'SET key "a value"\r\nPING\r\n' >"$dir/seed-inline"
    printf '%s' '%2' >"$dir/seed-resp3-map"
    printf '\r\n+ok\r\n:1\r\n$5\r\nhello\r\n~2\r\n,3.14\r\n#t\r\n' >>"$dir/seed-resp3-map"
    printf '*2\r\n_\r\n=8\r\ntxt:text\r\n' >"$dir/seed-resp3-array"
}

seed_wal_record() {
    local dir=$1
    wal_record_bytes 1 1 'set key value' >"$dir/seed-one-record"
    { wal_record_bytes 2 7 'a'; wal_record_bytes 2 8 ''; } >"$dir/seed-two-records"
}

seed_corpus() {
    local target=$1 dir="$FUZZ_DIR/corpus/$1"
    mkdir -p "$dir"
    if [[ -n "$(ls -A "$dir")" ]]; then
        return
    fi
    case "$target" in
        resp_parse) seed_resp_parse "$dir" ;;
        wal_record) seed_wal_record "$dir" ;;
        *) return ;;
    esac
    echo "   seeded $(find "$dir" -type f | wc -l) input(s) into corpus/$target"
}

# --- run -------------------------------------------------------------------------------------

mapfile -t ALL_TARGETS < <("${CARGO[@]}" fuzz list)
if [[ $# -gt 0 ]]; then
    TARGETS=("$@")
    for t in "${TARGETS[@]}"; do
        if ! printf '%s\n' "${ALL_TARGETS[@]}" | grep -qxF -- "$t"; then
            echo "unknown target '$t' (targets: ${ALL_TARGETS[*]})" >&2
            exit 2
        fi
    done
else
    TARGETS=("${ALL_TARGETS[@]}")
fi

LOG_DIR="$FUZZ_DIR/target/fuzz-logs"
mkdir -p "$LOG_DIR"
failed=0
declare -a SUMMARY

for target in "${TARGETS[@]}"; do
    echo "== $target: building"
    if ! timeout --kill-after=30 "$FUZZ_BUILD_SECONDS" "${CARGO[@]}" fuzz build "$target"; then
        SUMMARY+=("$target: BUILD FAILED")
        failed=1
        continue
    fi
    seed_corpus "$target"
    mkdir -p "$FUZZ_DIR/artifacts/$target"
    log="$LOG_DIR/$target.log"
    echo "== $target: fuzzing for ${FUZZ_SECONDS}s (log: fuzz/target/fuzz-logs/$target.log)"
    rc=0
    timeout --kill-after=30 $((FUZZ_SECONDS + RUN_MARGIN_SECONDS)) \
        "${CARGO[@]}" fuzz run "$target" "$FUZZ_DIR/corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?

    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | tail -n1 | grep -oE '[0-9]+$' || true)
    if [[ -z "$runs" ]]; then
        runs=$(grep -oE '^Done [0-9]+ runs' "$log" | tail -n1 | grep -oE '[0-9]+' || true)
    fi
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n1 || true)
    artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n1 | sed 's/^Test unit written to //' || true)

    line="$target: runs=${runs:-?} ${cov:-cov: ? ft: ?} exit=$rc"
    if [[ -n "$artifact" ]]; then
        line+=" CRASH artifact=$artifact"
        failed=1
        echo "-- $target: crash found; panic / error report:"
        grep -E -A3 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY:" "$log" | head -n 40 || true
    elif [[ $rc -eq 124 || $rc -eq 137 ]]; then
        line+=" TIMED OUT (no result within $((FUZZ_SECONDS + RUN_MARGIN_SECONDS))s)"
        failed=1
    elif [[ $rc -ne 0 ]]; then
        line+=" FAILED (no artifact; see log)"
        failed=1
        tail -n 30 "$log"
    else
        line+=" no crash"
    fi
    echo "-- $line"
    SUMMARY+=("$line")
done

echo
echo "== summary (FUZZ_SECONDS=$FUZZ_SECONDS)"
printf '%s\n' "${SUMMARY[@]}"
exit "$failed"
