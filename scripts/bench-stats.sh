#!/bin/bash
# /stats and /map latency through HTTP on a DuckDB file (e.g. the one bench-store --query-rows leaves
# under --dir): bash scripts/bench-stats.sh FILE. Starts liteobs-server on 127.0.0.1:18999 with
# retention off, times 7 requests of each kind, prints min/p50/max.
set -u
DB=$1
S=${CARGO_TARGET_DIR:-/var/cache/liteobs/target}/release/liteobs-server
$S -db-type duckdb -db-path "$DB" -listen 127.0.0.1:18999 -retention off -max-db-size off > /tmp/stats-srv.log 2>&1 &
SP=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:18999/healthz >/dev/null && break; sleep 0.5; done
NEWEST=$(curl -s 'http://127.0.0.1:18999/query?limit=1' | python3 -c 'import sys,json; print(json.load(sys.stdin)["records"][0]["ts"])')
echo "newest $NEWEST"
run() { # name, query string
  local ts=()
  for i in $(seq 1 7); do
    t=$(curl -s -o /tmp/stats-out.json -w '%{time_total}' "http://127.0.0.1:18999$2")
    ts+=("$t")
  done
  printf '%s: %s  groups/edges=%s\n' "$1" "$(printf '%s\n' "${ts[@]}" | sort -n | awk '{a[NR]=$1} END {printf "min %.0f ms, p50 %.0f ms, max %.0f ms", a[1]*1000, a[int((NR+1)/2)]*1000, a[NR]*1000}')" "$(python3 -c 'import json; d=json.load(open("/tmp/stats-out.json")); print(len(d.get("groups", d.get("edges", []))), d.get("truncated"))')"
}
run "stats group_by=server (all rows)" "/stats?group_by=server&since=3650d&until=2100-01-01T00:00:00Z&limit=100"
run "stats group_by=server,method sort=p99 (all rows)" "/stats?group_by=server,method&sort=p99_us&since=3650d&until=2100-01-01T00:00:00Z&limit=100"
run "stats no grouping (all rows)" "/stats?since=3650d&until=2100-01-01T00:00:00Z"
run "map (all rows)" "/map?since=3650d&until=2100-01-01T00:00:00Z&limit=100"
curl -s "http://127.0.0.1:18999/stats?since=3650d&until=2100-01-01T00:00:00Z" | python3 -c 'import sys,json; g=json.load(sys.stdin)["groups"][0]; print("rows counted:", g["count"])'
kill $SP; wait $SP 2>/dev/null
