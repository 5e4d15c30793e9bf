//! bench-store: how fast the real `liteobs-server` ingests and answers with each store backend,
//! and how far that is from what the embedded engine itself does with the same rows.
//!
//! For each backend (SQLite, DuckDB) it measures:
//!
//! 1. **Ingest through the API.** The real server binary runs on a new temporary file; every
//!    batch is POSTed to `/upload` as NDJSON by `--uploaders` concurrent clients, once
//!    gzip-compressed (as the agent sends it) and once uncompressed, each time into a new file.
//!    The server answers `{"accepted": N}` only after the batch is committed, so wall time from
//!    the first request to the last answer gives committed rows/s. Bodies are serialized and
//!    compressed before the clock starts: the agent pays for that, not the server.
//! 2. **Query latency on the full table** (the table left by the first upload run):
//!    `GET /query?pid=P&limit=100` for `--queries` different PIDs, and `GET /query?ip=A&limit=100`
//!    for as many addresses; p50/p95/max in ms, seen by the client, after one warm-up query.
//!    Then, with the server stopped, the server's own SQL on the same file in-process: the
//!    difference is what HTTP and JSON add to a query.
//! 3. **The engine's floor.** The same rows loaded in-process, without HTTP or JSON, into a copy
//!    of an empty file the server itself created (so the table, and SQLite's indexes, are the
//!    server's own): SQLite with one prepared INSERT in one transaction, in one transaction per
//!    batch as the server does, and the same without the secondary indexes, plus the `sqlite3`
//!    shell's `.import` of a CSV file when that shell is installed; DuckDB with the Appender
//!    (one transaction, then one per batch, as the server does) and `COPY ... FROM` a CSV file.
//!
//! Reading the table: 1 minus 3 is what the server adds (HTTP, gzip, JSON decoding, a
//! transaction per batch); "one transaction per batch" minus "one transaction" is what batching
//! costs the engine. The notes under the tables give the client's and the server's per-row
//! encoding costs, measured in-process on one thread, and upload round trips and file sizes.
//!
//! The workload is generated from a fixed seed, so runs are comparable: 200 client and 200
//! server PIDs (20 processes on both sides; a PID is unknown for 15 % of clients and 40 % of
//! servers), IPv4 and IPv6 (20 %) addresses, realistic methods, statuses, paths and sizes,
//! timestamps over one hour in roughly arrival order. PIDs and addresses are spread evenly over
//! the hour, so neither engine can skip data by time; a queried PID matches 0.3 to 0.7 % of
//! the rows, a client address ~0.05 %, a server address ~1 %.
//!
//! Run with `just bench-store [--rows N] [--backend sqlite|duckdb|both] ...`, which builds the
//! server and this program in one cargo invocation: built alone, this package resolves the
//! build dependencies of DuckDB's bundled C++ with other features than the server does, and
//! cargo would compile DuckDB a second time. The server binary is taken from the directory of
//! this program. Progress goes to stderr, the markdown report to stdout; BENCHMARKS.md at the
//! workspace root records the figures.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use flate2::Compression;
use flate2::write::GzEncoder;
use liteobs_integration::{Server, http};
use liteobs_model::columns::{self, Stored};
use liteobs_model::{QueryResponse, TrafficLog};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "bench-store/queries.rs"]
mod queries;

// ------------------------------------------------------------------------------------------------
// Flags

#[derive(Debug, Parser)]
#[command(name = "bench-store", about = "Ingest and query benchmark of liteobs-server's store backends")]
struct Config {
    /// Rows to generate and load.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Rows per upload body (the agent sends 1000; the server refuses bodies over 16 MiB).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent upload clients; a list (`2,4,8`) measures each, a new server and file each.
    #[arg(long, value_delimiter = ',', default_values_t = [4])]
    uploaders: Vec<usize>,
    /// Give every record its own `exchange_id`, as the agent does: the server's merge then looks
    /// up each batch's ids (none match); without it the merge is skipped.
    #[arg(long)]
    exchange_ids: bool,
    /// Backends to measure.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    backend: BackendChoice,
    /// Upload encodings to measure.
    #[arg(long, value_enum, default_value_t = EncodingChoice::Both)]
    encoding: EncodingChoice,
    /// Different PIDs (and as many addresses) to query, after one warm-up query each.
    #[arg(long, default_value_t = 50)]
    queries: usize,
    /// Skip the in-process reference loads (API ingest and queries only).
    #[arg(long)]
    no_reference: bool,
    /// Print each engine's plan (with timings where it has them) of one by-PID query to stderr.
    #[arg(long)]
    explain: bool,
    /// Query mode instead of ingest: fill (or reuse) a file of each of these row counts under
    /// `--dir` and time each kind of query on it (see `bench-store/queries.rs`).
    #[arg(long, value_delimiter = ',')]
    query_rows: Vec<usize>,
    /// Query mode: skip the `/stats` timings (grouped by server and route, every row).
    #[arg(long)]
    no_stats: bool,
    /// Seed of the generated workload.
    #[arg(long, default_value_t = 20261125)]
    seed: u64,
    /// Where the database files go (a temporary directory inside it, removed at the end); it
    /// should be on the disk a server would use, not tmpfs.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Sqlite,
    Duckdb,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EncodingChoice {
    Gzip,
    Identity,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Duckdb,
}

impl Backend {
    /// The `-db-type` value and the name in the report.
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Duckdb => "duckdb",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Backend::Sqlite => "liteobs.sqlite",
            Backend::Duckdb => "liteobs.duckdb",
        }
    }
}

impl Config {
    fn backends(&self) -> Result<Vec<Backend>> {
        let duckdb_built = cfg!(feature = "duckdb");
        match self.backend {
            BackendChoice::Sqlite => Ok(vec![Backend::Sqlite]),
            BackendChoice::Duckdb if !duckdb_built => {
                bail!("bench-store was built without the `duckdb` feature; use --backend sqlite")
            }
            BackendChoice::Duckdb => Ok(vec![Backend::Duckdb]),
            BackendChoice::Both if !duckdb_built => {
                eprintln!("bench-store: built without the `duckdb` feature, measuring SQLite only");
                Ok(vec![Backend::Sqlite])
            }
            BackendChoice::Both => Ok(vec![Backend::Sqlite, Backend::Duckdb]),
        }
    }

