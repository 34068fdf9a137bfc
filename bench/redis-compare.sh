#!/usr/bin/env bash
# redis-compare.sh — replikv vs Redis under the same redis-benchmark load, at
# two matched durability levels, in one run. See bench/README.md.
#
# Usage: bench/redis-compare.sh [--quick] [--help]
#
# Environment (all optional):
#   BENCH_REQUESTS            requests per run without pipelining   (default 200000; --quick 20000)
#   BENCH_REQUESTS_PIPELINED  requests per run with -P 16            (default 1000000; --quick 100000)
#   BENCH_KEYSPACE            redis-benchmark -r keyspace            (default 100000)
#   BENCH_VALUE_SIZE          redis-benchmark -d value size, bytes   (default 3)
#   BENCH_CLIENTS             redis-benchmark -c connections         (default 50)
#   BENCH_START_TIMEOUT       seconds to wait for a server's PONG    (default 30)
#   BENCH_RUN_TIMEOUT         seconds one redis-benchmark may take   (default 900)
#   BENCH_RESULTS_DIR         where the Markdown report goes         (default bench/results)
#   REPLIKV_BIN               use this replikv binary and skip the cargo build
#                             (bench/selftest-fake-replikv.sh stands in for replikv
#                             with a second redis-server, to test this script itself)
#   REPLIKV_EXTRA_ARGS        extra words appended to `replikv serve ...`
#
# Only 127.0.0.1 is ever contacted. Every process started here is stopped on exit.
set -euo pipefail

SCRIPT_NAME=redis-compare
LOG_ELAPSED=0
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- settings ---
PIPELINES=(1 16)
TESTS=(set get)

parse_args "$@"
if ((QUICK)); then
    REQUESTS=${BENCH_REQUESTS:-20000}
    REQUESTS_PIPELINED=${BENCH_REQUESTS_PIPELINED:-100000}
else
    REQUESTS=${BENCH_REQUESTS:-200000}
    REQUESTS_PIPELINED=${BENCH_REQUESTS_PIPELINED:-1000000}
fi
KEYSPACE=${BENCH_KEYSPACE:-100000}
VALUE_SIZE=${BENCH_VALUE_SIZE:-3}
CLIENTS=${BENCH_CLIENTS:-50}
START_TIMEOUT=${BENCH_START_TIMEOUT:-30}
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-900}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$SCRIPT_DIR/results}

require_positive_int REQUESTS REQUESTS_PIPELINED KEYSPACE VALUE_SIZE CLIENTS START_TIMEOUT RUN_TIMEOUT

# ------------------------------------------------------------ preparation ---
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1 ||
    ! command -v redis-cli >/dev/null 2>&1; then
    log "redis-server/redis-benchmark missing: installing Debian's redis-server and redis-tools"
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install redis-server redis-tools (or install them yourself)"
    # apt's chatter goes to stderr: stdout carries only the report.
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools; } >&2
fi
command -v redis-benchmark >/dev/null 2>&1 || die "redis-benchmark still missing after install"

read_redis_versions

if [[ -n ${REPLIKV_BIN:-} ]]; then
    [[ -x $REPLIKV_BIN ]] || die "REPLIKV_BIN=$REPLIKV_BIN is not an executable file"
    REPLIKV=$REPLIKV_BIN
    log "using REPLIKV_BIN=$REPLIKV (no cargo build)"
else
    check_workspace_root
    command -v cargo >/dev/null 2>&1 || die "cargo not found: cannot build replikv"
    log "building replikv (cargo build --release -p replikv-server) in $REPO_ROOT"
    (cd "$REPO_ROOT" && cargo build --release -p replikv-server) ||
        die "cargo build --release -p replikv-server failed: the replikv half of the comparison cannot run"
    REPLIKV=$REPO_ROOT/target/release/replikv
    [[ -x $REPLIKV ]] || die "build succeeded but $REPLIKV is missing"
fi
REPLIKV_HINT="Is 'replikv serve --data-dir D --bind 127.0.0.1 --port P --admin-port A --fsync ...' implemented in $REPLIKV yet? The replikv half of the comparison cannot run."

REPLIKV_COMMIT=$(replikv_commit)
NPROC=$(nproc 2>/dev/null || echo unknown)

read -r -a EXTRA_ARGS <<<"${REPLIKV_EXTRA_ARGS:-}"

