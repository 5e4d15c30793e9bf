//! bench-store's query mode (`--query-rows N[,N...]`): query latency on tables of 10 M and
//! 100 M rows, which an upload run would take too long to fill.
//!
//! For each row count and backend:
//!
//! 1. **Fill** a file under `--dir` in-process, through the server's own store
//!    (`liteobs_server::store`, its schema, indexes and append path), 100 000 rows per
//!    transaction, from a generated cluster ([`Cluster`]). A file whose fill completed (its
//!    `.complete` sidecar, which also keeps the fill's figures and each key's row count) is
//!    reused, so a rerun costs only the queries.
//! 2. **In-process**: each kind of query ([`Kind`]) through the store as the server opens it
//!    (the server's plan), then as one plain statement (the SQL the server ran before the query
//!    plans; the engine's own answer), both reading every column of every row.
//! 3. **HTTP**: the real server binary on the same file, `GET /query?...&limit=100`, the answer
//!    read and checked.
//!
//! 4. **`/stats`** grouped by server and route over every row: HTTP, in-process, and the
//!    engine's floors on the same grouping (`--no-stats` skips it).
//!
//! Every timing is one query after an untimed warm-up of its kind; p50/p95/max in ms. The report
//! says each kind's share of rows per key, the file size per million rows and the fill rate.
//!
//! Not for ingest through the API (the rest of bench-store) or a cold cache: the file is read
//! from the page cache after its fill or the first query.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, SecondsFormat, Utc};
use liteobs_model::stats::{Dimension, SortKey, StatsQuery, StatsResponse};
use liteobs_model::{Filter, QueryResponse, StatusMatch, TrafficLog};
use liteobs_server::store::{self, QueryPlan, QueryTuning, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Backend, Config, db_size, load_average, ms, percentile, progress};

/// Bumped when [`Cluster`] changes what it generates: older files are not reused.
const GENERATOR: u32 = 1;

/// Rows per store transaction while filling.
const FILL_BATCH: usize = 100_000;

/// Keys per rare kind (each far below 1 row in a million).
const RARE_KEYS: usize = 10;

// ------------------------------------------------------------------------------------------------
// The generated cluster

/// Nodes whose agents upload; each sends a batch of `UPLOAD_ROWS` about once a second.
const NODES: usize = 20;
const UPLOAD_ROWS: usize = 1000;
/// An upload holds the exchanges completed in the second before it, `0..MAX_LAG` late.
const MAX_LAG_US: i64 = 2_000_000;
const PROCESSES: usize = 200;
const SHARED_PROCESSES: usize = 20;
/// Rows per side that name one of the rare PIDs or addresses.
const RARE_SHARE: f64 = 1e-6;
const NAMESPACES: &[&str] = &["shop", "payments", "search", "kube-system", "monitoring", "default"];
const DEPLOYMENTS: &[&str] =
    &["checkout", "cart", "frontend", "api", "catalog", "coredns", "prometheus", "worker"];
const METHODS: &[(&str, u32)] =
    &[("GET", 70), ("POST", 18), ("PUT", 5), ("DELETE", 3), ("PATCH", 2), ("HEAD", 2)];
/// 1xx is the rare class (a WebSocket upgrade now and then).
const STATUSES: &[(u16, u32)] = &[
    (200, 7600),
    (201, 400),
    (204, 300),
    (101, 1),
    (301, 200),
    (302, 150),
    (304, 350),
    (400, 150),
    (401, 120),
    (403, 60),
    (404, 400),
    (429, 40),
    (500, 120),
    (502, 40),
    (503, 60),
    (504, 20),
    (0, 30),
];

/// A process on one side, with the pod it runs in (when the agent knew it).
#[derive(Clone)]
struct Process {
    pid: u32,
    comm: String,
    pod: Option<Pod>,
}

#[derive(Clone)]
struct Pod {
    namespace: &'static str,
    name: String,
    container: &'static str,
    container_id: String,
    node: String,
}

/// The cluster the rows come from: processes with popularity by rank (Zipf), addresses, nodes
/// uploading in turn with lag, so `ts` increases with a few seconds of jitter, as uploads
/// reach the server. Deterministic from the seed.
struct Cluster {
    rng: StdRng,
    clients: Vec<Process>,
    servers: Vec<Process>,
    /// Cumulative Zipf weights over `clients` / `servers` / `server_ips`.
    client_cdf: Vec<f64>,
    server_cdf: Vec<f64>,
    client_ips: Vec<IpAddr>,
    server_ips: Vec<IpAddr>,
    server_ip_cdf: Vec<f64>,
    rare_pids: Vec<u32>,
    rare_ips: Vec<IpAddr>,
    /// Time of the next upload (µs) and uploads so far.
    clock: i64,
    uploads: u64,
    /// Rows per PID and per address, either side (a row with both sides equal counts once).
    pid_rows: HashMap<u32, u64>,
    ip_rows: HashMap<IpAddr, u64>,
}

