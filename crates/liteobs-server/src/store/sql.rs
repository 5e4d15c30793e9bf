//! The schema and the SQL form of a [`Filter`], shared by both backends.
//!
//! Timestamps are stored as microseconds since the Unix epoch (BIGINT) and addresses as their
//! canonical text form, so filters are plain comparisons that behave the same in SQLite and
//! DuckDB. `seq` is a per-store insertion counter: the tie-break that makes "newest first"
//! deterministic when two exchanges share a microsecond.

use liteobs_model::{Filter, TrafficLog};

use super::StoreError;

/// Bumped whenever the table layout changes; a file with another version is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// Column list in the order rows are written and read.
pub const COLUMNS: &str = "seq, ts, src_ip, src_port, dst_ip, dst_port, method, path, host, status, \
     latency_us, req_bytes, resp_bytes, src_pid, src_comm, dst_pid, dst_comm, node";

/// `CREATE TABLE` body shared by both backends (types both understand).
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS traffic_logs (
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    src_ip TEXT NOT NULL,
    src_port INTEGER NOT NULL,
    dst_ip TEXT NOT NULL,
    dst_port INTEGER NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    host TEXT,
    status INTEGER NOT NULL,
    latency_us BIGINT NOT NULL,
    req_bytes BIGINT NOT NULL,
    resp_bytes BIGINT NOT NULL,
    src_pid BIGINT,
    src_comm TEXT,
    dst_pid BIGINT,
    dst_comm TEXT,
    node TEXT NOT NULL
)";

pub const CREATE_META: &str =
    "CREATE TABLE IF NOT EXISTS liteobs_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// A bound parameter; each backend converts it to its own `ToSql`.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Text(String),
}

/// `WHERE ... ORDER BY ... LIMIT ?` for `filter`, with `?` placeholders and their values.
pub fn select(filter: &Filter) -> (String, Vec<Param>) {
    let mut conds: Vec<&str> = Vec::new();
    let mut params = Vec::new();
    if let Some(ip) = filter.ip {
        conds.push("(src_ip = ? OR dst_ip = ?)");
        params.push(Param::Text(ip.to_string()));
        params.push(Param::Text(ip.to_string()));
    }
    if let Some(pid) = filter.pid {
        conds.push("(src_pid = ? OR dst_pid = ?)");
        params.push(Param::Int(pid.into()));
        params.push(Param::Int(pid.into()));
    }
    if let Some(m) = &filter.method {
        conds.push("method = ?");
        params.push(Param::Text(m.clone()));
    }
    if let Some(s) = filter.status {
        let (lo, hi) = s.range();
        conds.push("status BETWEEN ? AND ?");
        params.push(Param::Int(lo.into()));
        params.push(Param::Int(hi.into()));
    }
    if let Some(p) = &filter.path_prefix {
        // substr counts characters in both engines; LIKE would be case-insensitive in SQLite
        // and would need escaping of % and _.
        conds.push("substr(path, 1, ?) = ?");
        params.push(Param::Int(p.chars().count() as i64));
        params.push(Param::Text(p.clone()));
    }
    if let Some(t) = filter.since {
        conds.push("ts >= ?");
        params.push(Param::Int(t.timestamp_micros()));
    }
    if let Some(t) = filter.until {
        conds.push("ts < ?");
        params.push(Param::Int(t.timestamp_micros()));
    }
    let where_clause =
        if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
    params.push(Param::Int(filter.limit as i64));
    (format!("SELECT {COLUMNS} FROM traffic_logs{where_clause} ORDER BY ts DESC, seq DESC LIMIT ?"), params)
}

/// Reads a [`RawRow`] from a backend row whose columns are in [`COLUMNS`] order. A macro
/// rather than a function because rusqlite and duckdb rows are different types with the same
/// `get(index)` shape.
macro_rules! read_raw_row {
    ($row:expr) => {
        $crate::store::sql::RawRow {
            ts: $row.get(1)?,
            src_ip: $row.get(2)?,
            src_port: $row.get(3)?,
            dst_ip: $row.get(4)?,
            dst_port: $row.get(5)?,
            method: $row.get(6)?,
            path: $row.get(7)?,
            host: $row.get(8)?,
            status: $row.get(9)?,
            latency_us: $row.get(10)?,
            req_bytes: $row.get(11)?,
            resp_bytes: $row.get(12)?,
            src_pid: $row.get(13)?,
            src_comm: $row.get(14)?,
            dst_pid: $row.get(15)?,
            dst_comm: $row.get(16)?,
            node: $row.get(17)?,
        }
    };
}
pub(crate) use read_raw_row;

/// One stored row as read back, before validation.
pub struct RawRow {
    pub ts: i64,
    pub src_ip: String,
    pub src_port: i64,
    pub dst_ip: String,
    pub dst_port: i64,
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub status: i64,
    pub latency_us: i64,
    pub req_bytes: i64,
    pub resp_bytes: i64,
    pub src_pid: Option<i64>,
    pub src_comm: Option<String>,
    pub dst_pid: Option<i64>,
    pub dst_comm: Option<String>,
    pub node: String,
}

fn conv<T: TryFrom<i64>>(v: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| StoreError::CorruptRow(format!("{what} = {v} is out of range")))
}

impl RawRow {
    /// Validates a stored row; a file edited by hand gets an error, not a panic.
    pub fn into_record(self) -> Result<TrafficLog, StoreError> {
        let ip = |s: &str, what: &str| {
            s.parse().map_err(|_| StoreError::CorruptRow(format!("{what} = {s:?} is not an address")))
        };
        Ok(TrafficLog {
            ts: chrono::DateTime::from_timestamp_micros(self.ts)
                .ok_or_else(|| StoreError::CorruptRow(format!("ts = {} is out of range", self.ts)))?,
            src_ip: ip(&self.src_ip, "src_ip")?,
            src_port: conv(self.src_port, "src_port")?,
            dst_ip: ip(&self.dst_ip, "dst_ip")?,
            dst_port: conv(self.dst_port, "dst_port")?,
            method: self.method,
            path: self.path,
            host: self.host,
            status: conv(self.status, "status")?,
            latency_us: conv(self.latency_us, "latency_us")?,
            req_bytes: conv(self.req_bytes, "req_bytes")?,
            resp_bytes: conv(self.resp_bytes, "resp_bytes")?,
            src_pid: self.src_pid.map(|p| conv(p, "src_pid")).transpose()?,
            src_comm: self.src_comm,
            dst_pid: self.dst_pid.map(|p| conv(p, "dst_pid")).transpose()?,
            dst_comm: self.dst_comm,
            node: self.node,
        })
    }
}

/// Saturating conversion for the u64 counters: SQL BIGINT is signed.
pub fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
