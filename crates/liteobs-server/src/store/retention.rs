//! Row retention: how long exchange records are kept (`-retention`) and how much disk the
//! database may use (`-max-db-size`), and the pass that enforces both.
//!
//! Not the batch-id [`super::Retention`] (how long committed upload ids are remembered): that one
//! prunes `liteobs_batches` inside each upload's transaction; this one deletes rows of
//! `traffic_logs` in the background.
//!
//! A pass deletes in chunks of at most [`CHUNK_ROWS`] rows, oldest `ts` first, each chunk its own
//! short transaction taken through the store's writer (uploads go on between chunks),
//! then gives the freed space back ([`super::driver::Driver::reclaim`]). The size bound is
//! checked on the engine's own count of used pages or blocks plus its write-ahead log, so that it
//! converges whether or not the file itself shrinks. Over the bound, the pass deletes the oldest
//! rows until the estimate is under [`LOW_WATER`] of it, so that a database at its bound is not
//! trimmed by a few rows on every pass.
//!
//! The pure parts (flags, the amount to delete) are here; the SQL runs through [`ChunkWriter`],
//! which [`super::sql_store`] implements over its writer.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::batch_id::parse_age;
use super::driver::{Driver, Reclaim};
use super::sql::Param;
use super::sql_store::SqlStore;
use super::{Result, Store};

/// How long rows are kept and how much space they may take. `None` is no bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRetention {
    /// Rows whose `ts` is older than this (by the store's clock) are deleted.
    pub max_age: Option<chrono::Duration>,
    /// The oldest rows are deleted while the database uses more bytes than this.
    pub max_bytes: Option<u64>,
}

impl RowRetention {
    /// Keeps everything (the store's default, for tests and tools).
    pub const OFF: RowRetention = RowRetention { max_age: None, max_bytes: None };

    /// `-retention`'s default: a week answers "what happened last week" and keeps a busy
    /// cluster's file to a size one disk holds.
    pub const DEFAULT_MAX_AGE: chrono::Duration = chrono::Duration::days(7);

    /// `-max-db-size`'s default, 20 GiB: the figure, about 100 M rows on DuckDB; a bound
    /// that is always there, so that a full disk is not the first limit a server meets.
    pub const DEFAULT_MAX_BYTES: u64 = 20 << 30;

    pub fn is_off(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }
}

/// Rows deleted per transaction: small enough that uploads get the writer between chunks, large
/// enough that a pass over millions of rows ends in seconds (BENCHMARKS.md, "Retention").
pub const CHUNK_ROWS: u64 = 20_000;

/// Over the size bound, a pass deletes until the estimate is under this fraction of it.
pub const LOW_WATER: f64 = 0.9;

/// At most this many delete-then-measure rounds per pass for the size bound: the estimate of
/// bytes per row is refined after each; the next pass goes on if it is still over.
const SIZE_ROUNDS: usize = 4;

/// How often the background task runs a pass (the first runs at start).
pub const PASS_EVERY: Duration = Duration::from_secs(60);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Rows deleted for being older than `max_age`.
    pub expired: u64,
    /// Rows deleted (oldest first) to get under `max_bytes`.
    pub evicted: u64,
    /// Used bytes at the end of the pass, when a size bound is set.
    pub used_bytes: Option<u64>,
    /// Time spent in the deleting chunks and in giving space back (each step holds the
    /// writer for a part of it): what an upload may wait for during a pass.
    pub deleting: Duration,
    pub reclaiming: Duration,
}

/// `step` on `w`, its time added to `spent`.
fn timed<T>(spent: &mut Duration, step: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let out = step();
    *spent += t.elapsed();
    out
}

/// The steps a pass takes, each one short transaction on the store's writer.
pub trait ChunkWriter {
    /// Deletes at most about `limit` rows (more only when rows share the `ts` at the chunk's
    /// edge) with `ts < before` (µs), oldest first; answers how many.
    fn delete_oldest(&self, before: i64, limit: u64) -> Result<u64>;
    /// Gives space freed by deletes back (to the engine's free list, and to the file system
    /// where the engine can); false when that had to wait (the used size is not lower yet).
    fn reclaim(&self) -> Result<bool>;
    /// Bytes in use by the measure `max_bytes` bounds.
    fn used_bytes(&self) -> Result<u64>;
    /// Rows stored.
    fn row_count(&self) -> Result<u64>;
}