fn zipf_cdf(n: usize) -> Vec<f64> {
    let total: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
    (1..=n)
        .scan(0.0, |acc, k| {
            *acc += 1.0 / k as f64 / total;
            Some(*acc)
        })
        .collect()
}

fn pick(rng: &mut StdRng, cdf: &[f64]) -> usize {
    let x: f64 = rng.random();
    cdf.partition_point(|&c| c < x).min(cdf.len() - 1)
}

fn weighted<T: Copy>(rng: &mut StdRng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for &(v, w) in table {
        if x < w {
            return v;
        }
        x -= w;
    }
    table[table.len() - 1].0
}

impl Cluster {
    fn new(seed: u64) -> Cluster {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut seen = std::collections::HashSet::new();
        let mut pid = |rng: &mut StdRng| loop {
            let p = rng.random_range(300..4_194_304u32);
            if seen.insert(p) {
                return p;
            }
        };
        let process = |rng: &mut StdRng, pid: u32, server: bool| {
            let deployment = DEPLOYMENTS[pid as usize % DEPLOYMENTS.len()];
            // Pods known for 80 % of processes (the rest: host processes, other nodes).
            let pod = rng.random_bool(0.8).then(|| Pod {
                namespace: NAMESPACES[pid as usize % NAMESPACES.len()],
                name: format!(
                    "{deployment}-{:08x}-{:05x}",
                    rng.random::<u32>(),
                    rng.random_range(0..0xfffffu32)
                ),
                container: if server { "app" } else { deployment },
                container_id: format!(
                    "{:016x}{:016x}{:016x}{:016x}",
                    rng.random::<u64>(),
                    rng.random::<u64>(),
                    rng.random::<u64>(),
                    rng.random::<u64>()
                ),
                node: format!("node-{}", rng.random_range(0..NODES)),
            });
            let comm = if server {
                ["nginx", "envoy", "node", "python3", "java"][pid as usize % 5]
            } else {
                deployment
            };
            Process { pid, comm: comm.to_owned(), pod }
        };
        let clients: Vec<Process> = (0..PROCESSES)
            .map(|_| pid(&mut rng))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|p| process(&mut rng, p, false))
            .collect();
        // The first clients serve too (sidecars, APIs calling APIs).
        let mut servers: Vec<Process> = clients[..SHARED_PROCESSES].to_vec();
        for _ in SHARED_PROCESSES..PROCESSES {
            let p = pid(&mut rng);
            servers.push(process(&mut rng, p, true));
        }
        let rare_pids = (0..RARE_KEYS).map(|_| pid(&mut rng)).collect();
        let v4 = |rng: &mut StdRng, a: u8| {
            IpAddr::V4(Ipv4Addr::new(10, a, rng.random(), rng.random_range(1..255)))
        };
        let v6 = |rng: &mut StdRng, s: u16| {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, s, 0, 0, rng.random(), rng.random_range(1..0xffff)))
        };
        // Pod addresses as clients (IPv6 for a fifth), Service and pod addresses as servers.
        let client_ips: Vec<IpAddr> =
            (0..2000).map(|i| if i % 5 == 0 { v6(&mut rng, 1) } else { v4(&mut rng, 244) }).collect();
        let server_ips: Vec<IpAddr> =
            (0..80).map(|i| if i % 5 == 0 { v6(&mut rng, 0x10) } else { v4(&mut rng, 96) }).collect();
        let rare_ips =
            (0..RARE_KEYS).map(|i| if i % 2 == 0 { v4(&mut rng, 250) } else { v6(&mut rng, 0x99) }).collect();
        Cluster {
            rng,
            clients,
            servers,
            client_cdf: zipf_cdf(PROCESSES),
            server_cdf: zipf_cdf(PROCESSES),
            client_ips,
            server_ips,
            server_ip_cdf: zipf_cdf(80),
            rare_pids,
            rare_ips,
            clock: start_us(),
            uploads: 0,
            pid_rows: HashMap::new(),
            ip_rows: HashMap::new(),
        }
    }

    /// The next node's upload: `UPLOAD_ROWS` exchanges from the second before it, oldest first.
    fn upload(&mut self) -> Vec<TrafficLog> {
        // 20 nodes at one upload a second each.
        self.clock += 1_000_000 / NODES as i64;
        self.uploads += 1;
        let node = format!("node-{}", self.uploads as usize % NODES);
        let lag = self.rng.random_range(0..MAX_LAG_US);
        let end = self.clock - lag;
        (0..UPLOAD_ROWS)
            .map(|j| {
                let ts = end - 1_000_000
                    + (j as i64 * 1_000_000) / UPLOAD_ROWS as i64
                    + self.rng.random_range(0..1000);
                self.row(ts, &node)
            })
            .collect()
    }

    fn row(&mut self, ts: i64, node: &str) -> TrafficLog {
        let rng = &mut self.rng;
        let client = if rng.random_bool(RARE_SHARE) {
            Process { pid: self.rare_pids[rng.random_range(0..RARE_KEYS)], comm: "rare".into(), pod: None }
        } else {
            self.clients[pick(rng, &self.client_cdf)].clone()
        };
        let server = if rng.random_bool(RARE_SHARE) {
            Process { pid: self.rare_pids[rng.random_range(0..RARE_KEYS)], comm: "rare".into(), pod: None }
        } else {
            self.servers[pick(rng, &self.server_cdf)].clone()
        };
        // The agent knows its own side's process; the other side is often elsewhere.
        let client = rng.random_bool(0.85).then_some(client);
        let server = rng.random_bool(0.6).then_some(server);
        let src_ip = if rng.random_bool(RARE_SHARE) {
            self.rare_ips[rng.random_range(0..RARE_KEYS)]
        } else {
            self.client_ips[rng.random_range(0..self.client_ips.len())]
        };
        let dst_index = pick(rng, &self.server_ip_cdf);
        let dst_ip = if rng.random_bool(RARE_SHARE) {
            self.rare_ips[rng.random_range(0..RARE_KEYS)]
        } else {
            self.server_ips[dst_index]
        };
        let method = weighted(rng, METHODS);
        let status = weighted(rng, STATUSES);
        let body = matches!(method, "POST" | "PUT" | "PATCH");
        let path = match rng.random_range(0..8) {
            0 | 1 => format!("/api/v1/users/{}", rng.random_range(1..100_000)),
            2 => format!("/api/v1/orders/{}/items", rng.random_range(1..1_000_000)),
            3 => "/healthz".to_owned(),
            4 => "/metrics".to_owned(),
            5 => format!("/static/js/app.{:08x}.js", rng.random::<u32>()),
            6 => format!(
                "/api/v2/search?q={}&page={}",
                ["shoes", "laptop", "gift"][rng.random_range(0..3)],
                rng.random_range(1..20)
            ),
            _ => format!("/api/v1/carts/{}/checkout", rng.random_range(1..50_000)),
        };
        let pod = |p: &Option<Process>, f: fn(&Pod) -> String| p.as_ref().and_then(|p| p.pod.as_ref()).map(f);
        let service = rng.random_bool(0.3);
        let record = TrafficLog {
            ts: DateTime::from_timestamp_micros(ts).unwrap_or_default(),
            src_ip,
            src_port: rng.random_range(32768..61000),
            dst_ip,
            dst_port: [80, 8080, 443, 9090][dst_index % 4],
            method: method.to_owned(),
            path,
            host: rng.random_bool(0.9).then(|| format!("svc-{dst_index}.shop.svc.cluster.local")),
            status,
            latency_us: if status == 0 { 0 } else { rng.random_range(150..3_000_000) },
            req_bytes: if body { rng.random_range(20..20_000) } else { 0 },
            resp_bytes: if status == 0 { 0 } else { rng.random_range(1..200_000) },
            src_pid: client.as_ref().map(|p| p.pid),
            src_comm: client.as_ref().map(|p| p.comm.clone()),
            dst_pid: server.as_ref().map(|p| p.pid),
            dst_comm: server.as_ref().map(|p| p.comm.clone()),
            src_namespace: pod(&client, |p| p.namespace.to_owned()),
            src_pod: pod(&client, |p| p.name.clone()),
            src_container: pod(&client, |p| p.container.to_owned()),
            src_container_id: pod(&client, |p| p.container_id.clone()),
            src_node: pod(&client, |p| p.node.clone()),
            dst_namespace: pod(&server, |p| p.namespace.to_owned()),
            dst_pod: pod(&server, |p| p.name.clone()),
            dst_container: pod(&server, |p| p.container.to_owned()),
            dst_container_id: pod(&server, |p| p.container_id.clone()),
            dst_node: pod(&server, |p| p.node.clone()),
            dst_service_ip: service
                .then(|| IpAddr::V4(Ipv4Addr::new(10, 96, 0, (dst_index % 250) as u8 + 1))),
            dst_service_port: service.then_some(80),
            exchange_id: Some(rng.random()),
            route: None,
            node: node.to_owned(),
        };
        for pid in
            [record.src_pid, record.dst_pid.filter(|&d| record.src_pid != Some(d))].into_iter().flatten()
        {
            *self.pid_rows.entry(pid).or_default() += 1;
        }
        for ip in
            [Some(record.src_ip), Some(record.dst_ip).filter(|&d| d != record.src_ip)].into_iter().flatten()
        {
            *self.ip_rows.entry(ip).or_default() += 1;
        }
        record
    }

    /// PIDs to query: every 8th rank of each side (common to uncommon), and the rare ones.
    fn query_pids(&self) -> (Vec<u32>, Vec<u32>) {
        let common = (0..25)
            .map(|k| self.clients[k * 8].pid)
            .chain((0..25).map(|k| self.servers[k * 8].pid))
            .collect();
        (common, self.rare_pids.clone())
    }

    /// Addresses to query: 25 client (pod) addresses and every 3rd server address by rank,
    /// and the rare ones.
    fn query_ips(&self) -> (Vec<IpAddr>, Vec<IpAddr>) {
        let common =
            (0..25).map(|k| self.client_ips[k * 79]).chain((0..25).map(|k| self.server_ips[k * 3])).collect();
        (common, self.rare_ips.clone())
    }
}

