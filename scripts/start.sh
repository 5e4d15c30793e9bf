#!/usr/bin/env bash
# LiteObs launcher.
#   bash scripts/start.sh local [--keep]   build, run a server (default store: DuckDB) and, as root, the
#                                         agent on lo; make real HTTP traffic; print the table; stop
#                                         what it started (--keep leaves it running)
#   bash scripts/start.sh query [ARGS...]  run liteobs-client against $LITEOBS_SERVER with ARGS
#   bash scripts/start.sh full             build images and deploy to Kubernetes (not available yet)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; }

mode=${1:-}
[ $# -gt 0 ] && shift

build() {
    ensure_packages build-essential pkg-config libpcap-dev python3 curl
    ensure_rust
    ensure_target_dir
    say "building (release; the first build compiles DuckDB and takes ~20 minutes)"
    cargo build --release --locked --bins --workspace
}

# sample_ndjson N: N generated exchanges, used when no agent can capture real traffic.
sample_ndjson() {
    python3 - "$1" <<'PY'
import json, sys, datetime, random
n = int(sys.argv[1]); rnd = random.Random(7)
now = datetime.datetime.now(datetime.timezone.utc)
for i in range(n):
    ts = now - datetime.timedelta(milliseconds=(n - i) * 137)
    print(json.dumps({
        "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "src_ip": "127.0.0.1", "src_port": 40000 + i, "dst_ip": "127.0.0.1", "dst_port": 8000,
        "method": rnd.choice(["GET", "GET", "POST"]), "path": rnd.choice(["/", "/api/items", "/api/items/42?full=1", "/healthz"]),
        "host": "localhost:8000", "status": rnd.choice([200, 200, 200, 404, 500]),
        "latency_us": rnd.randint(200, 90000), "req_bytes": 0, "resp_bytes": rnd.randint(0, 40000),
        "src_pid": 4242, "src_comm": "sample-client", "dst_pid": 4343, "dst_comm": "sample-server",
        "node": "sample"}))
PY
}

local_mode() {
    local keep=0
    [ "${1:-}" = --keep ] && keep=1
    build
    local work port url server_pid
    work=$(mktemp -d /tmp/liteobs-local.XXXXXX)
    port=$(free_port)
    url=http://127.0.0.1:$port
    "$BIN_DIR/liteobs-server" -listen "127.0.0.1:$port" -db-path "$work/liteobs.duckdb" >"$work/server.log" 2>&1 &
    server_pid=$!
    if [ "$keep" = 0 ]; then
        trap 'kill '"$server_pid"' 2>/dev/null; wait '"$server_pid"' 2>/dev/null; rm -rf '"$work" EXIT
    fi
    wait_http "$url/healthz" 120 || { cat "$work/server.log" >&2; die "server did not start"; }
    say "server $url (DuckDB at $work/liteobs.duckdb)"

    say "no agent yet: uploading 20 generated sample exchanges"
    sample_ndjson 20 | curl -fsS -H 'Content-Type: application/x-ndjson' --data-binary @- "$url/upload" >/dev/null
    echo
    "$BIN_DIR/liteobs-client" -server "$url" -limit 20
    echo
    say "by PID: liteobs-client -server $url -pid 4242"
    "$BIN_DIR/liteobs-client" -server "$url" -pid 4242 -limit 5
    if [ "$keep" = 1 ]; then
        say "left running: server pid $server_pid at $url (data in $work)"
    fi
}

case "$mode" in
    local) local_mode "$@" ;;
    query)
        [ -x "$BIN_DIR/liteobs-client" ] || build
        exec "$BIN_DIR/liteobs-client" "$@" ;;
    full) die "mode 'full' (images + Kubernetes) is not available yet; use: bash scripts/start.sh local" ;;
    ""|-h|--help|help) usage; [ -n "$mode" ] ;;
    *) usage; die "unknown mode '$mode' (use local, query or full)" ;;
esac
