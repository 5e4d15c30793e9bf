#!/usr/bin/env bash
# Records the agent's real-traffic fixtures: small .pcap files of real HTTP peers talking on
# loopback, captured with tcpdump. Run as root from anywhere:
#
#     sudo scripts/record-fixtures.sh            # (re)records every fixture into fixtures/pcap/
#     sudo scripts/record-fixtures.sh nginx-head  # only the named ones
#
# Peers: nginx (a throwaway config under a temp dir, 127.0.0.1 and [::1]), python3's stock
# http.server (HTTP/1.0), and fixtures/peers/http_peer.py for what those two do not give on
# demand (chunked responses, chunked request bodies, 100-continue, a request left unanswered).
# Clients: curl, and fixtures/peers/pipeline_client.py for pipelining (several requests in one
# write). The raw-* fixtures come from fixtures/peers/raw_peer.py, a raw-socket client and server
# in one process that send exact bytes: odd but real HTTP (refused upgrades, HTTP/0.9, request
# lines and framing headers httparse refuses); `raw_peer.py --list` describes each.
# Only loopback addresses are used, but for any-dnat-service: three network namespaces the script
# creates (and deletes) play a client pod, a node that DNATs a Service address the way kube-proxy
# does, and a server pod (iptables in the node's namespace only).
#
# The recordings are committed; after re-recording, review and accept the agent's snapshots:
#     cargo insta test --release -p liteobs-agent --test fixtures   (or INSTA_UPDATE=always)
# Generated edge-case captures (fixtures/pcap/generated/) come from a Rust test instead:
#     LITEOBS_BLESS_FIXTURES=1 cargo test --release -p liteobs-agent --test generated_fixtures
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/fixtures/pcap
PEERS=$ROOT/fixtures/peers
NGINX_PORT=18080
PEER_PORT=18081
PYSRV_PORT=18082
RAW_PORT=18083
# any-dnat-service: the server pod's port, and the Service address DNAT'd to it
POD_PORT=18084
SERVICE_IP=10.96.0.10
SERVICE_PORT=18085
NS=liteobs-fx-$$

die() { echo "record-fixtures: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (tcpdump captures on lo)"
for tool in tcpdump nginx curl ip iptables; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install tcpdump nginx-light curl)"
done
PY=$(command -v /usr/bin/python3 || command -v python3) || die "python3 is not installed"

WORK=$(mktemp -d /tmp/liteobs-fixtures.XXXXXX)
chmod 755 "$WORK" # nginx workers run as www-data
PIDS=()
cleanup() {
    if [ -f "$WORK/nginx.pid" ]; then kill -QUIT "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; fi
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for ns in cli node srv; do ip netns del "$NS-$ns" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- content: fixed bytes and a fixed mtime so Last-Modified, sizes and 304s are stable -------
WWW=$WORK/www
mkdir -p "$WWW/gz" "$WORK/tmp"
printf '<!doctype html>\n<title>liteobs fixture</title>\n<p>hello from nginx</p>\n' >"$WWW/index.html"
printf 'hello, world\n' >"$WWW/hello.txt"
"$PY" -c 'import sys; sys.stdout.buffer.write(bytes(i * 7 % 251 for i in range(1 << 20)))' >"$WWW/big.bin"
"$PY" -c 'print("\n".join(f"line {i}: the quick brown fox jumps over the lazy dog" for i in range(200)))' >"$WWW/gz/words.txt"
"$PY" -c 'import sys; sys.stdout.buffer.write(b"x" * 3000)' >"$WORK/post-3k.bin"
"$PY" -c 'import sys; sys.stdout.buffer.write(b"field=value&" * 40)' >"$WORK/form.txt"
find "$WWW" -exec touch -d '2026-01-01 00:00:00 UTC' {} +
LAST_MODIFIED='Thu, 01 Jan 2026 00:00:00 GMT'

# --- nginx ------------------------------------------------------------------------------------
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    server_tokens off;
    default_type application/octet-stream;
    types { text/html html; text/plain txt; }
    client_body_temp_path $WORK/tmp/body;
    proxy_temp_path $WORK/tmp/proxy;
    fastcgi_temp_path $WORK/tmp/fastcgi;
    uwsgi_temp_path $WORK/tmp/uwsgi;
    scgi_temp_path $WORK/tmp/scgi;
    keepalive_requests 1000;
    etag off;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        listen [::1]:$NGINX_PORT;
        root $WWW;
        location = /empty { return 204; }
        location = /boom { return 500; }
        location /gz/ { gzip on; gzip_types text/plain; gzip_min_length 0; }
    }
}
EOF
nginx -t -q -c "$WORK/nginx.conf" -p "$WORK" || die "nginx rejected the throwaway config"
nginx -c "$WORK/nginx.conf" -p "$WORK"

