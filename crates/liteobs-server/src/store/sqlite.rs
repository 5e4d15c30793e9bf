//! SQLite backend (rusqlite, bundled SQLite).
//!
//! WAL journal so that queries read while a batch is written; one transaction per batch with a
//! cached prepared INSERT; `synchronous=NORMAL`, which in WAL mode keeps every committed batch
//! across a crash of the server (not of the machine's power). A writer and a reader connection
//! each sit behind their own mutex. Indexes on (pid, ts) and (ip, ts) for each side keep by-PID
//! and by-IP queries off a full scan.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use liteobs_model::{Filter, TrafficLog};
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::sql::{self, Param, RawRow, i64_of};
use super::{Result, Store, StoreError};

pub struct SqliteStore {
    path: PathBuf,
    /// The writer connection and the next `seq` to assign.
    writer: Mutex<(Connection, i64)>,
    reader: Mutex<Connection>,
}

const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS traffic_logs_ts ON traffic_logs (ts, seq);
CREATE INDEX IF NOT EXISTS traffic_logs_src_pid ON traffic_logs (src_pid, ts, seq);
CREATE INDEX IF NOT EXISTS traffic_logs_dst_pid ON traffic_logs (dst_pid, ts, seq);
CREATE INDEX IF NOT EXISTS traffic_logs_src_ip ON traffic_logs (src_ip, ts, seq);
CREATE INDEX IF NOT EXISTS traffic_logs_dst_ip ON traffic_logs (dst_ip, ts, seq);
";

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |e: rusqlite::Error| StoreError::Open { path: path.to_owned(), source: Box::new(e) };
        let writer = Connection::open(path).map_err(open_err)?;
        writer.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        writer.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        writer.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        init_schema(&writer, path)?;
        writer.execute_batch(INDEXES).map_err(open_err)?;
        let next_seq: i64 = writer
            .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM traffic_logs", [], |r| r.get(0))
            .map_err(open_err)?;
        let reader = Connection::open(path).map_err(open_err)?;
        reader.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            writer: Mutex::new((writer, next_seq)),
            reader: Mutex::new(reader),
        })
    }
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |_| Ok(()))
        .optional()
        .map(|o| o.is_some())
}

/// Creates the schema in a new file, or checks the version of an existing one.
fn init_schema(conn: &Connection, path: &Path) -> Result<()> {
    let open_err = |e: rusqlite::Error| StoreError::Open { path: path.to_owned(), source: Box::new(e) };
    let has_meta = table_exists(conn, "liteobs_meta").map_err(open_err)?;
    if has_meta {
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

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Int(i) => i.to_sql(),
            Param::Text(s) => s.to_sql(),
        }
    }
}

impl Store for SqliteStore {
    fn insert(&self, batch: &[TrafficLog]) -> Result<usize> {
        let mut guard = self.writer.lock().map_err(|_| StoreError::Backend("writer lock poisoned".into()))?;
        let (conn, next_seq) = &mut *guard;
        let tx = conn.transaction().map_err(backend)?;
        let mut seq = *next_seq;
        {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO traffic_logs ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
                     ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                    sql::COLUMNS
                ))
                .map_err(backend)?;
            for r in batch {
                stmt.execute(rusqlite::params![
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
        }
        tx.commit().map_err(backend)?;
        // Only advance once committed: a failed batch leaves no gap in what the next uses.
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

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::conformance_tests;

    conformance_tests!(Backend::Sqlite);

    #[test]
    fn other_schema_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.sqlite");
        drop(SqliteStore::open(&path).expect("create"));
        let conn = Connection::open(&path).expect("raw open");
        conn.execute("UPDATE liteobs_meta SET value = '0' WHERE key = 'schema_version'", [])
            .expect("downgrade");
        drop(conn);
        let err = SqliteStore::open(&path).expect_err("old schema must be refused");
        assert!(matches!(err, StoreError::SchemaVersion { ref found, .. } if found == "0"), "{err}");
    }

    #[test]
    fn foreign_table_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("foreign.sqlite");
        Connection::open(&path)
            .expect("raw")
            .execute_batch("CREATE TABLE traffic_logs (x INT)")
            .expect("create");
        assert!(matches!(SqliteStore::open(&path), Err(StoreError::ForeignSchema { .. })));
    }
}
