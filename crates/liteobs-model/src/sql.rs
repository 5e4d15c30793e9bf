//! The answer of the server's `POST /sql` (one read-only query over the `traffic` view), as the
//! server writes it and the client reads it.
//!
//! Not for running queries (the server's `store::sandbox`) or printing them (the client's
//! `render::sql`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A result column: its name and the engine's name of its type. A type is the type of the
/// column's first value that is not NULL (SQLite's storage classes `INTEGER`, `REAL`, `TEXT`,
/// `BLOB`; DuckDB's `BIGINT`, `VARCHAR`, `TIMESTAMP`, ...), `NULL` when every value is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

/// `{"columns": [...], "rows": [[...]], "limit": N, "truncated": bool, "elapsed_ms": N}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlAnswer {
    pub columns: Vec<SqlColumn>,
    /// One JSON value per column: numbers, strings, `null`, booleans; timestamps as RFC 3339
    /// text (UTC, microseconds); blobs as `\x` and lowercase hex; DuckDB's nested values (lists,
    /// structs, maps) as text; NaN and infinities as `null`.
    pub rows: Vec<Vec<Value>>,
    /// The most rows this answer could hold (the query's limit, at most the server's
    /// `-sql-max-rows`).
    pub limit: usize,
    /// More rows than `limit` matched: the answer holds the first `limit`.
    pub truncated: bool,
    pub elapsed_ms: u64,
}

/// The body of a refused query (400, or 503 when busy): `kind` is `refused`, `engine`,
/// `timeout`, `busy` or `internal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlRefusal {
    pub error: String,
    pub kind: String,
}