"$PY" "$PEERS/http_peer.py" --host 127.0.0.1 --port $PEER_PORT 2>"$WORK/peer.log" &
PIDS+=($!)
(cd "$WWW" && exec "$PY" -m http.server --bind 127.0.0.1 $PYSRV_PORT) >"$WORK/pysrv.log" 2>&1 &
PIDS+=($!)

wait_http() {
    for _ in $(seq 100); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.05
    done
    die "$1 did not answer"
}
wait_http "http://127.0.0.1:$NGINX_PORT/hello.txt"
wait_http "http://[::1]:$NGINX_PORT/hello.txt"
wait_http "http://127.0.0.1:$PEER_PORT/"
wait_http "http://127.0.0.1:$PYSRV_PORT/hello.txt"

# --- recording --------------------------------------------------------------------------------
CAP_PID=
# start_capture FILE FILTER [IFACE [NETNS]]: immediate mode and -U so that no packet waits in a
# kernel block or a stdio buffer when tcpdump is stopped; -Z root keeps it writing as root; a
# 64 MiB ring (-B), since in immediate mode its slots are snap-length sized and the default
# 2 MiB held eight packets (a burst of both veths' copies lost some).
start_capture() {
    local file=$1 filter=$2 iface=${3:-lo} in=()
    [ -z "${4:-}" ] || in=(ip netns exec "$4")
    : >"$WORK/cap.err"
    "${in[@]}" tcpdump -i "$iface" -n -s 0 -B 65536 -U --immediate-mode -Z root -w "$file" "$filter" 2>"$WORK/cap.err" &
    CAP_PID=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$WORK/cap.err" && { sleep 0.2; return 0; }
        sleep 0.05
    done
    cat "$WORK/cap.err" >&2
    die "tcpdump did not start"
}
stop_capture() {
    sleep 0.3
    kill -INT "$CAP_PID"
    wait "$CAP_PID" 2>/dev/null || true
    if grep -Eq '^[1-9][0-9]* packets dropped by kernel' "$WORK/cap.err"; then
        cat "$WORK/cap.err" >&2
        die "tcpdump dropped packets; record again"
    fi
}

# curl with every response body discarded (-o applies to one URL only; stdout covers the rest)
curl_quiet() { curl -s --max-time 10 "$@" >/dev/null; }
CURL=(curl_quiet)
N=http://127.0.0.1:$NGINX_PORT
P=http://127.0.0.1:$PEER_PORT

declare -A SCENARIOS=(
    [nginx-keepalive]="three GETs on one keep-alive connection (one curl, three URLs)"
    [nginx-status-codes]="204, 304 (If-Modified-Since), 404 and 500 on one connection"
    [nginx-head]="HEAD: Content-Length in the response but no body"
    [nginx-ipv6]="two GETs over [::1]"
    [nginx-1mib]="a 1 MiB response body"
    [nginx-pipelined]="three pipelined requests in one write, the last with Connection: close"
    [nginx-gzip-chunked]="gzip-compressed, chunked response (curl --compressed)"
    [nginx-refused-upgrade]="a WebSocket upgrade request to a static file (nginx answers 200) and a GET pipelined behind it"
    [peer-chunked-response]="chunked response in three writes with a trailer"
    [peer-chunked-request]="POST with a chunked request body"
    [peer-post]="POST with a Content-Length form body"
    [peer-expect-100]="POST with Expect: 100-continue, an interim 100, then 200"
    [peer-no-response]="a request the server never answers (it closes the connection)"
    [pysrv-http10]="python3 http.server (HTTP/1.0, one connection per request): 200, 404, directory listing"
    [any-sll2]="nginx GETs captured on the 'any' pseudo-interface (Linux cooked v2 framing)"
    [any-dnat-service]="a node's 'any' sees two GETs to a Service address before and after DNAT to the pod, and a GET to the pod itself on both veths"
)
while IFS=$'\t' read -r raw what; do
    SCENARIOS[raw-$raw]="$what"
