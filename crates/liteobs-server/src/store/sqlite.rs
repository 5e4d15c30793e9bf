//! SQLite driver (rusqlite, bundled SQLite): the primitives [`super::sql_store`] builds on.
//!
//! WAL journal so that queries read while a batch is written; one transaction per group of
//! concurrent batches (`BEGIN IMMEDIATE`, so a second process on the file waits rather than interleaves) with a
//! cached prepared INSERT; `synchronous=NORMAL`, which in WAL mode keeps every committed batch
//! across a crash of the server (not of the machine's power). Indexes on (pid, ts) and (ip, ts)
//! for each side keep by-PID and by-IP queries off a full scan, one on `seq` keeps a follower's
//! page after its cursor a short walk; two on `liteobs_batches` keep
//! its pruning off a scan.

use std::borrow::Cow;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use liteobs_model::TrafficLog;
use liteobs_model::columns::{Cell, Stored, Value};
use rusqlite::types::{Null, ToSqlOutput};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params_from_iter};

use super::dialect::Dialect;
use super::driver::{Driver, DynError, Failure, Reclaim, failure_from_text, sidecar_len};
use super::query_plan::QueryPlan;
use super::sandbox::{Answer, SqlError};
use super::sql::{self, Param, RawRow};
use super::sqlite_sandbox;

/// The SQLite engine.
pub struct Sqlite;

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Int(i) => i.to_sql(),
            Param::Text(s) => s.to_sql(),
            Param::Blob(b) => b.to_sql(),
        }
    }
}

/// A column's value bound as its stored type (see [`liteobs_model::columns::Kind`]).
struct Bind<'a>(Value<'a>);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0.stored() {
            Stored::Int(n) => ToSqlOutput::from(n),
            Stored::Text(Cow::Borrowed(s)) => ToSqlOutput::from(s),
            Stored::Text(Cow::Owned(s)) => ToSqlOutput::from(s),
            Stored::Null => ToSqlOutput::from(Null),
        })
    }
}

impl Driver for Sqlite {
    type Conn = Connection;

    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    /// Deferred: the snapshot starts at the first read and takes no write lock.
    const BEGIN_READ: &'static str = "BEGIN";

    const QUERY_PLAN: QueryPlan = QueryPlan::SideIndexes;

    const WAL_SUFFIX: &'static str = "-wal";
    const AFTER_SCHEMA: &'static str = "
        CREATE INDEX IF NOT EXISTS traffic_logs_ts ON traffic_logs (ts, seq);
        CREATE INDEX IF NOT EXISTS traffic_logs_seq ON traffic_logs (seq);
        CREATE INDEX IF NOT EXISTS traffic_logs_src_pid ON traffic_logs (src_pid, ts, seq);
        CREATE INDEX IF NOT EXISTS traffic_logs_dst_pid ON traffic_logs (dst_pid, ts, seq);
        CREATE INDEX IF NOT EXISTS traffic_logs_src_ip ON traffic_logs (src_ip, ts, seq);
        CREATE INDEX IF NOT EXISTS traffic_logs_dst_ip ON traffic_logs (dst_ip, ts, seq);
        CREATE INDEX IF NOT EXISTS traffic_logs_exchange ON traffic_logs (exchange_id)
            WHERE exchange_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS liteobs_batches_committed_at ON liteobs_batches (committed_at);
        CREATE INDEX IF NOT EXISTS liteobs_batches_batch_seq ON liteobs_batches (batch_seq);
    ";

    /// The follower's reads walk `seq` (an index appended at its right edge: the cheapest of the
    /// seven to keep up at ingest).
    const SEQ_INDEX: &'static str = " INDEXED BY traffic_logs_seq";

    const PERCENTILE_DISC: bool = false;

