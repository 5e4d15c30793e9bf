#!/usr/bin/env bash
# Benchmarks liteobs-agent: replay throughput against tshark and tcpdump on one big capture, and
# the highest live loopback load it follows with zero kernel drops. Run as root:
#
#     sudo scripts/bench-agent.sh             # both parts
#     sudo scripts/bench-agent.sh replay      # only the replay comparison
#     sudo scripts/bench-agent.sh live        # only the live ladder
#
# BIG.pcap (>= 1 M packets of keep-alive HTTP: wrk against nginx on lo, captured with
# tcpdump -s 0 -B 65536) is made once into $BENCH_DIR (default /var/cache/liteobs/bench, never
# committed); delete it or set REMAKE=1 to capture it again. AGENT=path picks the binary;
# by default it is built with cargo --release into $CARGO_TARGET_DIR
# (default /var/cache/liteobs/target-agent-io). Results go to stdout as a table for
# BENCHMARKS.md. Only loopback is used.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/cache/liteobs/bench}
BIG=$BENCH_DIR/BIG.pcap
PORT=${BENCH_PORT:-18090}
MIN_PACKETS=1000000
WHAT=${1:-all}
LIVE_FLAGS=${LIVE_FLAGS:-} # e.g. LIVE_FLAGS=-immediate-mode

die() { echo "bench-agent: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (tcpdump and live capture)"
for tool in nginx wrk tcpdump tshark capinfos /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install nginx-light wrk tcpdump tshark time)"
done