    /// `true` for gzip: the encodings to upload with, the agent's (gzip) first.
    fn encodings(&self) -> Vec<bool> {
        match self.encoding {
            EncodingChoice::Gzip => vec![true],
            EncodingChoice::Identity => vec![false],
            EncodingChoice::Both => vec![true, false],
        }
    }
}

fn main() -> ExitCode {
    let config = Config::parse();
    if std::env::var_os("LITEOBS_LOG").is_none() {
        // The servers this starts inherit it: their per-start info lines would bury the progress.
        // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("LITEOBS_LOG", "warn") };
    }
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-store: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &Config) -> Result<()> {
    if !config.query_rows.is_empty() {
        return queries::run(config);
    }
    ensure!(config.rows > 0 && config.batch > 0, "--rows and --batch must be at least 1");
    ensure!(
        !config.uploaders.is_empty() && config.uploaders.iter().all(|&u| u > 0),
        "--uploaders must be at least 1"
    );
    let backends = config.backends()?;
    let encodings = config.encodings();
    let server_bin = liteobs_integration::try_bin("liteobs-server")?;
    progress(format_args!("server binary {}", server_bin.display()));

    let load_before = load_average();
    let started = Instant::now();
    let workload = Workload::generate(config.rows, config.seed, config.queries, config.exchange_ids);
    progress(format_args!("generated {} rows in {:.1} s", config.rows, started.elapsed().as_secs_f64()));
    let bodies = Bodies::encode(&workload.records, config.batch, &encodings)?;
    progress(format_args!(
        "{} bodies: NDJSON {:.0} B/row ({:.2} s to serialize), gzip {:.0} B/row ({:.2} s to compress)",
        bodies.rows.len(),
        bodies.plain_bytes as f64 / config.rows as f64,
        bodies.serialize_secs,
        bodies.gzip_bytes as f64 / config.rows as f64,
        bodies.gzip_secs,
    ));

    let decode = DecodeCost::measure(&bodies)?;
    let scratch = tempfile::Builder::new()
        .prefix("bench-store")
        .tempdir_in(&config.dir)
        .with_context(|| format!("creating a temp dir in {}", config.dir.display()))?;
    let csv = if config.no_reference { None } else { Some(write_csv(scratch.path(), &workload.records)?) };
    let mut report = Report::default();
    for backend in backends {
        for &gzip in &encodings {
            for &uploaders in &config.uploaders {
                let dir = scratch.path().join(format!(
                    "{}-{}-{uploaders}",
                    backend.name(),
                    if gzip { "gzip" } else { "plain" }
                ));
                std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                // Queries run once, on the table of the first upload run.
                let queries = gzip == encodings[0] && uploaders == config.uploaders[0];
                let run = ApiRun { backend, gzip, uploaders, queries };
                api_run(config, run, &dir, &bodies, &workload, &mut report)?;
                // The files can be large (10 M rows); keep the disk for the next run.
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        if let Some(csv) = &csv {
            reference_runs(config, backend, scratch.path(), csv, &workload.records, &mut report)?;
        }
    }
    report.load = [load_before, load_average()];
    report.print(config, &bodies, &decode);
    Ok(())
}

fn progress(msg: std::fmt::Arguments) {
    eprintln!("bench-store: {msg}");
}

// ------------------------------------------------------------------------------------------------
// Workload

const CLIENT_COMMS: &[&str] =
    &["curl", "python3", "java", "node", "wget", "envoy", "ruby", "php-fpm", "grpc-client", "k6"];
const SERVER_COMMS: &[&str] =
    &["nginx", "envoy", "java", "node", "gunicorn", "uvicorn", "httpd", "caddy", "api-gateway", "puma"];
const HOSTS: &[&str] = &[
    "api.internal",
    "shop.example.com",
    "auth.svc.cluster.local",
    "search.svc.cluster.local",
    "cdn.example.com",
    "payments.internal:8443",
    "localhost:8080",
    "metrics.monitoring.svc",
];
const WORDS: &[&str] = &["shoes", "red%20shirt", "laptop", "caf%C3%A9", "gift", "books", "tv", "garden"];
const METHODS: &[(&str, u32)] =
    &[("GET", 70), ("POST", 18), ("PUT", 5), ("DELETE", 3), ("PATCH", 2), ("HEAD", 1), ("OPTIONS", 1)];
const STATUSES: &[(u16, u32)] = &[
    (200, 750),
    (201, 40),
    (204, 40),
    (301, 10),
    (302, 10),
    (304, 40),
    (400, 20),
    (401, 10),
    (403, 10),
    (404, 40),
    (429, 5),
    (500, 15),
    (502, 5),
    (503, 5),
    (0, 10),
];
const PORTS: &[u16] = &[80, 443, 8080, 8443, 3000, 5000, 9090, 9200];
/// Client processes; as many server processes, of which `SHARED_PROCESSES` are also clients.
const PROCESSES: usize = 200;
const SHARED_PROCESSES: usize = 20;

/// A process on one side of the generated exchanges.
#[derive(Clone, Copy)]
struct Process {
    pid: u32,
    comm: &'static str,
}

/// The generated rows, and the PIDs and addresses the query benchmark asks for.
struct Workload {
    records: Vec<TrafficLog>,
    /// Half client-side PIDs, half server-side ones; each present in the rows.
    query_pids: Vec<u32>,
    /// Half client addresses (few rows each), half server addresses (many rows each).
    query_ips: Vec<IpAddr>,
}

/// `n` distinct values from `draw`.
fn distinct<T: std::hash::Hash + Eq + Copy>(n: usize, mut draw: impl FnMut() -> T) -> Vec<T> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let v = draw();
        if seen.insert(v) {
            out.push(v);
        }
    }
    out
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

/// Roughly log-uniform in `lo..hi`: many small values, a long tail.
fn log_uniform(rng: &mut StdRng, lo: u64, hi: u64) -> u64 {
    let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
    (l + rng.random::<f64>() * (h - l)).exp() as u64
}

fn request_path(rng: &mut StdRng) -> String {
    let word = WORDS[rng.random_range(0..WORDS.len())];
    match rng.random_range(0..14) {
        0 | 1 => format!("/api/v1/users/{}", rng.random_range(1..100_000)),
        2 => format!("/api/v1/orders/{}/items", rng.random_range(1..1_000_000)),
        3 => format!("/api/v2/search?q={word}&page={}", rng.random_range(1..20)),
        4 => format!("/static/js/app.{:08x}.js", rng.random::<u32>()),
        5 | 6 => "/healthz".to_owned(),
        7 => "/metrics".to_owned(),
        8 => "/graphql".to_owned(),
        9 => format!("/v1/objects/{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>()),
        10 => format!("/api/v1/products?category={word}&sort=price&limit=50"),
        11 => "/login".to_owned(),
        12 => "/".to_owned(),
        _ => format!("/api/v1/carts/{}/checkout", rng.random_range(1..50_000)),
    }
}

impl Workload {
    fn generate(rows: usize, seed: u64, queries: usize, exchange_ids: bool) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        let pids = distinct(2 * PROCESSES - SHARED_PROCESSES, || rng.random_range(300..4_194_304u32));
        let clients: Vec<Process> = pids[..PROCESSES]
            .iter()
            .map(|&pid| Process { pid, comm: CLIENT_COMMS[pid as usize % CLIENT_COMMS.len()] })
            .collect();
        // Sidecars and API servers that call other services: the first clients serve too.
        let servers: Vec<Process> = pids[..SHARED_PROCESSES]
            .iter()
            .chain(&pids[PROCESSES..])
            .map(|&pid| Process { pid, comm: SERVER_COMMS[pid as usize % SERVER_COMMS.len()] })
            .collect();
        let client_v4 = distinct(1500, || {
            let a = rng.random_range(1..4u8);
            IpAddr::V4(Ipv4Addr::new(10, a, rng.random(), rng.random_range(1..255)))
        });
        let client_v6 = distinct(300, || {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, rng.random(), rng.random_range(1..0xffff)))
        });
        let mut server_v4 = distinct(60, || {
            IpAddr::V4(Ipv4Addr::new(10, 0, rng.random_range(0..16), rng.random_range(1..255)))
        });
        server_v4.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut server_v6 = distinct(20, || {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0x10, 0, 0, 0, rng.random_range(1..0xffff)))
        });
        server_v6.push(IpAddr::V6(Ipv6Addr::LOCALHOST));

        let start: DateTime<Utc> = DateTime::from_timestamp(1_795_600_800, 0).unwrap_or_default(); // 2026-11-25T10:00Z
        let hour_us: u64 = 3_600_000_000;
        let nodes = ["node-1", "node-2", "node-3", "node-4"];
        let mut records = Vec::with_capacity(rows);
        for i in 0..rows {
            // Roughly arrival order: an exchange is reported when its response is complete.
            let offset_us = (i as u64 * hour_us) / rows as u64 + rng.random_range(0..2_000_000);
            let v6 = rng.random_bool(0.2);
            let (src_pool, dst_pool) = if v6 { (&client_v6, &server_v6) } else { (&client_v4, &server_v4) };
            let dst_index = rng.random_range(0..dst_pool.len());
            let client = clients[rng.random_range(0..clients.len())];
            let server = servers[rng.random_range(0..servers.len())];
            // The agent knows the local process; the other side is often on another host.
            let client = rng.random_bool(0.85).then_some(client);
            let server = rng.random_bool(0.6).then_some(server);
            let method = weighted(&mut rng, METHODS);
            let status = weighted(&mut rng, STATUSES);
            let sends_body = matches!(method, "POST" | "PUT" | "PATCH");
            records.push(TrafficLog {
                ts: start + chrono::Duration::microseconds(offset_us.min(hour_us - 1) as i64),
                src_ip: src_pool[rng.random_range(0..src_pool.len())],
                src_port: rng.random_range(32768..61000),
                dst_ip: dst_pool[dst_index],
                dst_port: PORTS[dst_index % PORTS.len()],
                method: method.to_owned(),
                path: request_path(&mut rng),
                host: rng.random_bool(0.9).then(|| HOSTS[dst_index % HOSTS.len()].to_owned()),
                status,
                latency_us: if status == 0 { 0 } else { log_uniform(&mut rng, 150, 3_000_000) },
                req_bytes: if sends_body { log_uniform(&mut rng, 20, 200_000) } else { 0 },
                resp_bytes: if method == "HEAD" || status == 0 {
                    0
                } else {
                    log_uniform(&mut rng, 1, 2_000_000)
                },
                src_pid: client.map(|p| p.pid),
                src_comm: client.map(|p| p.comm.to_owned()),
                dst_pid: server.map(|p| p.pid),
                dst_comm: server.map(|p| p.comm.to_owned()),
                src_namespace: None,
                src_pod: None,
                src_container: None,
                src_container_id: None,
                src_node: None,
                dst_namespace: None,
                dst_pod: None,
                dst_container: None,
                dst_container_id: None,
                dst_node: None,
                dst_service_ip: None,
                dst_service_port: None,
                exchange_id: None,
                route: None,
                node: nodes[rng.random_range(0..nodes.len())].to_owned(),
            });
        }

        // Unique, as the agent's are (from its sequence numbers); drawn after everything else,
        // so that the rest of the workload is the same with and without.
        if exchange_ids {
            for (i, r) in records.iter_mut().enumerate() {
                r.exchange_id = Some(((rng.random::<u32>() as i64) << 32) | i as i64);
            }
        }
        // Every 7th process of each side (coprime with the pool sizes, so they spread), first
        // half client side, second half server side.
        let spread = |n: usize, len: usize| (0..n).map(move |k| (k * 7) % len);
        let half = queries / 2;
        let query_pids = spread(half, clients.len())
            .map(|k| clients[k].pid)
            .chain(spread(queries - half, servers.len()).map(|k| servers[k].pid))
            .collect();
        let client_ips: Vec<IpAddr> = client_v4.iter().chain(&client_v6).copied().collect();
        let server_ips: Vec<IpAddr> = server_v4.iter().chain(&server_v6).copied().collect();
        let query_ips = spread(half, client_ips.len())
            .map(|k| client_ips[k])
            .chain(spread(queries - half, server_ips.len()).map(|k| server_ips[k]))
            .collect();
        Workload { records, query_pids, query_ips }
    }
}