    fn open(path: &Path) -> Result<(Connection, Connection), DynError> {
        let writer = Connection::open(path)?;
        incremental_vacuum_on(&writer, path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        // Every batch updates six indexes at scattered places: their hot pages (the rightmost
        // leaves of each PID's and address's run, the interior pages) must stay cached across
        // transactions, or each insert reads them back. 128 MiB (negative: KiB) holds them for
        // tens of millions of rows; the default 2 MiB does not.
        writer.pragma_update(None, "cache_size", -131_072)?;
        writer.pragma_update(None, "temp_store", "MEMORY")?;
        writer.pragma_update(None, "mmap_size", 268_435_456)?;
        // Checkpoint every 64 MiB of WAL rather than every 4 MiB: fewer, larger copies back.
        writer.pragma_update(None, "wal_autocheckpoint", 16_384)?;
        writer.busy_timeout(Duration::from_secs(5))?;
        let reader = Connection::open(path)?;
        reader.busy_timeout(Duration::from_secs(5))?;
        Ok((writer, reader))
    }

    fn table_exists(conn: &Connection, name: &str) -> Result<bool, DynError> {
        Ok(conn
            .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn execute_batch(conn: &Connection, sql: &str) -> Result<(), DynError> {
        Ok(conn.execute_batch(sql)?)
    }

    fn execute(conn: &Connection, sql: &str, params: &[Param]) -> Result<usize, DynError> {
        Ok(conn.prepare_cached(sql)?.execute(params_from_iter(params))?)
    }

    fn query_int(conn: &Connection, sql: &str, params: &[Param]) -> Result<Option<i64>, DynError> {
        Ok(conn.prepare_cached(sql)?.query_row(params_from_iter(params), |r| r.get(0)).optional()?)
    }

    fn query_text(conn: &Connection, sql: &str, params: &[Param]) -> Result<Option<String>, DynError> {
        Ok(conn.prepare_cached(sql)?.query_row(params_from_iter(params), |r| r.get(0)).optional()?)
    }

    fn append(conn: &Connection, first_seq: i64, batches: &[&[TrafficLog]]) -> Result<(), DynError> {
        static INSERT: LazyLock<String> = LazyLock::new(|| {
            let marks = vec!["?"; liteobs_model::columns::COLUMNS.len() + 1].join(", ");
            format!("INSERT INTO traffic_logs ({}) VALUES ({marks})", sql::column_list())
        });
        let mut stmt = conn.prepare_cached(&INSERT)?;
        for (seq, r) in (first_seq..).zip(batches.iter().flat_map(|b| b.iter())) {
            let row = std::iter::once(Value::Int(seq)).chain(sql::values(r)).map(Bind);
            stmt.execute(params_from_iter(row))?;
        }
        Ok(())
    }

    fn select_cells(
        conn: &Connection,
        sql: &str,
        params: &[Param],
        ints: &[bool],
    ) -> Result<Vec<Vec<Cell>>, DynError> {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params_from_iter(params), |row| {
            ints.iter()
                .enumerate()
                .map(|(i, int)| Ok(sql::read_cell!(row, i, *int)))
                .collect::<rusqlite::Result<Vec<Cell>>>()
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn select(conn: &Connection, sql: &str, params: &[Param]) -> Result<Vec<RawRow>, DynError> {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params_from_iter(params), |row| Ok(sql::read_raw_row!(row)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    type Sandbox = sqlite_sandbox::Sandbox;

    fn sandbox(path: &Path, _reader: &Connection, timeout: Duration) -> Result<Self::Sandbox, DynError> {
        sqlite_sandbox::open(path, timeout)
    }

    fn run_sql(
        sandbox: Self::Sandbox,
        sql: &str,
        _timeout: Duration,
        answer: &mut Answer,
        _checked: bool,
    ) -> Result<(), SqlError> {
        sqlite_sandbox::run(sandbox, sql, answer)
    }

    fn failure(e: &DynError) -> Failure {
        match e.downcast_ref::<rusqlite::Error>().and_then(rusqlite::Error::sqlite_error_code) {
            Some(rusqlite::ErrorCode::DiskFull) => Failure::DiskFull,
            _ => failure_from_text(e),
        }
    }

    /// `PRAGMA incremental_vacuum` in steps of [`RECLAIM_PAGES`] pages (each its own short
    /// transaction), then a `TRUNCATE` checkpoint, which copies the moved pages into the file,
    /// cuts the file to its used pages and empties the WAL file.
    fn reclaim_step(conn: &Connection) -> Result<Reclaim, DynError> {
        let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0));
        if pragma("auto_vacuum")? == AUTO_VACUUM_INCREMENTAL && pragma("freelist_count")? > 0 {
            // The pragma frees one page per step (a result row each): step it to the end.
            let mut stmt = conn.prepare_cached(&format!("PRAGMA incremental_vacuum({RECLAIM_PAGES})"))?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
            return Ok(Reclaim::More);
        }
        // (busy, WAL frames, frames checkpointed); busy = 1 when a reader kept it from finishing.
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(if busy == 0 { Reclaim::Done } else { Reclaim::Deferred })
    }

    /// A PASSIVE checkpoint: copies the WAL's frames into the file without taking the write
    /// lock (uploads commit meanwhile), so that the step's `TRUNCATE` checkpoint, which holds
    /// the writer, has only the frames written since left to copy. After deleting 500 000 rows
    /// the WAL holds up to 64 MiB (`wal_autocheckpoint`), whose copy and fsync under the writer
    /// were the longest wait of an upload during a pass (BENCHMARKS.md, "Retention").
    fn reclaim_prepare(path: &Path) -> Result<(), DynError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Pages in use (all pages but the free list) and the WAL file.
    fn used_bytes(conn: &Connection, path: &Path) -> Result<u64, DynError> {
        let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0));
        let used = (pragma("page_count")? - pragma("freelist_count")?).max(0) * pragma("page_size")?;
        Ok(u64::try_from(used).unwrap_or(0) + sidecar_len(path, Self::WAL_SUFFIX))
    }
}

impl Dialect for Sqlite {
    /// RFC 3339 text with six decimals, as the API writes times (`ts` may be before 1970).
    fn timestamp(micros: &str) -> String {
        format!(
            "strftime('%Y-%m-%dT%H:%M:%S', {micros} / 1000000 - ({micros} % 1000000 < 0), 'unixepoch') \
             || printf('.%06dZ', ({micros} % 1000000 + 1000000) % 1000000)"
        )
    }

    /// On bytes: SQLite's `substr` and `length` of TEXT stop at the first NUL, and `LIKE` folds
    /// ASCII case and treats `%`/`_` as wildcards; a BLOB prefix of the same bytes does neither.
    fn starts_with(column: &str, prefix: &str, params: &mut Vec<Param>) -> String {
        params.push(Param::Int(i64::try_from(prefix.len()).unwrap_or(i64::MAX)));
        params.push(Param::Blob(prefix.as_bytes().to_vec()));
        format!("substr(CAST({column} AS BLOB), 1, ?) = ?")
    }
}

/// `PRAGMA auto_vacuum` of a file whose free pages can be given back with `incremental_vacuum`.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// Free pages given back per [`Sqlite::reclaim_step`] (8 MiB at the default 4 KiB page).
const RECLAIM_PAGES: u32 = 2048;

/// Makes freed pages returnable to the file system. SQLite takes `auto_vacuum` only before the
/// first table is created; a file an older server made (without it) is converted once, with a
/// `VACUUM` that rewrites it (it needs free space about the file's size, and time: about a
/// second per 100 MB). If that fails (a full disk), the file keeps working without: freed pages
/// are then reused for new rows, so the file stops growing but does not shrink.
fn incremental_vacuum_on(conn: &Connection, path: &Path) -> Result<(), DynError> {
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == AUTO_VACUUM_INCREMENTAL {
        return Ok(());
    }
    let tables: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
    if tables == 0 {
        return Ok(());
    }
    tracing::info!(path = %path.display(), "rewriting the file once so that deleted rows' space can be returned (VACUUM)");
    if let Err(e) = conn.execute_batch("VACUUM") {
        tracing::warn!(path = %path.display(), error = %e, "VACUUM failed: space of deleted rows will be reused but not returned");
    }
    Ok(())
}

/// Runs `sql` on a connection of its own (tests: files as an older server left them).
#[cfg(test)]
fn raw_exec(path: &Path, sql: &str) {
    Connection::open(path).and_then(|c| c.execute_batch(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::store::conformance::{conformance_tests, corpus};
    use crate::store::{Backend, BatchId, StoreOptions, open};

    conformance_tests!(Backend::Sqlite, crate::store::sqlite::raw_exec);
    crate::store::conformance_follow::follow_conformance_tests!(Backend::Sqlite);

    /// Two servers on one file (SQLite allows it): the batch-id check and the insert it guards
    /// are one `BEGIN IMMEDIATE` transaction, so racing uploads of one id never both insert.
    #[test]
    fn two_stores_on_one_file_never_both_insert_one_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shared.sqlite");
        let a: Arc<dyn crate::store::Store> =
            open(Backend::Sqlite, &path, StoreOptions::default()).expect("a").into();
        let b: Arc<dyn crate::store::Store> =
            open(Backend::Sqlite, &path, StoreOptions::default()).expect("b").into();
        let batch = corpus(20);
        let ids: Vec<BatchId> =
            (0..30).map(|i| BatchId::parse(format!("race-{i}").as_bytes()).expect("id")).collect();
        std::thread::scope(|s| {
            for store in [&a, &b] {
                let (batch, ids) = (&batch, &ids);
                s.spawn(move || {
                    for id in ids {
                        store.insert(batch, Some(id)).expect("insert");
                    }
                });
            }
        });
        let all = a.query(&liteobs_model::Filter { limit: 10_000, ..Default::default() }).expect("query");
        assert_eq!(all.len(), batch.len() * ids.len(), "each batch stored once");
    }

    crate::store::sandbox_tests::sandbox_tests!(crate::store::sqlite::Sqlite, "sqlite");
}