if [ -z "${AGENT:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/liteobs/target-agent-io}
    (cd "$ROOT" && cargo build --release -q -p liteobs-agent) || die "cargo build failed"
    AGENT=$CARGO_TARGET_DIR/release/liteobs-agent
fi
[ -x "$AGENT" ] || die "$AGENT is not an executable"

WORK=$(mktemp -d /tmp/liteobs-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

start_nginx() {
    mkdir -p "$WORK/www" "$WORK/tmp" "$WORK/logs"
    printf 'hello, world\n' >"$WORK/www/hello.txt"
    cat >"$WORK/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    client_body_temp_path $WORK/tmp/body;
    proxy_temp_path $WORK/tmp/proxy;
    fastcgi_temp_path $WORK/tmp/fastcgi;
    uwsgi_temp_path $WORK/tmp/uwsgi;
    scgi_temp_path $WORK/tmp/scgi;
    server { listen 127.0.0.1:$PORT; root $WORK/www; }
}
EOF
    nginx -c "$WORK/nginx.conf" -p "$WORK" &
    PIDS+=($!)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.05
    done
    die "nginx did not start on port $PORT"
}

packets_in() { capinfos -M -c -T -r "$1" 2>/dev/null | awk -F'\t' 'NR==1{print $2}'; }

make_big() {
    mkdir -p "$BENCH_DIR"
    echo "capturing $BIG (wrk against nginx on 127.0.0.1:$PORT, tcpdump -s 0 -B 65536)..." >&2
    : >"$WORK/tcpdump.err"
    tcpdump -i lo -n -s 0 -B 65536 -Z root -w "$BIG.tmp" "tcp port $PORT" 2>"$WORK/tcpdump.err" &
    local cap=$!
    for _ in $(seq 100); do grep -q "listening on" "$WORK/tcpdump.err" && break; sleep 0.05; done
    sleep 0.3
    wrk -t 1 -c 16 -d "${BIG_SECONDS:-30}s" "http://127.0.0.1:$PORT/hello.txt" >"$WORK/wrk-big.txt"
    sleep 1.5 # tcpdump's ring hands over a block when full or after its 1 s timeout
    kill -INT "$cap"
    wait "$cap" || true
    mv "$BIG.tmp" "$BIG"
    echo "tcpdump: $(grep -E 'captured|dropped' "$WORK/tcpdump.err" | tr '\n' ' ')" >&2
    echo "wrk: $(grep -E 'requests in' "$WORK/wrk-big.txt")" >&2
}

# runs "$@" under /usr/bin/time -v; sets WALL (s), RSS_MB, CPU_PCT
timed() {
    /usr/bin/time -v -o "$WORK/time.txt" "$@"
    WALL=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.txt")
    RSS_MB=$(awk -F': ' '/Maximum resident set size/{printf "%.0f", $2/1024}' "$WORK/time.txt")
    CPU_PCT=$(awk -F': ' '/Percent of CPU/{print $2}' "$WORK/time.txt")
}

replay_bench() {
    if [ ! -f "$BIG" ] || [ "${REMAKE:-0}" = 1 ]; then
        start_nginx
        make_big
    fi
    local packets bytes
    packets=$(packets_in "$BIG")
    bytes=$(stat -c %s "$BIG")
    [ "${packets:-0}" -ge $MIN_PACKETS ] || die "$BIG has only $packets packets (< $MIN_PACKETS); REMAKE=1 BIG_SECONDS=40 $0"
    echo
    echo "## replay: $BIG, $packets packets, $((bytes / 1048576)) MiB"
    timed "$AGENT" -read "$BIG" >/dev/null 2>"$WORK/agent.err"
    local exchanges agent_wall agent_rss
    exchanges=$(awk '$1=="exchanges"{print $2}' "$WORK/agent.err")
    agent_wall=$WALL agent_rss=$RSS_MB
    printf '| %-40s | %8s | %12s | %12s | %8s |\n' tool "wall s" "packets/s" "exchanges/s" "peak RSS"
    printf '| %-40s | %8s | %12s | %12s | %8s |\n' "---" "---:" "---:" "---:" "---:"
    row() { printf '| %-40s | %8.2f | %12.0f | %12.0f | %5s MiB |\n' "$1" "$2" "$(echo "$packets / $2" | bc -l)" "$(echo "$exchanges / $2" | bc -l)" "$3"; }
    row "liteobs-agent -read BIG.pcap > /dev/null" "$agent_wall" "$agent_rss"
    timed tshark -r "$BIG" -d "tcp.port==$PORT,http" -Y http >/dev/null 2>&1
    row "tshark -r BIG.pcap -Y http > /dev/null" "$WALL" "$RSS_MB"
    timed tcpdump -r "$BIG" -w /dev/null 2>/dev/null
    row "tcpdump -r BIG.pcap -w /dev/null" "$WALL" "$RSS_MB"
    echo "(exchanges: $exchanges, as the agent counted them; the same number divides every row)"
}

# One live run at a wrk load: prints "rate drops exchanges wrk_requests cpu%".
live_run() {
    local threads=$1 conns=$2 secs=${LIVE_SECONDS:-5}
    "$AGENT" -iface lo -ports "$PORT" -node bench -stats-interval 60s $LIVE_FLAGS >/dev/null 2>"$WORK/live.err" &
    local agent=$!
    for _ in $(seq 100); do grep -q capturing "$WORK/live.err" && break; sleep 0.05; done
    local hz t0 t1
    hz=$(getconf CLK_TCK)
    t0=$(awk '{print $14 + $15}' "/proc/$agent/stat")
    wrk -t "$threads" -c "$conns" -d "${secs}s" "http://127.0.0.1:$PORT/hello.txt" >"$WORK/wrk.txt"
    t1=$(awk '{print $14 + $15}' "/proc/$agent/stat")
    sleep 0.3
    kill -INT "$agent"
    wait "$agent" || true
    local reqs rate drops exchanges cpu
    reqs=$(awk '/requests in/{print $1}' "$WORK/wrk.txt")
    rate=$(awk '/Requests\/sec/{printf "%.0f", $2}' "$WORK/wrk.txt")
    drops=$(awk '$1=="kernel_dropped"{print $2}' "$WORK/live.err")
    exchanges=$(awk '$1=="exchanges"{print $2}' "$WORK/live.err")
    cpu=$(echo "($t1 - $t0) * 100 / $hz / $secs" | bc -l)
    printf '%s %s %s %s %.0f\n' "$rate" "${drops:-?}" "${exchanges:-?}" "$reqs" "$cpu"
}

live_bench() {
    [ -f "$WORK/nginx.conf" ] || start_nginx
    echo
    echo "## live: liteobs-agent -iface lo -ports $PORT $LIVE_FLAGS > /dev/null, wrk -d ${LIVE_SECONDS:-5}s against nginx"
    printf '| %-14s | %10s | %12s | %10s | %10s | %9s | %s |\n' "wrk -t/-c" "req/s" "wrk requests" exchanges "kernel drops" "agent CPU" "all seen"
    printf '| %-14s | %10s | %12s | %10s | %10s | %9s | %s |\n' "---" "---:" "---:" "---:" "---:" "---:" "---"
    local best=0 best_cpu=0
    for tc in 1/1 1/2 1/4 1/8 2/16 2/32 2/64 2/128; do
        local t=${tc%/*} c=${tc#*/}
        read -r rate drops exchanges reqs cpu < <(live_run "$t" "$c")
        local ok=no
        if [ "$drops" = 0 ] && [ "$exchanges" -ge "$reqs" ]; then
            ok=yes
            if [ "$rate" -gt "$best" ]; then best=$rate best_cpu=$cpu; fi
        fi
        printf '| %-14s | %10s | %12s | %10s | %10s | %8s%% | %s |\n' "-t $t -c $c" "$rate" "$reqs" "$exchanges" "$drops" "$cpu" "$ok"
    done
    echo "highest rate with zero kernel drops and every exchange: $best req/s (agent CPU ${best_cpu}%)"
}

echo "agent: $AGENT ($("$AGENT" --version)); $(nproc) cores; $(uname -r)"
case $WHAT in
    replay) replay_bench ;;
    live) live_bench ;;
    all) replay_bench; live_bench ;;
    *) die "usage: $0 [replay|live|all]" ;;
esac