// ------------------------------------------------------------------------------------------------
// Upload bodies, serialized before any clock starts

/// The batches as the agent would send them.
struct Bodies {
    /// Rows in each batch.
    rows: Vec<usize>,
    /// NDJSON, one body per batch (empty when not measured).
    plain: Vec<Vec<u8>>,
    /// The same, gzip-compressed at the agent's level (`Compression::fast`).
    gzip: Vec<Vec<u8>>,
    plain_bytes: usize,
    gzip_bytes: usize,
    /// Client-side cost, for the record: what the agent spends per batch.
    serialize_secs: f64,
    gzip_secs: f64,
}

impl Bodies {
    fn encode(records: &[TrafficLog], batch: usize, encodings: &[bool]) -> Result<Bodies> {
        let keep_plain = encodings.contains(&false);
        let keep_gzip = encodings.contains(&true);
        let mut b = Bodies {
            rows: Vec::new(),
            plain: Vec::new(),
            gzip: Vec::new(),
            plain_bytes: 0,
            gzip_bytes: 0,
            serialize_secs: 0.0,
            gzip_secs: 0.0,
        };
        for chunk in records.chunks(batch) {
            let t = Instant::now();
            let mut plain = Vec::with_capacity(chunk.len() * 512);
            for r in chunk {
                serde_json::to_writer(&mut plain, r).context("serializing a record")?;
                plain.push(b'\n');
            }
            b.serialize_secs += t.elapsed().as_secs_f64();
            b.plain_bytes += plain.len();
            let t = Instant::now();
            let mut gz = GzEncoder::new(Vec::with_capacity(plain.len() / 4), Compression::fast());
            gz.write_all(&plain).context("compressing a batch")?;
            let gz = gz.finish().context("compressing a batch")?;
            b.gzip_secs += t.elapsed().as_secs_f64();
            b.gzip_bytes += gz.len();
            b.rows.push(chunk.len());
            if keep_gzip {
                b.gzip.push(gz);
            }
            if keep_plain {
                b.plain.push(plain);
            }
        }
        Ok(b)
    }
}

