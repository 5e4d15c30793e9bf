//! The SQLite sandbox of `POST /sql` ([`super::sandbox`]): a connection of its own per query,
//! made so that it can only read the `traffic` view.
//!
//! * opened `SQLITE_OPEN_READ_ONLY` (no create, no URI names), with `PRAGMA query_only`,
//!   `SQLITE_DBCONFIG_DEFENSIVE` (no `writable_schema`, no shadow-table writes) and an untrusted
//!   schema;
//! * an authorizer that allows, while a statement is prepared, only `SELECT`, recursive CTEs
//!   (and their reads of themselves), reads of the view and of the table under it, and functions but a few (`load_extension`
//!   and friends, which this build does not enable anyway); every write, `ATTACH`, `DETACH`,
//!   `PRAGMA`, transaction, `CREATE`/`DROP`/`ALTER`, `ANALYZE`, `VACUUM` is denied;
//! * limits: no database may be attached, a string or blob is at most
//!   [`MAX_VALUE_BYTES`](super::sandbox::MAX_VALUE_BYTES), the statement at most
//!   [`MAX_SQL_BYTES`](super::sandbox::MAX_SQL_BYTES);
//! * a progress handler that interrupts the statement once its time is up.
//!
//! Rows are stepped one at a time into the answer, which stops asking at its limit: nothing
//! beyond `limit + 1` rows is ever read.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use serde_json::Value as Json;

use super::driver::DynError;
use super::sandbox::{self, Answer, MAX_SQL_BYTES, MAX_VALUE_BYTES, SqlError};

/// A sandboxed connection, made for one query.
pub struct Sandbox {
    conn: Connection,
    /// Set by the progress handler when it stopped the statement.
    fired: Arc<AtomicBool>,
    timeout: Duration,
}

/// Functions an authorized statement may still not call.
const DENIED_FUNCTIONS: &[&str] =
    &["load_extension", "fts3_tokenizer", "readfile", "writefile", "edit", "sqlite_compileoption_get"];

/// The table the view reads.
const TABLE: &str = "traffic_logs";

/// Opens the sandbox on `path`; `timeout` counts from now.
pub fn open(path: &Path, timeout: Duration) -> Result<Sandbox, DynError> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(timeout)?;
    conn.pragma_update(None, "query_only", 1)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    let to_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, to_i32(MAX_VALUE_BYTES))?;
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, to_i32(MAX_SQL_BYTES + 1024))?;
    conn.set_limit(Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 0)?;
    let deadline = Instant::now() + timeout;
    let fired = Arc::new(AtomicBool::new(false));
    let flag = fired.clone();
    conn.progress_handler(
        1000,
        Some(move || {
            let late = Instant::now() >= deadline;
            if late {
                flag.store(true, Ordering::Relaxed);
            }
            late
        }),
    )?;
    conn.authorizer(Some(authorize))?;
    Ok(Sandbox { conn, fired, timeout })
}

/// What a statement being prepared may do (see the module docs).
fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select | AuthAction::Recursive => Authorization::Allow,
        AuthAction::Read { table_name, .. }
            if ctx.database_name == Some("main") && (table_name == sandbox::VIEW || table_name == TABLE) =>
        {
            Authorization::Allow
        }
        // A recursive CTE reading itself (no database): its rows come from reads authorized here.
        AuthAction::Read { .. } if ctx.database_name.is_none() => Authorization::Allow,
        AuthAction::Function { function_name }
            if !DENIED_FUNCTIONS.iter().any(|f| f.eq_ignore_ascii_case(function_name)) =>
        {
            Authorization::Allow
        }
        _ => Authorization::Deny,
    }
}

/// Runs `sql` in `sb`, rows into `answer`.
pub fn run(sb: Sandbox, sql: &str, answer: &mut Answer) -> Result<(), SqlError> {
    let fail = |e: rusqlite::Error| classify(e, &sb.fired, sb.timeout);
    let mut stmt = sb.conn.prepare(sql).map_err(fail)?;
    if !stmt.readonly() {
        return Err(SqlError::refused("the statement would write; only queries are answered"));
    }
    answer.set_names(stmt.column_names().map(str::to_owned).collect());
    let n = stmt.column_count();
    let mut rows = stmt.query([]).map_err(fail)?;
    while answer.wants_more() {
        let Some(row) = rows.next().map_err(fail)? else { break };
        let cells = (0..n).map(|i| row.get_ref(i).map(json_of)).collect::<rusqlite::Result<Vec<_>>>();
        answer.push(cells.map_err(fail)?)?;
    }
    Ok(())
}

/// A value as JSON and its storage class (`None` for NULL).
fn json_of(v: ValueRef<'_>) -> (Json, Option<&'static str>) {
    match v {
        ValueRef::Null => (Json::Null, None),
        ValueRef::Integer(i) => (Json::from(i), Some("INTEGER")),
        ValueRef::Real(f) => (sandbox::float(f), Some("REAL")),
        ValueRef::Text(t) => (Json::String(String::from_utf8_lossy(t).into_owned()), Some("TEXT")),
        ValueRef::Blob(b) => (sandbox::blob(b), Some("BLOB")),
    }
}

/// The kind of a failed statement: interrupted by the time limit, refused by the sandbox
/// (authorizer, read-only, limits), or the engine's own error (syntax, unknown column).
fn classify(e: rusqlite::Error, fired: &AtomicBool, timeout: Duration) -> SqlError {
    if let rusqlite::Error::MultipleStatement = e {
        return SqlError::refused("only one statement is answered");
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::OperationInterrupted) if fired.load(Ordering::Relaxed) => SqlError::timeout(timeout),
        Some(ErrorCode::AuthorizationForStatementDenied) => {
            SqlError::refused(format!("{e}: only reads of the `traffic` view are allowed"))
        }
        Some(ErrorCode::ReadOnly) => SqlError::refused(format!("{e}: the SQL connection is read-only")),
        Some(ErrorCode::TooBig) => SqlError::refused(format!(
            "{e}: a string or blob may be at most {} MiB here",
            MAX_VALUE_BYTES >> 20
        )),
        _ => SqlError::engine(e.to_string()),
    }
}
