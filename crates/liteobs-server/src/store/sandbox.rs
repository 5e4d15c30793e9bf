//! `POST /sql`: one read-only query over the `traffic` view, run by the engine in a sandbox,
//! with a time limit, a row cap and a cap on the answer's bytes.
//!
//! What is shared by both engines lives here: the request and the answer, the error kinds the
//! API maps to statuses, the [`precheck`] (one statement that starts like a query), and the
//! [`Answer`] builder that stops at `limit + 1` rows and counts bytes as it goes. What makes a
//! statement harmless is the engine's own sandbox, never this module: the SQLite connection is
//! read-only with an authorizer ([`super::sqlite_sandbox`]), the DuckDB instance has no
//! external access and a locked configuration, and every statement runs in a read-only
//! transaction that is rolled back ([`super::duckdb_sandbox`]). The precheck gives a clear
//! message early and is a second wall; the tests run the hostile statements past it too, to
//! show the engines refuse them on their own.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value as Json;

/// The name of the view users query; its columns are the record's ([`super::sql::create_view`]).
pub const VIEW: &str = "traffic";

/// Longest statement accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 100_000;

/// Largest answer, counted as the JSON text of its cells: past it the query is refused rather
/// than held in memory (a row cap alone does not bound rows of huge strings).
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

/// Longest string or blob a SQLite sandbox may make or read (`SQLITE_LIMIT_LENGTH`).
pub const MAX_VALUE_BYTES: usize = 8 << 20;

/// The bounds of `POST /sql` (`-sql-timeout`, `-sql-max-rows`) and how many queries may run
/// at once (more get 503 with `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub max_rows: usize,
    pub slots: usize,
}

impl SqlLimits {
    pub const DEFAULT: SqlLimits = SqlLimits { timeout: Duration::from_secs(10), max_rows: 10_000, slots: 2 };
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits::DEFAULT
    }
}

/// One query: its text and the most rows wanted (at most [`SqlLimits::max_rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlQuery {
    pub sql: String,
    pub limit: usize,
}

pub use liteobs_model::sql::{SqlAnswer, SqlColumn};

/// Why a query got no answer; [`SqlErrorKind`] chooses the status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    pub kind: SqlErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqlErrorKind {
    /// Not a read of the view: a write, a file, a setting, a second statement, too long (400).
    Refused,
    /// The engine could not run it: a syntax error, an unknown column (400).
    Engine,
    /// It ran past the time limit and was interrupted (400).
    Timeout,
    /// Every SQL slot is taken (503 with `Retry-After`).
    Busy,
    /// The server could not set up the sandbox (500).
    Internal,
}

impl SqlError {
    pub fn refused(message: impl Into<String>) -> SqlError {
        SqlError { kind: SqlErrorKind::Refused, message: message.into() }
    }

    pub fn engine(message: impl Into<String>) -> SqlError {
        SqlError { kind: SqlErrorKind::Engine, message: message.into() }
    }

    pub fn timeout(limit: Duration) -> SqlError {
        SqlError {
            kind: SqlErrorKind::Timeout,
            message: format!(
                "the query ran longer than {} and was stopped (-sql-timeout)",
                human_duration(limit)
            ),
        }
    }

    pub fn internal(message: impl Into<String>) -> SqlError {
        SqlError { kind: SqlErrorKind::Internal, message: message.into() }
    }
}

fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

/// The words a query may start with. Anything else (INSERT, ATTACH, COPY, PRAGMA, SET, CALL,
/// INSTALL, ...) is refused here with its name; the engines would refuse it too.
const QUERY_STARTS: &[&str] = &["SELECT", "WITH", "VALUES", "FROM", "TABLE"];

