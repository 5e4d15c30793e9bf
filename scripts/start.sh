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

PIDS_TO_STOP=()
# stop_all: SIGTERM what this script started, newest first, and wait for it.
stop_all() {
    local i
    for ((i = ${#PIDS_TO_STOP[@]} - 1; i >= 0; i--)); do
        as_root kill -TERM "${PIDS_TO_STOP[$i]}" 2>/dev/null || true
        wait "${PIDS_TO_STOP[$i]}" 2>/dev/null || true
    done
}

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

# demo_traffic URL WORK: a real web server and real clients on loopback, captured and attributed
# by the agent (as root), shipped to the server at URL; then the client shows the result.
demo_traffic() {
    local url=$1 work=$2 web_port web_pid agent_pid i
    web_port=$(free_port)
    mkdir -p "$work/www/api"
    echo '{"items": [1, 2, 3]}' >"$work/www/api/items.json"
    head -c 20000 /dev/urandom | base64 >"$work/www/big.txt"
    python3 -m http.server "$web_port" --bind 127.0.0.1 --directory "$work/www" >"$work/web.log" 2>&1 &
    web_pid=$!
    PIDS_TO_STOP+=("$web_pid")
    wait_http "http://127.0.0.1:$web_port/" 30 || die "demo web server did not start"

    say "agent: capturing lo, port $web_port, attributing processes with eBPF"
    as_root "$BIN_DIR/liteobs-agent" -iface lo -ports "$web_port" -server "$url" -flush-interval 200ms \
        -node "$(hostname)" >"$work/agent.log" 2>&1 &
    agent_pid=$!
    PIDS_TO_STOP+=("$agent_pid")
    for i in $(seq 100); do
        grep -q capturing "$work/agent.log" 2>/dev/null && break
        kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log" >&2; die "agent exited"; }
        sleep 0.1
    done
    grep -q capturing "$work/agent.log" || { cat "$work/agent.log" >&2; die "agent did not start capturing"; }

    say "traffic: curl and python clients against python3 http.server (pid $web_pid)"
    for path in / /api/items.json /big.txt /missing /api/items.json?fresh=1; do
        curl -s -o /dev/null "http://127.0.0.1:$web_port$path"
    done
    curl -s -o /dev/null -X POST -d 'hello=world' "http://127.0.0.1:$web_port/api/items.json" || true
    python3 - "$web_port" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for p in ["/", "/api/items.json", "/nope"]:
    c.request("GET", p); c.getresponse().read()
c.close()
PY
    sleep 0.5
    as_root kill -TERM "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
    echo
    "$BIN_DIR/liteobs-client" -server "$url" -limit 20
    echo
    say "what did python3 http.server (pid $web_pid) serve?  liteobs-client -pid $web_pid"
    "$BIN_DIR/liteobs-client" -server "$url" -pid "$web_pid" -limit 5
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
    PIDS_TO_STOP+=("$server_pid")
    if [ "$keep" = 0 ]; then
        trap 'stop_all; rm -rf '"$work" EXIT
    fi
    wait_http "$url/healthz" 120 || { cat "$work/server.log" >&2; die "server did not start"; }
    say "server $url (DuckDB at $work/liteobs.duckdb)"

    if [ "$(id -u)" = 0 ] || command -v sudo >/dev/null; then
        demo_traffic "$url" "$work"
    else
        say "not root and no sudo: the agent cannot capture; uploading 20 generated sample exchanges instead"
        sample_ndjson 20 | curl -fsS -H 'Content-Type: application/x-ndjson' --data-binary @- "$url/upload" >/dev/null
        echo
        "$BIN_DIR/liteobs-client" -server "$url" -limit 20
    fi
    if [ "$keep" = 1 ]; then
        say "left running (pids ${PIDS_TO_STOP[*]}): server at $url, data in $work"
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
