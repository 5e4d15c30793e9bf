//! DuckDB driver (duckdb crate, bundled DuckDB): columnar, built for scans and aggregates; the
//! primitives [`super::sql_store`] builds on.
//!
//! Batches go in through DuckDB's Appender, as Arrow columns, inside the batch's transaction, so
//! a batch is all or nothing. No secondary indexes: DuckDB's per-row-group min/max (zone maps) and vectorised scans
//! answer by-PID and by-IP filters, and ART indexes would slow the bulk load that dominates. (The
//! small `liteobs_batches` table has its primary key's index.) The reader connection is a clone
//! of the writer's database instance: DuckDB lets one process at a time open a file for writing.

use std::path::Path;
use std::time::Duration;

use duckdb::{Connection, OptionalExt, params_from_iter};
use liteobs_model::TrafficLog;
use liteobs_model::columns::Cell;

use super::dialect::Dialect;
use super::driver::{Driver, DynError, Reclaim, sidecar_len};
use super::duckdb_columns;
use super::duckdb_sandbox;
use super::query_plan::QueryPlan;
use super::sandbox::{Answer, SqlError};
use super::sql::{self, Param, RawRow};

/// The DuckDB engine.
pub struct Duckdb;

impl duckdb::ToSql for Param {
    fn to_sql(&self) -> duckdb::Result<duckdb::types::ToSqlOutput<'_>> {
        match self {
            Param::Int(i) => i.to_sql(),
            Param::Text(s) => s.to_sql(),
            Param::Blob(b) => b.to_sql(),
        }
    }
}

impl Driver for Duckdb {
    type Conn = Connection;

    const BEGIN: &'static str = "BEGIN TRANSACTION";

    const BEGIN_READ: &'static str = "BEGIN TRANSACTION";

    const QUERY_PLAN: QueryPlan = QueryPlan::TimeWindows;

    const WAL_SUFFIX: &'static str = ".wal";
    const AFTER_SCHEMA: &'static str = "";

    /// No index: `seq` grows with every append, so each row group's min/max skips all but the
    /// newest groups for a follower's `seq > cursor`.
    const SEQ_INDEX: &'static str = "";

    const PERCENTILE_DISC: bool = true;

    fn open(path: &Path) -> Result<(Connection, Connection), DynError> {
        let writer = Connection::open_with_flags(path, config()?)?;
        let reader = writer.try_clone()?;
        Ok((writer, reader))
    }

    fn table_exists(conn: &Connection, name: &str) -> Result<bool, DynError> {
        Ok(conn
            .query_row("SELECT 1 FROM information_schema.tables WHERE table_name = ?", [name], |_| Ok(()))
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

    /// One Arrow record batch per call ([`duckdb_columns`]): the appender takes it a vector
    /// (2048 rows) at a time, several times faster than binding 31 values per row.
    fn append(conn: &Connection, first_seq: i64, batches: &[&[TrafficLog]]) -> Result<(), DynError> {
        if batches.iter().all(|b| b.is_empty()) {
            return Ok(());
        }
        let mut app = conn.appender("traffic_logs")?;
        app.append_record_batch(duckdb_columns::record_batch(first_seq, batches)?)?;
        Ok(app.flush()?)
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
                .collect::<duckdb::Result<Vec<Cell>>>()
        })?;
        Ok(rows.collect::<duckdb::Result<Vec<_>>>()?)
    }

    fn select(conn: &Connection, sql: &str, params: &[Param]) -> Result<Vec<RawRow>, DynError> {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params_from_iter(params), |row| Ok(sql::read_raw_row!(row)))?;
        Ok(rows.collect::<duckdb::Result<Vec<_>>>()?)
    }

    type Sandbox = duckdb_sandbox::Sandbox;

    /// A new connection of the store's instance ([`config`] applies to it).
    fn sandbox(_path: &Path, reader: &Connection, _timeout: Duration) -> Result<Self::Sandbox, DynError> {
        Ok(duckdb_sandbox::Sandbox { conn: reader.try_clone()? })
    }

    fn run_sql(
        sandbox: Self::Sandbox,
        sql: &str,
        timeout: Duration,
        answer: &mut Answer,
        checked: bool,
    ) -> Result<(), SqlError> {
        duckdb_sandbox::run(sandbox, sql, timeout, answer, checked)
    }

    /// `CHECKPOINT`: writes the WAL into the file and frees the blocks of row groups whose rows
    /// are all deleted, for new rows to reuse; DuckDB cuts the file only when its last blocks
    /// are free (README, "Retention"). It refuses while another transaction (a query) is open.
    fn reclaim_step(conn: &Connection) -> Result<Reclaim, DynError> {
        match conn.execute_batch("CHECKPOINT") {
            Ok(()) => Ok(Reclaim::Done),
            Err(e) if e.to_string().contains("other transactions") => Ok(Reclaim::Deferred),
            Err(e) => Err(e.into()),
        }
    }

    /// Used blocks (`pragma_database_size`) and the WAL file.
    fn used_bytes(conn: &Connection, path: &Path) -> Result<u64, DynError> {
        let used: i64 = conn.query_row(
            "SELECT used_blocks * block_size FROM pragma_database_size() \
             WHERE database_name = current_database()",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(used).unwrap_or(0) + sidecar_len(path, Self::WAL_SUFFIX))
    }
}

impl Dialect for Duckdb {
    /// `TIMESTAMP` (no time zone: UTC by the store's convention), exact to the microsecond.
    fn timestamp(micros: &str) -> String {
        format!("make_timestamp({micros})")
    }

    /// `starts_with` compares bytes. (Not a BLOB cast as in SQLite: DuckDB's VARCHAR→BLOB cast
    /// reads `\xNN` in the text as an escape, so a path holding those four characters would
    /// compare as one byte.)
    fn starts_with(column: &str, prefix: &str, params: &mut Vec<Param>) -> String {
        params.push(Param::Text(prefix.to_owned()));
        format!("starts_with({column}, ?)")
    }
}

/// How every DuckDB instance of the store is opened, the one place that says it: no external
/// access (no file, URL or extension reachable from SQL: `read_csv`, `COPY ... TO`, `ATTACH`,
/// `INSTALL`, `LOAD`; the store itself needs none) and the configuration locked, so that no
/// connection (above all the `POST /sql` sandbox, [`duckdb_sandbox`]) can `SET` it back.
pub fn config() -> duckdb::Result<duckdb::Config> {
    duckdb::Config::default().enable_external_access(false)?.with("lock_configuration", "true")
}

/// Runs `sql` on a connection of its own (tests: files as an older server left them).
#[cfg(test)]
fn raw_exec(path: &Path, sql: &str) {
    Connection::open(path).and_then(|c| c.execute_batch(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[cfg(test)]
mod tests {
    use crate::store::conformance::conformance_tests;

    conformance_tests!(Backend::Duckdb, crate::store::duckdb::raw_exec);

    crate::store::sandbox_tests::sandbox_tests!(crate::store::duckdb::Duckdb, "duckdb");
    crate::store::conformance_follow::follow_conformance_tests!(Backend::Duckdb);
}