/// 2026-11-25T10:00:00Z in µs.
fn start_us() -> i64 {
    1_795_600_800_000_000
}

// ------------------------------------------------------------------------------------------------
// The kinds of query

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pid,
    Ip,
    TimeRange,
    Status,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Pid => "by PID",
            Kind::Ip => "by IP",
            Kind::TimeRange => "by time range (1 min)",
            Kind::Status => "by status class",
        }
    }
}

/// One query: its filter, and its key's share of the table's rows.
struct Query {
    filter: Filter,
    share: f64,
}

/// The varied keys of each kind (common ones, then rare ones), from the fill's tallies.
fn queries(cluster: &Cluster, tally: &Tally, rows: usize, n: usize) -> Vec<(Kind, bool, Vec<Query>)> {
    let f = |filter: Filter| Filter { limit: 100, ..filter };
    let share = |count: u64| count as f64 / rows as f64;
    let (pids, rare_pids) = cluster.query_pids();
    let (ips, rare_ips) = cluster.query_ips();
    let pid_q = |p: &u32| Query {
        filter: f(Filter { pid: Some(*p), ..Filter::default() }),
        share: share(tally.pid.get(&p.to_string()).copied().unwrap_or(0)),
    };
    let ip_q = |ip: &IpAddr| Query {
        filter: f(Filter { ip: Some(*ip), ..Filter::default() }),
        share: share(tally.ip.get(&ip.to_string()).copied().unwrap_or(0)),
    };
    let span = tally.newest - tally.oldest;
    let minute = 60_000_000;
    let ranges = (0..n)
        .map(|k| {
            let since = tally.oldest + (span - minute).max(0) * k as i64 / n.max(1) as i64;
            Query {
                filter: f(Filter {
                    since: DateTime::from_timestamp_micros(since),
                    until: DateTime::from_timestamp_micros(since + minute),
                    ..Filter::default()
                }),
                // A file spanning less than a minute (1 M rows of 20 nodes is 50 s) is all in range.
                share: (minute as f64 / span.max(1) as f64).min(1.0),
            }
        })
        .collect();
    let class_share = |c: u16| {
        let total: u32 = STATUSES.iter().map(|(_, w)| w).sum();
        STATUSES.iter().filter(|(s, _)| s / 100 == c).map(|(_, w)| *w as f64).sum::<f64>() / total as f64
    };
    let status = |c: u16| Query {
        filter: f(Filter { status: Some(StatusMatch::Class(c)), ..Filter::default() }),
        share: class_share(c),
    };
    vec![
        (Kind::Pid, false, pids.iter().take(n).map(pid_q).collect()),
        (Kind::Pid, true, rare_pids.iter().map(pid_q).collect()),
        (Kind::Ip, false, ips.iter().take(n).map(ip_q).collect()),
        (Kind::Ip, true, rare_ips.iter().map(ip_q).collect()),
        (Kind::TimeRange, false, ranges),
        (Kind::Status, false, (0..n).map(|k| status([2, 3, 4, 5][k % 4])).collect()),
        (Kind::Status, true, (0..RARE_KEYS).map(|_| status(1)).collect()),
    ]
}

