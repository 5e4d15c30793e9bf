//! The schema, its migrations and the SQL form of a [`Filter`], shared by both backends.
//!
//! Timestamps are stored as microseconds since the Unix epoch (BIGINT) and addresses as their
//! canonical text form, so filters are plain comparisons that behave the same in SQLite and
//! DuckDB. `seq` is a per-store insertion counter: the tie-break that makes "newest first"
//! deterministic when two exchanges share a microsecond. The one condition the engines cannot
//! share, a string prefix (path, pod), comes from the driver ([`Driver::starts_with`]).

use chrono::{DateTime, Utc};
use liteobs_model::{Filter, TrafficLog};

use super::StoreError;
use super::driver::Driver;

/// Bumped whenever the table layout changes. A file of an older version listed in
/// [`MIGRATIONS`] is migrated on open; any other version is refused.
///
/// 1: `traffic_logs` and `liteobs_meta`. 2: adds `liteobs_batches`, the committed batch ids.
/// 3: adds each side's pod, container and node columns, the Service address and `exchange_id`
/// ([`ADD_V3_COLUMNS`]), one flat column per field so that SQL and CSV stay simple.
pub const SCHEMA_VERSION: u32 = 3;

/// Column list in the order rows are written and read.
pub const COLUMNS: &str = "seq, ts, src_ip, src_port, dst_ip, dst_port, method, path, host, status, \
     latency_us, req_bytes, resp_bytes, src_pid, src_comm, dst_pid, dst_comm, node, \
     src_namespace, src_pod, src_container, src_container_id, src_node, \
     dst_namespace, dst_pod, dst_container, dst_container_id, dst_node, \
     dst_service_ip, dst_service_port, exchange_id";

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
    node TEXT NOT NULL,
    src_namespace TEXT,
    src_pod TEXT,
    src_container TEXT,
    src_container_id TEXT,
    src_node TEXT,
    dst_namespace TEXT,
    dst_pod TEXT,
    dst_container TEXT,
    dst_container_id TEXT,
    dst_node TEXT,
    dst_service_ip TEXT,
    dst_service_port INTEGER,
    exchange_id BIGINT
)";

pub const CREATE_META: &str =
    "CREATE TABLE IF NOT EXISTS liteobs_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// The ids of committed upload batches (exactly-once delivery): `accepted` is what the batch's
/// answer said, `committed_at` the server's clock at commit (µs since the Unix epoch), and
/// `batch_seq` a per-store counter of id-carrying batches, by which the count bound prunes.
/// The primary key is what makes a second insert of one id fail even if two writers race.
pub const CREATE_BATCHES: &str = "CREATE TABLE IF NOT EXISTS liteobs_batches (
    id TEXT PRIMARY KEY,
    accepted BIGINT NOT NULL,
    committed_at BIGINT NOT NULL,
    batch_seq BIGINT NOT NULL
)";

/// Statements that bring a file of schema version `from` to `from + 1`, in one transaction
/// together with the version update.
pub const MIGRATIONS: &[(u32, &str)] = &[(1, CREATE_BATCHES), (2, ADD_V3_COLUMNS)];

/// Version 2 → 3: one `ALTER TABLE ... ADD COLUMN` per new column (both engines add
/// one column per statement); existing rows get NULL, which is what an old record knew.
const ADD_V3_COLUMNS: &str = "ALTER TABLE traffic_logs ADD COLUMN src_namespace TEXT;
    ALTER TABLE traffic_logs ADD COLUMN src_pod TEXT;
    ALTER TABLE traffic_logs ADD COLUMN src_container TEXT;
    ALTER TABLE traffic_logs ADD COLUMN src_container_id TEXT;
    ALTER TABLE traffic_logs ADD COLUMN src_node TEXT;
    ALTER TABLE traffic_logs ADD COLUMN dst_namespace TEXT;
    ALTER TABLE traffic_logs ADD COLUMN dst_pod TEXT;
    ALTER TABLE traffic_logs ADD COLUMN dst_container TEXT;
    ALTER TABLE traffic_logs ADD COLUMN dst_container_id TEXT;
    ALTER TABLE traffic_logs ADD COLUMN dst_node TEXT;
    ALTER TABLE traffic_logs ADD COLUMN dst_service_ip TEXT;
    ALTER TABLE traffic_logs ADD COLUMN dst_service_port INTEGER;
    ALTER TABLE traffic_logs ADD COLUMN exchange_id BIGINT;";

/// The statements that create a new file's schema (without the version row).
pub fn create_schema() -> String {
    format!("{CREATE_TABLE}; {CREATE_META}; {CREATE_BATCHES};")
}

/// A bound parameter; each backend converts it to its own `ToSql`.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// `t` in whole microseconds, rounded up. Stored timestamps are whole microseconds, so for any
/// stored `ts`: `ts >= t` exactly when `ts >= ceil(t)`, and `ts < t` exactly when
/// `ts < ceil(t)`. A bound with nanoseconds (every relative age such as `15m` has them, and
/// RFC 3339 allows them) then selects what [`Filter::matches`] selects; truncating it would let
/// `since` take in, and `until` leave out, the row in the bound's own microsecond.
fn micros_ceil(t: DateTime<Utc>) -> i64 {
    let floor = t.timestamp_micros();
    if t.timestamp_subsec_nanos().is_multiple_of(1_000) { floor } else { floor.saturating_add(1) }
}

