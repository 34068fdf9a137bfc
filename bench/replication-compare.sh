#!/usr/bin/env bash
# replication-compare.sh — replikv leader + 2 replicas against Redis primary + 2 replicas
# (async, semi-sync 1, sync) and replikv `quorum` + `fsync always` against a 3-member etcd,
# all in one run on 127.0.0.1. See bench/README.md.
#
# Usage: bench/replication-compare.sh [--quick] [--help]
#
# Environment (all optional):
#   BENCH_REQUESTS            redis-benchmark requests without pipelining  (default 200000; --quick 20000)
#   BENCH_REQUESTS_PIPELINED  redis-benchmark requests with -P 16          (default 1000000; --quick 100000)
#   BENCH_LOADGEN_REQUESTS    replikv-loadgen requests per ack row         (default 100000; --quick 10000)
#   BENCH_QUORUM_REQUESTS     replikv-loadgen requests per quorum row      (default 5000000; --quick 100000)
#   BENCH_QUORUM_SECONDS      time bound of a quorum row, seconds          (default 60, as etcd's check; --quick 10)
#   BENCH_ETCD_LOADS          etcdctl check perf load levels               (default "l xl"; --quick "l")
#   BENCH_KEYSPACE            keys are key:0..keyspace-1                   (default 100000)
#   BENCH_VALUE_SIZE          value size of async and ack rows, bytes      (default 3)
#   BENCH_CLIENTS             connections of async and ack rows            (default 50)
#   BENCH_REDIS_AOF           1: also a Redis trio with appendonly everysec (default 1)
#   BENCH_LAG_INTERVAL        seconds between replica-lag samples          (default 0.5)
#   BENCH_START_TIMEOUT       seconds to wait for PONG / link up / health  (default 30)
#   BENCH_RUN_TIMEOUT         seconds one benchmark command may take       (default 900)
#   BENCH_RESULTS_DIR         where the Markdown report goes               (default bench/results)
#   SKIP_REPLIKV=1            run only the Redis and etcd halves (replikv columns show n/a);
#                             for testing this script before replikv replicates
#   SKIP_ETCD=1               leave out the etcd row
#   REPLIKV_BIN               use this replikv binary and skip its cargo build
#   LOADGEN_BIN               use this replikv-loadgen binary and skip its cargo build
#   REPLIKV_EXTRA_ARGS        extra words appended to every `replikv serve ...`
#
# Only 127.0.0.1 is ever contacted. Every process started here is stopped on exit, and every
# temporary directory (etcd's grow by gigabytes) is removed.
set -euo pipefail

SCRIPT_NAME=replication-compare
LOG_ELAPSED=1
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- settings ---
PIPELINES=(1 16)
TESTS=(set get)
# etcdctl check perf's fixed workloads (etcd 3.4 etcdctl/ctlv3/command/check.go): concurrent
# clients, rate limit in writes/s; each level runs 60 s with 256-byte keys and 1 KiB values.
declare -A ETCD_CLIENTS=([s]=50 [m]=200 [l]=500 [xl]=1000)
declare -A ETCD_LIMIT=([s]=150 [m]=1000 [l]=8000 [xl]=15000)
ETCD_VALUE_BYTES=1024
ETCD_SECONDS=60

parse_args "$@"
if ((QUICK)); then
    REQUESTS=${BENCH_REQUESTS:-20000}
    REQUESTS_PIPELINED=${BENCH_REQUESTS_PIPELINED:-100000}
    LOADGEN_REQUESTS=${BENCH_LOADGEN_REQUESTS:-10000}
    QUORUM_REQUESTS=${BENCH_QUORUM_REQUESTS:-100000}
    QUORUM_SECONDS=${BENCH_QUORUM_SECONDS:-10}
    ETCD_LOADS=${BENCH_ETCD_LOADS:-l}
else
    REQUESTS=${BENCH_REQUESTS:-200000}
    REQUESTS_PIPELINED=${BENCH_REQUESTS_PIPELINED:-1000000}
    LOADGEN_REQUESTS=${BENCH_LOADGEN_REQUESTS:-100000}
    QUORUM_REQUESTS=${BENCH_QUORUM_REQUESTS:-5000000}
    QUORUM_SECONDS=${BENCH_QUORUM_SECONDS:-60}
    ETCD_LOADS=${BENCH_ETCD_LOADS:-l xl}
fi
KEYSPACE=${BENCH_KEYSPACE:-100000}
VALUE_SIZE=${BENCH_VALUE_SIZE:-3}
CLIENTS=${BENCH_CLIENTS:-50}
REDIS_AOF=${BENCH_REDIS_AOF:-1}
LAG_INTERVAL=${BENCH_LAG_INTERVAL:-0.5}
START_TIMEOUT=${BENCH_START_TIMEOUT:-30}
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-900}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$SCRIPT_DIR/results}
SKIP_REPLIKV=${SKIP_REPLIKV:-0}
SKIP_ETCD=${SKIP_ETCD:-0}

require_positive_int REQUESTS REQUESTS_PIPELINED LOADGEN_REQUESTS QUORUM_REQUESTS QUORUM_SECONDS \
    KEYSPACE VALUE_SIZE CLIENTS START_TIMEOUT RUN_TIMEOUT
for v in REDIS_AOF SKIP_REPLIKV SKIP_ETCD; do
    [[ ${!v} == 0 || ${!v} == 1 ]] || {
        echo "replication-compare: $v must be 0 or 1, got '${!v}'" >&2
        exit 2
    }