# ------------------------------------------------------------------ runs ---
declare -A R    # R[mode|test|pipe|server|field] = value
declare -A FS   # FS[mode|pipe|records|fsyncs]
MODES=(always interval)
declare -A MODE_LABEL=([always]="fsync always" [interval]="fsync 1 s")
declare -A MODE_REPLIKV=([always]="--fsync always" [interval]="--fsync interval --fsync-interval-ms 1000")
declare -A MODE_REDIS=([always]="always" [interval]="everysec")
ROW=0
new_tmpdir logs
LOGDIR=$NEW_DIR

for mode in "${MODES[@]}"; do
    log "=== durability: ${MODE_LABEL[$mode]} (replikv ${MODE_REPLIKV[$mode]} | redis appendfsync ${MODE_REDIS[$mode]}) ==="
    new_tmpdir "replikv-$mode"
    rk_dir=$NEW_DIR
    new_tmpdir "redis-$mode"
    rd_dir=$NEW_DIR
    pick_port
    rk_port=$NEW_PORT
    pick_port
    rk_admin=$NEW_PORT
    pick_port
    rd_port=$NEW_PORT

    read -r -a rk_mode_args <<<"${MODE_REPLIKV[$mode]}"
    start_server "replikv" "$LOGDIR/replikv-$mode.log" "$REPLIKV" serve --data-dir "$rk_dir" \
        --bind "$HOST" --port "$rk_port" --admin-port "$rk_admin" "${rk_mode_args[@]}" ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}
    rk_pid=$STARTED_PID
    start_server "redis" "$LOGDIR/redis-$mode.log" redis-server --port "$rd_port" --bind "$HOST" \
        --dir "$rd_dir" --appendonly yes --appendfsync "${MODE_REDIS[$mode]}" --save '' \
        --daemonize no --protected-mode yes
    rd_pid=$STARTED_PID
    wait_ping "redis" "$rd_port" "$rd_pid" "$LOGDIR/redis-$mode.log" "Check the redis-server install."
    wait_ping "replikv" "$rk_port" "$rk_pid" "$LOGDIR/replikv-$mode.log" "$REPLIKV_HINT"

    for pipe in "${PIPELINES[@]}"; do
        if ((pipe == 1)); then n=$REQUESTS; else n=$REQUESTS_PIPELINED; fi
        for test in "${TESTS[@]}"; do
            # Alternate which server goes first on every row, across the whole run.
            if ((ROW % 2 == 0)); then order=(replikv redis); else order=(redis replikv); fi
            ROW=$((ROW + 1))
            T=${test^^}
            for srv in "${order[@]}"; do
                if [[ $srv == replikv ]]; then port=$rk_port; else port=$rd_port; fi
                out="$LOGDIR/$mode-$test-P$pipe-$srv.csv"
                if [[ $srv == replikv && $test == set ]]; then
                    m_before=$(fetch_metrics "$rk_admin")
                fi
                log "$(printf '%-12s %-3s -P %-2s -n %-8s %s' "${MODE_LABEL[$mode]}" "$T" "$pipe" "$n" "$srv")"
                run_waited "$out" "$out.err" timeout -k 10 "$RUN_TIMEOUT" redis-benchmark -h "$HOST" \
                    -p "$port" -c "$CLIENTS" -n "$n" -r "$KEYSPACE" -d "$VALUE_SIZE" -t "$test" -P "$pipe" --csv
                rc=$WAITED_RC
                if ((rc != 0)); then
                    cat "$out.err" >&2 || true
                    ((rc == 124)) && die "redis-benchmark against $srv timed out after ${RUN_TIMEOUT}s"
                    die "redis-benchmark against $srv exited with status $rc"
                fi
                alive "$([[ $srv == replikv ]] && echo "$rk_pid" || echo "$rd_pid")" ||
                    die "$srv died during the $T -P $pipe run; see $LOGDIR (kept until exit)"
                csv_check "$out"
                for field in rps p50_latency_ms p99_latency_ms; do
                    R[$mode|$T|$pipe|$srv|$field]=$(csv_get "$out" "$T" "$field")
                done
                if [[ $srv == replikv && $test == set ]]; then
                    m_after=$(fetch_metrics "$rk_admin")
                    for m in records fsyncs; do
                        b=$(metric_value "$m_before" "replikv_wal_${m}_total")
                        a=$(metric_value "$m_after" "replikv_wal_${m}_total")
                        if [[ -n $b && -n $a ]]; then FS[$mode|$pipe|$m]=$((a - b)); else FS[$mode|$pipe|$m]=""; fi
                    done
                fi
            done
        done
    done

    stop_pid "$rk_pid"
    stop_pid "$rd_pid"
    remove_tmpdir "$rk_dir"
    remove_tmpdir "$rd_dir"