/// The key a by-side statement ([`select_by_side`]) splits on: one column per side, each with
/// its own index in SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SideKey {
    Pid,
    Ip,
}

impl SideKey {
    fn columns(self) -> [&'static str; 2] {
        match self {
            SideKey::Pid => ["src_pid", "dst_pid"],
            SideKey::Ip => ["src_ip", "dst_ip"],
        }
    }

    fn param(self, filter: &Filter) -> Option<Param> {
        match self {
            SideKey::Pid => filter.pid.map(|p| Param::Int(p.into())),
            SideKey::Ip => filter.ip.map(|ip| Param::Text(ip.to_string())),
        }
    }
}

/// The conditions of `filter` (without its limit), `?` placeholders pushed to `params` in
/// order. `skip` leaves out one either-side condition, which the caller writes itself.
fn conditions<D: Driver>(filter: &Filter, skip: Option<SideKey>, params: &mut Vec<Param>) -> Vec<String> {
    let mut conds: Vec<String> = Vec::new();
    for key in [SideKey::Ip, SideKey::Pid] {
        if skip == Some(key) {
            continue;
        }
        if let Some(value) = key.param(filter) {
            let [src, dst] = key.columns();
            conds.push(format!("({src} = ? OR {dst} = ?)"));
            params.push(value.clone());
            params.push(value);
        }
    }
    if let Some(m) = &filter.method {
        conds.push("method = ?".into());
        params.push(Param::Text(m.clone()));
    }
    if let Some(s) = filter.status {
        let (lo, hi) = s.range();
        conds.push("status BETWEEN ? AND ?".into());
        params.push(Param::Int(lo.into()));
        params.push(Param::Int(hi.into()));
    }
    // An empty prefix selects every row; it gets no condition (SQLite's `substr` of an empty
    // BLOB is NULL, so the byte comparison would leave out the rows with an empty path).
    if let Some(p) = filter.path_prefix.as_deref().filter(|p| !p.is_empty()) {
        conds.push(D::starts_with("path", p, params));
    }
    if filter.namespace.is_some() || filter.pod_prefix.is_some() {
        // As [`Filter::matches`]: one side satisfies both. A pod prefix needs a known pod, even
        // the empty prefix.
        let mut side = |ns_col: &str, pod_col: &'static str| {
            let mut parts = Vec::new();
            if let Some(ns) = &filter.namespace {
                parts.push(format!("{ns_col} = ?"));
                params.push(Param::Text(ns.clone()));
            }
            match filter.pod_prefix.as_deref() {
                Some("") => parts.push(format!("{pod_col} IS NOT NULL")),
                Some(p) => {
                    parts.push(format!("({pod_col} IS NOT NULL AND {})", D::starts_with(pod_col, p, params)))
                }
                None => {}
            }
            format!("({})", parts.join(" AND "))
        };
        let src = side("src_namespace", "src_pod");
        let dst = side("dst_namespace", "dst_pod");
        conds.push(format!("({src} OR {dst})"));
    }
    if let Some(t) = filter.since {
        conds.push("ts >= ?".into());
        params.push(Param::Int(micros_ceil(t)));
    }
    if let Some(t) = filter.until {
        conds.push("ts < ?".into());
        params.push(Param::Int(micros_ceil(t)));
    }
    conds
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) }
}

/// `filter`'s `since` and `until` in stored microseconds (`ts >= since`, `ts < until`).
pub fn time_bounds(filter: &Filter) -> (Option<i64>, Option<i64>) {
    (filter.since.map(micros_ceil), filter.until.map(micros_ceil))
}

/// `WHERE ... ORDER BY ... LIMIT ?` for `filter`, with `?` placeholders and their values: the
/// one statement that answers any filter.
pub fn select<D: Driver>(filter: &Filter) -> (String, Vec<Param>) {
    select_window::<D>(filter, TimeWindow::ALL, filter.limit)
}

/// A half-open slice `lo <= ts < hi` of the table (µs; `None`: unbounded on that side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub lo: Option<i64>,
    pub hi: Option<i64>,
}

impl TimeWindow {
    pub const ALL: TimeWindow = TimeWindow { lo: None, hi: None };
}

