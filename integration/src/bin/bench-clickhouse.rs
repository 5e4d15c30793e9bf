//! ClickHouse against DuckDB through the real `liteobs-server` (issue 15): ingest rows/s through
//! `POST /upload` with one and with two servers on one ClickHouse, beside one DuckDB server, and
//! beside ClickHouse's own floor (an `INSERT ... SELECT` copy of the same rows inside the
//! engine); then, on `--query-rows` rows, the latency of `GET /query` by PID, by address, by a
//! one-minute range and by status class, and of `/stats?group_by=server,route` over every row,
//! with the plain statement sent to ClickHouse directly as its floor. One ClickHouse server
//! (`store::clickhouse::testserver`, data under `--dir`), one machine: the figures compare
//! engines on the same load, not a cluster's capacity.
//!
//!     bench-clickhouse --rows 1000000 --uploaders 4 --query-rows 10000000

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use liteobs_integration::{Server, http};
use liteobs_model::TrafficLog;
use liteobs_server::store::clickhouse::testserver;
use rand::{Rng, SeedableRng};

#[derive(Debug, Parser)]
struct Config {
    /// Rows uploaded in each ingest run.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Rows per upload body (the agent's batch).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent uploaders.
    #[arg(long, default_value_t = 4)]
    uploaders: usize,
    /// Rows of the query runs (0: no query runs).
    #[arg(long, default_value_t = 10_000_000)]
    query_rows: usize,
    /// Queries of each kind (different keys), after one warm-up each.
    #[arg(long, default_value_t = 30)]
    queries: usize,
    #[arg(long, default_value_t = 20261203)]
    seed: u64,
    /// Where the DuckDB file goes (ClickHouse's data is in a temporary directory of its own).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
}

fn progress(msg: std::fmt::Arguments) {
    eprintln!("bench-clickhouse: {msg}");
}

/// A cluster's traffic: 20 nodes, Zipf-ish PIDs and servers, 5xx on 2 %, `ts` one minute of
/// traffic per 60 000 rows from 2026-12-01.
fn workload(first: usize, rows: usize, seed: u64) -> Vec<TrafficLog> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ first as u64);
    let start = chrono::DateTime::from_timestamp(1_764_547_200, 0).unwrap_or_default();
    let methods = ["GET", "GET", "GET", "POST", "PUT", "DELETE"];
    (first..first + rows)
        .map(|i| {
            let server = (rng.random::<f64>().powi(3) * 50.0) as u32;
            let client_pid = 1000 + (rng.random::<f64>().powi(2) * 200.0) as u32;
            let status = match rng.random_range(0..100) {
                0 | 1 => 503,
                2..=5 => 404,
                _ => 200,
            };
            let ts = start + chrono::Duration::microseconds(i64::try_from(i).unwrap_or(0) * 1000);
            let mut r: TrafficLog = serde_json::from_value(serde_json::json!({
                "ts": ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "src_ip": format!("10.{}.{}.{}", i % 20, (client_pid / 250) % 250, client_pid % 250),
                "src_port": 30000 + (i % 30000),
                "dst_ip": format!("10.100.{}.{}", server / 250, server % 250), "dst_port": 8080,
                "method": methods[i % methods.len()],
                "path": format!("/api/v1/items/{}", rng.random_range(0..5000)),
                "status": status, "latency_us": rng.random_range(100..50_000u64),
                "req_bytes": rng.random_range(0..2000u64), "resp_bytes": rng.random_range(0..20_000u64),
                "src_pid": client_pid, "src_comm": "client",
                "dst_pid": 50_000 + server, "dst_comm": format!("svc-{server}"),
                "node": format!("node-{}", i % 20),
            }))
            .unwrap_or_else(|e| panic!("record {i}: {e}"));
            if i % 5 == 0 {
                r.dst_namespace = Some("shop".into());
                r.dst_pod = Some(format!("svc-{server}-7d9f"));
            }
            r
        })
        .collect()
}

fn encode(records: &[TrafficLog], batch: usize) -> Result<Vec<Vec<u8>>> {
    records
        .chunks(batch)
        .map(|c| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            for r in c {
                serde_json::to_writer(&mut gz, r)?;
                gz.write_all(b"\n")?;
            }
            Ok(gz.finish()?)
        })
        .collect()
}

