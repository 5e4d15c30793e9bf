//! The schema, its migrations and the SQL form of a [`Filter`], shared by both backends.
//!
//! Timestamps are stored as microseconds since the Unix epoch (BIGINT) and addresses as their
//! canonical text form, so filters are plain comparisons that behave the same in SQLite and
//! DuckDB. `seq` is a per-store insertion counter: the tie-break that makes "newest first"
//! deterministic when two exchanges share a microsecond. The one condition the engines cannot
//! share, a string prefix (path, pod), comes from the driver ([`Driver::starts_with`]).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use liteobs_model::columns::{self, Cell, Column, Kind};
use liteobs_model::{Filter, TrafficLog};

use super::StoreError;
use super::dialect::Dialect;
use super::driver::Driver;

/// The schema version of the files this server writes: the newest of the columns'
/// ([`columns::LATEST_SINCE`]) and of the tables' ([`TABLE_STEPS`]). A file of an older
/// version is migrated on open ([`migration_to`]); a newer one is refused.
///
/// 1: `traffic_logs` and `liteobs_meta`. 2: adds `liteobs_batches`, the committed batch ids.
/// 3: adds each side's pod, container and node columns, the Service address and `exchange_id`,
/// one flat column per field so that SQL and CSV stay simple. 4: adds `route`, filled in for
/// the rows already stored by the migration itself ([`ROUTE_VERSION`]).
pub const SCHEMA_VERSION: u32 = {
    let mut v = columns::LATEST_SINCE;
    let mut i = 0;
    while i < TABLE_STEPS.len() {
        if TABLE_STEPS[i].0 > v {
            v = TABLE_STEPS[i].0;
        }
        i += 1;
    }
    v
};

/// The version that added `route`: migrating to it also fills the column in the rows it finds
/// (`route_fill`), since a route is made in Rust, not by a default.
pub const ROUTE_VERSION: u32 = 4;

/// What a schema version added besides columns: (version, statements).
const TABLE_STEPS: &[(u32, &str)] = &[(2, CREATE_BATCHES)];

/// The columns of `traffic_logs` in the order they are written and read: `seq`, then the
/// record's columns in the order they were added, which is also their order in the table of a
/// new file and of a migrated one.
pub fn column_list() -> &'static str {
    static LIST: LazyLock<String> = LazyLock::new(|| {
        std::iter::once("seq").chain(columns::in_order_added().map(|c| c.name)).collect::<Vec<_>>().join(", ")
    });
    &LIST
}

/// The SQL type of a column (types both engines understand), with `NOT NULL` when every
/// record has it.
fn column_type(c: &Column) -> String {
    let ty = match c.kind {
        Kind::U16 => "INTEGER",
        Kind::Time | Kind::U32 | Kind::Counter | Kind::I64 => "BIGINT",
        Kind::Ip | Kind::Text => "TEXT",
    };
    if c.required { format!("{ty} NOT NULL") } else { ty.to_owned() }
}

/// `CREATE TABLE traffic_logs`: `seq` and every column, in [`column_list`] order.
pub fn create_table() -> String {
    let cols: Vec<String> = std::iter::once("seq BIGINT NOT NULL".to_owned())
        .chain(columns::in_order_added().map(|c| format!("{} {}", c.name, column_type(c))))
        .collect();
    format!("CREATE TABLE IF NOT EXISTS traffic_logs (\n    {}\n)", cols.join(",\n    "))
}

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

/// `liteobs_meta`'s `seq_high`: the highest `seq` given when rows were last deleted, so that a
/// store whose newest rows were all deleted does not give their `seq`s again after a restart
/// (the next `seq` is one past the larger of it and the table's). Added on open where missing;
/// a file without it (older servers) reads as 0.
pub const ADD_SEQ_HIGH: &str = "INSERT INTO liteobs_meta (key, value) SELECT 'seq_high', '0' \
     WHERE NOT EXISTS (SELECT 1 FROM liteobs_meta WHERE key = 'seq_high')";

/// Sets `seq_high` (one text parameter).
pub const SET_SEQ_HIGH: &str = "UPDATE liteobs_meta SET value = ? WHERE key = 'seq_high'";

/// The statements that bring a file of schema version `to - 1` to `to`, run in one
/// transaction with the version update: the tables that version added, and one `ALTER TABLE
/// ... ADD COLUMN` per column it added (both engines add one column per statement; existing
/// rows get NULL, which is what an old record knew). A column added later must be optional.
pub fn migration_to(to: u32) -> String {
    let tables = TABLE_STEPS.iter().filter(|(v, _)| *v == to).map(|(_, ddl)| format!("{ddl};"));
    let added = columns::COLUMNS
        .iter()
        .filter(|c| c.since == to)
        .map(|c| format!("ALTER TABLE traffic_logs ADD COLUMN {} {};", c.name, column_type(c)));
    tables.chain(added).collect::<Vec<_>>().join("\n")
}