/// What the server spends per row before the store sees a batch, measured in-process on one
/// thread with the server's own decoder: part of the answer to "where does the time go".
struct DecodeCost {
    /// Gunzip of the gzip bodies (zero when they were not built).
    gunzip_secs: f64,
    /// `liteobs_model::decode_ndjson` of every body.
    decode_secs: f64,
}

impl DecodeCost {
    fn measure(bodies: &Bodies) -> Result<DecodeCost> {
        let mut cost = DecodeCost { gunzip_secs: 0.0, decode_secs: 0.0 };
        for (i, &rows) in bodies.rows.iter().enumerate() {
            let gunzipped = match bodies.gzip.get(i) {
                Some(gz) => {
                    let t = Instant::now();
                    let mut out = Vec::with_capacity(gz.len() * 4);
                    flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut out).context("gunzip")?;
                    cost.gunzip_secs += t.elapsed().as_secs_f64();
                    Some(out)
                }
                None => None,
            };
            let plain = match (bodies.plain.get(i), &gunzipped) {
                (Some(plain), _) | (None, Some(plain)) => plain,
                (None, None) => bail!("batch {i} has no body"),
            };
            let t = Instant::now();
            let records = liteobs_model::decode_ndjson(plain).context("decoding a generated batch")?;
            cost.decode_secs += t.elapsed().as_secs_f64();
            ensure!(records.len() == rows, "batch {i} decoded to {} records, not {rows}", records.len());
        }
        Ok(cost)
    }
}

// ------------------------------------------------------------------------------------------------
// Through the API: the real server, POST /upload, GET /query

/// One server run: which backend, how the bodies go, and whether the queries run after.
struct ApiRun {
    backend: Backend,
    gzip: bool,
    uploaders: usize,
    queries: bool,
}