/// Uploads every body once, round-robin over `urls`, from `uploaders` threads; rows/s.
fn ingest(
    urls: &[String],
    bodies: &Arc<Vec<Vec<u8>>>,
    rows: usize,
    uploaders: usize,
    tag: &str,
) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..uploaders)
        .map(|_| {
            let (next, bodies, urls, tag) =
                (Arc::clone(&next), Arc::clone(bodies), urls.to_vec(), tag.to_owned());
            std::thread::spawn(move || -> Result<()> {
                let agent = http();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { return Ok(()) };
                    let url = &urls[i % urls.len()];
                    let resp = agent
                        .post(&format!("{url}/upload"))
                        .header("Content-Type", "application/x-ndjson")
                        .header("Content-Encoding", "gzip")
                        .header(liteobs_model::BATCH_ID_HEADER, &format!("{tag}-{i}"))
                        .send(body.as_slice())
                        .context("upload")?;
                    ensure!(resp.status() == 200, "upload {i}: {}", resp.status());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("an uploader panicked"))??;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

fn percentiles(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v.get(((v.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
    format!("{:.1} / {:.1} / {:.1}", at(0.5), at(0.95), v.last().copied().unwrap_or(0.0))
}

fn timed(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

fn get(url: &str) -> Result<()> {
    let resp = http().get(url).call().with_context(|| url.to_owned())?;
    ensure!(resp.status() == 200, "{url}: {}", resp.status());
    resp.into_body().read_to_vec()?;
    Ok(())
}

fn ch(node: &testserver::Node, db: &str, sql: &str) -> Result<String> {
    let resp = http()
        .post(&format!("{}/?database={db}", node.url()))
        .send(sql.as_bytes())
        .with_context(|| sql.to_owned())?;
    ensure!(resp.status() == 200, "{sql}: {}", resp.status());
    Ok(resp.into_body().read_to_string()?)
}

fn server(kind: &str, dir: &std::path::Path, flags: &[&str]) -> Result<Server> {
    Server::try_start_with(kind, &dir.join("liteobs.duckdb"), None, None, flags)
}

fn main() -> Result<()> {
    let config = Config::parse();
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("LITEOBS_LOG", "warn") };
    ensure!(!testserver::unavailable("bench-clickhouse"), "clickhouse-server is needed");
    let node = testserver::single();
    let version = ch(node, "default", "SELECT version()")?.trim().to_owned();
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .next()
            .unwrap_or("?")
            .to_owned()
    };
    println!(
        "{} UTC, ClickHouse {version}, seed {}, {} rows per ingest run in bodies of {}, {} uploaders; load {} at start",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        config.seed,
        config.rows,
        config.batch,
        config.uploaders,
        load()
    );
    let records = workload(0, config.rows, config.seed);
    let bodies = Arc::new(encode(&records, config.batch)?);
    let scratch = tempfile::tempdir_in(&config.dir)?;

    println!("\n| run | rows/s through `/upload` |\n|---|---|");
    for (n, name) in [(1usize, "ClickHouse, one liteobs-server"), (2, "ClickHouse, two liteobs-servers")] {
        let db = format!("bench_ingest_{n}");
        ch(node, "default", &format!("CREATE DATABASE {db}"))?;
        let servers: Vec<Server> = (0..n)
            .map(|i| {
                let r = i.to_string();
                server(
                    "clickhouse",
                    scratch.path(),
                    &["-clickhouse-url", &node.url(), "-clickhouse-database", &db, "-clickhouse-replica", &r],
                )
            })
            .collect::<Result<_>>()?;
        let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
        progress(format_args!("{name}: uploading"));
        let rate = ingest(&urls, &bodies, config.rows, config.uploaders, &db)?;
        println!("| {name} | {rate:.0} |");
        if n == 1 {
            ch(node, &db, "CREATE TABLE floor AS traffic_logs")?;
            let ms = timed(|| ch(node, &db, "INSERT INTO floor SELECT * FROM traffic_logs").map(drop))?;
            println!(
                "| ClickHouse's floor: `INSERT INTO floor SELECT * FROM traffic_logs` | {:.0} |",
                config.rows as f64 / ms * 1000.0
            );
        }
        drop(servers);
    }
    let duck_dir = scratch.path().join("duckdb-ingest");
    std::fs::create_dir(&duck_dir)?;
    let duck = server("duckdb", &duck_dir, &[])?;
    progress(format_args!("duckdb: uploading"));
    let rate = ingest(std::slice::from_ref(&duck.url), &bodies, config.rows, config.uploaders, "duck")?;
    println!("| DuckDB, one liteobs-server (the same bodies) | {rate:.0} |");
    drop(duck);
    println!("\nload {} at the end of the ingest runs", load());
    if config.query_rows == 0 {
        return Ok(());
    }

    progress(format_args!("query runs: {} rows", config.query_rows));
    // Made and encoded a chunk at a time (the records of 10 M rows would take over 10 GiB);
    // every 1 000th record is kept to pick the keys from.
    let mut records = Vec::new();
    let mut bodies = Vec::new();
    for first in (0..config.query_rows).step_by(100_000) {
        let chunk = workload(first, 100_000.min(config.query_rows - first), config.seed + 1);
        bodies.extend(encode(&chunk, 10_000)?);
        records.extend(chunk.into_iter().step_by(1000));
    }
    let bodies = Arc::new(bodies);
    ch(node, "default", "CREATE DATABASE bench_query")?;
    let chs = server(
        "clickhouse",
        scratch.path(),
        &["-clickhouse-url", &node.url(), "-clickhouse-database", "bench_query"],
    )?;
    let fill_ch = ingest(std::slice::from_ref(&chs.url), &bodies, config.query_rows, config.uploaders, "q")?;
    let duck_dir = scratch.path().join("duckdb-query");
    std::fs::create_dir(&duck_dir)?;
    let duck = server("duckdb", &duck_dir, &[])?;
    let fill_duck =
        ingest(std::slice::from_ref(&duck.url), &bodies, config.query_rows, config.uploaders, "q")?;
    drop(bodies);
    let ch_bytes: u64 = ch(node, "bench_query", "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = 'bench_query' AND table = 'traffic_logs'")?
        .trim()
        .parse()
        .unwrap_or(0);
    let duck_bytes = std::fs::metadata(duck_dir.join("liteobs.duckdb")).map_or(0, |m| m.len());
    let millions = config.query_rows as f64 / 1e6;
    println!(
        "\n{} rows filled through `/upload` (bodies of 10 000): ClickHouse {fill_ch:.0} rows/s, {:.1} MiB per million rows; DuckDB {fill_duck:.0} rows/s, {:.1} MiB per million rows",
        config.query_rows,
        ch_bytes as f64 / millions / 1048576.0,
        duck_bytes as f64 / millions / 1048576.0
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed + 2);
    let t0 = records.first().map(|r| r.ts).unwrap_or_default();
    let span = records.last().map(|r| r.ts).unwrap_or_default() - t0;
    let mut kinds: Vec<(&str, Vec<String>, Vec<String>)> = Vec::new();
    let pick = |rng: &mut rand::rngs::StdRng| records[rng.random_range(0..records.len())].clone();
    let (mut q, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..=config.queries {
        let pid = pick(&mut rng).src_pid.unwrap_or(0);
        q.push(format!("pid={pid}"));
        plain.push(format!("(src_pid = {pid} OR dst_pid = {pid})"));
    }
    kinds.push(("by PID", q, plain));
    let (mut q, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..=config.queries {
        let ip = pick(&mut rng).dst_ip;
        q.push(format!("ip={ip}"));
        plain.push(format!("(src_ip = '{ip}' OR dst_ip = '{ip}')"));
    }
    kinds.push(("by IP", q, plain));
    let (mut q, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..=config.queries {
        let from = t0 + chrono::Duration::seconds(rng.random_range(0..span.num_seconds().max(61) - 60));
        let until = from + chrono::Duration::seconds(60);
        let f = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        q.push(format!("since={}&until={}", f(from), f(until)));
        plain.push(format!("ts >= {} AND ts < {}", from.timestamp_micros(), until.timestamp_micros()));
    }
    kinds.push(("by time range (1 min)", q, plain));
    let statuses = ["5xx", "4xx", "2xx"];
    let ranges = ["status BETWEEN 500 AND 599", "status BETWEEN 400 AND 499", "status BETWEEN 200 AND 299"];
    kinds.push((
        "by status class",
        (0..=config.queries).map(|i| format!("status={}", statuses[i % 3])).collect(),
        (0..=config.queries).map(|i| ranges[i % 3].to_owned()).collect(),
    ));
    println!(
        "\np50 / p95 / max ms over {} keys each, limit 100, newest first. Plain: the statement sent to ClickHouse directly, without the visibility rule.\n",
        config.queries
    );
    println!(
        "| query | ClickHouse `/query` | ClickHouse plain statement | DuckDB `/query` |\n|---|---|---|---|"
    );
    for (name, params, plain) in &kinds {
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        for (i, (p, s)) in params.iter().zip(plain).enumerate() {
            let a = timed(|| get(&format!("{}/query?limit=100&{p}", chs.url)))?;
            let b = timed(|| {
                ch(node, "bench_query", &format!("SELECT * FROM traffic_logs WHERE {s} ORDER BY ts DESC, seq DESC LIMIT 100 FORMAT RowBinary")).map(drop)
            })?;
            let c = timed(|| get(&format!("{}/query?limit=100&{p}", duck.url)))?;
            if i > 0 {
                for (t, v) in times.iter_mut().zip([a, b, c]) {
                    t.push(v);
                }
            }
        }
        let [a, b, c] = times;
        println!("| {name} | {} | {} | {} |", percentiles(a), percentiles(b), percentiles(c));
    }
    let window = format!(
        "since={}&until={}",
        (t0 - chrono::Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (t0 + span + chrono::Duration::seconds(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let mut times = [Vec::new(), Vec::new()];
    for i in 0..8 {
        let a = timed(|| get(&format!("{}/stats?group_by=server,route&{window}", chs.url)))?;
        let b = timed(|| get(&format!("{}/stats?group_by=server,route&{window}", duck.url)))?;
        if i > 0 {
            times[0].push(a);
            times[1].push(b);
        }
    }
    let [a, b] = times;
    println!(
        "| `/stats?group_by=server,route`, every row (7 runs) | {} | | {} |",
        percentiles(a),
        percentiles(b)
    );
    println!("\nload {} at the end", load());
    Ok(())
}
