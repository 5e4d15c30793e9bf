# Shared by scripts/e2e.sh (containers on this machine) and scripts/e2e-kind.sh (a kind cluster):
# the workloads' programs and the check of what LiteObs recorded about them.
# shellcheck shell=bash

# The workloads are real programs from Debian's python3: an HTTP server (python3 -m http.server
# 8000) and this client, which asks for / (200) and /missing (404) in turn, one connection per
# request, for as long as it runs. Both run as their container's main process, so the PID the
# runtime reports is the process that owns the sockets.
# shellcheck disable=SC2034 # used by the scripts that source this one
E2E_WEB_PORT=8000
# shellcheck disable=SC2034
E2E_CLIENT_PY='
import sys, time, urllib.error, urllib.request
base = sys.argv[1]
i = 0
while True:
    try:
        urllib.request.urlopen(base + ("/", "/missing")[i % 2], timeout=5).read()
    except urllib.error.HTTPError as e:
        e.read()
    except Exception as e:
        print("request failed:", e, flush=True)
    i += 1
    time.sleep(0.2)
'

# check_exchanges FILE NODE WEB_PID CLIENT_PID WEB_IP CLIENT_IP: FILE holds `liteobs-client -pid
# WEB_PID -o json` output; checks that the agent of NODE recorded at least 4 exchanges of the
# client with the web server, each once, with both PIDs, both commands, both addresses and the
# port right, answered 200 and 404. Prints one line saying what it saw; exits non-zero otherwise.
check_exchanges() {
    python3 - "$@" <<'PY'
import json, sys
path, node, web_pid, client_pid, web_ip, client_ip = sys.argv[1:7]
records = [r for r in json.load(open(path)) if r.get("node") == node]
want = {"src_pid": int(client_pid), "src_comm": "python3", "src_ip": client_ip,
        "dst_pid": int(web_pid), "dst_comm": "python3", "dst_ip": web_ip, "dst_port": 8000}
for r in records:
    wrong = {k: r.get(k) for k, v in want.items() if r.get(k) != v}
    if wrong:
        sys.exit(f"node {node}: exchange {r['method']} {r['path']} at {r['ts']} has {wrong}, expected {want}")
# One connection per request: a second record of a connection means a packet counted twice
# (an agent on `any` sees each packet on both veths, and on the bridge too).
seen = [(r["src_port"], r["method"], r["path"]) for r in records]
if len(set(seen)) != len(seen):
    sys.exit(f"node {node}: an exchange was recorded more than once: {sorted(seen)}")
statuses = sorted({r["status"] for r in records})
if len(records) < 4 or not {200, 404} <= set(statuses):
    sys.exit(f"node {node}: {len(records)} exchanges with statuses {statuses} so far (want >= 4, with 200 and 404)")
print(f"node {node}: {len(records)} exchanges, client pid {client_pid} -> server pid {web_pid}, statuses {statuses}")
PY
}

# wait_for_log SECONDS PATTERN COMMAND...: polls the output of COMMAND (e.g. docker logs NAME)
# until it contains PATTERN. (Read whole before grep: under pipefail, `grep -q` leaving early
# would fail the pipeline.)
wait_for_log() {
    local secs=$1 pattern=$2 i out
    shift 2
    for ((i = 0; i < secs * 5; i++)); do
        out=$("$@" 2>&1 || true)
        grep -q -- "$pattern" <<<"$out" && return 0
        sleep 0.2
    done
    return 1
}
