#!/usr/bin/env bash
# LiteObs launcher.
#   bash scripts/start.sh local [--keep] [--no-build]
#                                         build, run a server (default store: DuckDB) and, as root, the
#                                         agent on lo; make real HTTP traffic; print the table; stop
#                                         everything it started, and print the web page's URL (--keep
#                                         leaves the server and its page running; --no-build uses the
#                                         binaries already in the target dir)
#   bash scripts/start.sh full [ARGS...]   build the images, load them into the current kubectl context
#                                         (kind, minikube, or push to $LITEOBS_REGISTRY), kubectl apply
#                                         -k deploy/, wait for the rollout, then run a query (ARGS)
#   bash scripts/start.sh query [ARGS...]  run liteobs-client with ARGS against the deployed server
#                                         (port-forward when a cluster runs LiteObs), else $LITEOBS_SERVER
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/images.sh

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; }

# Every process this script starts in the background is the program itself (started with
# `&` directly or through `root_exec`), never a subshell around it, so that $! is the PID to stop.
PIDS_TO_STOP=()
# stop_all: SIGTERM what this script started, newest first, and wait for it.
stop_all() {
    local i
    for ((i = ${#PIDS_TO_STOP[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS_TO_STOP[$i]}"
    done
}
# stop_pid PID: SIGTERM one process this script started (as root, since some run as root), reap
# it, and take it off PIDS_TO_STOP (its number may be reused).
stop_pid() {
    local p rest=()
    # Under sudo, $1 is sudo, which does not pass on a signal from its command's process group
    # (ours, without a pty): signal the command itself too.
    if [ "$(id -u)" != 0 ] && command -v pkill >/dev/null; then as_root pkill -TERM -P "$1" 2>/dev/null || true; fi
    as_root kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for p in "${PIDS_TO_STOP[@]}"; do [ "$p" = "$1" ] || rest+=("$p"); done
    PIDS_TO_STOP=("${rest[@]}")
}
# Ctrl-C or a SIGTERM to the script runs the EXIT trap (bash skips it on a fatal signal).
trap 'exit 130' INT
trap 'exit 143' TERM

mode=${1:-}
[ $# -gt 0 ] && shift

build() {
    if [ "${NO_BUILD:-0}" = 1 ]; then
        local b
        for b in liteobs-server liteobs-agent liteobs-client; do
            [ -x "$BIN_DIR/$b" ] || die "--no-build: $BIN_DIR/$b is missing (build it, or drop --no-build)"
        done
        return
    fi
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
    root_exec "$BIN_DIR/liteobs-agent" -iface lo -ports "$web_port" -server "$url" -flush-interval 200ms \
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
    stop_pid "$agent_pid"
    echo
    "$BIN_DIR/liteobs-client" -server "$url" -limit 20
    echo
    say "what did python3 http.server (pid $web_pid) serve?  liteobs-client -pid $web_pid"
    "$BIN_DIR/liteobs-client" -server "$url" -pid "$web_pid" -limit 5
}

local_mode() {
    local keep=0 arg
    for arg in "$@"; do
        case $arg in
            --keep) keep=1 ;;
            --no-build) NO_BUILD=1 ;;
            *) usage; die "local takes --keep and --no-build, not '$arg'" ;;
        esac
    done
    build
    local work port url server_pid
    work=$(mktemp -d /tmp/liteobs-local.XXXXXX)
    port=$(free_port)
    url=http://127.0.0.1:$port
    "$BIN_DIR/liteobs-server" -listen "127.0.0.1:$port" -db-path "$work/liteobs.duckdb" >"$work/server.log" 2>&1 &
    server_pid=$!
    if [ "$keep" = 0 ]; then
        PIDS_TO_STOP+=("$server_pid")
        trap 'stop_all; rm -rf '"$work" EXIT
    else
        trap 'stop_all' EXIT
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
        say "left running (pid $server_pid): server at $url, data in $work"
        say "web page: $url/  (traffic, routes and map; open it in a browser)"
    else
        say "web page: $url/  (up while this ran; with --keep it stays up)"
    fi
}

# need TOOL WHAT: one clear line when TOOL is missing.
need() { command -v "$1" >/dev/null || die "mode $mode needs $1: $2"; }

# in_cluster: a current kubectl context whose cluster runs the liteobs-server Service.
in_cluster() {
    command -v kubectl >/dev/null && kubectl config current-context >/dev/null 2>&1 \
        && kubectl --request-timeout=10s -n liteobs get service liteobs-server >/dev/null 2>&1
}

query_mode() {
    [ -x "$BIN_DIR/liteobs-client" ] || build
    if [ -n "${LITEOBS_SERVER:-}" ] || ! in_cluster; then
        exec "$BIN_DIR/liteobs-client" "$@"
    fi
    local port log pf
    port=$(free_port)
    log=$(mktemp /tmp/liteobs-port-forward.XXXXXX)
    kubectl -n liteobs port-forward service/liteobs-server "$port:8080" >"$log" 2>&1 &
    pf=$!
    trap 'kill '"$pf"' 2>/dev/null || true; rm -f '"$log" EXIT
    wait_http "http://127.0.0.1:$port/healthz" 30 || { cat "$log" >&2; die "kubectl port-forward to liteobs-server did not answer"; }
    if [ -z "${LITEOBS_TOKEN:-}" ]; then
        LITEOBS_TOKEN=$(kubectl -n liteobs get secret liteobs-token -o jsonpath='{.data.token}' | base64 -d) \
            || die "cannot read the token from Secret liteobs/liteobs-token (set LITEOBS_TOKEN)"
        export LITEOBS_TOKEN
    fi
    "$BIN_DIR/liteobs-client" -server "http://127.0.0.1:$port" "$@"
}

full_mode() {
    need docker "install Docker (Debian: apt-get install docker.io)"
    need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)"
    local ctx tag=$IMAGE_TAG how=${LITEOBS_IMAGE_BUILD:-}
    ctx=$(kubectl config current-context 2>/dev/null) \
        || die "no current kubectl context: create a cluster (kind create cluster) or pick one (kubectl config use-context NAME)"
    # Binaries built here fit the images' Debian 12 base only when this machine is Debian 12;
    # elsewhere the Dockerfiles' builder stage compiles them (needs a registry for rust:1.95).
    if [ -z "$how" ]; then
        how=source
        [ -r /etc/os-release ] && grep -q '^VERSION_CODENAME=bookworm' /etc/os-release && how=prebuilt
    fi
    case $how in
        prebuilt) build; bash scripts/images.sh build ;;
        source) bash scripts/images.sh build-source ;;
        *) die "LITEOBS_IMAGE_BUILD must be prebuilt or source, not '$how'" ;;
    esac

    local server=$SERVER_IMAGE agent=$AGENT_IMAGE registry=0
    case $ctx in
        kind-*)
            need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/)"
            kind load docker-image --name "${ctx#kind-}" "$server" "$agent" ;;
        minikube)
            need minikube "install minikube (https://minikube.sigs.k8s.io/docs/start/)"
            minikube image load "$server" && minikube image load "$agent" ;;
        *)
            [ -n "${LITEOBS_REGISTRY:-}" ] \
                || die "context '$ctx' is neither kind nor minikube: set LITEOBS_REGISTRY=host[:port]/path to push the images there"
            registry=1
            server=$LITEOBS_REGISTRY/liteobs-server:$tag
            agent=$LITEOBS_REGISTRY/liteobs-agent:$tag
            docker tag "$SERVER_IMAGE" "$server" && docker push "$server"
            docker tag "$AGENT_IMAGE" "$agent" && docker push "$agent" ;;
    esac

    say "deploying to $ctx (kubectl apply -k deploy/)"
    kubectl apply -f deploy/namespace.yaml >/dev/null
    if ! kubectl -n liteobs get secret liteobs-token >/dev/null 2>&1; then
        say "creating Secret liteobs/liteobs-token (a random bearer token)"
        kubectl -n liteobs create secret generic liteobs-token \
            --from-literal=token="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" >/dev/null
    fi
    if [ "$registry" = 1 ]; then
        # The manifests name the local images; point them at the pushed ones.
        kubectl kustomize deploy/ \
            | sed -e "s#image: $SERVER_IMAGE\$#image: $server#" -e "s#image: $AGENT_IMAGE\$#image: $agent#" \
            | kubectl apply -f -
    else
        kubectl apply -k deploy/
    fi
    kubectl -n liteobs rollout status deployment/liteobs-server --timeout=300s
    kubectl -n liteobs rollout status daemonset/liteobs-agent --timeout=300s
    say "LiteObs runs in $ctx; querying it (bash scripts/start.sh query ARGS for more)"
    if [ $# -eq 0 ]; then set -- -limit 20; fi
    LITEOBS_SERVER='' query_mode "$@"
}

case "$mode" in
    local) local_mode "$@" ;;
    query) query_mode "$@" ;;
    full) full_mode "$@" ;;
    ""|-h|--help|help) usage; [ -n "$mode" ] ;;
    *) usage; die "unknown mode '$mode' (use local, query or full)" ;;
esac