// ------------------------------------------------------------------------------------------------
// Filling a file, or reusing it

/// What a completed fill leaves beside its file (`<file>.complete`), so reruns need no fill.
#[derive(serde::Serialize, serde::Deserialize)]
struct Tally {
    generator: u32,
    rows: usize,
    fill_secs: f64,
    oldest: i64,
    newest: i64,
    /// Rows per PID and per address (as text), either side.
    pid: HashMap<String, u64>,
    ip: HashMap<String, u64>,
}

fn file_for(dir: &Path, backend: Backend, rows: usize, seed: u64) -> PathBuf {
    let ext = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Duckdb => "duckdb",
    };
    dir.join(format!("queries-{rows}-s{seed}-g{GENERATOR}.{ext}"))
}

fn sidecar(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}.complete", db.display()))
}

fn remove_db(db: &Path) -> Result<()> {
    for suffix in ["", ".wal", "-wal", "-shm", ".complete"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    Ok(())
}

fn backend_of(b: Backend) -> store::Backend {
    match b {
        Backend::Sqlite => store::Backend::Sqlite,
        Backend::Duckdb => store::Backend::Duckdb,
    }
}

/// The completed file for `rows` rows, filled now unless a completed one is there.
fn filled(backend: Backend, db: &Path, rows: usize, seed: u64) -> Result<Tally> {
    if let Ok(text) = std::fs::read_to_string(sidecar(db))
        && let Ok(tally) = serde_json::from_str::<Tally>(&text)
        && tally.generator == GENERATOR
        && tally.rows == rows
        && db.exists()
    {
        progress(format_args!("{}: reusing {} ({rows} rows)", backend.name(), db.display()));
        return Ok(tally);
    }
    remove_db(db)?;
    progress(format_args!("{}: filling {} with {rows} rows", backend.name(), db.display()));
    let store = store::open(backend_of(backend), db, StoreOptions::default())
        .with_context(|| format!("opening {}", db.display()))?;
    // SQLite's six secondary indexes make a fill of millions of rows slow down as they outgrow
    // the cache (8k rows/s at 2 M rows, measured): they are dropped for the fill and built
    // again, in one sort each, when the store opens the file after it. The file then has
    // freshly built (compact) indexes, where a server's grew row by row; queries on it may be
    // a little faster than on a server's file of the same rows.
    if backend == Backend::Sqlite {
        super::sqlite_drop_indexes(db)?;
    }
    let mut cluster = Cluster::new(seed);
    let (mut oldest, mut newest) = (i64::MAX, i64::MIN);
    let mut store_secs = 0.0;
    let started = Instant::now();
    let mut done = 0;
    while done < rows {
        let mut batch = Vec::with_capacity(FILL_BATCH);
        while batch.len() < FILL_BATCH.min(rows - done) {
            let upload = cluster.upload();
            let take = upload.len().min(rows - done - batch.len());
            batch.extend(upload.into_iter().take(take));
        }
        for r in &batch {
            oldest = oldest.min(r.ts_micros());
            newest = newest.max(r.ts_micros());
        }
        let t = Instant::now();
        store.insert(&batch, None).context("inserting")?;
        store_secs += t.elapsed().as_secs_f64();
        done += batch.len();
        if done % (rows / 10).max(FILL_BATCH) < FILL_BATCH {
            progress(format_args!(
                "{}: {done} rows, {:.0} rows/s into the store, {:.0} s",
                backend.name(),
                done as f64 / store_secs,
                started.elapsed().as_secs_f64()
            ));
        }
    }
    drop(store);
    if backend == Backend::Sqlite {
        let t = Instant::now();
        drop(store::open(backend_of(backend), db, StoreOptions::default()).context("building the indexes")?);
        progress(format_args!("{}: indexes built in {:.0} s", backend.name(), t.elapsed().as_secs_f64()));
    }
    let tally = Tally {
        generator: GENERATOR,
        rows,
        fill_secs: store_secs,
        oldest,
        newest,
        pid: cluster.pid_rows.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        ip: cluster.ip_rows.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    };
    std::fs::write(sidecar(db), serde_json::to_vec(&tally)?).context("writing the sidecar")?;
    Ok(tally)
}

// ------------------------------------------------------------------------------------------------
// Timing

/// Runs each query once after one untimed warm-up; checks that every row matches.
fn time_in_process(store: &dyn Store, queries: &[Query]) -> Result<Vec<Duration>> {
    if let Some(q) = queries.first() {
        store.query(&q.filter)?;
    }
    let mut samples = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let rows = store.query(&q.filter)?;
        samples.push(t.elapsed());
        ensure!(rows.iter().all(|r| q.filter.matches(r)), "a row that does not match {:?}", q.filter);
    }
    Ok(samples)
}