/// Starts the server on a new file in `dir`, uploads every body, optionally runs the queries,
/// stops the server and checks the row count in the file.
fn api_run(
    config: &Config,
    ApiRun { backend, gzip, uploaders, queries }: ApiRun,
    dir: &Path,
    bodies: &Bodies,
    workload: &Workload,
    report: &mut Report,
) -> Result<()> {
    let db = dir.join(backend.file_name());
    let encoding = if gzip { "gzip" } else { "identity" };
    let server = Server::try_start(backend.name(), &db, None, None)
        .with_context(|| format!("starting the {} server", backend.name()))?;
    progress(format_args!(
        "{}: POST /upload, {} rows in batches of {}, {} uploaders, {encoding}",
        backend.name(),
        config.rows,
        config.batch,
        uploaders
    ));
    let upload = upload_all(
        &server.url,
        if gzip { &bodies.gzip } else { &bodies.plain },
        &bodies.rows,
        gzip,
        uploaders,
    )
    .with_context(|| format!("{}: uploading", backend.name()))?;
    report.ingest.push(Ingest {
        backend,
        path: format!("POST /upload, NDJSON{}, {uploaders} uploaders", if gzip { "+gzip" } else { "" },),
        rows: config.rows,
        secs: upload.wall.as_secs_f64(),
    });
    report.notes.push(format!(
        "{} /upload ({encoding}, {uploaders} uploaders): batch round trip p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        backend.name(),
        ms(percentile(&upload.round_trips, 0.50)),
        ms(percentile(&upload.round_trips, 0.95)),
        ms(percentile(&upload.round_trips, 1.0)),
    ));

    if queries {
        let url = &server.url;
        progress(format_args!(
            "{}: querying {} PIDs and {} addresses",
            backend.name(),
            config.queries,
            config.queries
        ));
        let pids: Vec<String> = workload.query_pids.iter().map(u32::to_string).collect();
        let by_pid = time_queries(url, "pid", &pids, |r, v| {
            let pid = v.parse::<u32>().ok();
            r.src_pid == pid || r.dst_pid == pid
        })?;
        let ips: Vec<String> = workload.query_ips.iter().map(IpAddr::to_string).collect();
        let by_ip = time_queries(url, "ip", &ips, |r, v| {
            let ip = v.parse::<IpAddr>().ok();
            Some(r.src_ip) == ip || Some(r.dst_ip) == ip
        })?;
        for (query, samples) in [("by PID, HTTP GET /query", by_pid), ("by IP, HTTP GET /query", by_ip)] {
            report.queries.push(Latency { backend, query: query.into(), rows: config.rows, samples });
        }
    }

    let status = server.try_stop()?;
    ensure!(status.success(), "{} server exited with {status} on SIGTERM", backend.name());
    let stored = count_rows(backend, &db)?;
    ensure!(
        stored == config.rows as u64,
        "{}: {stored} rows stored, {} uploaded",
        backend.name(),
        config.rows
    );
    report.notes.push(format!(
        "{} file after {} rows via /upload ({encoding}, {uploaders} uploaders): {:.0} MiB",
        backend.name(),
        config.rows,
        db_size(&db) as f64 / (1 << 20) as f64
    ));
    if queries {
        // The same SQL on the same file without the server: what HTTP and JSON add to a query.
        let pids: Vec<Key> = workload.query_pids.iter().map(|&p| Key::Pid(p.into())).collect();
        let ips: Vec<Key> = workload.query_ips.iter().map(|ip| Key::Ip(ip.to_string())).collect();
        for (query, keys) in [("by PID, in-process SQL", pids), ("by IP, in-process SQL", ips)] {
            let samples = engine_query_latency(backend, &db, &keys)
                .with_context(|| format!("{}: {query}", backend.name()))?;
            report.queries.push(Latency { backend, query: query.into(), rows: config.rows, samples });
        }
        if config.explain {
            let plan = explain(backend, &db, &Key::Pid(workload.query_pids[0].into()))?;
            eprintln!("bench-store: {} plan of a by-PID query:\n{plan}", backend.name());
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// In-process queries: the server's SQL without the server

/// What a query filters on, as the server binds it (PIDs as integers, addresses as text).
enum Key {
    Pid(i64),
    Ip(String),
}

impl Key {
    /// The server's statement for this filter (crates/liteobs-server/src/store/sql.rs, `select`):
    /// either side matches, newest first, `limit + 1` rows so it can tell that the limit cut.
    fn sql(&self) -> String {
        let cond = match self {
            Key::Pid(_) => "(src_pid = ? OR dst_pid = ?)",
            Key::Ip(_) => "(src_ip = ? OR dst_ip = ?)",
        };
        format!(
            "SELECT {} FROM traffic_logs WHERE {cond} ORDER BY ts DESC, seq DESC LIMIT ?",
            COLUMNS.join(", ")
        )
    }
}

/// The server asks for one row more than the client's `limit=100`.
const QUERY_ROWS: i64 = 101;

/// Runs each key's query once (after one untimed warm-up) and reads every column of every
/// row, as the server does before it builds its answer.
fn engine_query_latency(backend: Backend, db: &Path, keys: &[Key]) -> Result<Vec<Duration>> {
    match backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .with_context(|| format!("opening {}", db.display()))?;
            let run = |key: &Key| -> Result<Duration> {
                let t = Instant::now();
                let mut stmt = conn.prepare_cached(&key.sql())?;
                let mut rows = match key {
                    Key::Pid(p) => stmt.query(rusqlite::params![p, p, QUERY_ROWS])?,
                    Key::Ip(ip) => stmt.query(rusqlite::params![ip, ip, QUERY_ROWS])?,
                };
                let mut n = 0;
                while let Some(row) = rows.next()? {
                    for c in 0..COLUMNS.len() {
                        let _: rusqlite::types::Value = row.get(c)?;
                    }
                    n += 1;
                }
                ensure!(n > 0, "no rows");
                Ok(t.elapsed())
            };
            keys.first().map(&run).transpose()?;
            keys.iter().map(run).collect()
        }
        #[cfg(feature = "duckdb")]
        Backend::Duckdb => duckdb_ref::query_latency(db, keys),
        #[cfg(not(feature = "duckdb"))]
        Backend::Duckdb => bail!("built without the `duckdb` feature"),
    }
}

/// The engine's plan of `key`'s query: SQLite's `EXPLAIN QUERY PLAN`, DuckDB's `EXPLAIN ANALYZE`.
fn explain(backend: Backend, db: &Path, key: &Key) -> Result<String> {
    match backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .with_context(|| format!("opening {}", db.display()))?;
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", key.sql()))?;
            let mut rows = match key {
                Key::Pid(p) => stmt.query(rusqlite::params![p, p, QUERY_ROWS])?,
                Key::Ip(ip) => stmt.query(rusqlite::params![ip, ip, QUERY_ROWS])?,
            };
            let mut plan = String::new();
            while let Some(row) = rows.next()? {
                plan.push_str(&row.get::<_, String>(3)?);
                plan.push('\n');
            }
            Ok(plan)
        }
        #[cfg(feature = "duckdb")]
        Backend::Duckdb => duckdb_ref::explain(db, key),
        #[cfg(not(feature = "duckdb"))]
        Backend::Duckdb => bail!("built without the `duckdb` feature"),
    }
}

struct UploadRun {
    wall: Duration,
    /// One per batch, from sending the body to reading the answer.
    round_trips: Vec<Duration>,
}

/// POSTs every body, `uploaders` at a time, each body exactly once; fails on the first batch
/// the server does not accept whole.
fn upload_all(
    url: &str,
    bodies: &[Vec<u8>],
    rows: &[usize],
    gzip: bool,
    uploaders: usize,
) -> Result<UploadRun> {
    let upload_url = format!("{url}/upload");
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let started = Instant::now();
    let per_thread: Vec<Result<Vec<Duration>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..uploaders)
            .map(|_| {
                s.spawn(|| {
                    let agent = http();
                    let mut round_trips = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else { break };
                        let t = Instant::now();
                        if let Err(e) = post_batch(&agent, &upload_url, body, gzip, rows[i]) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e.context(format!("batch {i}")));
                        }
                        round_trips.push(t.elapsed());
                    }
                    Ok(round_trips)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(anyhow!("an uploader panicked"))))
            .collect()
    });
    let wall = started.elapsed();
    let mut round_trips = Vec::with_capacity(bodies.len());
    for r in per_thread {
        round_trips.extend(r?);
    }
    Ok(UploadRun { wall, round_trips })
}

fn post_batch(agent: &ureq::Agent, url: &str, body: &[u8], gzip: bool, rows: usize) -> Result<()> {
    let mut req = agent.post(url).header("Content-Type", "application/x-ndjson");
    if gzip {
        req = req.header("Content-Encoding", "gzip");
    }
    let mut resp = req.send(body).context("POST /upload")?;
    let status = resp.status();
    let answer = resp.body_mut().read_to_string().context("reading the /upload answer")?;
    ensure!(status == 200, "POST /upload answered {status}: {answer}");
    let accepted = serde_json::from_str::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v["accepted"].as_u64())
        .with_context(|| format!("POST /upload answered {answer:?}, not {{\"accepted\": N}}"))?;
    ensure!(accepted == rows as u64, "POST /upload accepted {accepted} of {rows} rows");
    Ok(())
}

