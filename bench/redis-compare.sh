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

# ---------------------------------------------------------------- settings ---
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)
HOST=127.0.0.1 # the only address this script ever talks to
PIPELINES=(1 16)
TESTS=(set get)

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "redis-compare: unknown argument '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

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

for v in REQUESTS REQUESTS_PIPELINED KEYSPACE VALUE_SIZE CLIENTS START_TIMEOUT RUN_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || {
        echo "redis-compare: BENCH_$v must be a positive integer, got '${!v}'" >&2
        exit 2
    }
done

# ----------------------------------------------------------------- helpers ---
log() { printf '[redis-compare] %s\n' "$*" >&2; }
die() {
    printf '[redis-compare] ERROR: %s\n' "$*" >&2
    exit 1
}

PIDS=()    # every process we started and have not reaped yet
TMPDIRS=() # every temporary directory we made

# True while $1 is a live (non-zombie) process.
alive() {
    local st
    if [[ -r /proc/$1/stat ]]; then
        st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        st=${st##*) }
        [[ ${st:0:1} != Z ]]
    else
        kill -0 "$1" 2>/dev/null
    fi
}

# Stop one of our processes: TERM, up to 10 s grace, then KILL; reap it.
stop_pid() {
    local pid=$1 i
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            log "process $pid ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# Drop a reaped pid from PIDS, so cleanup never signals a recycled pid.
forget_pid() {
    local p keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=(${keep[@]+"${keep[@]}"})
}

cleanup() {
    local rc=$? d
    trap - EXIT INT TERM
    local i
    # Newest first: a running redis-benchmark goes before the servers it talks to.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    for d in "${TMPDIRS[@]}"; do rm -rf -- "$d"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# new_tmpdir TAG — makes a fresh temporary directory, registered for removal; sets NEW_DIR.
new_tmpdir() {
    NEW_DIR=$(mktemp -d "${TMPDIR:-/tmp}/replikv-bench.$1.XXXXXX") || die "mktemp -d failed"
    TMPDIRS+=("$NEW_DIR")
}

USED_PORTS=" "
# pick_port — a free TCP port in 20000-59999 on 127.0.0.1 not yet handed out; sets NEW_PORT.
# (Not called in $(...): it must record the port in USED_PORTS of this shell.)
pick_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if command -v ss >/dev/null 2>&1; then
            [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]] || continue
        fi
        # Something already accepting there? (loopback connect is instant)
        if timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$p" 2>/dev/null; then continue; fi
        USED_PORTS+="$p "
        NEW_PORT=$p
        return 0
    done
    die "could not find a free TCP port on $HOST after 200 tries"
}

# start_server NAME LOGFILE CMD... — starts CMD in the background; sets STARTED_PID.
start_server() {
    local name=$1 logf=$2
    shift 2
    log "starting $name: $(printf '%q ' "$@")"
    "$@" >"$logf" 2>&1 </dev/null &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

# wait_ping NAME PORT PID LOGFILE HINT — bounded wait for PONG from our process.
wait_ping() {
    local name=$1 port=$2 pid=$3 logf=$4 hint=$5 deadline reply rc
    deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! alive "$pid"; then
            rc=0
            wait "$pid" 2>/dev/null || rc=$?
            forget_pid "$pid"
            log "---- last lines of $name's output ($logf) ----"
            tail -n 30 "$logf" >&2 || true
            log "----"
            die "$name exited (status $rc) before answering PING on $HOST:$port. $hint"
        fi
        reply=$(timeout 2 redis-cli -h "$HOST" -p "$port" ping 2>/dev/null || true)
        if [[ $reply == PONG ]]; then
            sleep 0.2
            alive "$pid" || die "something answered PING on $HOST:$port but $name (pid $pid) has exited — port clash?"
            log "$name is up on $HOST:$port (pid $pid)"
            return 0
        fi
        sleep 0.2
    done
    log "---- last lines of $name's output ($logf) ----"
    tail -n 30 "$logf" >&2 || true
    log "----"
    die "$name did not answer PING on $HOST:$port within ${START_TIMEOUT}s. $hint"
}

# Body of http://127.0.0.1:PORT/metrics, or nothing. Bounded to 5 s.
fetch_metrics() {
    local port=$1
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 5 "http://$HOST:$port/metrics" 2>/dev/null || true
    else
        # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
        timeout 5 bash -c '
            exec 3<>"/dev/tcp/$1/$2" || exit 0
            printf "GET /metrics HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n" "$1" "$2" >&3
            cat <&3' _ "$HOST" "$port" 2>/dev/null |
            tr -d '\r' | awk 'body { print } /^$/ { body = 1 }' || true
    fi
}

# Sum of all samples of Prometheus metric $2 in text $1, as an integer; empty if absent.
metric_value() {
    awk -v n="$2" '
        /^#/ { next }
        {
            line = $0
            sub(/\{.*\}/, "", line)   # drop labels
            split(line, f, /[ \t]+/)
            if (f[1] == n && f[2] != "") { s += f[2]; found = 1 }
        }
        END { if (found) printf "%.0f\n", s }' <<<"$1"
}

# csv_check FILE — dies unless redis-benchmark's CSV header has every column we read.
csv_check() {
    local file=$1 header col
    header=$(grep -m1 '^"test"' "$file" || true)
    [[ -n $header ]] || die "no CSV header (\"test\",...) in redis-benchmark output $file: $(head -c 400 "$file")"
    for col in test rps p50_latency_ms p99_latency_ms; do
        [[ ,$header, == *,\"$col\",* ]] ||
            die "redis-benchmark CSV has no \"$col\" column; header was: $header"
    done
}

# csv_get FILE TEST COLUMN — the value of COLUMN in TEST's row, looked up by header name.
csv_get() {
    local v
    v=$(awk -F',' -v t="$2" -v c="$3" '
        { for (i = 1; i <= NF; i++) gsub(/^"|"$/, "", $i) }
        !hdr && $1 == "test" { for (i = 1; i <= NF; i++) idx[$i] = i; hdr = 1; next }
        hdr && $idx["test"] == t { print $idx[c]; exit }' "$1")
    [[ $v =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "no numeric \"$3\" for test $2 in $1 (got '$v'): $(cat "$1")"
    printf '%s\n' "$v"
}

# ------------------------------------------------------------ preparation ---
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1 ||
    ! command -v redis-cli >/dev/null 2>&1; then
    log "redis-server/redis-benchmark missing: installing Debian's redis-server and redis-tools"
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install redis-server redis-tools (or install them yourself)"
    # apt's chatter goes to stderr: stdout carries only the report.
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools; } >&2
fi
command -v redis-benchmark >/dev/null 2>&1 || die "redis-benchmark still missing after install"

REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
BENCH_VERSION=$(redis-benchmark --version 2>/dev/null | awk '{print $2}')
[[ -n $REDIS_VERSION ]] || REDIS_VERSION=$(redis-server --version)

if [[ -n ${REPLIKV_BIN:-} ]]; then
    [[ -x $REPLIKV_BIN ]] || die "REPLIKV_BIN=$REPLIKV_BIN is not an executable file"
    REPLIKV=$REPLIKV_BIN
    log "using REPLIKV_BIN=$REPLIKV (no cargo build)"
else
    # shellcheck disable=SC2015 # die runs if either test fails, as intended
    [[ -f $REPO_ROOT/Cargo.toml ]] && grep -q '^\[workspace\]' "$REPO_ROOT/Cargo.toml" ||
        die "$REPO_ROOT does not look like the replikv workspace root (expected Cargo.toml with [workspace])"
    command -v cargo >/dev/null 2>&1 || die "cargo not found: cannot build replikv"
    log "building replikv (cargo build --release -p replikv-server) in $REPO_ROOT"
    (cd "$REPO_ROOT" && cargo build --release -p replikv-server) ||
        die "cargo build --release -p replikv-server failed: the replikv half of the comparison cannot run"
    REPLIKV=$REPO_ROOT/target/release/replikv
    [[ -x $REPLIKV ]] || die "build succeeded but $REPLIKV is missing"
fi
REPLIKV_HINT="Is 'replikv serve --data-dir D --bind 127.0.0.1 --port P --admin-port A --fsync ...' implemented in $REPLIKV yet? The replikv half of the comparison cannot run."

REPLIKV_COMMIT=$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ $REPLIKV_COMMIT != unknown ]] &&
    [[ -n $(GIT_OPTIONAL_LOCKS=0 git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    REPLIKV_COMMIT+="-dirty"
fi
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
                rc=0
                # In the background + wait, so a signal to this script is handled at once
                # (cleanup then stops the benchmark too); timeout bounds the run.
                timeout -k 10 "$RUN_TIMEOUT" redis-benchmark -h "$HOST" -p "$port" \
                    -c "$CLIENTS" -n "$n" -r "$KEYSPACE" -d "$VALUE_SIZE" -t "$test" -P "$pipe" --csv \
                    >"$out" 2>"$out.err" </dev/null &
                bench_pid=$!
                PIDS+=("$bench_pid")
                wait "$bench_pid" || rc=$?
                forget_pid "$bench_pid"
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
    rm -rf -- "$rk_dir" "$rd_dir"
done

# ---------------------------------------------------------------- report ---
fmt_int() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

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
