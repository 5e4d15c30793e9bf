#!/usr/bin/env bash
# What process attribution costs: the same wrk loads against nginx (2 workers) on loopback,
# captured by liteobs-agent with -pidmap off and then with -pidmap ebpf. Run as root:
#
#     sudo scripts/bench-attribution.sh
#
# Two loads, each run once per mode, all in this one invocation:
#   keep-alive  wrk -t2 -c32 -d10s                          (few connections, many requests each)
#   close       wrk -t2 -c32 -d10s -H 'Connection: close'   (a new connection per request: the
#                                                            worst case, attribution works per
#                                                            connection)
# Per run: wrk's requests/s and requests; the agent's exchanges, kernel drops and CPU (utime +
# stime from /proc/PID/stat over the wrk run, 100% = one core); its attribution counters; and,
# with -pidmap ebpf, the in-kernel time of the BPF programs (run_time_ns / run_cnt from the
# agent's program descriptors in /proc/PID/fdinfo, with kernel.bpf_stats_enabled=1 for the
# duration of the script). That time is not in the agent's CPU: the programs run in whichever
# task changes a socket's state, calls accept, or sends or receives on any socket (wrk, nginx,
# softirq).
#
# Environment: AGENT=path (else built with cargo --release into $CARGO_TARGET_DIR),
# BENCH_PORT (18091), BENCH_SECONDS (10), BENCH_THREADS (2), BENCH_CONNS (32), BENCH_ROUNDS (1:
# how many off/ebpf pairs per load, alternating, to see the run-to-run spread).
# Results go to stdout as a markdown table for BENCHMARKS.md. Only loopback is used.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

PORT=${BENCH_PORT:-18091}
SECS=${BENCH_SECONDS:-10}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-32}
ROUNDS=${BENCH_ROUNDS:-1}

[ "$(id -u)" = 0 ] || die "must run as root (live capture and eBPF)"
for tool in nginx wrk; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install nginx-light wrk)"
done
if [ -z "${AGENT:-}" ]; then
    ensure_target_dir
    cargo build --release -q -p liteobs-agent || die "cargo build failed"
    AGENT=$BIN_DIR/liteobs-agent
fi
[ -x "$AGENT" ] || die "$AGENT is not an executable"

WORK=$(mktemp -d /tmp/liteobs-bench-attr.XXXXXX)
chmod 755 "$WORK" # nginx workers run as an unprivileged user and read $WORK/www
NGINX_PID=
AGENT_PID=
BPF_STATS_WAS=$(cat /proc/sys/kernel/bpf_stats_enabled 2>/dev/null || true)

# Stops the agent: SIGTERM (a background job of a script starts with SIGINT ignored, until the
# agent installs its handlers), SIGKILL if it is still there after 15 s.
stop_agent() {
    kill -TERM "$AGENT_PID" 2>/dev/null || true
    for _ in $(seq 150); do
        case $(ps -o stat= -p "$AGENT_PID" 2>/dev/null) in "" | Z*) break ;; esac # exited (maybe unreaped)
        sleep 0.1
    done
    kill -KILL "$AGENT_PID" 2>/dev/null || true
    local rc=0
    wait "$AGENT_PID" || rc=$?
    AGENT_PID=
    return $rc
}

