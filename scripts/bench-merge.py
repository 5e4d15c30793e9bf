#!/usr/bin/env python3
"""What one-row-per-exchange costs the server's ingest: the same uploads through `POST /upload`
(gzip NDJSON batches of 1000 records, as the agent sends them, several concurrent uploaders)
into a fresh liteobs-server per run, in four workloads, alternating, in one invocation:

  no-ids      records without exchange_id: the merge is skipped (records of other tools)
  off         records with ids, server started with -merge-window off
  unique      records with ids, none shares one: the candidate lookup runs, nothing merges
  halves-50   records with ids, half of them the second halves of earlier records (the other
              node's half of a cross-node call, uploaded a few batches later)

Usage: python3 scripts/bench-merge.py SERVER_BINARY [--backend sqlite|duckdb|both]
       [--rows 200000] [--uploaders 4] [--rounds 2]
Prints a markdown table (median rows/s over the rounds, and each round's) for BENCHMARKS.md.
Bodies are built before the clock starts; only the uploads are timed, until the last answer.
"""
import argparse, gzip, http.client, json, os, random, shutil, statistics, subprocess, sys, tempfile, threading, time

p = argparse.ArgumentParser()
p.add_argument("server")
p.add_argument("--backend", default="both")
p.add_argument("--rows", type=int, default=200_000)
p.add_argument("--batch", type=int, default=1000)
p.add_argument("--uploaders", type=int, default=4)
p.add_argument("--rounds", type=int, default=2)
args = p.parse_args()
rng = random.Random(20261201)


def record(i, node, eid, server_side):
    us = i * 50  # 20k exchanges/s of capture time
    r = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_764_500_000 + us // 1_000_000))
        + f".{us % 1_000_000:06d}Z",
        "src_ip": f"10.244.{i % 7}.{i % 250 + 1}", "src_port": 32768 + i % 28000,
        "dst_ip": "10.244.9.7", "dst_port": 8080, "method": "GET", "path": f"/item/{i}?q={i % 13}",
        "host": "web.shop", "status": 200 if i % 17 else 503, "latency_us": 150 + i % 9000,
        "req_bytes": 0, "resp_bytes": 100 + i % 5000, "node": node,
    }
    if server_side:
        r.update(dst_pid=2000 + i % 5, dst_comm="node", dst_namespace="shop", dst_pod="web-0", dst_node=node)
    else:
        r.update(src_pid=1000 + i % 50, src_comm="curl", src_namespace="shop", src_pod=f"client-{i % 9}",
                 src_node=node)
    if eid is not None:
        r["exchange_id"] = eid
    return r


def workload(kind):
    n = args.rows
    recs = []
    if kind == "halves-50":
        # n/2 exchanges, each as node a's half then node b's half about 3 batches later.
        firsts = [record(i, "node-a", (i << 20) + 7, False) for i in range(n // 2)]
        seconds = [record(i, "node-b", (i << 20) + 7, True) for i in range(n // 2)]
        lag = 3 * args.batch
        for k in range(n // 2 + lag):
            if k < n // 2:
                recs.append(firsts[k])
            if k >= lag:
                recs.append(seconds[k - lag])
    else:
        ids = kind in ("off", "unique")
        recs = [record(i, "node-a", (i << 20) + 7 if ids else None, False) for i in range(n)]
    bodies = []
    for s in range(0, len(recs), args.batch):
        nd = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs[s:s + args.batch])
        bodies.append(gzip.compress(nd.encode(), 6))
    return bodies, len(recs)


def run(backend, kind, bodies, total):
    d = tempfile.mkdtemp(prefix="liteobs-bench-merge.", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    port = 18000 + rng.randrange(1000)
    cmd = [args.server, "-db-type", backend, "-db-path", os.path.join(d, f"db.{backend}"),
           "-listen", f"127.0.0.1:{port}"]
    if kind == "off":
        cmd += ["-merge-window", "off"]
    srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    srv.stdout.readline()  # "listening on ..."
    merged = [0]
    lock = threading.Lock()
    nxt = [0]

    def uploader():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(bodies):
                return
            c.request("POST", "/upload", bodies[i], {"Content-Type": "application/x-ndjson",
                                                      "Content-Encoding": "gzip", "Idempotency-Key": f"b{i}"})
            resp = c.getresponse()
            answer = json.loads(resp.read())
            assert resp.status == 200, answer
            with lock:
                merged[0] += answer.get("merged", 0)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=uploader) for _ in range(args.uploaders)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    srv.terminate()
    srv.wait()
    shutil.rmtree(d, ignore_errors=True)
    return total / dt, merged[0]


kinds = ["no-ids", "off", "unique", "halves-50"]
backends = ["sqlite", "duckdb"] if args.backend == "both" else [args.backend]
built = {k: workload(k) for k in kinds}
results = {}
for rnd in range(args.rounds):
    for b in backends:
        for k in kinds:
            rate, merged = run(b, k, *built[k])
            results.setdefault((b, k), []).append((rate, merged))
            print(f"round {rnd + 1}: {b} {k}: {rate:,.0f} rows/s, merged {merged}", file=sys.stderr)
print(f"| backend | workload | records | merged | rows/s (median of {args.rounds}) | each round |")
print("|---|---|---|---|---|---|")
for b in backends:
    for k in kinds:
        rs = results[(b, k)]
        print(f"| {b} | {k} | {built[k][1]:,} | {rs[0][1]:,} | {statistics.median(r for r, _ in rs):,.0f} | "
              + ", ".join(f"{r:,.0f}" for r, _ in rs) + " |")
