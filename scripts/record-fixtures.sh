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
# Only loopback addresses are used.
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

die() { echo "record-fixtures: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (tcpdump captures on lo)"
for tool in tcpdump nginx curl; do
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
# start_capture FILE FILTER [IFACE]: immediate mode and -U so that no packet waits in a kernel
# block or a stdio buffer when tcpdump is stopped; -Z root keeps it writing as root.
start_capture() {
    local file=$1 filter=$2 iface=${3:-lo}
    : >"$WORK/cap.err"
    tcpdump -i "$iface" -n -s 0 -U --immediate-mode -Z root -w "$file" "$filter" 2>"$WORK/cap.err" &
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