fn url_pairs(f: &Filter) -> Vec<(&'static str, String)> {
    let mut out = vec![("limit", f.limit.to_string())];
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    if let Some(p) = f.pid {
        out.push(("pid", p.to_string()));
    }
    if let Some(ip) = f.ip {
        out.push(("ip", ip.to_string()));
    }
    if let Some(StatusMatch::Class(c)) = f.status {
        out.push(("status", format!("{c}xx")));
    }
    if let Some(t) = f.since {
        out.push(("since", time(t)));
    }
    if let Some(t) = f.until {
        out.push(("until", time(t)));
    }
    out
}

/// `GET /query?...` for each query after one untimed warm-up: request sent to body read.
fn time_http(url: &str, queries: &[Query], expect: &[usize]) -> Result<Vec<Duration>> {
    let agent = liteobs_integration::http();
    let query_url = format!("{url}/query");
    let ask = |f: &Filter| -> Result<(Duration, QueryResponse)> {
        let mut req = agent.get(&query_url);
        for (k, v) in url_pairs(f) {
            req = req.query(k, &v);
        }
        let t = Instant::now();
        let mut resp = req.call().with_context(|| format!("GET /query for {f:?}"))?;
        let status = resp.status();
        let body = resp.body_mut().read_to_string().context("reading the /query answer")?;
        let elapsed = t.elapsed();
        ensure!(status == 200, "GET /query answered {status}: {body}");
        Ok((elapsed, serde_json::from_str(&body).context("a /query answer that is not records")?))
    };
    if let Some(q) = queries.first() {
        ask(&q.filter)?;
    }
    let mut samples = Vec::with_capacity(queries.len());
    for (q, &want) in queries.iter().zip(expect) {
        let (elapsed, answer) = ask(&q.filter)?;
        ensure!(answer.records.iter().all(|r| q.filter.matches(r)), "GET /query: a row that does not match");
        ensure!(
            answer.records.len() == want,
            "GET /query answered {} rows, in-process {want}",
            answer.records.len()
        );
        samples.push(elapsed);
    }
    Ok(samples)
}

