//! The DuckDB sandbox of `POST /sql` ([`super::sandbox`]).
//!
//! DuckDB lets one process hold a file open for writing, so the sandbox is a connection of its
//! own on the store's instance, not a second instance. The instance itself is opened with
//! external access off and its configuration locked ([`super::duckdb::config`]): no file,
//! URL or extension can be read, written, attached, installed or loaded by any connection
//! (`read_csv`, `read_text`, `glob`, `COPY ... TO`, `EXPORT DATABASE`, `ATTACH 'file'`,
//! `INSTALL`, `LOAD`), and no `SET` can turn that back on. On top of it, per query:
//!
//! * the statement runs inside `BEGIN TRANSACTION READ ONLY`, rolled back afterwards, so no
//!   write to any database can commit;
//! * it is run as the subquery of `SELECT * FROM (...) LIMIT limit + 1`, which parses only
//!   when it is one query (no second statement, no `PRAGMA`, `CALL`, `SET`), and which bounds
//!   what DuckDB materialises to the rows the answer can hold;
//! * a watchdog thread interrupts the connection once the time limit is up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use duckdb::Connection;
use duckdb::arrow::datatypes::DataType;
use duckdb::types::{TimeUnit, ValueRef};
use serde_json::Value as Json;

use super::sandbox::{self, Answer, SqlError};

/// A connection of the store's instance, made for one query.
pub struct Sandbox {
    pub conn: Connection,
}

/// Runs `sql` in `sb` within `timeout`, rows into `answer`. `wrap` is false only in the tests
/// that show the engine refuses hostile statements without the subquery (and without the
/// precheck).
pub fn run(
    sb: Sandbox,
    sql: &str,
    timeout: Duration,
    answer: &mut Answer,
    wrap: bool,
) -> Result<(), SqlError> {
    let conn = sb.conn;
    let interrupt = conn.interrupt_handle();
    let fired = Arc::new(AtomicBool::new(false));
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = {
        let fired = fired.clone();
        std::thread::Builder::new()
            .name("liteobs-sql-watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(timeout) {
                    fired.store(true, Ordering::Relaxed);
                    interrupt.interrupt();
                }
            })
            .map_err(|e| SqlError::internal(format!("cannot start the SQL watchdog: {e}")))?
    };
    let fail = |e: duckdb::Error| classify(&e, &fired, timeout);
    let ran = conn
        .execute_batch("BEGIN TRANSACTION READ ONLY")
        .map_err(fail)
        .and_then(|()| {
            let limit = answer.limit_plus_one();
            let text = if wrap { format!("SELECT * FROM (\n{sql}\n) LIMIT {limit}") } else { sql.to_owned() };
            read(&conn, &text, answer).map_err(fail)
        })
        .and_then(|result| result);
    // A read-only transaction has nothing to commit; the connection goes with this call.
    let _ = conn.execute_batch("ROLLBACK");
    drop(done);
    let _ = watchdog.join();
    ran
}

/// Prepares and runs `text`, collecting rows until the answer wants no more. The outer error is
/// the engine's; the inner one the answer's (too many bytes).
fn read(conn: &Connection, text: &str, answer: &mut Answer) -> duckdb::Result<Result<(), SqlError>> {
    let mut stmt = conn.prepare(text)?;
    let mut rows = stmt.query([])?;
    let names = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
    let n = names.len();
    // The statement has run, so its column types are known. duckdb-rs panics reading a cell of
    // a column typed NULL (`SELECT NULL AS x`) and of a few rare types, so a NULL column is
    // answered without reading it, and any other cell it cannot read is an error, not a panic.
    let null_typed: Vec<bool> =
        (0..n).map(|i| rows.as_ref().is_some_and(|s| s.column_type(i) == DataType::Null)).collect();
    answer.set_names(names);
    while answer.wants_more() {
        let Some(row) = rows.next()? else { break };
        let mut cells = Vec::with_capacity(n);
        for (i, null) in null_typed.iter().enumerate() {
            if *null {
                cells.push((Json::Null, None));
                continue;
            }
            match std::panic::catch_unwind(AssertUnwindSafe(|| row.get_ref(i).map(json_of))) {
                Ok(cell) => cells.push(cell?),
                Err(_) => {
                    return Ok(Err(SqlError::engine(format!(
                        "column {} has a type this server cannot read: cast it (e.g. to VARCHAR)",
                        i + 1
                    ))));
                }
            }
        }
        if let Err(e) = answer.push(cells) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

fn micros(unit: TimeUnit, v: i64) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v / 1_000,
    }
}