cleanup() {
    if [ -n "$AGENT_PID" ]; then stop_agent || true; fi
    if [ -n "$NGINX_PID" ]; then
        # The master stops its workers, reaps them, then exits: no worker outlives the script.
        kill -TERM "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    if [ -n "$BPF_STATS_WAS" ]; then echo "$BPF_STATS_WAS" >/proc/sys/kernel/bpf_stats_enabled || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

start_nginx() {
    write_nginx_conf "$WORK" "$PORT" 2
    nginx -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/logs/startup.log" &
    NGINX_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && [ "$(ps --ppid "$NGINX_PID" -o pid= | wc -l)" -eq 2 ]; then
            return 0
        fi
        sleep 0.05
    done
    die "nginx did not start on 127.0.0.1:$PORT with 2 workers"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Sum of run_time_ns and run_cnt over the BPF programs process $1 holds.
bpf_prog_stats() {
    local fd files=()
    for fd in /proc/"$1"/fd/*; do
        [ "$(readlink "$fd" 2>/dev/null)" = "anon_inode:bpf-prog" ] && files+=("/proc/$1/fdinfo/${fd##*/}")
    done
    [ ${#files[@]} -gt 0 ] || { echo "0 0"; return; }
    awk '$1=="run_time_ns:"{ns+=$2} $1=="run_cnt:"{cnt+=$2} END{printf "%d %d\n", ns, cnt}' "${files[@]}"
}

# A counter from the agent's last "attribution counters" log line.
attr_counter() { grep 'attribution counters' "$WORK/agent.err" | tail -1 | grep -o "$1=[0-9]*" | cut -d= -f2; }

# run_one MODE LOAD [wrk flags...]: one agent run under one wrk load; prints a table row.
run_one() {
    local mode=$1 load=$2
    shift 2
    : >"$WORK/agent.err" # before the start: the background job truncates it only when it runs
    "$AGENT" -iface lo -ports "$PORT" -pidmap "$mode" -node bench -stats-interval 600s >/dev/null 2>"$WORK/agent.err" &
    AGENT_PID=$!
    for _ in $(seq 200); do grep -q capturing "$WORK/agent.err" && break; sleep 0.05; done
    grep -q capturing "$WORK/agent.err" || die "the agent did not start: $(cat "$WORK/agent.err")"
    if [ "$mode" = ebpf ]; then
        grep -q "eBPF attribution attached" "$WORK/agent.err" || die "eBPF was not attached: $(cat "$WORK/agent.err")"
    fi
    local hz t0 t1 bpf
    hz=$(getconf CLK_TCK)
    t0=$(cpu_ticks "$AGENT_PID")
    wrk -t "$THREADS" -c "$CONNS" -d "${SECS}s" "$@" "http://127.0.0.1:$PORT/hello.txt" >"$WORK/wrk.txt"
    t1=$(cpu_ticks "$AGENT_PID")
    bpf=$(bpf_prog_stats "$AGENT_PID")
    sleep 0.5
    stop_agent || die "the agent failed: $(tail -5 "$WORK/agent.err")"
    local rate reqs errors exchanges drops cpu bpf_ns bpf_cnt bpf_col attr lookups ebpf cache proc unresolved
    rate=$(awk '/Requests\/sec/{printf "%.0f", $2}' "$WORK/wrk.txt")
    reqs=$(awk '/requests in/{print $1}' "$WORK/wrk.txt")
    errors=$(awk '/Socket errors/{print $0}' "$WORK/wrk.txt")
    [ -z "$errors" ] || say "wrk ($load, $mode): $errors"
    exchanges=$(awk '$1=="exchanges"{print $2}' "$WORK/agent.err")
    drops=$(awk '$1=="kernel_dropped"{print $2}' "$WORK/agent.err")
    cpu=$(echo "($t1 - $t0) * 100 / $hz / $SECS" | bc -l)
    read -r bpf_ns bpf_cnt <<<"$bpf"
    if [ "$mode" = ebpf ] && [ "$bpf_cnt" -gt 0 ]; then
        bpf_col=$(printf '%s runs, %.0f ns/run, %.2f%%' "$bpf_cnt" "$(echo "$bpf_ns / $bpf_cnt" | bc -l)" \
            "$(echo "$bpf_ns / 10000000 / $SECS" | bc -l)")
    else
        bpf_col="-"
    fi
    if [ "$mode" = off ]; then
        attr="-"
    else
        lookups=$(attr_counter lookups) ebpf=$(attr_counter ebpf_hits) cache=$(attr_counter cache_hits)
        proc=$(attr_counter proc_hits) unresolved=$(attr_counter unresolved)
        attr="$lookups: $ebpf eBPF, $cache cache, $proc /proc, $unresolved unresolved"
    fi
    printf '| %-10s | %-6s | %7s | %12s | %9s | %5s | %8.1f%% | %-36s | %s |\n' \
        "$load" "$mode" "$rate" "$reqs" "$exchanges" "$drops" "$cpu" "$bpf_col" "$attr"
}

echo 1 >/proc/sys/kernel/bpf_stats_enabled || die "cannot enable kernel.bpf_stats_enabled"
start_nginx
# Warm-up, not measured: the first seconds of load on a fresh nginx run slower.
wrk -t "$THREADS" -c "$CONNS" -d 3s "http://127.0.0.1:$PORT/hello.txt" >/dev/null
echo "agent: $AGENT ($("$AGENT" --version)); $(nproc) cores; $(uname -r); nginx 2 workers on 127.0.0.1:$PORT"
echo "command: sudo scripts/bench-attribution.sh  (wrk -t $THREADS -c $CONNS -d ${SECS}s; agent -iface lo -ports $PORT -pidmap off|ebpf > /dev/null)"
echo
printf '| %-10s | %-6s | %7s | %12s | %9s | %5s | %9s | %-36s | %s |\n' load -pidmap "req/s" "wrk requests" exchanges drops "agent CPU" "BPF programs (in kernel)" "lookups (ends)"
printf '| %-10s | %-6s | %7s | %12s | %9s | %5s | %9s | %-36s | %s |\n' --- --- ---: ---: ---: ---: ---: --- ---
for load in keep-alive close; do
    for _ in $(seq "$ROUNDS"); do
        for mode in off ebpf; do
            if [ "$load" = close ]; then
                run_one "$mode" "$load" -H 'Connection: close'
            else
                run_one "$mode" "$load"
            fi
        done
    done
done
