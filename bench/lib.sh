# shellcheck shell=bash
# shellcheck disable=SC2034 # QUICK, NEW_PORT, WAITED_RC and others are read by the scripts
# lib.sh — helpers shared by the bench/*-compare.sh scripts. Not run on its own: each script
# sets SCRIPT_NAME (the tag of its messages) and LOG_ELAPSED (1: log lines show the seconds
# since start), then sources this file right after `set -euo pipefail`:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing it defines SCRIPT_DIR, REPO_ROOT and HOST, and installs the exit trap that stops
# every process started through these helpers and removes every temporary directory made
# through them. Every helper here talks to HOST (127.0.0.1) only, and every wait is bounded.
: "${SCRIPT_NAME:?set SCRIPT_NAME before sourcing bench/lib.sh}"
: "${LOG_ELAPSED:?set LOG_ELAPSED (0 or 1) before sourcing bench/lib.sh}"

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)
HOST=127.0.0.1 # the only address these scripts ever talk to

# ---------------------------------------------------------- arguments ---
# parse_args "$@" — sets QUICK (0 or 1) from --quick; --help prints the script's header
# comment (from line 2 up to `set -euo pipefail`) and exits.
parse_args() {
    local arg
    QUICK=0
    for arg in "$@"; do
        case "$arg" in
            --quick) QUICK=1 ;;
            -h | --help)
                sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
                exit 0
                ;;
            *)
                echo "$SCRIPT_NAME: unknown argument '$arg' (try --help)" >&2
                exit 2
                ;;
        esac
    done
}

# require_positive_int NAME... — exits 2 unless each variable NAME (set from BENCH_NAME)
# holds a positive integer.
require_positive_int() {
    local v
    for v in "$@"; do
        [[ ${!v} =~ ^[1-9][0-9]*$ ]] || {
            echo "$SCRIPT_NAME: BENCH_$v must be a positive integer, got '${!v}'" >&2
            exit 2
        }
    done
}

# ------------------------------------------------------------ messages ---
log() {
    if ((LOG_ELAPSED)); then
        printf '[%s +%ss] %s\n' "$SCRIPT_NAME" "$SECONDS" "$*" >&2
    else
        printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2
    fi
}
die() {
    printf '[%s] ERROR: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

# show_log_tail NAME LOGFILE
show_log_tail() {
    log "---- last lines of $1's output ($2) ----"
    tail -n 30 "$2" >&2 || true
    log "----"
}

# -------------------------------------------------- processes and dirs ---
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
    for p in ${PIDS[@]+"${PIDS[@]}"}; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=(${keep[@]+"${keep[@]}"})
}

# new_tmpdir TAG — makes a fresh temporary directory, registered for removal; sets NEW_DIR.
new_tmpdir() {
    NEW_DIR=$(mktemp -d "${TMPDIR:-/tmp}/replikv-bench.$1.XXXXXX") || die "mktemp -d failed"
    TMPDIRS+=("$NEW_DIR")
}

# Removes a temporary directory now and drops it from TMPDIRS.
remove_tmpdir() {
    local d keep=()
    rm -rf -- "$1"
    for d in ${TMPDIRS[@]+"${TMPDIRS[@]}"}; do [[ $d == "$1" ]] || keep+=("$d"); done
    TMPDIRS=(${keep[@]+"${keep[@]}"})
}

