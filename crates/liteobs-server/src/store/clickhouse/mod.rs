//! The ClickHouse backend (`-db-type clickhouse`): the records go to a ClickHouse server or
//! cluster, and the LiteObs server keeps no state of its own, so any number of them can take
//! uploads and queries for one database.
//!
//! Exactly once without transactions: an upload inserts its rows (invisible) and then its
//! *claim*, a row of `liteobs_batches` that makes them visible; of the claims of one batch id
//! only the first counts ([`statements::Tables::visible`]). So a retry of a committed batch is
//! answered as a duplicate (its claim is found first), rows of an upload that failed before its
//! claim are never seen, and two replicas racing with one batch leave one copy: both claim,
//! both then read which claim is first, and the other answers as a duplicate. (If the later
//! claim is the lower one, which takes two replicas whose clocks disagree by more than the
//! upload took, the copy that is shown changes from one to the other; never two, never none.)
//! Concurrent uploads to one server are written as one group ([`writer`]).
//!
//! Not here (yet): the merge of an exchange's halves into one row ([`super::merge`]; both halves
//! are kept as rows), and a follow that sees another replica's rows sooner than
//! [`FOLLOW_LAG_MS`].

mod http;
mod rowbinary;
mod schema;
mod seq;
mod sql;
mod statements;
#[cfg(test)]
mod tests;
#[cfg(any(test, feature = "test-util"))]
pub mod testserver;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use liteobs_model::map::MapResponse;
use liteobs_model::stats::{SortKey, StatsQuery, StatsResponse};
use liteobs_model::{Filter, TrafficLog};
use tokio::sync::watch;

use super::batch_id::BatchId;
use super::retention::{PassReport, RowRetention};
use super::stats_sql;
use super::{Clock, Receipt, Result, SeqPage, SeqRecord, Store, StoreError, StoreSize, WriteStats};
use crate::routes::Router;
use http::{Http, literal};
use seq::SeqClock;
use statements::Tables;

pub use statements::ClickHouse;

/// A failure talking to ClickHouse.
#[derive(Debug, thiserror::Error)]
pub enum ChError {
    #[error("cannot reach ClickHouse at {0}")]
    Unreachable(String),
    #[error("ClickHouse answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error("ClickHouse's answer cannot be read: {0}")]
    Answer(String),
    #[error("cannot make the request: {0}")]
    Request(String),
    #[error("{0} exists but was not made by LiteObs; refusing to use it")]
    Foreign(String),
}

impl ChError {
    /// ClickHouse's "not enough space" (code 243), and the OS's words for it.
    fn is_disk_full(&self) -> bool {
        match self {
            ChError::Server { message, .. } => {
                message.starts_with("Code: 243") || message.contains("No space left on device")
            }
            _ => false,
        }
    }
}

impl From<ChError> for StoreError {
    fn from(e: ChError) -> StoreError {
        if e.is_disk_full() { StoreError::DiskFull(Box::new(e)) } else { StoreError::Backend(Box::new(e)) }
    }
}

/// How a follower on this backend learns of new rows: the claims are read every
/// [`POLL`], and a row is announced once its `seq`'s millisecond is this far behind the
/// clock, so that an upload in flight on another replica (whose `seq`s are lower) has claimed
/// its rows by then.
pub const FOLLOW_LAG_MS: i64 = 1_000;
const POLL: Duration = Duration::from_millis(250);
/// Polls between two refreshes of the size (5 s).
const MEASURE_EVERY: u32 = 20;

/// Where and how to reach ClickHouse (`-clickhouse-*`).
#[derive(Debug, Clone)]
pub struct ClickhouseConfig {
    /// The HTTP interface of every node: one without a cluster; with one, each node the DDL
    /// runs on. Inserts and queries go to the first that answers.
    pub urls: Vec<String>,
    pub database: String,
    pub user: String,
    pub password: Option<String>,
    /// `-clickhouse-cluster`: a cluster of the servers' `remote_servers`, over whose shards the
    /// tables are `Distributed`.
    pub cluster: Option<String>,
    /// This server's replica number in `seq` ([`seq`]); random when not given.
    pub replica: Option<u16>,
    /// Per statement.
    pub timeout: Duration,
}