// ------------------------------------------------------------------------------------------------
// `/stats` over every row, and the engine's floors under it

/// Timed samples of each stats kind (after one untimed warm-up each): fewer on SQLite, whose
/// percentiles by window functions take seconds at 10 M rows.
fn stats_samples(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 3,
        Backend::Duckdb => 7,
    }
}

/// The server and route columns `/stats?group_by=server,route` groups by.
const STATS_KEYS: &str = "dst_ip, dst_port, dst_comm, dst_namespace, dst_pod, route";

/// `group_by=server,route` over the whole file: every row counts.
fn stats_query(tally: &Tally) -> StatsQuery {
    StatsQuery {
        filter: Filter {
            since: DateTime::from_timestamp_micros(tally.oldest),
            until: DateTime::from_timestamp_micros(tally.newest + 1),
            limit: 100,
            ..Filter::default()
        },
        group_by: vec![Dimension::Server, Dimension::Route],
        sort: SortKey::Count,
    }
}

/// The engine alone on the same grouping, read to the last row: `count(*)` only (the floor of
/// any grouped answer), and for DuckDB with its exact percentiles too (what `/stats` adds).
fn stats_floors(backend: Backend, db: &Path) -> Result<Vec<(&'static str, Vec<Duration>)>> {
    let count = format!("SELECT {STATS_KEYS}, count(*) FROM traffic_logs GROUP BY 1, 2, 3, 4, 5, 6");
    let time = |run: &mut dyn FnMut() -> Result<usize>| -> Result<Vec<Duration>> {
        run()?;
        (0..stats_samples(backend))
            .map(|_| {
                let t = Instant::now();
                run()?;
                Ok(t.elapsed())
            })
            .collect()
    };
    match backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let mut stmt = conn.prepare(&count)?;
            let samples = time(&mut || Ok(stmt.query_map([], |_| Ok(()))?.count()))?;
            Ok(vec![("count(*) grouped", samples)])
        }
        #[cfg(feature = "duckdb")]
        Backend::Duckdb => {
            let conn = duckdb::Connection::open_with_flags(
                db,
                duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?,
            )?;
            let pct = format!(
                "SELECT {STATS_KEYS}, count(*), quantile_disc(latency_us, [0.5, 0.95, 0.99]) \
                 FILTER (WHERE status <> 0) FROM traffic_logs GROUP BY 1, 2, 3, 4, 5, 6"
            );
            let mut out = Vec::new();
            for (name, sql) in [("count(*) grouped", &count), ("count(*) and quantile_disc grouped", &pct)] {
                let mut stmt = conn.prepare(sql)?;
                out.push((name, time(&mut || Ok(stmt.query_map([], |_| Ok(()))?.count()))?));
            }
            Ok(out)
        }
        #[cfg(not(feature = "duckdb"))]
        Backend::Duckdb => bail!("this bench-store was built without DuckDB"),
    }
}

/// `Store::stats` in-process, as the server answers it; the number of groups.
fn time_stats_in_process(store: &dyn Store, q: &StatsQuery, n: usize) -> Result<(usize, Vec<Duration>)> {
    let now = Utc::now();
    let groups = store.stats(q, now)?.groups.len();
    let samples = (0..n)
        .map(|_| {
            let t = Instant::now();
            store.stats(q, now)?;
            Ok(t.elapsed())
        })
        .collect::<Result<_>>()?;
    Ok((groups, samples))
}