/// `GET /query?<param>=<value>&limit=100` for each value; returns the latencies (request sent
/// to body read; decoding and checking come after the clock stops). The first value is asked
/// once more beforehand, untimed, to warm caches and prepared statements.
fn time_queries(
    url: &str,
    param: &str,
    values: &[String],
    matches: impl Fn(&TrafficLog, &str) -> bool,
) -> Result<Vec<Duration>> {
    let agent = http();
    let query_url = format!("{url}/query");
    let ask = |value: &str| -> Result<(Duration, String)> {
        let t = Instant::now();
        let mut resp = agent
            .get(&query_url)
            .query(param, value)
            .query("limit", "100")
            .call()
            .with_context(|| format!("GET /query?{param}={value}"))?;
        let status = resp.status();
        let body = resp.body_mut().read_to_string().context("reading the /query answer")?;
        let elapsed = t.elapsed();
        ensure!(status == 200, "GET /query?{param}={value} answered {status}: {body}");
        Ok((elapsed, body))
    };
    if let Some(first) = values.first() {
        ask(first)?;
    }
    let mut samples = Vec::with_capacity(values.len());
    for value in values {
        let (elapsed, body) = ask(value)?;
        let answer: QueryResponse = serde_json::from_str(&body)
            .with_context(|| format!("GET /query?{param}={value} answered something else than records"))?;
        ensure!(!answer.records.is_empty(), "GET /query?{param}={value} found nothing; the workload has it");
        ensure!(
            answer.records.iter().all(|r| matches(r, value)),
            "GET /query?{param}={value} returned a record that does not match"
        );
        samples.push(elapsed);
    }
    Ok(samples)
}

// ------------------------------------------------------------------------------------------------
// The engine's floor: the same rows in-process, into the server's own (empty) schema

/// Table columns in the order the server creates them: `seq`, then the record's columns in
/// the order they were added (liteobs_model::columns, which the server's schema follows);
/// checked against the file the server creates, so a schema change fails loudly here.
static COLUMNS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| std::iter::once("seq").chain(columns::in_order_added().map(|c| c.name)).collect());

/// A row's values as the server binds them: `seq`, then each column's stored form.
fn stored_row(seq: i64, r: &TrafficLog) -> impl Iterator<Item = Stored<'_>> {
    std::iter::once(Stored::Int(seq)).chain(columns::in_order_added().map(move |c| c.get(r).stored()))
}

/// A stored value bound by rusqlite or duckdb.
struct Bind<'a>(Stored<'a>);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{Null, ToSqlOutput};
        Ok(match &self.0 {
            Stored::Int(n) => ToSqlOutput::from(*n),
            Stored::Text(s) => ToSqlOutput::from(s.as_ref()),
            Stored::Null => ToSqlOutput::from(Null),
        })
    }
}

/// Writes the rows as CSV in [`COLUMNS`] order (unknown values as empty fields), for the
/// engines' own bulk loaders.
fn write_csv(dir: &Path, records: &[TrafficLog]) -> Result<PathBuf> {
    let path = dir.join("rows.csv");
    let t = Instant::now();
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, file));
    for (seq, r) in (1i64..).zip(records) {
        w.write_record(stored_row(seq, r).map(|v| match v {
            Stored::Int(n) => n.to_string(),
            Stored::Text(s) => s.into_owned(),
            Stored::Null => String::new(),
        }))
        .with_context(|| format!("writing {}", path.display()))?;
    }
    w.flush().with_context(|| format!("writing {}", path.display()))?;
    progress(format_args!(
        "wrote {} for the bulk loaders in {:.1} s",
        path.display(),
        t.elapsed().as_secs_f64()
    ));
    Ok(path)
}

/// An empty database file created by the server itself; each reference load starts from a
/// copy of it.
struct Template {
    dir: PathBuf,
    file: PathBuf,
}

impl Template {
    fn create(backend: Backend, scratch: &Path) -> Result<Template> {
        let dir = scratch.join(format!("{}-template", backend.name()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join(backend.file_name());
        let server = Server::try_start(backend.name(), &file, None, None)
            .with_context(|| format!("starting the {} server to create the schema", backend.name()))?;
        let status = server.try_stop()?;
        ensure!(status.success(), "{} server exited with {status} on SIGTERM", backend.name());
        Ok(Template { dir, file })
    }

    /// A fresh copy (with its WAL, if the engine left one) named after `what`.
    fn copy(&self, what: &str) -> Result<PathBuf> {
        let dir = self.dir.with_file_name(format!(
            "{}-{what}",
            self.dir.file_name().and_then(|n| n.to_str()).unwrap_or("copy")
        ));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for suffix in ["", ".wal", "-wal"] {
            let from = PathBuf::from(format!("{}{suffix}", self.file.display()));
            if from.exists() {
                let to = dir.join(format!(
                    "{}{suffix}",
                    self.file.file_name().and_then(|n| n.to_str()).unwrap_or("db")
                ));
                std::fs::copy(&from, &to)
                    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            }
        }
        Ok(dir.join(self.file.file_name().context("template file has no name")?))
    }
}

fn reference_runs(
    config: &Config,
    backend: Backend,
    scratch: &Path,
    csv: &Path,
    records: &[TrafficLog],
    report: &mut Report,
) -> Result<()> {
    let template = Template::create(backend, scratch)?;
    let mut measure = |what: &str, path: String, load: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
        let db = template.copy(what)?;
        progress(format_args!("{}: {path}", backend.name()));
        let t = Instant::now();
        load(&db).with_context(|| format!("{}: {path}", backend.name()))?;
        let secs = t.elapsed().as_secs_f64();
        let stored = count_rows(backend, &db)?;
        ensure!(stored == records.len() as u64, "{}: {path} stored {stored} rows", backend.name());
        report.ingest.push(Ingest { backend, path, rows: records.len(), secs });
        if let Some(dir) = db.parent() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        Ok(())
    };
    let batch = config.batch;
    match backend {
        Backend::Sqlite => {
            check_sqlite_columns(&template.file)?;
            measure("one-tx", "in-process rusqlite, 1 transaction".into(), &|db| {
                sqlite_insert(db, records, records.len())
            })?;
            measure("per-batch", format!("in-process rusqlite, 1 transaction per {batch} rows"), &|db| {
                sqlite_insert(db, records, batch)
            })?;
            // What the secondary indexes cost (dropping them from the empty table takes no time).
            measure(
                "per-batch-no-index",
                format!("in-process rusqlite, 1 transaction per {batch} rows, secondary indexes dropped"),
                &|db| {
                    sqlite_drop_indexes(db)?;
                    sqlite_insert(db, records, batch)
                },
            )?;
            if sqlite_shell_available() {
                measure("shell-import", "sqlite3 shell `.import --csv`, 1 transaction".into(), &|db| {
                    sqlite_shell_import(db, csv)
                })?;
            } else {
                progress(format_args!("no `sqlite3` shell on PATH (apt install sqlite3): skipping .import"));
            }
        }
        #[cfg(feature = "duckdb")]
        Backend::Duckdb => {
            duckdb_ref::check_columns(&template.file)?;
            measure("one-tx", "in-process Appender, 1 transaction".into(), &|db| {
                duckdb_ref::append(db, records, records.len())
            })?;
            measure("per-batch", format!("in-process Appender, 1 transaction per {batch} rows"), &|db| {
                duckdb_ref::append(db, records, batch)
            })?;
            measure("arrow-one-tx", "in-process Appender, Arrow columns, 1 transaction".into(), &|db| {
                duckdb_ref::append_arrow(db, records, records.len())
            })?;
            measure(
                "arrow-per-batch",
                format!("in-process Appender, Arrow columns, 1 transaction per {batch} rows"),
                &|db| duckdb_ref::append_arrow(db, records, batch),
            )?;
            measure("copy-csv", "in-process `COPY FROM` CSV file".into(), &|db| {
                duckdb_ref::copy_csv(db, csv)
            })?;
        }
        #[cfg(not(feature = "duckdb"))]
        Backend::Duckdb => bail!("built without the `duckdb` feature"),
    }
    std::fs::remove_dir_all(&template.dir).with_context(|| format!("removing {}", template.dir.display()))?;
    Ok(())
}

fn check_sqlite_columns(db: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('traffic_logs') ORDER BY cid")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    ensure!(
        names == *COLUMNS,
        "the server's SQLite table has columns {names:?}; update COLUMNS in bench-store"
    );
    Ok(())
}