impl Default for ClickhouseConfig {
    fn default() -> Self {
        ClickhouseConfig {
            urls: vec!["http://127.0.0.1:8123".into()],
            database: "default".into(),
            user: "default".into(),
            password: None,
            cluster: None,
            replica: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What the poller and the store share.
struct Shared {
    http: Http,
    urls: Vec<String>,
    tables: Tables,
    committed: watch::Sender<u64>,
    rows: AtomicU64,
    bytes: AtomicU64,
    stop: AtomicBool,
}

pub struct ClickhouseStore {
    shared: Arc<Shared>,
    seqs: SeqClock,
    /// Group commit ([`writer`]).
    writer: writer::Writer,
    routes: Arc<Router>,
    clock: Clock,
    rows: RowRetention,
    /// Groups written, and the uploads they held.
    transactions: AtomicU64,
    batches: AtomicU64,
    /// The bounds of `POST /sql`, and how many of its queries run now.
    sql: super::SqlLimits,
    sql_in_use: std::sync::atomic::AtomicUsize,
    version: String,
    poller: Option<std::thread::JoinHandle<()>>,
}

/// The batch's 64-bit FNV-1a hash: its shard, and the `batch` of its rows.
fn batch_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Shared {
    /// `sql` on the first node that answers (reads and DDL-free statements only: an insert
    /// is not sent twice).
    fn read(&self, sql: &str) -> std::result::Result<Vec<u8>, ChError> {
        let mut last = None;
        for url in &self.urls {
            match self.http.run(url, sql, None, &[]) {
                Err(e @ ChError::Unreachable(_)) => last = Some(e),
                done => return done,
            }
        }
        Err(last.unwrap_or_else(|| ChError::Request("no ClickHouse URL".into())))
    }

    fn first_url(&self) -> &str {
        self.urls.first().map_or("", String::as_str)
    }

    /// New claims announced, size refreshed.
    fn poll(&self) -> std::result::Result<(), ChError> {
        self.announce()?;
        self.measure()
    }

    /// Announces the newest claimed `seq` old enough for followers ([`FOLLOW_LAG_MS`]).
    fn announce(&self) -> std::result::Result<(), ChError> {
        let watermark = seq::highest_at(seq::now_ms() - FOLLOW_LAG_MS);
        let text = String::from_utf8(self.read(&format!(
            "SELECT max(last_seq) FROM {} WHERE last_seq <= {watermark} FORMAT TabSeparated",
            self.tables.claims
        ))?)
        .map_err(|e| ChError::Answer(e.to_string()))?;
        let newest: u64 = text.trim().parse().unwrap_or(0);
        self.committed.send_if_modified(|c| {
            let moved = newest > *c;
            *c = (*c).max(newest);
            moved
        });
        Ok(())
    }

    /// Refreshes [`Store::size`] from every node's parts.
    fn measure(&self) -> std::result::Result<(), ChError> {
        let mut rows = 0;
        let mut bytes = 0;
        for url in &self.urls {
            let text = self.http.text(
                url,
                &format!(
                    "SELECT sum(rows), sum(bytes_on_disk) FROM system.parts WHERE active AND \
                     database = currentDatabase() AND table = {} FORMAT TabSeparated",
                    literal(self.tables.rows_local.as_bytes())
                ),
            )?;
            let mut f = text.trim().split('\t').map(|s| s.parse::<u64>().unwrap_or(0));
            rows += f.next().unwrap_or(0);
            bytes += f.next().unwrap_or(0);
        }
        self.rows.store(rows, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        Ok(())
    }
}

impl ClickhouseStore {
    /// Connects, checks the server answers, creates or upgrades the tables on every node, and
    /// starts the poller.
    pub fn open(config: &ClickhouseConfig, options: super::StoreOptions) -> Result<ClickhouseStore> {
        if config.urls.is_empty() {
            return Err(StoreError::Backend("no ClickHouse URL given".into()));
        }
        if config.cluster.is_none() && config.urls.len() > 1 {
            return Err(StoreError::Backend(
                "several ClickHouse URLs need -clickhouse-cluster (the tables are then Distributed over its shards)".into(),
            ));
        }
        if !statements::valid_database(&config.database) {
            return Err(StoreError::Backend(
                format!("-clickhouse-database {:?}: use ASCII letters, digits and _", config.database).into(),
            ));
        }
        let http = Http::new(&config.database, &config.user, config.password.as_deref(), config.timeout);
        let tables = Tables::new(config.cluster.is_some(), &config.database);
        let version =
            http.text(&config.urls[0], "SELECT version()").map_err(StoreError::from)?.trim().to_owned();
        let upgrade = schema::prepare(&http, &config.urls, &tables, config.cluster.as_deref()).map_err(
            |e| match e {
                ChError::Foreign(what) => StoreError::ForeignSchema { path: what.into() },
                e => StoreError::from(e),
            },
        )?;
        if !upgrade.added.is_empty() {
            tracing::info!(columns = ?upgrade.added, "added the columns this server knows to traffic_logs");
        }
        if !upgrade.unknown.is_empty() {
            tracing::warn!(columns = ?upgrade.unknown, "traffic_logs has columns of a newer server; this one leaves them NULL");
        }
        let (committed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            http,
            urls: config.urls.clone(),
            tables,
            committed,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        shared.poll().map_err(StoreError::from)?;
        let poller = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("clickhouse-poll".into())
                .spawn(move || {
                    // The size (metrics read it on a scrape) every MEASURE_EVERY polls, not on each.
                    let mut tick = 0u32;
                    while !shared.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(POLL);
                        tick = tick.wrapping_add(1);
                        let polled = if tick.is_multiple_of(MEASURE_EVERY) {
                            shared.poll()
                        } else {
                            shared.announce()
                        };
                        if let Err(e) = polled {
                            tracing::warn!(error = %e, "polling ClickHouse");
                        }
                    }
                })
                .map_err(|e| StoreError::Backend(Box::new(e)))?
        };
        let replica = config.replica.unwrap_or_else(SeqClock::random_replica);
        tracing::info!(%version, url = %shared.first_url(), cluster = ?config.cluster, replica, "ClickHouse store open");
        Ok(ClickhouseStore {
            shared,
            seqs: SeqClock::new(replica),
            writer: writer::Writer::default(),
            routes: options.routes,
            clock: options.clock,
            rows: options.rows,
            transactions: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            sql: options.sql,
            sql_in_use: std::sync::atomic::AtomicUsize::new(0),
            version,
            poller: Some(poller),
        })
    }

    /// The server's version (`SELECT version()`).
    pub fn version(&self) -> &str {
        &self.version
    }

    fn rows(&self, sql: &str) -> Result<Vec<super::sql::RawRow>> {
        let bytes = self.shared.read(sql)?;
        statements::raw_rows(rowbinary::cells(&bytes, &statements::row_ints())?)
    }

    fn grouped(
        &self,
        keys: &[stats_sql::Key],
        sort: SortKey,
        filter: &Filter,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<liteobs_model::stats::Group>> {
        let sql = statements::stats(&self.shared.tables, keys, sort, filter)?;
        let bytes = self.shared.read(&sql)?;
        stats_sql::groups(keys, rowbinary::cells(&bytes, &statements::stats_ints(keys))?, since, until)
    }
}

impl Drop for ClickhouseStore {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.poller.take() {
            let _ = p.join();
        }
    }
}

impl std::fmt::Debug for ClickhouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickhouseStore")
            .field("urls", &self.shared.urls)
            .field("version", &self.version)
            .finish()
    }
}

impl Store for ClickhouseStore {
    fn insert(&self, batch: &[TrafficLog], id: Option<&BatchId>) -> Result<Receipt> {
        self.insert_owned(batch.to_vec(), id.cloned())
    }