done

# ---------------------------------------------------------------- report ---
TABLE="| durability | test | pipeline | replikv req/s | redis req/s | ratio (replikv/redis) | replikv p50 ms | redis p50 ms | replikv p99 ms | redis p99 ms |
|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
for mode in "${MODES[@]}"; do
    for pipe in "${PIPELINES[@]}"; do
        for test in "${TESTS[@]}"; do
            T=${test^^}
            k="$mode|$T|$pipe"
            TABLE+=$'\n'"| ${MODE_LABEL[$mode]} | $T | $pipe | $(fmt_int "${R[$k|replikv|rps]}") | $(fmt_int "${R[$k|redis|rps]}") | $(ratio "${R[$k|replikv|rps]}" "${R[$k|redis|rps]}") | ${R[$k|replikv|p50_latency_ms]} | ${R[$k|redis|p50_latency_ms]} | ${R[$k|replikv|p99_latency_ms]} | ${R[$k|redis|p99_latency_ms]} |"
        done
    done
done

FSTABLE="| durability | pipeline | SET requests | WAL records | WAL fsyncs | fsyncs per write |
|---|---|---:|---:|---:|---:|"
for mode in "${MODES[@]}"; do
    for pipe in "${PIPELINES[@]}"; do
        if ((pipe == 1)); then n=$REQUESTS; else n=$REQUESTS_PIPELINED; fi
        rec=${FS[$mode|$pipe|records]:-}
        fs=${FS[$mode|$pipe|fsyncs]:-}
        if [[ -n $rec && -n $fs && $rec -gt 0 ]]; then
            per=$(awk -v f="$fs" -v r="$rec" 'BEGIN { printf "%.4f", f / r }')
        else
            per="n/a"
        fi
        FSTABLE+=$'\n'"| ${MODE_LABEL[$mode]} | $pipe | $n | ${rec:-n/a} | ${fs:-n/a} | $per |"
    done
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
QUICK_NOTE=""
((QUICK)) && QUICK_NOTE=" (--quick smoke run)"
BIN_NOTE=""
[[ -n ${REPLIKV_BIN:-} ]] && BIN_NOTE=" (REPLIKV_BIN override, not a cargo build)"
REPORT=$(
    cat <<EOF
# replikv vs Redis — redis-benchmark comparison

- run at (UTC): $STAMP$QUICK_NOTE
- machine: nproc=$NPROC, $(uname -sr)
- redis-server: $REDIS_VERSION; redis-benchmark: ${BENCH_VERSION:-unknown}
- replikv commit: $REPLIKV_COMMIT; binary: $REPLIKV$BIN_NOTE
- load: redis-benchmark -h $HOST -c $CLIENTS -r $KEYSPACE -d $VALUE_SIZE, -n $REQUESTS at -P 1 and -n $REQUESTS_PIPELINED at -P 16; SET then GET, each server fresh per durability level, server order alternating per row
- durability pairs: "fsync always" = replikv \`--fsync always\` vs Redis \`appendonly yes, appendfsync always\`; "fsync 1 s" = replikv \`--fsync interval --fsync-interval-ms 1000\` vs Redis \`appendonly yes, appendfsync everysec\`

$TABLE

replikv WAL fsyncs per write during its SET runs (from \`replikv_wal_fsyncs_total\` / \`replikv_wal_records_total\` on the admin \`/metrics\`; n/a when the metrics are not exposed):

$FSTABLE

Single run on a shared, noisy machine whose disk caches writes: read ratios as rough, and fsync figures as better than real disks give.
EOF
)

mkdir -p "$RESULTS_DIR"
OUTFILE="$RESULTS_DIR/redis-compare-$STAMP.md"
printf '%s\n' "$REPORT" >"$OUTFILE"
printf '\n%s\n\n' "$REPORT"
log "report written to $OUTFILE"
