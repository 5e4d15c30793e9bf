//! What an embedded engine must give the shared store: a handful of primitives over its own
//! connection type. Everything built from them (schema creation and migration, `seq`, the
//! batch-id transaction and its pruning, filter translation, row validation) has one copy, in
//! [`super::sql_store`] and [`super::sql`]; a backend module holds only what differs.
//!
//! Private to `store`: the public seam is [`super::Store`], which callers and fakes implement.

use std::path::Path;
use std::time::Duration;

use liteobs_model::TrafficLog;
use liteobs_model::columns::Cell;

use super::dialect::Dialect;
use super::query_plan::QueryPlan;
use super::sandbox::{Answer, SqlError};
use super::sql::{Param, RawRow};

/// An engine error, kept as its source.
pub type DynError = Box<dyn std::error::Error + Send + Sync>;

/// The kinds of engine failure the store acts on; everything else is [`Failure::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The file system has no room for the write: nothing was committed, and a retry once space
    /// is back succeeds.
    DiskFull,
    /// The engine refuses every further call on this instance (DuckDB after a failed write):
    /// the store must open the file again.
    Invalidated,
    Other,
}

/// What a [`Driver::reclaim_step`] left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaim {
    /// Call again: more space is waiting.
    More,
    /// Freed space is back (in the engine's free list, and cut from the file where it can be).
    Done,
    /// Not possible now (a reader holds an old snapshot); the used size is not yet lower.
    Deferred,
}

/// [`Failure`] from an error's text, for engines that do not give a code: the OS's ENOSPC
/// message, and DuckDB's words for an instance it gave up on.
pub fn failure_from_text(e: &DynError) -> Failure {
    let text = e.to_string().to_ascii_lowercase();
    if text.contains("has been invalidated") {
        Failure::Invalidated
    } else if text.contains("no space left on device") || text.contains("database or disk is full") {
        Failure::DiskFull
    } else {
        Failure::Other
    }
}

/// The primitives of one engine. Every call runs on the connection it is given; a transaction is
/// opened with [`Driver::BEGIN`] and ended with `COMMIT` or `ROLLBACK` by the caller, so calls in
/// between belong to it.
pub trait Driver: Dialect + Send + Sync + 'static {
    type Conn: Send;

    /// Starts a write transaction. SQLite takes the write lock at once (`BEGIN IMMEDIATE`), so
    /// that the batch-id check and the insert it guards cannot interleave with another writer.
    const BEGIN: &'static str;

    /// Starts a read transaction: the windows of one query see one snapshot.
    const BEGIN_READ: &'static str;

    /// The plan that answers filters fastest on this engine (measured: BENCHMARKS.md).
    const QUERY_PLAN: QueryPlan;

    /// What follows `FROM traffic_logs` in a read by `seq` ([`super::sql::select_seq`]): an
    /// index hint where the engine needs one (SQLite's `INDEXED BY`), else empty.
    const SEQ_INDEX: &'static str;

    /// Statements run on every open once the schema is in place (indexes), idempotent.
    const AFTER_SCHEMA: &'static str;

    /// What the engine appends to the database's file name for its write-ahead log.
    const WAL_SUFFIX: &'static str;

    /// Opens `path`, creating the file if needed: a writer connection and a reader connection.
    fn open(path: &Path) -> Result<(Self::Conn, Self::Conn), DynError>;

    fn table_exists(conn: &Self::Conn, name: &str) -> Result<bool, DynError>;

    /// Runs `;`-separated statements without parameters.
    fn execute_batch(conn: &Self::Conn, sql: &str) -> Result<(), DynError>;

    /// Runs one statement; returns the number of rows it changed.
    fn execute(conn: &Self::Conn, sql: &str, params: &[Param]) -> Result<usize, DynError>;

    /// The first column of the first row, if there is a row.
    fn query_int(conn: &Self::Conn, sql: &str, params: &[Param]) -> Result<Option<i64>, DynError>;

    /// The first column of the first row, if there is a row.
    fn query_text(conn: &Self::Conn, sql: &str, params: &[Param]) -> Result<Option<String>, DynError>;

    /// Appends the records of `batches`, in order, to `traffic_logs` with `seq` values
    /// `first_seq..`, inside the open transaction, in the engine's fastest way: a group
    /// commit's batches in one append, without copying them into one vector first.
    fn append(conn: &Self::Conn, first_seq: i64, batches: &[&[TrafficLog]]) -> Result<(), DynError>;

    /// Whether the engine has an exact nearest-rank percentile aggregate (`quantile_disc`);
    /// otherwise [`super::stats_sql`] ranks rows itself.
    const PERCENTILE_DISC: bool;

    /// Runs a statement whose columns are integers (`ints[i]`) or text, NULL allowed.
    fn select_cells(
        conn: &Self::Conn,
        sql: &str,
        params: &[Param],
        ints: &[bool],
    ) -> Result<Vec<Vec<Cell>>, DynError>;

    /// Runs a [`super::sql::select`] statement.
    fn select(conn: &Self::Conn, sql: &str, params: &[Param]) -> Result<Vec<RawRow>, DynError>;

    /// A connection for one `POST /sql` query, in the engine's sandbox ([`super::sandbox`]).
    type Sandbox: Send;

    /// Makes a sandbox from the file at `path` or from `reader`'s instance (the caller holds
    /// the reader only for this call); `timeout` counts from now.
    fn sandbox(path: &Path, reader: &Self::Conn, timeout: Duration) -> Result<Self::Sandbox, DynError>;

    /// Runs one statement (already through [`super::sandbox::precheck`]) in `sandbox`, its rows
    /// into `answer`, stopped at `timeout`. `checked` is false only in tests that show the
    /// engine refuses hostile statements on its own.
    fn run_sql(
        sandbox: Self::Sandbox,
        sql: &str,
        timeout: Duration,
        answer: &mut Answer,
        checked: bool,
    ) -> Result<(), SqlError>;

    /// What kind of failure `e` (an error of this driver's calls) is.
    fn failure(e: &DynError) -> Failure {
        failure_from_text(e)
    }

    /// One step of giving back the space deleted rows held ([`super::retention`]). Each step
    /// is short, so the caller can let a batch in between.
    fn reclaim_step(conn: &Self::Conn) -> Result<Reclaim, DynError>;

    /// The part of [`Self::reclaim_step`]'s work that can run on a connection of its own to the
    /// database at `path`, outside the writer lock and off the reader (uploads and queries go on
    /// while it runs), before each step. Nothing by default.
    fn reclaim_prepare(_path: &Path) -> Result<(), DynError> {
        Ok(())
    }

    /// Bytes the database at `path` uses by `-max-db-size`'s measure: the pages or blocks
    /// holding data, plus the write-ahead log.
    fn used_bytes(conn: &Self::Conn, path: &Path) -> Result<u64, DynError>;
}

/// Size of the file beside `path` with `suffix` appended (a write-ahead log), 0 if none.
pub fn sidecar_len(path: &Path, suffix: &str) -> u64 {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    std::fs::metadata(name).map_or(0, |m| m.len())
}