    fn insert_owned(&self, batch: Vec<TrafficLog>, id: Option<BatchId>) -> Result<Receipt> {
        self.insert_grouped(batch, id)
    }

    fn write_stats(&self) -> WriteStats {
        WriteStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }

    fn size(&self) -> StoreSize {
        StoreSize {
            rows: self.shared.rows.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
        }
    }

    fn query(&self, filter: &Filter) -> Result<Vec<TrafficLog>> {
        let sql = statements::select(&self.shared.tables, filter)?;
        self.rows(&sql)?.into_iter().map(super::sql::RawRow::into_record).collect()
    }

    fn stats(&self, query: &StatsQuery, now: DateTime<Utc>) -> Result<StatsResponse> {
        stats_sql::stats_answer(query, now, &|k, s, f, a, b| self.grouped(k, s, f, a, b))
    }

    fn map(&self, query: &StatsQuery, now: DateTime<Utc>) -> Result<MapResponse> {
        stats_sql::map_answer::<ClickHouse>(query, now, &|k, s, f, a, b| self.grouped(k, s, f, a, b))
    }

    fn rows_after(&self, filter: &Filter, page: SeqPage) -> Result<Vec<SeqRecord>> {
        let sql = statements::select_seq(&self.shared.tables, filter, page)?;
        let mut out = self
            .rows(&sql)?
            .into_iter()
            .map(|raw| {
                let seq = u64::try_from(raw.seq).unwrap_or(0);
                raw.into_record().map(|record| SeqRecord { seq, record, update: false })
            })
            .collect::<Result<Vec<_>>>()?;
        if page.newest {
            out.reverse();
        }
        Ok(out)
    }