/// `GET /stats?group_by=server,route&since=..&until=..` through the real server.
fn time_stats_http(url: &str, q: &StatsQuery, groups: usize, n: usize) -> Result<Vec<Duration>> {
    // SQLite's answer at 10 M rows can take longer than the tests' 30 s.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    let mut pairs = url_pairs(&q.filter);
    pairs.push(("group_by", "server,route".into()));
    let ask = || -> Result<Duration> {
        let mut req = agent.get(&format!("{url}/stats"));
        for (k, v) in &pairs {
            req = req.query(*k, v);
        }
        let t = Instant::now();
        let mut resp = req.call().context("GET /stats")?;
        let status = resp.status();
        let body = resp.body_mut().read_to_string().context("reading the /stats answer")?;
        let elapsed = t.elapsed();
        ensure!(status == 200, "GET /stats answered {status}: {body}");
        let answer: StatsResponse = serde_json::from_str(&body).context("a /stats answer")?;
        ensure!(
            answer.groups.len() == groups,
            "GET /stats: {} groups, in-process {groups}",
            answer.groups.len()
        );
        Ok(elapsed)
    };
    ask()?;
    (0..n).map(|_| ask()).collect()
}

struct StatsLine {
    rows: usize,
    backend: Backend,
    groups: usize,
    http: Vec<Duration>,
    store: Vec<Duration>,
    floors: Vec<(&'static str, Vec<Duration>)>,
}

// ------------------------------------------------------------------------------------------------
// The run and its report

struct Line {
    rows: usize,
    kind: Kind,
    rare: bool,
    backend: Backend,
    keys: usize,
    share: (f64, f64),
    matched: (usize, usize),
    http: Vec<Duration>,
    store: Vec<Duration>,
    plain: Vec<Duration>,
}

struct FileNote {
    rows: usize,
    backend: Backend,
    bytes: u64,
    fill_rows_per_sec: f64,
    reused: bool,
}

pub fn run(config: &Config) -> Result<()> {
    let backends = config.backends()?;
    let dir = &config.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let load_before = load_average();
    let mut lines = Vec::new();
    let mut stats_lines = Vec::new();
    let mut files = Vec::new();
    for &rows in &config.query_rows {
        ensure!(rows >= 1000, "--query-rows must be at least 1000");
        for &backend in &backends {
            let db = file_for(dir, backend, rows, config.seed);
            let reused = sidecar(&db).exists();
            let tally = filled(backend, &db, rows, config.seed)?;
            files.push(FileNote {
                rows,
                backend,
                bytes: db_size(&db),
                fill_rows_per_sec: rows as f64 / tally.fill_secs,
                reused,
            });
            let cluster = Cluster::new(config.seed);
            let kinds = queries(&cluster, &tally, rows, config.queries);
            // In-process: the server's plan, then the plain statement (one window = `select`).
            let mut found: Vec<Vec<usize>> = Vec::new();
            let mut timed: Vec<(Vec<Duration>, Vec<Duration>)> = Vec::new();
            {
                let t = Instant::now();
                let store = store::open(backend_of(backend), &db, StoreOptions::default())?;
                progress(format_args!(
                    "{}: {rows} rows, store open in {:.2} s",
                    backend.name(),
                    t.elapsed().as_secs_f64()
                ));
                let plain = QueryTuning { plan: Some(QueryPlan::TimeWindows), window_rows: u64::MAX };
                for (kind, rare, qs) in &kinds {
                    progress(format_args!(
                        "{}: in-process {} ({})",
                        backend.name(),
                        kind.name(),
                        if *rare { "rare" } else { "common" }
                    ));
                    found.push(
                        qs.iter()
                            .map(|q| store.query(&q.filter).map(|r| r.len()))
                            .collect::<Result<_, _>>()?,
                    );
                    timed.push((time_in_process(store.as_ref(), qs)?, Vec::new()));
                }
                drop(store);
                let store = store::open(
                    backend_of(backend),
                    &db,
                    StoreOptions { query: plain, ..StoreOptions::default() },
                )?;
                for (i, (kind, rare, qs)) in kinds.iter().enumerate() {
                    progress(format_args!("{}: plain statement {}", backend.name(), kind.name()));
                    // Rare keys make the plain statement a full scan each; a few suffice.
                    let n = if *rare { qs.len().min(3) } else { qs.len() };
                    timed[i].1 = time_in_process(store.as_ref(), &qs[..n])?;
                }
            }
            let stats_q = stats_query(&tally);
            let stats_timed = if config.no_stats {
                None
            } else {
                progress(format_args!("{}: in-process /stats by server, route", backend.name()));
                let store = store::open(backend_of(backend), &db, StoreOptions::default())?;
                let (groups, store_t) =
                    time_stats_in_process(store.as_ref(), &stats_q, stats_samples(backend))?;
                drop(store);
                progress(format_args!("{}: the engine's floors under /stats", backend.name()));
                Some((groups, store_t, stats_floors(backend, &db)?))
            };
            let t = Instant::now();
            let server = liteobs_integration::Server::try_start(backend.name(), &db, None, None)
                .with_context(|| format!("starting the {} server", backend.name()))?;
            progress(format_args!("{}: server up in {:.2} s", backend.name(), t.elapsed().as_secs_f64()));
            for (i, (kind, rare, qs)) in kinds.iter().enumerate() {
                progress(format_args!("{}: HTTP {}", backend.name(), kind.name()));
                let http = time_http(&server.url, qs, &found[i])?;
                let shares = qs.iter().map(|q| q.share);
                let (store_t, plain_t) = std::mem::take(&mut timed[i]);
                lines.push(Line {
                    rows,
                    kind: *kind,
                    rare: *rare,
                    backend,
                    keys: qs.len(),
                    share: (shares.clone().fold(f64::MAX, f64::min), shares.fold(0.0, f64::max)),
                    matched: (
                        found[i].iter().copied().min().unwrap_or(0),
                        found[i].iter().copied().max().unwrap_or(0),
                    ),
                    http,
                    store: store_t,
                    plain: plain_t,
                });
            }
            if let Some((groups, store_t, floors)) = stats_timed {
                progress(format_args!("{}: HTTP /stats by server, route", backend.name()));
                let http = time_stats_http(&server.url, &stats_q, groups, stats_samples(backend))?;
                stats_lines.push(StatsLine { rows, backend, groups, http, store: store_t, floors });
            }
            let status = server.try_stop()?;
            if !status.success() {
                bail!("{} server exited with {status}", backend.name());
            }
        }
    }
    print_report(config, &lines, &stats_lines, &files, [load_before, load_average()]);
    Ok(())
}

fn stats(s: &[Duration]) -> String {
    if s.is_empty() {
        return "-".into();
    }
    format!("{:.1} / {:.1} / {:.1}", ms(percentile(s, 0.5)), ms(percentile(s, 0.95)), ms(percentile(s, 1.0)))
}

fn pct(x: f64) -> String {
    if x >= 0.001 { format!("{:.2} %", x * 100.0) } else { format!("{:.5} %", x * 100.0) }
}

fn print_report(
    config: &Config,
    lines: &[Line],
    stats_lines: &[StatsLine],
    files: &[FileNote],
    load: [String; 2],
) {
    println!(
        "## Queries at {} rows",
        config.query_rows.iter().map(|r| format!("{} M", *r as f64 / 1e6)).collect::<Vec<_>>().join(" and ")
    );
    println!();
    println!(
        "{}, seed {}, one-minute load {} at start, {} at end; {} queries per kind and {RARE_KEYS} rare keys; limit 100.",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        config.seed,
        load[0],
        load[1],
        config.queries
    );
    println!();
    println!(
        "p50 / p95 / max in ms. HTTP: the real server, `GET /query`. Store: the same plan in-process. Plain: one `ORDER BY ts DESC, seq DESC LIMIT` statement in-process (the engine alone; 3 keys for rare ones)."
    );
    println!();
    println!(
        "| rows | query | backend | keys | share of rows per key | rows answered | HTTP | store in-process | plain statement |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for l in lines {
        println!(
            "| {} M | {}{} | {} | {} | {} – {} | {} – {} | {} | {} | {} |",
            l.rows as f64 / 1e6,
            l.kind.name(),
            if l.rare { ", rare keys" } else { "" },
            l.backend.name(),
            l.keys,
            pct(l.share.0),
            pct(l.share.1),
            l.matched.0,
            l.matched.1,
            stats(&l.http),
            stats(&l.store),
            stats(&l.plain),
        );
    }
    if !stats_lines.is_empty() {
        println!();
        println!(
            "`/stats?group_by=server,route` over every row, {} runs after a warm-up (SQLite {}); p50 / p95 / max in ms. Floors: the engine alone on the same grouping, read to the last row.",
            stats_samples(Backend::Duckdb),
            stats_samples(Backend::Sqlite)
        );
        println!();
        println!("| rows | backend | groups | HTTP `/stats` | `Store::stats` in-process | engine floors |");
        println!("|---|---|---|---|---|---|");
        for l in stats_lines {
            let floors: Vec<String> =
                l.floors.iter().map(|(name, s)| format!("{name}: {}", stats(s))).collect();
            println!(
                "| {} M | {} | {} | {} | {} | {} |",
                l.rows as f64 / 1e6,
                l.backend.name(),
                l.groups,
                stats(&l.http),
                stats(&l.store),
                floors.join("; ")
            );
        }
    }
    println!();
    println!(
        "| rows | backend | file | per million rows | fill through the store (in-process, 100k rows per transaction) |"
    );
    println!("|---|---|---|---|---|");
    for f in files {
        println!(
            "| {} M | {} | {:.0} MiB | {:.1} MiB | {:.0} rows/s{} |",
            f.rows as f64 / 1e6,
            f.backend.name(),
            f.bytes as f64 / (1 << 20) as f64,
            f.bytes as f64 / (1 << 20) as f64 / (f.rows as f64 / 1e6),
            f.fill_rows_per_sec,
            if f.reused { " (file reused; from its fill)" } else { "" }
        );
    }
}
