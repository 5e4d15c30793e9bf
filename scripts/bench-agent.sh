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
# Its own target dir unless told otherwise: the agent alone, without the workspace's features.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/liteobs/target-agent-io}
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
BENCH_DIR=${BENCH_DIR:-/var/cache/liteobs/bench}
BIG=$BENCH_DIR/BIG.pcap
PORT=${BENCH_PORT:-18090}
MIN_PACKETS=1000000
WHAT=${1:-all}
LIVE_FLAGS=${LIVE_FLAGS:-} # e.g. LIVE_FLAGS=-immediate-mode
REPEAT=${REPEAT:-5}             # replay runs of the agent and of tcpdump
TSHARK_REPEAT=${TSHARK_REPEAT:-3} # tshark takes ~20 s a run

die() { echo "bench-agent: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (tcpdump and live capture)"
for tool in nginx wrk tcpdump tshark capinfos /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install nginx-light wrk tcpdump tshark time)"
done

if [ -z "${AGENT:-}" ]; then
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
    write_nginx_conf "$WORK" "$PORT" 1
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

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
max() { if [ "$1" -ge "$2" ]; then echo "$1"; else echo "$2"; fi; }

# runs "$@" under /usr/bin/time -v; sets WALL (s) and RSS_MB
timed() {
    /usr/bin/time -v -o "$WORK/time.txt" "$@"
    WALL=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.txt")
    RSS_MB=$(awk -F': ' '/Maximum resident set size/{printf "%.0f", $2/1024}' "$WORK/time.txt")
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
    echo "## replay: $BIG, $packets packets, $((bytes / 1048576)) MiB; median of $REPEAT runs each (tshark: $TSHARK_REPEAT)"
    printf '| %-40s | %8s | %13s | %12s | %12s | %8s |\n' tool "wall s" "min-max s" "packets/s" "exchanges/s" "peak RSS"
    printf '| %-40s | %8s | %13s | %12s | %12s | %8s |\n' "---" "---:" "---:" "---:" "---:" "---:"
    # The three tools take turns, run after run, so that a slow spell of the machine hits all
    # of them alike; each one's median is reported.
    local agent_walls=() tshark_walls=() tcpdump_walls=() agent_rss=0 tshark_rss=0 tcpdump_rss=0 exchanges=
    for i in $(seq "$REPEAT"); do
        timed "$AGENT" -read "$BIG" >/dev/null 2>"$WORK/agent.err"
        agent_walls+=("$WALL") agent_rss=$(max "$agent_rss" "$RSS_MB")
        local n
        n=$(awk '$1=="exchanges"{print $2}' "$WORK/agent.err")
        [ -z "$exchanges" ] || [ "$n" = "$exchanges" ] || die "the agent found $n exchanges, then $exchanges"
        exchanges=$n
        if [ "$i" -le "$TSHARK_REPEAT" ]; then
            timed tshark -r "$BIG" -d "tcp.port==$PORT,http" -Y http >/dev/null 2>&1
            tshark_walls+=("$WALL") tshark_rss=$(max "$tshark_rss" "$RSS_MB")
        fi
        timed tcpdump -r "$BIG" -w /dev/null 2>/dev/null
        tcpdump_walls+=("$WALL") tcpdump_rss=$(max "$tcpdump_rss" "$RSS_MB")
    done
    row() {
        local name=$1 rss=$2
        shift 2
        local med lo hi
        med=$(median "$@") lo=$(printf '%s\n' "$@" | sort -g | head -1) hi=$(printf '%s\n' "$@" | sort -g | tail -1)
        printf '| %-40s | %8.2f | %6.2f-%-6.2f | %12.0f | %12.0f | %5s MiB |\n' "$name" "$med" "$lo" "$hi" \
            "$(echo "$packets / $med" | bc -l)" "$(echo "$exchanges / $med" | bc -l)" "$rss"
    }
    row "liteobs-agent -read BIG.pcap > /dev/null" "$agent_rss" "${agent_walls[@]}"
    row "tshark -r BIG.pcap -Y http > /dev/null" "$tshark_rss" "${tshark_walls[@]}"
    row "tcpdump -r BIG.pcap -w /dev/null" "$tcpdump_rss" "${tcpdump_walls[@]}"
    local a t d
    a=$(median "${agent_walls[@]}") t=$(median "${tshark_walls[@]}") d=$(median "${tcpdump_walls[@]}")
    echo "(exchanges: $exchanges, as the agent counted them; the same number divides every row)"
    printf 'agent vs tshark: %.1fx faster (target >= 20x); agent vs tcpdump floor: %.2fx the time (target <= 3x)\n' \
        "$(echo "$t / $a" | bc -l)" "$(echo "$a / $d" | bc -l)"
}

# One live run at a wrk load: prints "rate drops exchanges wrk_requests cpu%".
live_run() {
    local threads=$1 conns=$2 secs=${LIVE_SECONDS:-5}
    # Emptied here, not by the redirection below: that happens in the child, possibly after the
    # first look for "capturing", which would then find the previous run's line.
    : >"$WORK/live.err"
    # shellcheck disable=SC2086 # LIVE_FLAGS is a list of flags
    "$AGENT" -iface lo -ports "$PORT" -node bench -stats-interval 60s $LIVE_FLAGS >/dev/null 2>>"$WORK/live.err" &
    local agent=$!
    for _ in $(seq 100); do grep -q capturing "$WORK/live.err" && break; sleep 0.05; done
    local hz t0 t1
    hz=$(getconf CLK_TCK)
    t0=$(awk '{print $14 + $15}' "/proc/$agent/stat")
    wrk -t "$threads" -c "$conns" -d "${secs}s" "http://127.0.0.1:$PORT/hello.txt" >"$WORK/wrk.txt"
    t1=$(awk '{print $14 + $15}' "/proc/$agent/stat")
    sleep 0.3
    kill -TERM "$agent" # SIGINT is ignored by background jobs of a script until a handler is set
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