/// As [`select`], restricted to `window` and at most `limit` rows. The bounds are written as
/// literals, not parameters: DuckDB skips row groups by their `ts` min/max only for a constant
/// comparison it sees when planning.
pub fn select_window<D: Driver>(filter: &Filter, window: TimeWindow, limit: usize) -> (String, Vec<Param>) {
    let mut params = Vec::new();
    let mut conds = conditions::<D>(filter, None, &mut params);
    if let Some(lo) = window.lo {
        conds.push(format!("ts >= {lo}"));
    }
    if let Some(hi) = window.hi {
        conds.push(format!("ts < {hi}"));
    }
    params.push(Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    let where_clause = where_clause(&conds);
    (format!("SELECT {COLUMNS} FROM traffic_logs{where_clause} ORDER BY ts DESC, seq DESC LIMIT ?"), params)
}

/// For a filter on a PID or an address (either side), one statement per side, each newest
/// first and limited, then merged: `src = k` and `dst = k AND src IS DISTINCT FROM k` (so a row with
/// both sides equal comes once). Each side is a walk of its `(key, ts, seq)` index, newest
/// first, that stops after `limit` matches, where the either-side `OR` makes SQLite collect
/// every match of both indexes and sort them. `None` for other filters.
pub fn select_by_side<D: Driver>(filter: &Filter) -> Option<(String, Vec<Param>)> {
    let key = [SideKey::Pid, SideKey::Ip].into_iter().find(|k| k.param(filter).is_some())?;
    let value = key.param(filter)?;
    let [src, dst] = key.columns();
    let limit = Param::Int(i64::try_from(filter.limit).unwrap_or(i64::MAX));
    let mut params = Vec::new();
    let mut branch = |side: &[(&str, &str)]| {
        let mut conds: Vec<String> = side
            .iter()
            .map(|(col, op)| {
                params.push(value.clone());
                format!("{col} {op} ?")
            })
            .collect();
        conds.extend(conditions::<D>(filter, Some(key), &mut params));
        params.push(limit.clone());
        format!(
            "SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM traffic_logs{} ORDER BY ts DESC, seq DESC LIMIT ?)",
            where_clause(&conds)
        )
    };
    let first = branch(&[(src, "=")]);
    let second = branch(&[(dst, "="), (src, "IS DISTINCT FROM")]);
    params.push(limit);
    Some((format!("{first} UNION ALL {second} ORDER BY ts DESC, seq DESC LIMIT ?"), params))
}

/// Reads a [`RawRow`] from a backend row whose columns are in [`COLUMNS`] order. A macro
/// rather than a function because rusqlite and duckdb rows are different types with the same
/// `get(index)` shape.
macro_rules! read_raw_row {
    ($row:expr) => {
        $crate::store::sql::RawRow {
            seq: $row.get(0)?,
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
            src_namespace: $row.get(18)?,
            src_pod: $row.get(19)?,
            src_container: $row.get(20)?,
            src_container_id: $row.get(21)?,
            src_node: $row.get(22)?,
            dst_namespace: $row.get(23)?,
            dst_pod: $row.get(24)?,
            dst_container: $row.get(25)?,
            dst_container_id: $row.get(26)?,
            dst_node: $row.get(27)?,
            dst_service_ip: $row.get(28)?,
            dst_service_port: $row.get(29)?,
            exchange_id: $row.get(30)?,
        }
    };
}
pub(crate) use read_raw_row;

/// One stored row as read back, before validation.
pub struct RawRow {
    pub seq: i64,
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
    pub src_namespace: Option<String>,
    pub src_pod: Option<String>,
    pub src_container: Option<String>,
    pub src_container_id: Option<String>,
    pub src_node: Option<String>,
    pub dst_namespace: Option<String>,
    pub dst_pod: Option<String>,
    pub dst_container: Option<String>,
    pub dst_container_id: Option<String>,
    pub dst_node: Option<String>,
    pub dst_service_ip: Option<String>,
    pub dst_service_port: Option<i64>,
    pub exchange_id: Option<i64>,
}

pub fn conv<T: TryFrom<i64>>(v: i64, what: &str) -> Result<T, StoreError> {
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
            src_namespace: self.src_namespace,
            src_pod: self.src_pod,
            src_container: self.src_container,
            src_container_id: self.src_container_id,
            src_node: self.src_node,
            dst_namespace: self.dst_namespace,
            dst_pod: self.dst_pod,
            dst_container: self.dst_container,
            dst_container_id: self.dst_container_id,
            dst_node: self.dst_node,
            dst_service_ip: self.dst_service_ip.as_deref().map(|s| ip(s, "dst_service_ip")).transpose()?,
            dst_service_port: self.dst_service_port.map(|p| conv(p, "dst_service_port")).transpose()?,
            exchange_id: self.exchange_id,
            node: self.node,
        })
    }
}

/// Saturating conversion for the u64 counters: SQL BIGINT is signed.
pub fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The stored rows that may be other halves of `ids`' exchanges: `exchange_id` among them and
/// `ts` in `lo..=hi` (µs), by `seq`.
pub fn exchange_candidates(ids: &[i64], lo: i64, hi: i64) -> (String, Vec<Param>) {
    let marks = vec!["?"; ids.len()].join(", ");
    let mut params = vec![Param::Int(lo), Param::Int(hi)];
    params.extend(ids.iter().map(|&i| Param::Int(i)));
    (
        format!(
            "SELECT {COLUMNS} FROM traffic_logs WHERE ts >= ? AND ts <= ? AND exchange_id IN ({marks}) ORDER BY seq"
        ),
        params,
    )
}