/// Checks `sql` before any engine sees it and returns the one statement without its trailing
/// `;` and whitespace: at most [`MAX_SQL_BYTES`], no NUL, exactly one statement (a `;` may only
/// end it), every string, quoted name and comment closed, starting with a query word or `(`.
///
/// The scan knows `'strings'` (`''` inside), `"names"` and `` `names` `` (doubled quotes inside),
/// `-- line` and `/* block */` comments (ended by the first `*/`, as SQLite ends them: a nested
/// comment is not seen as one, so nothing an engine runs can hide in what the scan takes for
/// a comment). It is a wall in front of the engines' sandboxes, not the sandbox.
pub fn precheck(sql: &str) -> Result<&str, SqlError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(SqlError::refused(format!(
            "the statement is {} bytes; at most {MAX_SQL_BYTES} are accepted",
            sql.len()
        )));
    }
    if sql.contains('\0') {
        return Err(SqlError::refused("the statement holds a NUL character"));
    }
    let bytes = sql.as_bytes();
    let mut i = 0;
    // End of the statement's last token (before a final `;` and what follows it).
    let mut end = 0;
    let mut first_word: Option<(usize, usize)> = None;
    let mut ended = false;
    while i < bytes.len() {
        let b = bytes[i];
        let token_start = i;
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let close =
                    sql[i + 2..].find("*/").ok_or_else(|| SqlError::refused("a /* comment is not closed"))?;
                i = i + 2 + close + 2;
                continue;
            }
            b';' => {
                if ended {
                    return Err(one_statement());
                }
                ended = true;
                i += 1;
                continue;
            }
            _ if ended => return Err(one_statement()),
            b'\'' | b'"' | b'`' => {
                i = closing_quote(bytes, i).ok_or_else(|| {
                    SqlError::refused(match b {
                        b'\'' => "a 'string' is not closed",
                        _ => "a quoted name is not closed",
                    })
                })?;
            }
            _ if b.is_ascii_alphabetic() || b == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if first_word.is_none() {
                    first_word = Some((token_start, i));
                }
            }
            _ => {
                if first_word.is_none() {
                    first_word = Some((token_start, token_start + 1));
                }
                i += 1;
            }
        }
        end = i;
    }
    let Some((a, b)) = first_word else {
        return Err(SqlError::refused("the statement is empty"));
    };
    let word = &sql[a..b];
    if word != "(" && !QUERY_STARTS.iter().any(|q| q.eq_ignore_ascii_case(word)) {
        let shown: String = word.chars().take(40).collect();
        return Err(SqlError::refused(format!(
            "only queries are answered (SELECT, WITH, VALUES, FROM, TABLE); this statement starts with {:?}",
            shown.to_ascii_uppercase()
        )));
    }
    Ok(sql[..end].trim_start())
}

fn one_statement() -> SqlError {
    SqlError::refused("only one statement is answered; a `;` may only end it")
}

