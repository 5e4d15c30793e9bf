//! DuckDB backend (duckdb crate, bundled DuckDB): columnar, built for scans and aggregates.
//!
//! Batches go in through DuckDB's Appender inside one transaction, so a batch is all or
//! nothing. No secondary indexes: DuckDB's per-row-group min/max (zone maps) and vectorised scans
//! answer by-PID and by-IP filters, and ART indexes would slow the bulk load that dominates.
//! A writer and a reader connection (clones of one database instance) each sit behind a mutex.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use duckdb::{Connection, OptionalExt, params, params_from_iter};
use liteobs_model::{Filter, TrafficLog};

use super::sql::{self, Param, RawRow, i64_of};
use super::{Result, Store, StoreError};

pub struct DuckdbStore {
    path: PathBuf,
    /// The writer connection and the next `seq` to assign.
    writer: Mutex<(Connection, i64)>,
    reader: Mutex<Connection>,
}

fn backend(e: duckdb::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl DuckdbStore {
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |e: duckdb::Error| StoreError::Open { path: path.to_owned(), source: Box::new(e) };
        let writer = Connection::open(path).map_err(open_err)?;
        init_schema(&writer, path)?;
        let next_seq: i64 = writer
            .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM traffic_logs", [], |r| r.get(0))
            .map_err(open_err)?;
        let reader = writer.try_clone().map_err(open_err)?;
        Ok(DuckdbStore {
            path: path.to_owned(),
            writer: Mutex::new((writer, next_seq)),
            reader: Mutex::new(reader),
        })
    }
}

fn table_exists(conn: &Connection, name: &str) -> duckdb::Result<bool> {
    conn.query_row("SELECT 1 FROM information_schema.tables WHERE table_name = ?", [name], |_| Ok(()))
        .optional()
        .map(|o| o.is_some())
}

/// Creates the schema in a new file, or checks the version of an existing one.
fn init_schema(conn: &Connection, path: &Path) -> Result<()> {
    let open_err = |e: duckdb::Error| StoreError::Open { path: path.to_owned(), source: Box::new(e) };
    if table_exists(conn, "liteobs_meta").map_err(open_err)? {
        let found: Option<String> = conn
            .query_row("SELECT value FROM liteobs_meta WHERE key = 'schema_version'", [], |r| r.get(0))
            .optional()
            .map_err(open_err)?;
        return match found {
            Some(v) if v == sql::SCHEMA_VERSION.to_string() => Ok(()),
            other => Err(StoreError::SchemaVersion {
                path: path.to_owned(),
                found: other.unwrap_or_else(|| "(none)".into()),
                expected: sql::SCHEMA_VERSION,
            }),
        };
    }
    if table_exists(conn, "traffic_logs").map_err(open_err)? {
        return Err(StoreError::ForeignSchema { path: path.to_owned() });
    }
    conn.execute_batch(&format!(
        "BEGIN; {}; {}; INSERT INTO liteobs_meta VALUES ('schema_version', '{}'); COMMIT;",
        sql::CREATE_TABLE,
        sql::CREATE_META,
        sql::SCHEMA_VERSION
    ))
    .map_err(open_err)
}

impl duckdb::ToSql for Param {
    fn to_sql(&self) -> duckdb::Result<duckdb::types::ToSqlOutput<'_>> {
        match self {
            Param::Int(i) => i.to_sql(),
            Param::Text(s) => s.to_sql(),
        }
    }
}

impl Store for DuckdbStore {
    fn insert(&self, batch: &[TrafficLog]) -> Result<usize> {
        let mut guard = self.writer.lock().map_err(|_| StoreError::Backend("writer lock poisoned".into()))?;
        let (conn, next_seq) = &mut *guard;
        let tx = conn.transaction().map_err(backend)?;
        let mut seq = *next_seq;
        {
            let mut app = tx.appender("traffic_logs").map_err(backend)?;
            for r in batch {
                app.append_row(params![
                    seq,
                    r.ts_micros(),
                    r.src_ip.to_string(),
                    r.src_port,
                    r.dst_ip.to_string(),
                    r.dst_port,
                    r.method,
                    r.path,
                    r.host,
                    r.status,
                    i64_of(r.latency_us),
                    i64_of(r.req_bytes),
                    i64_of(r.resp_bytes),
                    r.src_pid,
                    r.src_comm,
                    r.dst_pid,
                    r.dst_comm,
                    r.node,
                ])
                .map_err(backend)?;
                seq += 1;
            }
            app.flush().map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        *next_seq = seq;
        Ok(batch.len())
    }

    fn query(&self, filter: &Filter) -> Result<Vec<TrafficLog>> {
        let (text, params) = sql::select(filter);
        let conn = self.reader.lock().map_err(|_| StoreError::Backend("reader lock poisoned".into()))?;
        let mut stmt = conn.prepare_cached(&text).map_err(backend)?;
        let rows = stmt
            .query_map(params_from_iter(params.iter()), |row| Ok(sql::read_raw_row!(row)))
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend).and_then(RawRow::into_record)).collect()
    }
}

impl std::fmt::Debug for DuckdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuckdbStore").field("path", &self.path).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::conformance_tests;

    conformance_tests!(Backend::Duckdb);

    #[test]
    fn other_schema_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.duckdb");
        drop(DuckdbStore::open(&path).expect("create"));
        let conn = Connection::open(&path).expect("raw open");
        conn.execute("UPDATE liteobs_meta SET value = '2' WHERE key = 'schema_version'", [])
            .expect("upgrade");
        drop(conn);
        let err = DuckdbStore::open(&path).expect_err("newer schema must be refused");
        assert!(matches!(err, StoreError::SchemaVersion { ref found, .. } if found == "2"), "{err}");
    }

    #[test]
    fn foreign_table_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("foreign.duckdb");
        Connection::open(&path)
            .expect("raw")
            .execute_batch("CREATE TABLE traffic_logs (x INT)")
            .expect("create");
        assert!(matches!(DuckdbStore::open(&path), Err(StoreError::ForeignSchema { .. })));
    }
}