done < <("$PY" "$PEERS/raw_peer.py" --list)

record() {
    local name=$1 file=$OUT/$1.pcap
    case $name in
    nginx-keepalive)
        start_capture "$file" "tcp port $NGINX_PORT"
        "${CURL[@]}" "$N/index.html" "$N/hello.txt" "$N/index.html?x=1&y=%20"
        ;;
    nginx-status-codes)
        start_capture "$file" "tcp port $NGINX_PORT"
        "${CURL[@]}" "$N/empty" --next -s -H "If-Modified-Since: $LAST_MODIFIED" "$N/hello.txt" \
            --next -s "$N/missing" --next -s "$N/boom"
        ;;
    nginx-head)
        start_capture "$file" "tcp port $NGINX_PORT"
        "${CURL[@]}" -I "$N/index.html"
        ;;
    nginx-ipv6)
        start_capture "$file" "tcp port $NGINX_PORT"
        "${CURL[@]}" -g "http://[::1]:$NGINX_PORT/hello.txt" "http://[::1]:$NGINX_PORT/missing"
        ;;
    nginx-1mib)
        start_capture "$file" "tcp port $NGINX_PORT"
        "${CURL[@]}" "$N/big.bin"
        ;;
    nginx-pipelined)
        start_capture "$file" "tcp port $NGINX_PORT"
        "$PY" "$PEERS/pipeline_client.py" 127.0.0.1 $NGINX_PORT /index.html /hello.txt "HEAD /missing"
        ;;
    nginx-refused-upgrade)
        start_capture "$file" "tcp port $NGINX_PORT"
        "$PY" "$PEERS/pipeline_client.py" --first-header "Connection: Upgrade" --first-header "Upgrade: websocket" \
            --first-header "Sec-WebSocket-Version: 13" --first-header "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" \
            127.0.0.1 $NGINX_PORT /hello.txt /index.html
        ;;
    nginx-gzip-chunked)
        start_capture "$file" "tcp port $NGINX_PORT"
        "${CURL[@]}" --compressed "$N/gz/words.txt"
        ;;
    peer-chunked-response)
        start_capture "$file" "tcp port $PEER_PORT"
        "${CURL[@]}" "$P/chunked"
        ;;
    peer-chunked-request)
        start_capture "$file" "tcp port $PEER_PORT"
        "${CURL[@]}" -H "Transfer-Encoding: chunked" --data-binary @"$WORK/form.txt" "$P/echo"
        ;;
    peer-post)
        start_capture "$file" "tcp port $PEER_PORT"
        "${CURL[@]}" --data-binary @"$WORK/form.txt" "$P/echo"
        ;;
    peer-expect-100)
        start_capture "$file" "tcp port $PEER_PORT"
        "${CURL[@]}" -H "Expect: 100-continue" --data-binary @"$WORK/post-3k.bin" "$P/echo"
        ;;
    peer-no-response)
        start_capture "$file" "tcp port $PEER_PORT"
        "${CURL[@]}" "$P/no-response" || true
        ;;
    pysrv-http10)
        start_capture "$file" "tcp port $PYSRV_PORT"
        "${CURL[@]}" "http://127.0.0.1:$PYSRV_PORT/hello.txt" "http://127.0.0.1:$PYSRV_PORT/nope" \
            "http://127.0.0.1:$PYSRV_PORT/"
        ;;
    any-sll2)
        start_capture "$file" "tcp port $NGINX_PORT" any
        "${CURL[@]}" "$N/hello.txt" "$N/missing"
        ;;
    any-dnat-service)
        dnat_node
        start_capture "$file" "tcp port $POD_PORT or tcp port $SERVICE_PORT" any "$NS-node"
        ip netns exec "$NS-cli" curl -s --max-time 10 "http://$SERVICE_IP:$SERVICE_PORT/hello.txt" \
            "http://$SERVICE_IP:$SERVICE_PORT/missing" >/dev/null
        ip netns exec "$NS-cli" curl -s --max-time 10 "http://10.77.2.2:$POD_PORT/hello.txt" >/dev/null
        ;;
    raw-*)
        start_capture "$file" "tcp port $RAW_PORT"
        "$PY" "$PEERS/raw_peer.py" $RAW_PORT "${name#raw-}"
        ;;
    *) die "unknown fixture $name (known: ${!SCENARIOS[*]})" ;;
    esac
    stop_capture
    printf '%-24s %4s packets %8s bytes  %s\n' "$name.pcap" \
        "$(tcpdump -r "$file" -n 2>/dev/null | wc -l)" "$(stat -c %s "$file")" "${SCENARIOS[$name]}"
}