/// A value as JSON and the name of its type (`None` for NULL).
fn json_of(v: ValueRef<'_>) -> (Json, Option<&'static str>) {
    match v {
        ValueRef::Null => (Json::Null, None),
        ValueRef::Boolean(b) => (Json::Bool(b), Some("BOOLEAN")),
        ValueRef::TinyInt(i) => (Json::from(i), Some("TINYINT")),
        ValueRef::SmallInt(i) => (Json::from(i), Some("SMALLINT")),
        ValueRef::Int(i) => (Json::from(i), Some("INTEGER")),
        ValueRef::BigInt(i) => (Json::from(i), Some("BIGINT")),
        ValueRef::HugeInt(i) => {
            (i64::try_from(i).map_or_else(|_| Json::String(i.to_string()), Json::from), Some("HUGEINT"))
        }
        ValueRef::UTinyInt(i) => (Json::from(i), Some("UTINYINT")),
        ValueRef::USmallInt(i) => (Json::from(i), Some("USMALLINT")),
        ValueRef::UInt(i) => (Json::from(i), Some("UINTEGER")),
        ValueRef::UBigInt(i) => (Json::from(i), Some("UBIGINT")),
        ValueRef::Float(f) => (sandbox::float(f64::from(f)), Some("FLOAT")),
        ValueRef::Double(f) => (sandbox::float(f), Some("DOUBLE")),
        ValueRef::Decimal(d) => (
            d.to_string().parse::<f64>().map_or_else(|_| Json::String(d.to_string()), sandbox::float),
            Some("DECIMAL"),
        ),
        ValueRef::Timestamp(unit, v) => (sandbox::timestamp_micros(micros(unit, v)), Some("TIMESTAMP")),
        ValueRef::Text(t) => (Json::String(String::from_utf8_lossy(t).into_owned()), Some("VARCHAR")),
        ValueRef::Blob(b) => (sandbox::blob(b), Some("BLOB")),
        ValueRef::Date32(days) => (
            chrono::NaiveDate::from_num_days_from_ce_opt(days.saturating_add(719_163))
                .map_or_else(|| Json::from(days), |d| Json::String(d.to_string())),
            Some("DATE"),
        ),
        ValueRef::Time64(unit, v) => {
            let us = micros(unit, v);
            let t = u32::try_from(us / 1_000_000).ok().and_then(|s| {
                chrono::NaiveTime::from_num_seconds_from_midnight_opt(
                    s,
                    u32::try_from(us % 1_000_000).unwrap_or(0) * 1000,
                )
            });
            (
                t.map_or_else(|| Json::from(us), |t| Json::String(t.format("%H:%M:%S%.6f").to_string())),
                Some("TIME"),
            )
        }
        other => (Json::String(format!("{other:?}")), Some("NESTED")),
    }
}

/// The kind of a failed statement: interrupted by the watchdog, refused by the sandbox
/// (external access, a read-only transaction, the locked configuration), or the engine's own
/// error (syntax, binder: which is also how a statement that is not one query fails the
/// subquery).
fn classify(e: &duckdb::Error, fired: &AtomicBool, timeout: Duration) -> SqlError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if fired.load(Ordering::Relaxed) && lower.contains("interrupt") {
        return SqlError::timeout(timeout);
    }
    if lower.contains("permission error")
        || lower.contains("read-only")
        || lower.contains("read only")
        || lower.contains("configuration has been locked")
        || lower.contains("external access")
        || lower.contains("disabled by configuration")
    {
        return SqlError::refused(text);
    }
    if lower.contains("multiple statements") {
        return SqlError::refused(format!("only one statement is answered: {text}"));
    }
    SqlError::engine(text)
}
