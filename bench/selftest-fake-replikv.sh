#!/usr/bin/env bash
# selftest-fake-replikv.sh — a stand-in for the replikv binary, ONLY for testing
# bench/redis-compare.sh itself before replikv can serve. It takes replikv's
#   serve --data-dir D [--bind 127.0.0.1] --port P --admin-port A --fsync always|interval [--fsync-interval-ms N]
# and runs a second redis-server with the matching appendfsync policy instead:
#
#   REPLIKV_BIN=bench/selftest-fake-replikv.sh bench/redis-compare.sh --quick
#
# With FAKE_REPLIKV_METRICS=1 it also serves http://127.0.0.1:A/metrics with
# made-up replikv_wal_records_total (= SET calls seen by the Redis) and
# replikv_wal_fsyncs_total (= records for "always", seconds since start for
# "interval") so the fsyncs-per-write plumbing can be exercised. The numbers
# it produces describe Redis, not replikv: never publish them.
set -euo pipefail

[[ ${1:-} == serve ]] || {
    echo "selftest-fake-replikv: only 'serve' is supported" >&2
    exit 2
}
shift
dir="" port="" admin="" fsync="" interval=1000
while (($#)); do
    case "$1" in
        --data-dir) dir=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --bind)
            [[ $2 == 127.0.0.1 ]] || { echo "selftest-fake-replikv: only --bind 127.0.0.1" >&2; exit 2; }
            shift 2
            ;;
        --admin-port) admin=$2; shift 2 ;;
        --fsync) fsync=$2; shift 2 ;;
        --fsync-interval-ms) interval=$2; shift 2 ;;
        *) echo "selftest-fake-replikv: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -n $dir && -n $port && -n $admin && -n $fsync ]] || {
    echo "selftest-fake-replikv: need --data-dir, --port, --admin-port and --fsync" >&2
    exit 2
}
case "$fsync" in
    always) policy=always ;;
    interval)
        [[ $interval == 1000 ]] || { echo "selftest-fake-replikv: Redis can only fsync every 1000 ms" >&2; exit 2; }
        policy=everysec
        ;;
    *) echo "selftest-fake-replikv: --fsync must be always or interval" >&2; exit 2 ;;
esac

redis_args=(--port "$port" --bind 127.0.0.1 --dir "$dir" --appendonly yes --appendfsync "$policy"
    --save '' --daemonize no --protected-mode yes)

if [[ ${FAKE_REPLIKV_METRICS:-0} != 1 ]]; then
    exec redis-server "${redis_args[@]}"
fi

redis-server "${redis_args[@]}" &
redis_pid=$!
python3 - "$admin" "$port" "$fsync" <<'PY' &
import http.server, subprocess, sys, time
admin, port, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
start = time.monotonic()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404); return
        info = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "info", "commandstats"],
                              capture_output=True, text=True, timeout=5).stdout
        records = 0
        for line in info.splitlines():
            if line.startswith("cmdstat_set:"):
                records = int(line.split("calls=")[1].split(",")[0])
        fsyncs = records if mode == "always" else int(time.monotonic() - start)
        body = ("# TYPE replikv_wal_records_total counter\n"
                f"replikv_wal_records_total {records}\n"
                "# TYPE replikv_wal_fsyncs_total counter\n"
                f'replikv_wal_fsyncs_total{{fake="1"}} {fsyncs}\n').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", admin), H).serve_forever()
PY
metrics_pid=$!
stop() {
    kill -TERM "$redis_pid" "$metrics_pid" 2>/dev/null || true
    wait "$redis_pid" "$metrics_pid" 2>/dev/null || true
    exit 0
}
trap stop TERM INT
# Exit when Redis does; the caller stops us with SIGTERM.
wait "$redis_pid" || true
kill -TERM "$metrics_pid" 2>/dev/null || true
wait "$metrics_pid" 2>/dev/null || true