cleanup() {
    local rc=$? d i
    trap - EXIT INT TERM
    # Newest first: samplers and benchmark tools go before the servers they talk to.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    for d in ${TMPDIRS[@]+"${TMPDIRS[@]}"}; do rm -rf -- "$d"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_waited OUTFILE ERRFILE CMD... — runs CMD in the background, stdout to OUTFILE, stderr to
# ERRFILE (the same file when ERRFILE is OUTFILE), stdin from /dev/null, and waits for it, so
# a signal to this script is handled at once (cleanup then stops CMD too). Sets WAITED_RC to
# CMD's exit status.
run_waited() {
    local out=$1 err=$2 pid
    shift 2
    if [[ $err == "$out" ]]; then
        "$@" >"$out" 2>&1 </dev/null &
    else
        "$@" >"$out" 2>"$err" </dev/null &
    fi
    pid=$!
    PIDS+=("$pid")
    WAITED_RC=0
    wait "$pid" || WAITED_RC=$?
    forget_pid "$pid"
}

# ------------------------------------------------------------- servers ---
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

# died NAME PID LOGFILE WHAT HINT — reports a server that exited early, and stops.
died() {
    local rc=0
    wait "$2" 2>/dev/null || rc=$?
    forget_pid "$2"
    show_log_tail "$1" "$3"
    die "$1 exited (status $rc) $4. $5"
}

# poll_until NAME PID LOGFILE HINT WHEN CHECK... — runs CHECK every 0.2 s until it succeeds,
# for at most START_TIMEOUT s; dies through `died` (WHEN says "before what") if our process
# PID exits first. Returns 1 after showing the end of LOGFILE when time runs out; the caller
# then dies with its own message. Nothing in here relies on `set -e`, which a caller's `||`
# turns off.
poll_until() {
    local name=$1 pid=$2 logf=$3 hint=$4 when=$5 deadline
    shift 5
    deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        alive "$pid" || died "$name" "$pid" "$logf" "$when" "$hint"
        "$@" && return 0
        sleep 0.2
    done
    show_log_tail "$name" "$logf"
    return 1
}

# ping_ok PORT — true when HOST:PORT answers PING with PONG.
ping_ok() {
    [[ $(timeout 2 redis-cli -h "$HOST" -p "$1" ping 2>/dev/null || true) == PONG ]]
}

# wait_ping NAME PORT PID LOGFILE HINT — bounded wait for PONG from our process.
wait_ping() {
    local name=$1 port=$2 pid=$3 logf=$4 hint=$5
    poll_until "$name" "$pid" "$logf" "$hint" "before answering PING on $HOST:$port" ping_ok "$port" ||
        die "$name did not answer PING on $HOST:$port within ${START_TIMEOUT}s. $hint"
    sleep 0.2
    alive "$pid" || die "something answered PING on $HOST:$port but $name (pid $pid) has exited — port clash?"
    log "$name is up on $HOST:$port (pid $pid)"
}

# ------------------------------------------------------ metrics and CSV ---
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

# ---------------------------------------------------------- preparation ---
# read_redis_versions — sets REDIS_VERSION and BENCH_VERSION (redis-benchmark's; may be empty).
read_redis_versions() {
    REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
    BENCH_VERSION=$(redis-benchmark --version 2>/dev/null | awk '{print $2}')
    [[ -n $REDIS_VERSION ]] || REDIS_VERSION=$(redis-server --version)
}

# check_workspace_root — dies unless REPO_ROOT is the replikv cargo workspace.
check_workspace_root() {
    # shellcheck disable=SC2015 # die runs if either test fails, as intended
    [[ -f $REPO_ROOT/Cargo.toml ]] && grep -q '^\[workspace\]' "$REPO_ROOT/Cargo.toml" ||
        die "$REPO_ROOT does not look like the replikv workspace root (expected Cargo.toml with [workspace])"
}

# replikv_commit — prints HEAD's short hash, with "-dirty" when tracked files have
# uncommitted changes, or "unknown" outside git.
replikv_commit() {
    local c
    c=$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    if [[ $c != unknown ]] &&
        [[ -n $(GIT_OPTIONAL_LOCKS=0 git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
        c+="-dirty"
    fi
    printf '%s\n' "$c"
}

# --------------------------------------------------------------- report ---
# fmt_int X — X rounded to an integer; n/a when X is empty or NA.
fmt_int() { [[ -z ${1:-} || $1 == NA ]] && { printf 'n/a'; return; }; awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
# ratio A B — A / B to two decimals; n/a when either is empty or B is not above 0.
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a != "" && b != "" && b + 0 > 0) printf "%.2f", a / b; else printf "n/a" }'; }