/// `DROP VIEW IF EXISTS traffic; CREATE VIEW traffic AS ...`: the stable view `POST /sql`
/// reads ([`super::sandbox::VIEW`]), made again on every open from [`columns::COLUMNS`], so it
/// always has the record's columns whatever the table is called or holds besides (`seq`):
/// `ts` readable (the engine's timestamp from the stored microseconds, [`Driver::timestamp`]),
/// `ts_us` the stored microseconds, then every other column in the order they were added.
pub fn create_view<D: Driver>() -> String {
    let cols: Vec<String> = [format!("{} AS ts", D::timestamp("ts")), "ts AS ts_us".to_owned()]
        .into_iter()
        .chain(columns::in_order_added().filter(|c| c.name != "ts").map(|c| c.name.to_owned()))
        .collect();
    let view = super::sandbox::VIEW;
    format!("DROP VIEW IF EXISTS {view}; CREATE VIEW {view} AS SELECT {} FROM traffic_logs;", cols.join(", "))
}

/// The view's column names, in order (README lists them).
#[cfg(test)]
pub fn view_columns() -> Vec<&'static str> {
    ["ts", "ts_us"]
        .into_iter()
        .chain(columns::in_order_added().filter(|c| c.name != "ts").map(|c| c.name))
        .collect()
}

/// The statements that create a new file's schema (without the version row).
pub fn create_schema() -> String {
    format!("{}; {CREATE_META}; {CREATE_BATCHES};", create_table())
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
fn conditions<D: Dialect>(filter: &Filter, skip: Option<SideKey>, params: &mut Vec<Param>) -> Vec<String> {
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
    if let Some(r) = &filter.route {
        conds.push("route = ?".into());
        params.push(Param::Text(r.clone()));
    }
    for (side, want) in [(Side::Client, &filter.client), (Side::Server, &filter.server)] {
        if let Some(id) = want {
            conds.push(format!("{} = ?", node_id::<D>(side)));
            params.push(Param::Text(id.clone()));
        }
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

/// One side of an exchange, for [`node_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// A side's node id as an SQL expression, exactly as [`liteobs_model::map::client_node`] and
/// [`liteobs_model::map::server_node`] make it in Rust: `/map`'s keys and the `client` and
/// `server` filters.
pub fn node_id<D: Dialect>(side: Side) -> String {
    let host =
        |ip: &str| format!("CASE WHEN {} > 0 THEN '[' || {ip} || ']' ELSE {ip} END", D::position(ip, "':'"));
    let (prefix, address) = match side {
        Side::Client => ("src", format!("'address:' || {}", host("src_ip"))),
        Side::Server => {
            ("dst", format!("'address:' || {} || ':' || {}", host("dst_ip"), D::to_text("dst_port")))
        }
    };
    format!(
        "(CASE WHEN {prefix}_pod IS NOT NULL THEN 'pod:' || COALESCE({prefix}_namespace, '') || '/' || {prefix}_pod \
         WHEN {prefix}_comm IS NOT NULL THEN 'process:' || {} || '/' || {prefix}_comm \
         ELSE {address} END)",
        host(&format!("{prefix}_ip"))
    )
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) }
}

/// `WHERE ...` for `filter` (empty when it selects everything), with `?` placeholders whose
/// values are pushed onto `params`: the condition `/stats` and `/map` group under.
pub fn filter_where<D: Dialect>(filter: &Filter, params: &mut Vec<Param>) -> String {
    where_clause(&conditions::<D>(filter, None, params))
}

/// `filter`'s `since` and `until` in stored microseconds (`ts >= since`, `ts < until`).
pub fn time_bounds(filter: &Filter) -> (Option<i64>, Option<i64>) {
    (filter.since.map(micros_ceil), filter.until.map(micros_ceil))
}

/// `WHERE ... ORDER BY ... LIMIT ?` for `filter`, with `?` placeholders and their values: the
/// one statement that answers any filter.
pub fn select<D: Dialect>(filter: &Filter) -> (String, Vec<Param>) {
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
pub fn select_window<D: Dialect>(filter: &Filter, window: TimeWindow, limit: usize) -> (String, Vec<Param>) {
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
    (
        format!(
            "SELECT {} FROM traffic_logs{where_clause} ORDER BY ts DESC, seq DESC LIMIT ?",
            column_list()
        ),
        params,
    )
}

/// The rows of `filter` in `page`'s `seq` range, ordered by `seq` (descending for the newest
/// page: the caller reverses it), at most `page.limit`. The bounds are literals, as in
/// [`select_window`] (DuckDB skips row groups by their `seq` min/max only for constants);
/// SQLite is held to its `seq` index ([`Driver::SEQ_INDEX`]): a walk from the cursor that stops
/// after `limit` matches, where an either-side filter could pick a side index and sort every
/// match of the table.
pub fn select_seq<D: Driver>(filter: &Filter, page: super::SeqPage) -> (String, Vec<Param>) {
    let mut params = Vec::new();
    let mut conds = conditions::<D>(filter, None, &mut params);
    let bound = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    conds.push(format!("seq > {}", bound(page.after)));
    conds.push(format!("seq <= {}", bound(page.upto)));
    params.push(Param::Int(i64::try_from(page.limit).unwrap_or(i64::MAX)));
    let order = if page.newest { "DESC" } else { "ASC" };
    (
        format!(
            "SELECT {} FROM traffic_logs{}{} ORDER BY seq {order} LIMIT ?",
            column_list(),
            D::SEQ_INDEX,
            where_clause(&conds)
        ),
        params,
    )
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
            "SELECT {cols} FROM (SELECT {cols} FROM traffic_logs{} ORDER BY ts DESC, seq DESC LIMIT ?)",
            where_clause(&conds),
            cols = column_list()
        )
    };
    let first = branch(&[(src, "=")]);
    let second = branch(&[(dst, "="), (src, "IS DISTINCT FROM")]);
    params.push(limit);
    Some((format!("{first} UNION ALL {second} ORDER BY ts DESC, seq DESC LIMIT ?"), params))
}