done
if ! [[ $LAG_INTERVAL =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
    ! awk -v x="$LAG_INTERVAL" 'BEGIN { exit !(x >= 0.1 && x <= 10) }'; then
    echo "replication-compare: BENCH_LAG_INTERVAL must be 0.1..10 seconds, got '$LAG_INTERVAL'" >&2
    exit 2
fi
read -r -a ETCD_LOAD_LIST <<<"$ETCD_LOADS"
for l in "${ETCD_LOAD_LIST[@]}"; do
    [[ -n ${ETCD_CLIENTS[$l]:-} ]] || {
        echo "replication-compare: BENCH_ETCD_LOADS takes s, m, l and xl, got '$l'" >&2
        exit 2
    }
done
((${#ETCD_LOAD_LIST[@]} > 0)) || SKIP_ETCD=1

# ----------------------------------------------------------------- helpers ---
# link_up PORT — true when HOST:PORT's `INFO replication` shows master_link_status:up; keeps
# the answer in LINK_INFO for wait_link_up's timeout message.
link_up() {
    LINK_INFO=$(timeout 2 redis-cli -h "$HOST" -p "$1" info replication 2>/dev/null | tr -d '\r' || true)
    grep -q '^master_link_status:up$' <<<"$LINK_INFO"
}

# wait_link_up NAME PORT PID LOGFILE HINT — bounded wait for a replica's
# `INFO replication` to show master_link_status:up.
wait_link_up() {
    local name=$1 port=$2 pid=$3 logf=$4 hint=$5
    LINK_INFO=""
    poll_until "$name" "$pid" "$logf" "$hint" "before its replication link came up" link_up "$port" ||
        die "$name's INFO replication did not show master_link_status:up within ${START_TIMEOUT}s (last: $(grep -m1 master_link_status <<<"$LINK_INFO" || echo 'no such field')). $hint"
    log "$name: master_link_status:up"
}

# Largest sample of Prometheus metric $2 in text $1 (over its labels); "NA" if absent.
metric_max() {
    awk -v n="$2" '
        /^#/ { next }
        {
            line = $0
            sub(/\{.*\}/, "", line)
            split(line, f, /[ \t]+/)
            if (f[1] == n && f[2] != "") { v = f[2] + 0; if (!found || v > m) m = v; found = 1 }
        }
        END { if (found) printf "%.3f\n", m; else print "NA" }' <<<"$1"
}

# json_get FILE KEY — a number or boolean from replikv-loadgen's one-line JSON report.
json_get() {
    local v
    v=$(grep -o "\"$2\":[^,}]*" "$1" | head -n1 | cut -d: -f2)
    [[ $v =~ ^(-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|true|false)$ ]] ||
        die "no \"$2\" in replikv-loadgen's report $1: $(head -c 400 "$1")"
    printf '%s\n' "$v"
}

# run_tool NAME OUTFILE CMD... — runs a benchmark tool bounded by RUN_TIMEOUT (+30 s, so
# replikv-loadgen's own --seconds-max bound ends it first), in the background + wait so a
# signal to this script is handled at once; dies on failure.
run_tool() {
    local name=$1 out=$2 rc
    shift 2
    run_waited "$out" "$out.err" timeout -k 10 "$((RUN_TIMEOUT + 30))" "$@"
    rc=$WAITED_RC
    if ((rc != 0)); then
        cat "$out.err" >&2 || true
        ((rc == 124)) && die "$name timed out after $((RUN_TIMEOUT + 30))s"
        die "$name exited with status $rc: $(printf '%q ' "$@")"
    fi
}

# ------------------------------------------------------- lag and counters ---
# Replica lag is sampled every LAG_INTERVAL s during a run by a background loop writing one
# line per sample: for replikv "<max lag entries> <max lag ms>" over the replicas (from the
# leader's /metrics), for Redis "<max lag bytes>" (master_repl_offset minus each replica's
# acknowledged offset, from the primary's INFO replication). NA when absent.
SAMPLER_PID=""

# lag_sampler_start KIND(replikv|redis) PORT OUTFILE — PORT: leader admin port or primary port.
lag_sampler_start() {
    local kind=$1 port=$2 out=$3 max_samples
    max_samples=$(awk -v t="$RUN_TIMEOUT" -v i="$LAG_INTERVAL" 'BEGIN { printf "%d", t / i + 10 }')
    : >"$out"
    (
        for ((n = 0; n < max_samples; n++)); do
            # Sleep first: a sample taken before the load starts would only dilute the mean.
            sleep "$LAG_INTERVAL"
            if [[ $kind == replikv ]]; then
                m=$(fetch_metrics "$port")
                printf '%s %s\n' "$(metric_max "$m" replikv_replica_lag_entries)" \
                    "$(metric_max "$m" replikv_replica_lag_ms)" >>"$out"
            else
                timeout 2 redis-cli -h "$HOST" -p "$port" info replication 2>/dev/null | tr -d '\r' |
                    awk -F'[:,=]' '
                        /^master_repl_offset:/ { mo = $2 }
                        /^slave[0-9]+:/ { for (i = 2; i < NF; i++) if ($i == "offset") { o[++k] = $(i + 1) } }
                        END {
                            if (mo == "" || k == 0) { print "NA"; exit }
                            for (j = 1; j <= k; j++) if (j == 1 || mo - o[j] > m) m = mo - o[j]
                            print m
                        }' >>"$out" || true
            fi
        done
    ) &
    SAMPLER_PID=$!
    PIDS+=("$SAMPLER_PID")
}

lag_sampler_stop() {
    [[ -n $SAMPLER_PID ]] && stop_pid "$SAMPLER_PID"
    SAMPLER_PID=""
}

# lag_summary FILE COLUMN — "max / mean (N samples)" over numeric samples, or n/a.
lag_summary() {
    awk -v c="$2" -v i="$LAG_INTERVAL" '
        { lines++ }
        $c ~ /^-?[0-9]+(\.[0-9]+)?$/ { v = $c + 0; s += v; n++; if (n == 1 || v > m) m = v }
        END {
            if (n) printf "%.0f / %.0f (%d samples)", m, s / n, n
            else if (!lines) printf "n/a (run shorter than %s s)", i
            else printf "n/a"
        }' "$1"
}

# rk_counters ADMINPORT — "records fsyncs" of one replikv node, or "NA NA".
rk_counters() {
    local m r f
    m=$(fetch_metrics "$1")
    r=$(metric_value "$m" replikv_wal_records_total)
    f=$(metric_value "$m" replikv_wal_fsyncs_total)
    printf '%s %s\n' "${r:-NA}" "${f:-NA}"
}

# etcd_counters CLIENTPORT — "puts wal_fsyncs" of one etcd member, or "NA NA".
etcd_counters() {
    local m r f
    m=$(fetch_metrics "$1")
    r=$(metric_value "$m" etcd_mvcc_put_total)
    f=$(metric_value "$m" etcd_disk_wal_fsync_duration_seconds_count)
    printf '%s %s\n' "${r:-NA}" "${f:-NA}"
}

declare -A CNT # CNT[run|node|records|fsyncs] before/after snapshots become deltas in FS
declare -A FS  # FS[run|leader|records], FS[run|leader|fsyncs], FS[run|replicas|...]
declare -A LAG # LAG[run|entries], LAG[run|ms], LAG[run|bytes]

# counters_before RUN KIND PORT... — KIND replikv (admin ports) or etcd (client ports);
# the first port is the leader's.
counters_before() {
    local run=$1 kind=$2 i=0 p
    shift 2
    for p in "$@"; do
        read -r "CNT[$run|$i|records]" "CNT[$run|$i|fsyncs]" <<<"$("${kind}_counters" "$p")"
        i=$((i + 1))
    done
}

# counters_after RUN KIND PORT... — fills FS[RUN|leader|…] and FS[RUN|replicas|…] (summed).
counters_after() {
    local run=$1 kind=$2 i=0 p r f r0 f0 rr=0 rf=0 rok=1
    shift 2
    for p in "$@"; do
        read -r r f <<<"$("${kind}_counters" "$p")"
        r0=${CNT[$run|$i|records]}
        f0=${CNT[$run|$i|fsyncs]}
        if [[ $r != NA && $f != NA && $r0 != NA && $f0 != NA ]]; then
            r=$((r - r0))
            f=$((f - f0))
        else
            r=NA f=NA
        fi
        if ((i == 0)); then
            FS[$run|leader|records]=$r
            FS[$run|leader|fsyncs]=$f
        elif [[ $r == NA ]]; then
            rok=0
        else
            rr=$((rr + r))
            rf=$((rf + f))
        fi
        i=$((i + 1))
    done
    if ((rok && i > 1)); then
        FS[$run|replicas|records]=$rr
        FS[$run|replicas|fsyncs]=$rf
    else
        FS[$run|replicas|records]=NA
        FS[$run|replicas|fsyncs]=NA
    fi
}

# ------------------------------------------------------------ preparation ---
need_pkgs=()
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
{ command -v redis-benchmark >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; } || need_pkgs+=(redis-tools)
if ((!SKIP_ETCD)); then
    command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)
    command -v etcdctl >/dev/null 2>&1 || need_pkgs+=(etcd-client)
fi
if ((${#need_pkgs[@]})); then
    log "missing: installing Debian's ${need_pkgs[*]}"
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install ${need_pkgs[*]} (or install them yourself)"
    # apt's chatter goes to stderr: stdout carries only the report. The servers do not start
    # at install; this script starts its own on loopback.
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}"; } >&2
fi
for c in redis-server redis-benchmark redis-cli; do
    command -v "$c" >/dev/null 2>&1 || die "$c still missing after install"
done
if ((!SKIP_ETCD)); then
    for c in etcd etcdctl; do command -v "$c" >/dev/null 2>&1 || die "$c still missing after install"; done
    ETCD_VERSION=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')
fi

read_redis_versions

build_pkgs=()
[[ -z ${LOADGEN_BIN:-} ]] && build_pkgs+=(-p replikv-loadgen)
((!SKIP_REPLIKV)) && [[ -z ${REPLIKV_BIN:-} ]] && build_pkgs+=(-p replikv-server)
if ((${#build_pkgs[@]})); then
    check_workspace_root
    command -v cargo >/dev/null 2>&1 || die "cargo not found: cannot build ${build_pkgs[*]}"
    log "building: cargo build --release ${build_pkgs[*]}"
    (cd "$REPO_ROOT" && cargo build --release "${build_pkgs[@]}") ||
        die "cargo build --release ${build_pkgs[*]} failed"
fi
if [[ -n ${LOADGEN_BIN:-} ]]; then
    LOADGEN=$LOADGEN_BIN
else
    LOADGEN=$REPO_ROOT/target/release/replikv-loadgen
fi
[[ -x $LOADGEN ]] || die "replikv-loadgen binary $LOADGEN is missing or not executable"
if ((SKIP_REPLIKV)); then
    REPLIKV=""
    log "SKIP_REPLIKV=1: the replikv half is left out; its columns will show n/a"
elif [[ -n ${REPLIKV_BIN:-} ]]; then
    [[ -x $REPLIKV_BIN ]] || die "REPLIKV_BIN=$REPLIKV_BIN is not an executable file"
    REPLIKV=$REPLIKV_BIN
else
    REPLIKV=$REPO_ROOT/target/release/replikv
    [[ -x $REPLIKV ]] || die "build succeeded but $REPLIKV is missing"
fi
REPLIKV_HINT="Does $REPLIKV implement 'serve --replicaof HOST:PORT', --ack and Redis's INFO replication yet? (SKIP_REPLIKV=1 runs the Redis and etcd halves alone.)"

REPLIKV_COMMIT=$(replikv_commit)
NPROC=$(nproc 2>/dev/null || echo unknown)
read -r -a EXTRA_ARGS <<<"${REPLIKV_EXTRA_ARGS:-}"

new_tmpdir logs
LOGDIR=$NEW_DIR

# ------------------------------------------------------------- clusters ---
# A trio is three nodes, the leader/primary first (i = 0): TRIO[NAME|port|i], TRIO[NAME|pid|i],
# TRIO[NAME|dir|i] and, for replikv, the admin port TRIO[NAME|admin|i].
declare -A TRIO

# start_redis_trio NAME REDIS-ARGS... — primary + 2 replicas (--replicaof), own dirs.
start_redis_trio() {
    local name=$1 i port dir
    shift
    for i in 0 1 2; do
        new_tmpdir "$name-$i"
        dir=$NEW_DIR
        pick_port
        port=$NEW_PORT
        local repl=()
        ((i > 0)) && repl=(--replicaof "$HOST" "${TRIO[$name|port|0]}")
        start_server "$name-$i" "$LOGDIR/$name-$i.log" redis-server --port "$port" --bind "$HOST" \
            --dir "$dir" --save '' --daemonize no --protected-mode yes "$@" ${repl[@]+"${repl[@]}"}
        TRIO[$name|port|$i]=$port
        TRIO[$name|pid|$i]=$STARTED_PID
        TRIO[$name|dir|$i]=$dir
        TRIO[$name|admin|$i]=""
        wait_ping "$name-$i" "$port" "$STARTED_PID" "$LOGDIR/$name-$i.log" "Check the redis-server install."
    done
    for i in 1 2; do
        wait_link_up "$name-$i" "${TRIO[$name|port|$i]}" "${TRIO[$name|pid|$i]}" "$LOGDIR/$name-$i.log" "Check the redis-server logs."
    done
}

# start_replikv_trio NAME REPLIKV-ARGS... — leader + 2 replicas (--replicaof), own dirs.
start_replikv_trio() {
    local name=$1 i port admin dir
    shift
    for i in 0 1 2; do
        new_tmpdir "$name-$i"
        dir=$NEW_DIR
        pick_port
        port=$NEW_PORT
        pick_port
        admin=$NEW_PORT
        local repl=()
        ((i > 0)) && repl=(--replicaof "$HOST:${TRIO[$name|port|0]}")
        start_server "$name-$i" "$LOGDIR/$name-$i.log" "$REPLIKV" serve --bind "$HOST" --port "$port" \
            --admin-port "$admin" --data-dir "$dir" "$@" ${repl[@]+"${repl[@]}"} ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}
        TRIO[$name|port|$i]=$port
        TRIO[$name|pid|$i]=$STARTED_PID
        TRIO[$name|dir|$i]=$dir
        TRIO[$name|admin|$i]=$admin
        wait_ping "$name-$i" "$port" "$STARTED_PID" "$LOGDIR/$name-$i.log" "$REPLIKV_HINT"
    done
    for i in 1 2; do
        wait_link_up "$name-$i" "${TRIO[$name|port|$i]}" "${TRIO[$name|pid|$i]}" "$LOGDIR/$name-$i.log" "$REPLIKV_HINT"
    done
}

# check_trio NAME WHAT — dies if a member of the trio exited.
check_trio() {
    local i
    for i in 0 1 2; do
        alive "${TRIO[$1|pid|$i]}" || die "$1-$i died during $2; see $LOGDIR (kept until exit)"
    done
}

stop_trio() {
    local i
    for i in 2 1 0; do stop_pid "${TRIO[$1|pid|$i]}"; done
    for i in 0 1 2; do remove_tmpdir "${TRIO[$1|dir|$i]}"; done
}

declare -A R # R[run|system|field]: rps, p50, p99, max, errors, requests, timed_out, …
# What each trio runs, read through ${!name} by measure_begin/measure_end.
# shellcheck disable=SC2034
KIND_OF_redis=redis KIND_OF_redis_aof=redis KIND_OF_replikv=replikv

# bench_redis_benchmark RUN TRIO TEST PIPE N — one redis-benchmark run against a trio's
# primary; SET runs also sample replica lag and (replikv) read the WAL counters around it.
bench_redis_benchmark() {
    local run=$1 trio=$2 test=$3 pipe=$4 n=$5 port out
    port=${TRIO[$trio|port|0]}
    out="$LOGDIR/$run-$trio.csv"
    log "$(printf '%-10s %-3s -P %-2s -n %-8s %s' redis-benchmark "${test^^}" "$pipe" "$n" "$trio")"
    if [[ $test == set ]]; then measure_begin "$run|$trio" "$trio"; fi
    run_tool "redis-benchmark against $trio" "$out" redis-benchmark -h "$HOST" -p "$port" \
        -c "$CLIENTS" -n "$n" -r "$KEYSPACE" -d "$VALUE_SIZE" -t "$test" -P "$pipe" --csv
    if [[ $test == set ]]; then measure_end "$run|$trio" "$trio"; fi
    check_trio "$trio" "$run"
    csv_check "$out"
    R[$run|$trio|rps]=$(csv_get "$out" "${test^^}" rps)
    R[$run|$trio|p50]=$(csv_get "$out" "${test^^}" p50_latency_ms)
    R[$run|$trio|p99]=$(csv_get "$out" "${test^^}" p99_latency_ms)
}

# bench_loadgen RUN TRIO SYSTEMKEY N LOADGEN-ARGS... — one replikv-loadgen run against a
# trio's leader, results stored under R[RUN|SYSTEMKEY|…].
bench_loadgen() {
    local run=$1 trio=$2 sys=$3 n=$4 out port
    shift 4
    port=${TRIO[$trio|port|0]}
    out="$LOGDIR/$run-$sys.json"
    log "$(printf '%-10s %-24s -n %-8s %s %s' loadgen "$run" "$n" "$trio" "$*")"
    measure_begin "$run|$sys" "$trio"
    run_tool "replikv-loadgen against $trio" "$out" "$LOADGEN" --host "$HOST" --port "$port" \
        --requests "$n" "$@"
    measure_end "$run|$sys" "$trio"
    check_trio "$trio" "$run"
    R[$run|$sys|rps]=$(json_get "$out" ops_per_sec)
    R[$run|$sys|p50]=$(json_get "$out" p50_ms)
    R[$run|$sys|p99]=$(json_get "$out" p99_ms)
    R[$run|$sys|max]=$(json_get "$out" max_ms)
    R[$run|$sys|requests]=$(json_get "$out" requests)
    R[$run|$sys|errors]=$(json_get "$out" errors)
    R[$run|$sys|seconds]=$(json_get "$out" seconds)
    R[$run|$sys|timed_out]=$(json_get "$out" timed_out)
    if [[ ${R[$run|$sys|errors]} != 0 ]]; then
        log "WARNING: $run $sys: ${R[$run|$sys|errors]} error replies: $(tail -n 3 "$out.err" | tr '\n' ' ')"
    fi
}

# measure_begin KEY TRIO / measure_end KEY TRIO — lag sampling and WAL counters around a run.
measure_begin() {
    local key=$1 trio=$2 kk
    kk=KIND_OF_${trio//-/_}
    if [[ ${!kk:-replikv} == replikv ]]; then
        counters_before "$key" rk "${TRIO[$trio|admin|0]}" "${TRIO[$trio|admin|1]}" "${TRIO[$trio|admin|2]}"
        lag_sampler_start replikv "${TRIO[$trio|admin|0]}" "$LOGDIR/lag-${key//|/-}"
    else
        lag_sampler_start redis "${TRIO[$trio|port|0]}" "$LOGDIR/lag-${key//|/-}"
    fi
}
measure_end() {
    local key=$1 trio=$2 kk f
    kk=KIND_OF_${trio//-/_}
    f="$LOGDIR/lag-${key//|/-}"
    lag_sampler_stop
    if [[ ${!kk:-replikv} == replikv ]]; then
        counters_after "$key" rk "${TRIO[$trio|admin|0]}" "${TRIO[$trio|admin|1]}" "${TRIO[$trio|admin|2]}"
        LAG[$key|entries]=$(lag_summary "$f" 1)
        LAG[$key|ms]=$(lag_summary "$f" 2)
    else
        LAG[$key|bytes]=$(lag_summary "$f" 1)
    fi
}

# ------------------------------------------------------------------ runs ---
RUN_STARTED=$SECONDS

# --- async rows: redis-benchmark against every primary --------------------------------
ASYNC_TRIOS=(redis)
start_redis_trio redis --appendonly no
if ((REDIS_AOF)); then
    ASYNC_TRIOS+=(redis-aof)
    start_redis_trio redis-aof --appendonly yes --appendfsync everysec
fi
if ((!SKIP_REPLIKV)); then
    ASYNC_TRIOS+=(replikv)
    start_replikv_trio replikv --fsync interval --ack async
fi
ROW=0
for pipe in "${PIPELINES[@]}"; do
    if ((pipe == 1)); then n=$REQUESTS; else n=$REQUESTS_PIPELINED; fi
    for test in "${TESTS[@]}"; do
        # Rotate which system goes first on every row, so none always gets the warmest or
        # coolest machine.
        count=${#ASYNC_TRIOS[@]}
        for ((k = 0; k < count; k++)); do
            trio=${ASYNC_TRIOS[$(((ROW + k) % count))]}
            bench_redis_benchmark "async-${test}-P$pipe" "$trio" "$test" "$pipe" "$n"
        done
        ROW=$((ROW + 1))
    done
done
((REDIS_AOF)) && stop_trio redis-aof

# --- acknowledged-write rows: replikv-loadgen, SET only --------------------------------
# Redis has no semi-sync or sync mode: its rows send `WAIT N 0` after every SET and count
# the write as done when WAIT answers (N=1 for semi-sync 1, N=2, both replicas, for sync).
LG_ARGS=(--clients "$CLIENTS" --keyspace "$KEYSPACE" --value-bytes "$VALUE_SIZE" --seconds-max "$RUN_TIMEOUT")
ACK_ROWS=(async semi1 sync)
declare -A ACK_LABEL=([async]="async" [semi1]="semi-sync 1" [sync]="sync")
declare -A ACK_REPLIKV=([async]="--ack async" [semi1]="--ack semi-sync:1" [sync]="--ack sync")
declare -A ACK_REDIS=([async]="" [semi1]="--wait 1" [sync]="--wait 2")
declare -A ACK_REDIS_LABEL=([async]="SET" [semi1]="SET + WAIT 1 0" [sync]="SET + WAIT 2 0")
for row in "${ACK_ROWS[@]}"; do
    read -r -a redis_wait <<<"${ACK_REDIS[$row]}"
    if ((!SKIP_REPLIKV)) && [[ $row != async ]]; then
        stop_trio replikv
        read -r -a ack_args <<<"${ACK_REPLIKV[$row]}"
        start_replikv_trio replikv --fsync interval "${ack_args[@]}"
    fi
    # Alternate which system goes first.
    order=(redis replikv)
    [[ $row == semi1 ]] && order=(replikv redis)
    for sys in "${order[@]}"; do
        if [[ $sys == redis ]]; then
            bench_loadgen "ack-$row" redis redis "$LOADGEN_REQUESTS" "${LG_ARGS[@]}" ${redis_wait[@]+"${redis_wait[@]}"}
        elif ((!SKIP_REPLIKV)); then
            bench_loadgen "ack-$row" replikv replikv "$LOADGEN_REQUESTS" "${LG_ARGS[@]}"
        fi
    done
done
stop_trio redis
((SKIP_REPLIKV)) || stop_trio replikv

# --- durable consensus: replikv quorum + fsync always vs etcd --------------------------
if ((!SKIP_REPLIKV)); then
    start_replikv_trio replikv --fsync always --ack quorum --cluster-size 3
    for load in "${ETCD_LOAD_LIST[@]}"; do
        bench_loadgen "quorum-$load" replikv replikv "$QUORUM_REQUESTS" --clients "${ETCD_CLIENTS[$load]}" \
            --keyspace "$KEYSPACE" --value-bytes "$ETCD_VALUE_BYTES" --seconds-max "$QUORUM_SECONDS"
    done
    stop_trio replikv
fi

if ((!SKIP_ETCD)); then
    ETCD_DIRS=()
    ETCD_PIDS=()
    ETCD_CPORTS=()
    ETCD_PPORTS=()
    cluster=""
    for i in 0 1 2; do
        pick_port
        ETCD_CPORTS+=("$NEW_PORT")
        pick_port
        ETCD_PPORTS+=("$NEW_PORT")
        cluster+="${cluster:+,}bench$i=http://$HOST:$NEW_PORT"
    done
    token="replikv-bench-$$-$RANDOM"
    for i in 0 1 2; do
        new_tmpdir "etcd-$i"
        ETCD_DIRS+=("$NEW_DIR")
        # 8 GiB backend quota: at l/xl load 60 s of 1 KiB values outgrow the 2 GiB default.
        start_server "etcd-$i" "$LOGDIR/etcd-$i.log" etcd --name "bench$i" --data-dir "$NEW_DIR" \
            --listen-client-urls "http://$HOST:${ETCD_CPORTS[i]}" \
            --advertise-client-urls "http://$HOST:${ETCD_CPORTS[i]}" \
            --listen-peer-urls "http://$HOST:${ETCD_PPORTS[i]}" \
            --initial-advertise-peer-urls "http://$HOST:${ETCD_PPORTS[i]}" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$token" \
            --quota-backend-bytes 8589934592 --logger zap --log-outputs stderr
        ETCD_PIDS+=("$STARTED_PID")
    done
    endpoints=""
    for i in 0 1 2; do endpoints+="${endpoints:+,}http://$HOST:${ETCD_CPORTS[i]}"; done
    export ETCDCTL_API=3
    deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        for i in 0 1 2; do
            alive "${ETCD_PIDS[i]}" || died "etcd-$i" "${ETCD_PIDS[i]}" "$LOGDIR/etcd-$i.log" "before the cluster became healthy" "Check the etcd-server install."
        done
        if timeout 10 etcdctl --endpoints="$endpoints" --dial-timeout=2s --command-timeout=3s endpoint health >/dev/null 2>&1; then
            break
        fi
        ((SECONDS < deadline)) || die "etcd cluster not healthy within ${START_TIMEOUT}s; see $LOGDIR/etcd-*.log"
        sleep 0.5
    done
    # The leader takes the load, as replikv's leader does: followers would forward to it.
    status=$(timeout 10 etcdctl --endpoints="$endpoints" --command-timeout=3s endpoint status 2>/dev/null || true)
    leader_url=$(awk -F', ' '$5 == "true" { print $1; exit }' <<<"$status")
    [[ -n $leader_url ]] || die "no etcd leader in 'etcdctl endpoint status': $status"
    leader_port=${leader_url##*:}
    etcd_ports=("$leader_port")
    for p in "${ETCD_CPORTS[@]}"; do [[ $p == "$leader_port" ]] || etcd_ports+=("$p"); done
    log "etcd is up: leader $leader_url"
    for load in "${ETCD_LOAD_LIST[@]}"; do
        out="$LOGDIR/etcd-perf-$load.txt"
        log "etcdctl check perf --load=$load (${ETCD_CLIENTS[$load]} clients, ${ETCD_SECONDS} s, at most ${ETCD_LIMIT[$load]} writes/s)"
        counters_before "quorum-$load|etcd" etcd "${etcd_ports[@]}"
        run_waited "$out" "$out" timeout -k 10 "$RUN_TIMEOUT" etcdctl --endpoints="$leader_url" \
            check perf --load="$load"
        rc=$WAITED_RC
        counters_after "quorum-$load|etcd" etcd "${etcd_ports[@]}"
        ((rc == 124)) && die "etcdctl check perf --load=$load timed out after ${RUN_TIMEOUT}s"
        # check perf exits 1 when it FAILs its own targets (throughput under 90 % of the
        # level's rate limit, slow requests): expected on 2 cores. Only a missing figure is fatal.
        wps=$(tr '\r' '\n' <"$out" | sed -n 's/.*[^0-9]\([0-9][0-9]*\) writes\/s.*/\1/p' | tail -n1)
        [[ $wps =~ ^[0-9]+$ ]] || die "etcdctl check perf --load=$load (status $rc) printed no 'N writes/s': $(tail -n 20 "$out")"
        R[quorum-$load|etcd|rps]=$wps
        R[quorum-$load|etcd|max]=$(tr '\r' '\n' <"$out" | sed -n 's/.*[Ss]lowest request took[^0-9]*\([0-9.][0-9.]*\)s.*/\1/p' | tail -n1)
        R[quorum-$load|etcd|stddev]=$(tr '\r' '\n' <"$out" | sed -n 's/.*[Ss]tddev[^0-9]*\([0-9.][0-9.]*\)s.*/\1/p' | tail -n1)
        R[quorum-$load|etcd|errors]=$(tr '\r' '\n' <"$out" | awk '/FAIL: ERROR\(/ { s += $NF } END { print s + 0 }')
        R[quorum-$load|etcd|verdict]=$(tr '\r' '\n' <"$out" | grep -E '^(PASS|FAIL)$' | tail -n1 || true)
        for i in 0 1 2; do
            alive "${ETCD_PIDS[i]}" || die "etcd-$i died during check perf --load=$load; see $LOGDIR/etcd-$i.log"
        done
        log "etcd --load=$load: $wps writes/s (${R[quorum-$load|etcd|verdict]:-no verdict})"
    done
    for i in 2 1 0; do stop_pid "${ETCD_PIDS[i]}"; done
    for d in "${ETCD_DIRS[@]}"; do remove_tmpdir "$d"; done
    log "etcd stopped; its data directories are deleted"
fi
RUN_SECONDS=$((SECONDS - RUN_STARTED))

# ---------------------------------------------------------------- report ---
orna() { [[ -n ${1:-} && $1 != NA ]] && printf '%s' "$1" || printf 'n/a'; }
per_write() { awk -v f="${1:-}" -v r="${2:-}" 'BEGIN { if (f ~ /^[0-9]+$/ && r ~ /^[0-9]+$/ && r > 0) printf "%.4f", f / r; else printf "n/a" }'; }

# --- async table
ASYNC_HDR="| test | pipeline | replikv req/s | Redis req/s | replikv/Redis"
ASYNC_SEP="|---|---:|---:|---:|---:"
if ((REDIS_AOF)); then
    ASYNC_HDR+=" | Redis AOF req/s | replikv/Redis AOF"
    ASYNC_SEP+="|---:|---:"
    LAT_NAMES="replikv / Redis / Redis AOF"
else
    LAT_NAMES="replikv / Redis"
fi
ASYNC_TABLE="$ASYNC_HDR | p50 ms ($LAT_NAMES) | p99 ms ($LAT_NAMES) |
$ASYNC_SEP|---:|---:|"
for pipe in "${PIPELINES[@]}"; do
    for test in "${TESTS[@]}"; do
        k="async-$test-P$pipe"
        line="| ${test^^} | $pipe | $(fmt_int "${R[$k|replikv|rps]:-}") | $(fmt_int "${R[$k|redis|rps]}") | $(ratio "${R[$k|replikv|rps]:-}" "${R[$k|redis|rps]}")"
        p50="$(orna "${R[$k|replikv|p50]:-}") / ${R[$k|redis|p50]}"
        p99="$(orna "${R[$k|replikv|p99]:-}") / ${R[$k|redis|p99]}"
        if ((REDIS_AOF)); then
            line+=" | $(fmt_int "${R[$k|redis-aof|rps]}") | $(ratio "${R[$k|replikv|rps]:-}" "${R[$k|redis-aof|rps]}")"
            p50+=" / ${R[$k|redis-aof|p50]}"
            p99+=" / ${R[$k|redis-aof|p99]}"
        fi
        ASYNC_TABLE+=$'\n'"$line | $p50 | $p99 |"
    done
done

# --- acknowledged-write table
tbound() { if [[ ${1:-} == true ]]; then printf ' (time bound hit)'; fi; }
ACK_TABLE="| row | replikv setting | Redis equivalent | replikv req/s | Redis req/s | replikv/Redis | replikv vs its async | p50 ms (replikv / Redis) | p99 ms (replikv / Redis) | errors (replikv / Redis) |
|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
for row in "${ACK_ROWS[@]}"; do
    k="ack-$row"
    ACK_TABLE+=$'\n'"| ${ACK_LABEL[$row]} | \`${ACK_REPLIKV[$row]}\` | ${ACK_REDIS_LABEL[$row]} | $(fmt_int "${R[$k|replikv|rps]:-}")$(tbound "${R[$k|replikv|timed_out]:-}") | $(fmt_int "${R[$k|redis|rps]}")$(tbound "${R[$k|redis|timed_out]}") | $(ratio "${R[$k|replikv|rps]:-}" "${R[$k|redis|rps]}") | $(ratio "${R[$k|replikv|rps]:-}" "${R[ack-async|replikv|rps]:-}") | $(orna "${R[$k|replikv|p50]:-}") / ${R[$k|redis|p50]} | $(orna "${R[$k|replikv|p99]:-}") / ${R[$k|redis|p99]} | $(orna "${R[$k|replikv|errors]:-}") / ${R[$k|redis|errors]} |"
done

# --- quorum table
Q_TABLE="| etcd load | clients (both) | replikv quorum writes/s | etcd writes/s | replikv/etcd | replikv run | replikv p50 / p99 / max ms | etcd slowest ms / stddev ms | errors (replikv / etcd) | etcd check verdict |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for load in "${ETCD_LOAD_LIST[@]}"; do
    k="quorum-$load"
    ((SKIP_ETCD && SKIP_REPLIKV)) && break
    e_max=$(awk -v s="${R[$k|etcd|max]:-}" 'BEGIN { if (s != "") printf "%.1f", s * 1000; else printf "n/a" }')
    e_sd=$(awk -v s="${R[$k|etcd|stddev]:-}" 'BEGIN { if (s != "") printf "%.1f", s * 1000; else printf "n/a" }')
    # Quorum rows end at their time bound by design (as etcd's 60 s), so show the run's length.
    q_run=$(awk -v n="${R[$k|replikv|requests]:-}" -v t="${R[$k|replikv|seconds]:-}" 'BEGIN { if (n != "") printf "%d req in %.1f s", n, t; else printf "n/a" }')
    Q_TABLE+=$'\n'"| $load | ${ETCD_CLIENTS[$load]} | $(fmt_int "${R[$k|replikv|rps]:-}") | $(fmt_int "${R[$k|etcd|rps]:-}") | $(ratio "${R[$k|replikv|rps]:-}" "${R[$k|etcd|rps]:-}") | $q_run | $(orna "${R[$k|replikv|p50]:-}") / $(orna "${R[$k|replikv|p99]:-}") / $(orna "${R[$k|replikv|max]:-}") | $e_max / $e_sd | $(orna "${R[$k|replikv|errors]:-}") / $(orna "${R[$k|etcd|errors]:-}") | $(orna "${R[$k|etcd|verdict]:-}") |"
done

# --- fsyncs per write and replica lag
FS_TABLE="| run | system | leader writes (WAL records / puts) | leader fsyncs | leader fsyncs per write | replicas' records | replicas' fsyncs | replicas' fsyncs per record |
|---|---|---:|---:|---:|---:|---:|---:|"
LAG_TABLE="| run | replikv lag, entries: max / mean | replikv lag, ms: max / mean | Redis lag, bytes: max / mean |
|---|---:|---:|---:|"
fs_row() {
    local key=$1 label=$2 sys=$3
    FS_TABLE+=$'\n'"| $label | $sys | $(orna "${FS[$key|leader|records]:-}") | $(orna "${FS[$key|leader|fsyncs]:-}") | $(per_write "${FS[$key|leader|fsyncs]:-}" "${FS[$key|leader|records]:-}") | $(orna "${FS[$key|replicas|records]:-}") | $(orna "${FS[$key|replicas|fsyncs]:-}") | $(per_write "${FS[$key|replicas|fsyncs]:-}" "${FS[$key|replicas|records]:-}") |"
}
for pipe in "${PIPELINES[@]}"; do
    k="async-set-P$pipe"
    label="async SET -P $pipe (redis-benchmark)"
    ((SKIP_REPLIKV)) || fs_row "$k|replikv" "$label" "replikv \`--fsync interval\`"
    LAG_TABLE+=$'\n'"| $label | $(orna "${LAG[$k|replikv|entries]:-}") | $(orna "${LAG[$k|replikv|ms]:-}") | ${LAG[$k|redis|bytes]} |"
done
for row in "${ACK_ROWS[@]}"; do
    k="ack-$row"
    label="${ACK_LABEL[$row]} (replikv-loadgen)"
    ((SKIP_REPLIKV)) || fs_row "$k|replikv" "$label" "replikv \`--fsync interval ${ACK_REPLIKV[$row]}\`"
    LAG_TABLE+=$'\n'"| $label | $(orna "${LAG[$k|replikv|entries]:-}") | $(orna "${LAG[$k|replikv|ms]:-}") | ${LAG[$k|redis|bytes]} |"
done
for load in "${ETCD_LOAD_LIST[@]}"; do
    k="quorum-$load"
    if ((!SKIP_REPLIKV)); then
        fs_row "$k|replikv" "quorum, etcd load $load" "replikv \`--fsync always --ack quorum\`"
        LAG_TABLE+=$'\n'"| quorum, ${ETCD_CLIENTS[$load]} clients | $(orna "${LAG[$k|replikv|entries]:-}") | $(orna "${LAG[$k|replikv|ms]:-}") | n/a |"
    fi
    ((SKIP_ETCD)) || fs_row "$k|etcd" "check perf --load=$load" "etcd (WAL fsyncs / mvcc puts)"
done

# --- goals
goal() { # goal TEXT MEASURED THRESHOLD(min ratio)
    local verdict
    verdict=$(awk -v m="$2" -v t="$3" 'BEGIN { if (m == "n/a" || m == "") print "n/a"; else if (m + 0 >= t + 0) print "met"; else print "**not met**" }')
    GOALS+=$'\n'"| $1 | $2 | $verdict |"
}
GOALS="| goal | measured | verdict |
|---|---:|---|"
for pipe in "${PIPELINES[@]}"; do
    for test in "${TESTS[@]}"; do
        k="async-$test-P$pipe"
        goal "async ${test^^} -P $pipe at or above Redis (replikv/Redis ≥ 1)" "$(ratio "${R[$k|replikv|rps]:-}" "${R[$k|redis|rps]}")" 1
    done
done
for row in semi1 sync; do
    goal "${ACK_LABEL[$row]} within 2x of async (replikv ${ACK_LABEL[$row]} / replikv async ≥ 0.5)" \
        "$(ratio "${R[ack-$row|replikv|rps]:-}" "${R[ack-async|replikv|rps]:-}")" 0.5
done
for load in "${ETCD_LOAD_LIST[@]}"; do
    goal "quorum at 5x etcd or more, ${ETCD_CLIENTS[$load]} clients (replikv/etcd ≥ 5)" \
        "$(ratio "${R[quorum-$load|replikv|rps]:-}" "${R[quorum-$load|etcd|rps]:-}")" 5
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
NOTES=""
((QUICK)) && NOTES+=" (--quick smoke run)"
((SKIP_REPLIKV)) && NOTES+=" (SKIP_REPLIKV=1: replikv not run, its columns are n/a)"
((SKIP_ETCD)) && NOTES+=" (SKIP_ETCD=1: etcd not run)"
[[ -n ${REPLIKV_BIN:-} ]] && NOTES+=" (REPLIKV_BIN override, not a cargo build)"
REDIS_TRIOS="Redis = primary + 2 replicas (\`--replicaof\`), \`--save '' --appendonly no\`"
((REDIS_AOF)) && REDIS_TRIOS+="; Redis AOF = the same with \`--appendonly yes --appendfsync everysec\` on all three"
REPORT=$(
    cat <<EOF
# replikv vs Redis vs etcd — replication comparison

- run at (UTC): $STAMP$NOTES; benchmarking took ${RUN_SECONDS} s
- machine: nproc=$NPROC, $(uname -sr)
- redis-server: $REDIS_VERSION; redis-benchmark: ${BENCH_VERSION:-unknown}; etcd: $( ((SKIP_ETCD)) && echo "not run" || echo "${ETCD_VERSION:-unknown}")
- replikv commit: $REPLIKV_COMMIT; binary: $( ((SKIP_REPLIKV)) && echo "not run" || echo "$REPLIKV")
- topologies, all on 127.0.0.1, each node with its own fresh data directory: replikv = leader + 2 replicas (\`serve --replicaof 127.0.0.1:LEADER\`); $REDIS_TRIOS; etcd = 3 members (\`--initial-cluster\`), load sent to the leader

## Async replication (tool: redis-benchmark)

\`redis-benchmark -c $CLIENTS -r $KEYSPACE -d $VALUE_SIZE -t set|get\`, -n $REQUESTS at -P 1 and -n $REQUESTS_PIPELINED at -P 16, against each leader/primary; replikv \`--fsync interval --ack async\` (fsync every 1 s, reply before replicas have it, as Redis). System order rotates per row.

$ASYNC_TABLE

## Acknowledged writes (tool: replikv-loadgen, for both systems)

\`replikv-loadgen --clients $CLIENTS --keyspace $KEYSPACE --value-bytes $VALUE_SIZE --requests $LOADGEN_REQUESTS\`, SET only, one request in flight per client, against each leader/primary. replikv runs \`--fsync interval\` with the \`--ack\` shown (a fresh trio per row). Redis has no semi-sync or sync mode: its rows send \`WAIT N 0\` after every SET (in the same write) and count the SET done when WAIT answers; a WAIT answer below N counts as an error. \`WAIT 2 0\` (both replicas) stands for sync, \`WAIT 1 0\` for semi-sync 1. Redis's WAIT means "the replica received it", not "the replica fsynced it". req/s counts requests without errors. "replikv vs its async" = that row's req/s over replikv's async row (same tool).

$ACK_TABLE

## Durable consensus (tools: replikv-loadgen for replikv, \`etcdctl check perf\` for etcd)

replikv: 3 nodes, \`--fsync always --ack quorum --cluster-size 3\`, \`replikv-loadgen --clients C --value-bytes $ETCD_VALUE_BYTES --requests $QUORUM_REQUESTS --seconds-max $QUORUM_SECONDS\` (16-byte keys). etcd: 3 members, \`etcdctl check perf --load=L\` against the leader: C concurrent clients (s 50, m 200, l 500, xl 1000), ${ETCD_SECONDS} s, 256-byte keys and 1 KiB values, rate-limited to s 150, m 1000, l 8000, xl 15000 writes/s, so only l and xl can show etcd's ceiling. Concurrency is matched (C is the same for both); etcd always fsyncs its WAL before acknowledging. \`check perf\` reports only writes/s, its slowest request and the standard deviation, so etcd has no p50/p99 here; it says FAIL when it misses its own targets (throughput under 90 % of the rate limit), expected on a small machine.

$Q_TABLE

## fsyncs per write

From \`replikv_wal_fsyncs_total\` / \`replikv_wal_records_total\` on each replikv node's admin \`/metrics\`, and for etcd \`etcd_disk_wal_fsync_duration_seconds_count\` / \`etcd_mvcc_put_total\` on each member's \`/metrics\`, read before and after each run (replicas summed; read right after the run, a replica's count can trail its leader's by the entries still in flight). Redis exposes no fsync counter. n/a when a metric is absent.

$FS_TABLE

## Replica lag under load

Sampled every ${LAG_INTERVAL} s during each SET run: replikv's leader gauges \`replikv_replica_lag_entries\` and \`replikv_replica_lag_ms\` (largest over the replicas at each sample); Redis's primary \`INFO replication\`: \`master_repl_offset\` minus each replica's \`offset\` (largest over the replicas). Redis replicas report their offset about once a second, so Redis's byte lag includes up to a second of writes even when the replicas keep up. n/a when a metric is absent.

$LAG_TABLE

## Goals

$GOALS

Single run on a shared, noisy 2-core machine whose disk caches writes: read ratios as rough, look for patterns across rows, and read fsync-bound figures as better than real disks give. Load tools and servers share the same 2 cores.
EOF
)

mkdir -p "$RESULTS_DIR"
OUTFILE="$RESULTS_DIR/replication-compare-$STAMP.md"
printf '%s\n' "$REPORT" >"$OUTFILE"
printf '\n%s\n\n' "$REPORT"
log "report written to $OUTFILE"