/// Most [`Driver::reclaim_step`]s per reclaim (with the default 8 MiB a SQLite step, 80 GiB).
const RECLAIM_STEPS: usize = 10_000;

impl<D: Driver> ChunkWriter for SqlStore<D> {
    /// Rows before the `ts` of the `limit`-th oldest row (or all before `before` when there
    /// are fewer): that `ts` is found on the reader, so the writer is held only for the delete
    /// (SQLite walks its `ts` index; DuckDB skips row groups by their `ts` min/max). A row
    /// older than that `ts` committed in between goes too: it is as old as those deleted.
    fn delete_oldest(&self, before: i64, limit: u64) -> Result<u64> {
        let offset = Param::Int(i64::try_from(limit.saturating_sub(1)).unwrap_or(i64::MAX));
        let edge = self.with_reader(|conn| {
            D::query_int(
                conn,
                "SELECT ts FROM traffic_logs WHERE ts < ? ORDER BY ts LIMIT 1 OFFSET ?",
                &[Param::Int(before), offset],
            )
        })?;
        let params = [Param::Int(before), Param::Int(edge.unwrap_or(before))];
        let n = self.with_writer_at(|conn, last| {
            // The delete may take the rows written last; the next `seq` is read back on open, and
            // a follower's cursor must never see a `seq` given again: remember it first.
            D::execute(conn, super::sql::SET_SEQ_HIGH, &[Param::Text(last.to_string())])?;
            D::execute(conn, "DELETE FROM traffic_logs WHERE ts < ? AND ts <= ?", &params)
        })? as u64;
        self.deleted(n);
        Ok(n)
    }

    fn reclaim(&self) -> Result<bool> {
        for _ in 0..RECLAIM_STEPS {
            D::reclaim_prepare(self.path()).map_err(super::StoreError::Backend)?;
            match self.with_writer(|conn| D::reclaim_step(conn))? {
                Reclaim::More => std::thread::yield_now(),
                Reclaim::Done => return Ok(true),
                Reclaim::Deferred => return Ok(false),
            }
        }
        Ok(false)
    }

    /// On the reader: the measure needs no lock against uploads (a batch committed meanwhile
    /// is measured or not, either is right).
    fn used_bytes(&self) -> Result<u64> {
        self.with_reader(|conn| D::used_bytes(conn, self.path()))
    }