# dnat_node: a client pod (10.77.1.2) and a server pod (10.77.2.2) in namespaces of their own,
# each on a veth to a node namespace that routes between them and DNATs $SERVICE_IP:$SERVICE_PORT
# to the server pod (kube-proxy's rule, in PREROUTING since the client is another namespace);
# the server pod runs python3's http.server (HTTP/1.1, keep-alive) on $POD_PORT.
dnat_node() {
    local n
    for n in cli node srv; do ip netns add "$NS-$n"; ip -n "$NS-$n" link set lo up; done
    ip link add fxcli0 netns "$NS-cli" type veth peer name vcli netns "$NS-node"
    ip link add fxsrv0 netns "$NS-srv" type veth peer name vsrv netns "$NS-node"
    ip -n "$NS-cli" addr add 10.77.1.2/24 dev fxcli0
    ip -n "$NS-srv" addr add 10.77.2.2/24 dev fxsrv0
    ip -n "$NS-node" addr add 10.77.1.1/24 dev vcli
    ip -n "$NS-node" addr add 10.77.2.1/24 dev vsrv
    for n in cli:fxcli0 srv:fxsrv0 node:vcli node:vsrv; do ip -n "$NS-${n%%:*}" link set "${n#*:}" up; done
    ip -n "$NS-cli" route add default via 10.77.1.1
    ip -n "$NS-srv" route add default via 10.77.2.1
    ip netns exec "$NS-node" sysctl -q -w net.ipv4.ip_forward=1
    ip netns exec "$NS-node" iptables -t nat -A PREROUTING -d "$SERVICE_IP" -p tcp --dport "$SERVICE_PORT" \
        -j DNAT --to-destination "10.77.2.2:$POD_PORT"
    (cd "$WWW" && exec ip netns exec "$NS-srv" "$PY" -m http.server --protocol HTTP/1.1 --bind 10.77.2.2 $POD_PORT) \
        >"$WORK/pod.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        ip netns exec "$NS-cli" curl -s -o /dev/null "http://$SERVICE_IP:$SERVICE_PORT/hello.txt" && return 0
        sleep 0.05
    done
    die "the server pod did not answer through the Service address"
}

mkdir -p "$OUT"
if [ $# -gt 0 ]; then names=("$@"); else mapfile -t names < <(printf '%s\n' "${!SCENARIOS[@]}" | sort); fi
for name in "${names[@]}"; do record "$name"; done

# A pcapng with two interfaces of different link types (lo: Ethernet, any: Linux cooked),
# so every packet appears twice. Needs dumpcap (it comes with tshark); skipped without it.
if [ $# -eq 0 ] || printf '%s\n' "$@" | grep -qx multi-iface; then
    if command -v dumpcap >/dev/null; then
        file=$OUT/multi-iface.pcapng
        : >"$WORK/cap.err"
        dumpcap -q -i lo -f "tcp port $NGINX_PORT" -i any -f "tcp port $NGINX_PORT" -w "$file" 2>"$WORK/cap.err" &
        CAP_PID=$!
        sleep 1.5
        "${CURL[@]}" "$N/hello.txt" "$N/index.html"
        stop_capture
        chmod 644 "$file"
        printf '%-24s %8s bytes  %s\n' "multi-iface.pcapng" "$(stat -c %s "$file")" \
            "two GETs seen on lo (Ethernet) and any (Linux cooked): two interfaces, every packet twice"
    else
        echo "record-fixtures: dumpcap not installed; multi-iface.pcapng not re-recorded" >&2
    fi
fi