/// The index after the quote that closes the one at `open` (a doubled quote is part of the
/// text), or `None` when it is never closed.
fn closing_quote(bytes: &[u8], open: usize) -> Option<usize> {
    let q = bytes[open];
    let mut i = open + 1;
    while i < bytes.len() {
        if bytes[i] == q {
            if bytes.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// Collects an answer row by row: stops asking for rows once it has `limit + 1` (the extra one
/// only says `truncated`), and refuses the query once the cells pass [`MAX_ANSWER_BYTES`].
/// A column's type is that of its first value that is not NULL ([`SqlColumn`]).
pub struct Answer {
    names: Vec<String>,
    types: Vec<Option<&'static str>>,
    rows: Vec<Vec<Json>>,
    limit: usize,
    truncated: bool,
    bytes: usize,
    started: Instant,
}

impl Answer {
    pub fn new(limit: usize, started: Instant) -> Answer {
        Answer {
            names: Vec::new(),
            types: Vec::new(),
            rows: Vec::new(),
            limit,
            truncated: false,
            bytes: 0,
            started,
        }
    }

    /// The result's column names, before its rows.
    pub fn set_names(&mut self, names: Vec<String>) {
        self.types = vec![None; names.len()];
        self.names = names;
    }

    /// The rows to ask the engine for at most: one past the limit, to know it was passed.
    pub fn limit_plus_one(&self) -> usize {
        self.limit.saturating_add(1)
    }

    /// Whether another row is wanted (false once `limit` rows are held and one more was seen).
    pub fn wants_more(&self) -> bool {
        !self.truncated
    }

    /// Adds a row of (value, name of its type; `None` for NULL), one per column; the row after
    /// `limit` is not kept but marks the answer truncated.
    pub fn push(&mut self, row: Vec<(Json, Option<&'static str>)>) -> Result<(), SqlError> {
        if self.rows.len() >= self.limit {
            self.truncated = true;
            return Ok(());
        }
        self.bytes += row.iter().map(|(v, _)| json_len(v)).sum::<usize>() + 2 * row.len() + 2;
        if self.bytes > MAX_ANSWER_BYTES {
            return Err(SqlError::refused(format!(
                "the answer passed {} MiB after {} rows; select fewer or shorter values, or lower the limit",
                MAX_ANSWER_BYTES >> 20,
                self.rows.len()
            )));
        }
        let mut cells = Vec::with_capacity(row.len());
        for (i, (value, ty)) in row.into_iter().enumerate() {
            if let Some(slot @ None) = self.types.get_mut(i) {
                *slot = ty;
            }
            cells.push(value);
        }
        self.rows.push(cells);
        Ok(())
    }

    pub fn finish(self) -> SqlAnswer {
        let columns = self
            .names
            .into_iter()
            .zip(self.types)
            .map(|(name, ty)| SqlColumn { name, ty: ty.unwrap_or("NULL").to_owned() })
            .collect();
        SqlAnswer {
            columns,
            rows: self.rows,
            limit: self.limit,
            truncated: self.truncated,
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// About the bytes of `v`'s JSON text (strings without their escapes).
fn json_len(v: &Json) -> usize {
    match v {
        Json::Null => 4,
        Json::Bool(_) => 5,
        Json::Number(_) => 20,
        Json::String(s) => s.len() + 2,
        Json::Array(a) => a.iter().map(json_len).sum::<usize>() + a.len() + 2,
        Json::Object(o) => o.iter().map(|(k, v)| k.len() + 3 + json_len(v)).sum::<usize>() + 2,
    }
}

/// A float as JSON: NaN and infinities (which JSON cannot carry) as `null`.
pub fn float(f: f64) -> Json {
    serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
}

/// A blob as JSON text: `\x` then two lowercase hex digits per byte.
pub fn blob(bytes: &[u8]) -> Json {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("\\x");
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    Json::String(s)
}

/// Microseconds since the Unix epoch as RFC 3339 UTC text with six decimals, or the number
/// when it is out of chrono's range.
pub fn timestamp_micros(us: i64) -> Json {
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(t) => Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        None => Json::from(us),
    }
}

/// Holds one of the SQL slots; gives it back on drop.
pub struct Slot<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Slot<'a> {
    /// A slot of `in_use`, or [`SqlErrorKind::Busy`] when `slots` are taken.
    pub fn take(in_use: &'a std::sync::atomic::AtomicUsize, slots: usize) -> Result<Slot<'a>, SqlError> {
        use std::sync::atomic::Ordering;
        in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < slots).then_some(n + 1))
            .map(|_| Slot(in_use))
            .map_err(|_| SqlError {
                kind: SqlErrorKind::Busy,
                message: format!("{slots} SQL queries are running already; retry shortly"),
            })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precheck_takes_one_query_and_its_trailing_semicolon() {
        for (sql, want) in [
            ("SELECT 1", "SELECT 1"),
            (
                "  select route, count(*) from traffic group by 1 ;  \n",
                "select route, count(*) from traffic group by 1",
            ),
            ("WITH t AS (SELECT 1) SELECT * FROM t;", "WITH t AS (SELECT 1) SELECT * FROM t"),
            ("(SELECT 1)", "(SELECT 1)"),
            ("-- a comment\nSELECT ';' -- and one after\n", "-- a comment\nSELECT ';'"),
            (
                "SELECT 'it''s; fine', \"a;\"\"b\" /* ; */ FROM traffic",
                "SELECT 'it''s; fine', \"a;\"\"b\" /* ; */ FROM traffic",
            ),
            ("FROM traffic LIMIT 1", "FROM traffic LIMIT 1"),
            ("values (1)", "values (1)"),
        ] {
            assert_eq!(precheck(sql), Ok(want), "{sql:?}");
        }
    }

    #[test]
    fn the_precheck_refuses_what_is_not_one_query() {
        for (sql, words) in [
            ("", "empty"),
            ("  ;", "empty"),
            ("-- only a comment", "empty"),
            ("SELECT 1; SELECT 2", "one statement"),
            ("SELECT 1;;", "one statement"),
            ("SELECT 1; -- x\nDROP TABLE traffic_logs", "one statement"),
            ("SELECT 1 /* unclosed", "not closed"),
            ("SELECT 'unclosed", "not closed"),
            ("SELECT \"unclosed", "not closed"),
            ("SELECT /* /* */ 1; DROP TABLE t; */", "one statement"),
            ("INSERT INTO traffic_logs VALUES (1)", "\"INSERT\""),
            ("attach '/tmp/x' as x", "\"ATTACH\""),
            ("COPY traffic TO '/tmp/x.csv'", "\"COPY\""),
            ("PRAGMA writable_schema = 1", "\"PRAGMA\""),
            ("/* hidden */ DELETE FROM traffic_logs", "\"DELETE\""),
            ("SELECT \0", "NUL"),
        ] {
            let e = precheck(sql).unwrap_err();
            assert_eq!(e.kind, SqlErrorKind::Refused, "{sql:?}");
            assert!(e.message.contains(words), "{sql:?}: {}", e.message);
        }
        let long = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
        assert!(precheck(&long).unwrap_err().message.contains("at most 100000"));
    }

    #[test]
    fn an_answer_stops_at_its_limit_and_its_bytes() {
        let mut a = Answer::new(2, Instant::now());
        a.set_names(vec!["n".into(), "t".into()]);
        for i in 0..3 {
            assert!(a.wants_more());
            let t = if i == 0 { (Json::Null, None) } else { (Json::from("x"), Some("TEXT")) };
            a.push(vec![(Json::from(i), Some("INTEGER")), t]).unwrap();
        }
        assert!(!a.wants_more());
        let done = a.finish();
        assert_eq!((done.rows.len(), done.truncated), (2, true));
        let types: Vec<&str> = done.columns.iter().map(|c| c.ty.as_str()).collect();
        assert_eq!(types, ["INTEGER", "TEXT"], "the first value that is not NULL");
        let mut a = Answer::new(10_000, Instant::now());
        let big = Json::String("x".repeat(MAX_ANSWER_BYTES / 4));
        let pushed = (0..8).map(|_| a.push(vec![(big.clone(), Some("TEXT"))])).position(|r| r.is_err());
        assert_eq!(pushed, Some(3), "the fourth quarter passes the cap");
    }

    #[test]
    fn values_take_their_documented_json_forms() {
        assert_eq!(blob(&[0, 0xab, 0x10]), Json::from("\\x00ab10"));
        assert_eq!(float(f64::NAN), Json::Null);
        assert_eq!(float(1.5), Json::from(1.5));
        assert_eq!(timestamp_micros(1_764_064_964_123_456), Json::from("2025-11-25T10:02:44.123456Z"));
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let in_use = std::sync::atomic::AtomicUsize::new(0);
        let a = Slot::take(&in_use, 2).unwrap();
        let b = Slot::take(&in_use, 2).unwrap();
        assert_eq!(Slot::take(&in_use, 2).err().map(|e| e.kind), Some(SqlErrorKind::Busy));
        drop(a);
        let _c = Slot::take(&in_use, 2).unwrap();
        drop(b);
    }
}