    /// On the reader: SQLite counts by walking an index (about a second at 10 M rows), which
    /// held every upload back when it ran on the writer.
    fn row_count(&self) -> Result<u64> {
        self.with_reader(|conn| D::query_int(conn, "SELECT COUNT(*) FROM traffic_logs", &[]))
            .map(|n| n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }
}

/// One pass over `w` at time `now`: expired rows first, then the size bound.
pub fn pass(w: &impl ChunkWriter, policy: RowRetention, now: DateTime<Utc>) -> Result<PassReport> {
    let mut report = PassReport::default();
    if let Some(age) = policy.max_age {
        let before = now.timestamp_micros().saturating_sub(age.num_microseconds().unwrap_or(i64::MAX));
        report.expired = timed(&mut report.deleting, || delete_rows(w, before, u64::MAX))?;
    }
    let Some(max) = policy.max_bytes else {
        if report.expired > 0 {
            timed(&mut report.reclaiming, || w.reclaim())?;
        }
        return Ok(report);
    };
    // Before measuring: the write-ahead log counts, and a checkpoint empties it.
    timed(&mut report.reclaiming, || w.reclaim())?;
    for _ in 0..SIZE_ROUNDS {
        let used = w.used_bytes()?;
        report.used_bytes = Some(used);
        if used <= max {
            break;
        }
        let excess = rows_over(used, w.row_count()?, max);
        if excess == 0 {
            break;
        }
        report.evicted += timed(&mut report.deleting, || delete_rows(w, i64::MAX, excess))?;
        // Measuring again before the space is back would count the deleted rows twice.
        if !timed(&mut report.reclaiming, || w.reclaim())? {
            break;
        }
    }
    if report.evicted > 0 {
        report.used_bytes = Some(w.used_bytes()?);
    }
    Ok(report)
}

/// Deletes up to `total` rows older than `before`, a chunk per transaction.
fn delete_rows(w: &impl ChunkWriter, before: i64, total: u64) -> Result<u64> {
    let mut deleted = 0u64;
    while deleted < total {
        let n = w.delete_oldest(before, CHUNK_ROWS.min(total - deleted))?;
        if n == 0 {
            break;
        }
        deleted += n;
        // Let a waiting upload take the writer between chunks.
        std::thread::yield_now();
    }
    Ok(deleted)
}

/// Rows to delete so that a database using `used` bytes for `rows` rows gets under
/// [`LOW_WATER`] × `max`, assuming every row costs the average; 0 when `used <= max`.
pub fn rows_over(used: u64, rows: u64, max: u64) -> u64 {
    if used <= max || rows == 0 {
        return 0;
    }
    let target = max as f64 * LOW_WATER;
    let per_row = used as f64 / rows as f64;
    let n = ((used as f64 - target) / per_row).ceil();
    (n as u64).clamp(1, rows)
}

/// `-max-db-size`: a size with an optional unit (`B`, `KB`/`MB`/`GB`/`TB` by 1000,
/// `KiB`/`MiB`/`GiB`/`TiB` by 1024, case-insensitive), or `off`.
pub fn parse_size(s: &str) -> std::result::Result<Option<u64>, String> {
    let t = s.trim();
    if t == "off" {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("{s:?} is not a size (20GiB, 500MB, 1073741824) or off");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(scale).ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes == 0 {
        return Err(format!("{s:?}: a size of 0 would delete every row; use off for no bound"));
    }
    Ok(Some(bytes))
}

/// `-retention`: an age (`90s`, `12h`, `7d`, `2w`), or `off`.
pub fn parse_retention(s: &str) -> std::result::Result<Option<chrono::Duration>, String> {
    if s == "off" {
        return Ok(None);
    }
    parse_age(s).map(Some).map_err(|e| format!("{e}, or off"))
}

/// Runs a pass on `store` now and then every `every`, on a thread of its own, until the store
/// is dropped; `on_pass` is told how each one ended (the metrics count them). A failed pass is
/// logged and tried again at the next tick (a full disk is the usual reason, and the pass is
/// what makes room).
pub fn spawn(
    store: Weak<dyn Store>,
    every: Duration,
    on_pass: impl Fn(&Result<PassReport>) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("retention".into()).spawn(move || {
        loop {
            let Some(s) = store.upgrade() else { return };
            on_pass(&run_once(s));
            std::thread::sleep(every);
        }
    })
}

fn run_once(store: Arc<dyn Store>) -> Result<PassReport> {
    let started = Instant::now();
    let result = store.enforce_retention();
    match &result {
        Ok(r) if r.expired + r.evicted > 0 => tracing::info!(
            expired = r.expired,
            evicted = r.evicted,
            used_bytes = r.used_bytes,
            took_ms = started.elapsed().as_millis() as u64,
            deleting_ms = r.deleting.as_millis() as u64,
            reclaiming_ms = r.reclaiming.as_millis() as u64,
            "retention pass"
        ),
        Ok(r) => tracing::debug!(used_bytes = r.used_bytes, "retention pass: nothing to delete"),
        Err(e) => tracing::warn!(error = %e, "retention pass failed; trying again at the next one"),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_off_parse_and_nonsense_is_refused() {
        let table = [
            ("20GiB", Some(20u64 << 30)),
            ("20gib", Some(20 << 30)),
            ("500MB", Some(500_000_000)),
            ("1073741824", Some(1 << 30)),
            ("4 KiB", Some(4096)),
            ("off", None),
        ];
        for (s, want) in table {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        for bad in ["", "GiB", "-1GiB", "1.5GiB", "20 parsecs", "0", "0GiB", "99999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_retention("off"), Ok(None));
        assert_eq!(parse_retention("7d"), Ok(Some(chrono::Duration::days(7))));
        assert!(parse_retention("soon").is_err());
    }

    #[test]
    fn rows_over_gets_under_the_low_water_mark() {
        assert_eq!(rows_over(100, 10, 100), 0, "at the bound: nothing");
        assert_eq!(rows_over(0, 0, 1), 0);
        // 10 bytes a row, bound 100, target 90: 200 → 90 is 11 rows.
        assert_eq!(rows_over(200, 20, 100), 11);
        assert_eq!(rows_over(1_000_000, 3, 1), 3, "never more than there are");
        assert_eq!(rows_over(101, 1_000_000, 100), 108_911);
    }
}