/// The server's INSERT, without HTTP and JSON: one prepared statement, a transaction every
/// `tx_rows` rows, the server's pragmas (WAL is already set in the file).
fn sqlite_insert(db: &Path, records: &[TrafficLog], tx_rows: usize) -> Result<()> {
    let mut conn = rusqlite::Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let insert = format!(
        "INSERT INTO traffic_logs ({}) VALUES ({})",
        COLUMNS.join(", "),
        (1..=COLUMNS.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
    );
    let mut seq = 1i64;
    for chunk in records.chunks(tx_rows) {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&insert)?;
            for r in chunk {
                stmt.execute(rusqlite::params_from_iter(stored_row(seq, r).map(Bind)))?;
                seq += 1;
            }
        }
        tx.commit()?;
    }
    Ok(())
}

fn sqlite_drop_indexes(db: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    let names = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'traffic_logs' AND sql IS NOT NULL")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for name in names {
        conn.execute_batch(&format!("DROP INDEX \"{name}\""))?;
    }
    Ok(())
}

fn sqlite_shell_available() -> bool {
    Command::new("sqlite3")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `sqlite3` shell's CSV import (one transaction). Unknown values arrive as empty strings,
/// not NULL, so the file is for timing only, not for the server.
fn sqlite_shell_import(db: &Path, csv: &Path) -> Result<()> {
    let script = format!(".bail on\n.import --csv '{}' traffic_logs\n", csv.display());
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running sqlite3")?;
    child
        .stdin
        .take()
        .context("sqlite3 has no stdin")?
        .write_all(script.as_bytes())
        .context("writing to sqlite3")?;
    let out = child.wait_with_output().context("waiting for sqlite3")?;
    ensure!(out.status.success(), "sqlite3 .import failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

#[cfg(feature = "duckdb")]
mod duckdb_ref {
    //! The DuckDB reference loads (compiled only with the `duckdb` feature).

    use std::path::Path;

    use anyhow::{Context, Result, ensure};
    use duckdb::{Connection, params};
    use liteobs_model::TrafficLog;

    use std::time::{Duration, Instant};

    use super::{Bind, COLUMNS, Key, QUERY_ROWS, Stored, stored_row};

    impl duckdb::ToSql for Bind<'_> {
        fn to_sql(&self) -> duckdb::Result<duckdb::types::ToSqlOutput<'_>> {
            use duckdb::types::{Null, ToSqlOutput};
            Ok(match &self.0 {
                Stored::Int(n) => ToSqlOutput::from(*n),
                Stored::Text(s) => ToSqlOutput::from(s.as_ref()),
                Stored::Null => ToSqlOutput::from(Null),
            })
        }
    }

    pub fn check_columns(db: &Path) -> Result<()> {
        let conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
        let mut stmt = conn.prepare(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'traffic_logs' \
             ORDER BY ordinal_position",
        )?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<duckdb::Result<Vec<_>>>()?;
        ensure!(
            names == *COLUMNS,
            "the server's DuckDB table has columns {names:?}; update COLUMNS in bench-store"
        );
        Ok(())
    }

    /// The server's Appender load, without HTTP and JSON: a transaction every `tx_rows` rows.
    pub fn append(db: &Path, records: &[TrafficLog], tx_rows: usize) -> Result<()> {
        let mut conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
        let mut seq = 1i64;
        for chunk in records.chunks(tx_rows) {
            let tx = conn.transaction()?;
            {
                let mut app = tx.appender("traffic_logs")?;
                for r in chunk {
                    app.append_row(duckdb::appender_params_from_iter(stored_row(seq, r).map(Bind)))?;
                    seq += 1;
                }
                app.flush()?;
            }
            tx.commit()?;
        }
        Ok(())
    }

    /// The server's columnar load: each `tx_rows` rows as one Arrow record batch in the
    /// table's types (INTEGER as Int32, BIGINT as Int64, TEXT as Utf8), one transaction each.
    pub fn append_arrow(db: &Path, records: &[TrafficLog], tx_rows: usize) -> Result<()> {
        use duckdb::arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray};
        use duckdb::arrow::datatypes::{Field, Schema};
        use duckdb::arrow::record_batch::RecordBatch;
        use liteobs_model::columns::{self, Kind};
        use std::sync::Arc;

        let mut conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
        let mut seq = 1i64;
        for chunk in records.chunks(tx_rows) {
            let mut arrays: Vec<ArrayRef> =
                vec![Arc::new(Int64Array::from_iter_values(seq..seq + chunk.len() as i64))];
            for c in columns::in_order_added() {
                let values = chunk.iter().map(|r| c.get(r));
                arrays.push(match c.kind {
                    Kind::U16 => Arc::new(
                        values
                            .map(|v| v.as_int().and_then(|n| i32::try_from(n).ok()))
                            .collect::<Int32Array>(),
                    ),
                    Kind::Ip | Kind::Text => Arc::new(values.map(|v| v.as_text()).collect::<StringArray>()),
                    _ => Arc::new(values.map(|v| v.as_int()).collect::<Int64Array>()),
                });
            }
            let fields: Vec<Field> = COLUMNS
                .iter()
                .zip(&arrays)
                .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
                .collect();
            let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
            let tx = conn.transaction()?;
            {
                let mut app = tx.appender("traffic_logs")?;
                app.append_record_batch(batch)?;
                app.flush()?;
            }
            tx.commit()?;
            seq += chunk.len() as i64;
        }
        Ok(())
    }

    /// DuckDB's own CSV reader, the fastest load path of a DuckDB built without extensions.
    pub fn copy_csv(db: &Path, csv: &Path) -> Result<()> {
        let conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
        let file = csv.display().to_string().replace('\'', "''");
        conn.execute_batch(&format!(
            "COPY traffic_logs FROM '{file}' (FORMAT csv, HEADER false, DELIMITER ',', QUOTE '\"', ESCAPE '\"')"
        ))?;
        Ok(())
    }

    pub fn query_latency(db: &Path, keys: &[Key]) -> Result<Vec<Duration>> {
        let conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
        let run = |key: &Key| -> Result<Duration> {
            let t = Instant::now();
            let mut stmt = conn.prepare_cached(&key.sql())?;
            let mut rows = match key {
                Key::Pid(p) => stmt.query(params![p, p, QUERY_ROWS])?,
                Key::Ip(ip) => stmt.query(params![ip, ip, QUERY_ROWS])?,
            };
            let mut n = 0;
            while let Some(row) = rows.next()? {
                for c in 0..COLUMNS.len() {
                    let _: duckdb::types::Value = row.get(c)?;
                }
                n += 1;
            }
            ensure!(n > 0, "no rows");
            Ok(t.elapsed())
        };
        keys.first().map(&run).transpose()?;
        keys.iter().map(run).collect()
    }

    pub fn explain(db: &Path, key: &Key) -> Result<String> {
        let conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
        let mut stmt = conn.prepare(&format!("EXPLAIN ANALYZE {}", key.sql()))?;
        let mut rows = match key {
            Key::Pid(p) => stmt.query(params![p, p, QUERY_ROWS])?,
            Key::Ip(ip) => stmt.query(params![ip, ip, QUERY_ROWS])?,
        };
        let mut plan = String::new();
        while let Some(row) = rows.next()? {
            plan.push_str(&row.get::<_, String>(1)?);
            plan.push('\n');
        }
        Ok(plan)
    }

    pub fn count(db: &Path) -> Result<u64> {
        let conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
        Ok(conn.query_row("SELECT count(*) FROM traffic_logs", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

fn count_rows(backend: Backend, db: &Path) -> Result<u64> {
    match backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
            Ok(conn.query_row("SELECT count(*) FROM traffic_logs", [], |r| r.get::<_, i64>(0))? as u64)
        }
        #[cfg(feature = "duckdb")]
        Backend::Duckdb => duckdb_ref::count(db),
        #[cfg(not(feature = "duckdb"))]
        Backend::Duckdb => bail!("built without the `duckdb` feature"),
    }
}

/// Bytes of the database file and its WAL.
fn db_size(db: &Path) -> u64 {
    ["", ".wal", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum()
}

// ------------------------------------------------------------------------------------------------
// Report

struct Ingest {
    backend: Backend,
    path: String,
    rows: usize,
    secs: f64,
}

struct Latency {
    backend: Backend,
    query: String,
    /// Rows in the table queried.
    rows: usize,
    samples: Vec<Duration>,
}

#[derive(Default)]
struct Report {
    ingest: Vec<Ingest>,
    queries: Vec<Latency>,
    notes: Vec<String>,
    /// One-minute load average when the run started and when it ended: on a shared machine,
    /// the hint that other work competed with the measurement.
    load: [String; 2],
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile (`q` in 0..=1) of unsorted samples; zero when there are none.
fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// 1234567 → "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    fn print(&self, config: &Config, bodies: &Bodies, decode: &DecodeCost) {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        println!();
        println!(
            "bench-store: {} rows{}, batches of {}, uploaders {:?}, seed {}; {cores} cores, kernel {}; \
             load average {} at start, {} at end",
            thousands(config.rows as u64),
            if config.exchange_ids { " with exchange ids" } else { "" },
            config.batch,
            config.uploaders,
            config.seed,
            kernel.trim(),
            self.load[0],
            self.load[1],
        );
        println!();
        println!("| backend | path | rows | seconds | rows/s |");
        println!("|---|---|---:|---:|---:|");
        for i in &self.ingest {
            println!(
                "| {} | {} | {} | {:.2} | {} |",
                i.backend.name(),
                i.path,
                thousands(i.rows as u64),
                i.secs,
                thousands((i.rows as f64 / i.secs) as u64)
            );
        }
        if !self.queries.is_empty() {
            println!();
            println!(
                "| backend | query (HTTP, client-side) | table rows | runs | p50 ms | p95 ms | max ms |"
            );
            println!("|---|---|---:|---:|---:|---:|---:|");
            for q in &self.queries {
                println!(
                    "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} |",
                    q.backend.name(),
                    q.query,
                    thousands(q.rows as u64),
                    q.samples.len(),
                    ms(percentile(&q.samples, 0.50)),
                    ms(percentile(&q.samples, 0.95)),
                    ms(percentile(&q.samples, 1.0)),
                );
            }
        }
        println!();
        let rows = config.rows as f64;
        println!(
            "- client side (not in the figures above): NDJSON {:.0} B/row, {:.2} µs/row to serialize; \
             gzip (fast) {:.0} B/row, {:.2} µs/row to compress",
            bodies.plain_bytes as f64 / rows,
            bodies.serialize_secs * 1e6 / rows,
            bodies.gzip_bytes as f64 / rows,
            bodies.gzip_secs * 1e6 / rows,
        );
        println!(
            "- server side before the store (in-process, 1 thread): gunzip {:.2} µs/row, \
             NDJSON decode {:.2} µs/row",
            decode.gunzip_secs * 1e6 / rows,
            decode.decode_secs * 1e6 / rows,
        );
        for note in &self.notes {
            println!("- {note}");
        }
    }
}