/// One stored row as read back, before validation: `seq` and one cell per column of
/// [`column_list`] after it.
pub struct RawRow {
    pub seq: i64,
    pub cells: Vec<Cell>,
}

/// Column `$i` of a backend row as a [`Cell`]: an integer when `$int`, else text, NULL
/// allowed. A macro rather than a function because rusqlite and duckdb rows are different types
/// with the same `get(index)` shape.
macro_rules! read_cell {
    ($row:expr, $i:expr, $int:expr) => {
        if $int {
            $row.get::<_, Option<i64>>($i)?
                .map_or(liteobs_model::columns::Cell::Null, liteobs_model::columns::Cell::Int)
        } else {
            $row.get::<_, Option<String>>($i)?
                .map_or(liteobs_model::columns::Cell::Null, liteobs_model::columns::Cell::Text)
        }
    };
}
pub(crate) use read_cell;

/// Reads a [`RawRow`] from a backend row whose columns are in [`column_list`] order: each cell
/// as its column's stored type ([`read_cell`]).
macro_rules! read_raw_row {
    ($row:expr) => {{
        let row = $row;
        let mut cells = Vec::with_capacity(liteobs_model::columns::COLUMNS.len());
        for (i, column) in liteobs_model::columns::in_order_added().enumerate() {
            cells.push($crate::store::sql::read_cell!(row, i + 1, column.kind.stored_as_int()));
        }
        $crate::store::sql::RawRow { seq: row.get(0)?, cells }
    }};
}
pub(crate) use read_raw_row;

pub fn conv<T: TryFrom<i64>>(v: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| StoreError::CorruptRow(format!("{what} = {v} is out of range")))
}

impl RawRow {
    /// Validates a stored row; a file edited by hand gets an error, not a panic.
    pub fn into_record(self) -> Result<TrafficLog, StoreError> {
        columns::record_from(columns::in_order_added().zip(self.cells))
            .map_err(|e| StoreError::CorruptRow(e.to_string()))
    }
}

/// The values of one record in [`column_list`] order after `seq`, as the engines bind them.
pub fn values(r: &TrafficLog) -> impl Iterator<Item = columns::Value<'_>> {
    columns::in_order_added().map(move |c| c.get(r))
}

/// The stored rows that may be other halves of `ids`' exchanges: `exchange_id` among them and
/// `ts` in `lo..=hi` (µs), by `seq`.
pub fn exchange_candidates(ids: &[i64], lo: i64, hi: i64) -> (String, Vec<Param>) {
    let marks = vec!["?"; ids.len()].join(", ");
    let mut params = vec![Param::Int(lo), Param::Int(hi)];
    params.extend(ids.iter().map(|&i| Param::Int(i)));
    (
        format!(
            "SELECT {} FROM traffic_logs WHERE ts >= ? AND ts <= ? AND exchange_id IN ({marks}) ORDER BY seq",
            column_list()
        ),
        params,
    )
}