    fn sql(&self, query: &super::SqlQuery) -> std::result::Result<super::SqlAnswer, super::SqlError> {
        self.run_sql(query)
    }

    fn committed(&self) -> watch::Receiver<u64> {
        self.shared.committed.subscribe()
    }

    fn enforce_retention(&self) -> Result<PassReport> {
        if self.rows.is_off() {
            return Ok(PassReport::default());
        }
        retention_pass(&self.shared, self.rows, (self.clock)()).map_err(StoreError::from)
    }
}

/// One day's partition of `traffic_logs` on one node.
struct Day {
    url: String,
    day: chrono::NaiveDate,
    rows: u64,
    bytes: u64,
}

fn parts_by_day(shared: &Shared, table: &str) -> std::result::Result<Vec<Day>, ChError> {
    let mut out = Vec::new();
    for url in &shared.urls {
        let text = shared.http.text(
            url,
            &format!(
                "SELECT partition, sum(rows), sum(bytes_on_disk) FROM system.parts WHERE active AND \
                 database = currentDatabase() AND table = {} GROUP BY partition FORMAT TabSeparated",
                literal(table.as_bytes())
            ),
        )?;
        for line in text.lines() {
            let mut f = line.split('\t');
            let day =
                f.next().map(|p| p.trim_matches('\'')).and_then(|p| p.parse::<chrono::NaiveDate>().ok());
            let rows = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let bytes = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            if let Some(day) = day {
                out.push(Day { url: url.clone(), day, rows, bytes });
            }
        }
    }
    out.sort_by_key(|d| d.day);
    Ok(out)
}

fn drop_day(shared: &Shared, table: &str, d: &Day) -> std::result::Result<(), ChError> {
    let sql = format!("ALTER TABLE {table} DROP PARTITION {}", literal(d.day.to_string().as_bytes()));
    shared.http.run(&d.url, &sql, None, &[]).map(drop)
}

/// Retention on ClickHouse: whole days. A day goes when all of it is older than `max_age`, and
/// the oldest days go while the rows take more than `max_bytes` (the newest day is kept).
/// Dropping a partition removes its files at once: the space is back without a vacuum. The
/// claims of a day go a day after the rows of that day (a claim must outlive its rows).
fn retention_pass(
    shared: &Shared,
    rows: RowRetention,
    now: DateTime<Utc>,
) -> std::result::Result<PassReport, ChError> {
    let started = std::time::Instant::now();
    let mut report = PassReport::default();
    let mut days = parts_by_day(shared, shared.tables.rows_local)?;
    if let Some(age) = rows.max_age {
        let cutoff = (now - age).date_naive();
        for d in days.iter().filter(|d| d.day < cutoff) {
            drop_day(shared, shared.tables.rows_local, d)?;
            report.expired += d.rows;
        }
        days.retain(|d| d.day >= cutoff);
    }
    if let Some(max) = rows.max_bytes {
        let newest = days.last().map(|d| d.day);
        let mut used: u64 = days.iter().map(|d| d.bytes).sum();
        for d in days.iter().filter(|d| Some(d.day) != newest) {
            if used <= max {
                break;
            }
            drop_day(shared, shared.tables.rows_local, d)?;
            report.evicted += d.rows;
            used = used.saturating_sub(d.bytes);
        }
        report.used_bytes = Some(used);
    }
    let oldest_kept = parts_by_day(shared, shared.tables.rows_local)?.first().map(|d| d.day);
    if let Some(keep_from) = oldest_kept.and_then(|d| d.pred_opt()) {
        for d in parts_by_day(shared, shared.tables.claims_local)?.iter().filter(|d| d.day < keep_from) {
            drop_day(shared, shared.tables.claims_local, d)?;
        }
    }
    report.deleting = started.elapsed();
    shared.poll()?;
    Ok(report)
}
