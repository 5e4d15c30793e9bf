//! `/stats` and `/map` in SQL: one grouped statement per question, the figures computed by the engine
//! (never by pulling rows), and the rows it answers turned into [`Group`]s.
//!
//! Percentiles are exact nearest-rank values (see [`liteobs_model::stats`]). DuckDB has them
//! built in (`quantile_disc`, which is nearest-rank: checked against the integer rank for every
//! group size up to 3 000 when this was written, and by the conformance tests). SQLite has no
//! percentile aggregate, so the statement numbers each group's answered latencies in order with
//! `row_number()` and picks the row whose number is the rank, `⌈p·n/100⌉` in integers.

use chrono::{DateTime, Utc};
use liteobs_model::Filter;
use liteobs_model::columns::{COLUMNS, Cell};
use liteobs_model::map::{self, MapResponse};
use liteobs_model::stats::{Dimension, Group, GroupKey, SortKey, StatsQuery, StatsResponse, rate};

use super::StoreError;
use super::dialect::Dialect;
use super::driver::Driver;
use super::sql::{self, Param, Side};

/// The figures after the key columns, in this order, every one an integer (or NULL).
pub const FIGURES: [&str; 11] = [
    "count",
    "errors",
    "no_response",
    "p50_us",
    "p95_us",
    "p99_us",
    "max_us",
    "req_bytes",
    "resp_bytes",
    "first_ts",
    "last_ts",
];

/// One grouping key: the name it has in the answer's key, the SQL expression it groups by,
/// and whether its value is an integer (else text).
pub struct Key {
    pub name: &'static str,
    pub expr: String,
    pub int: bool,
}

/// The keys of `/stats`: the grouped dimensions' record columns, in key order.
pub fn stats_keys(group_by: &[Dimension]) -> Vec<Key> {
    group_by
        .iter()
        .flat_map(|d| d.columns().iter().copied())
        .map(|name| Key {
            name,
            expr: name.to_owned(),
            int: COLUMNS.iter().find(|c| c.name == name).is_some_and(|c| c.kind.stored_as_int()),
        })
        .collect()
}

/// The keys of `/map`: each side's node id, computed in SQL exactly as
/// [`liteobs_model::map::client_node`] and [`liteobs_model::map::server_node`] do in Rust.
pub fn map_keys<D: Dialect>() -> Vec<Key> {
    vec![
        Key { name: "client", expr: sql::node_id::<D>(Side::Client), int: false },
        Key { name: "server", expr: sql::node_id::<D>(Side::Server), int: false },
    ]
}

/// Whether each answered column is an integer (else text): the keys, then the figures.
pub fn int_columns(keys: &[Key]) -> Vec<bool> {
    keys.iter().map(|k| k.int).chain(FIGURES.iter().map(|_| true)).collect()
}

/// The statement and its parameters. `filter` is the query's filter with the window's bounds
/// set; its `limit` + 1 groups are asked for, so that the answer can say it was cut.
pub fn statement<D: Driver>(keys: &[Key], sort: SortKey, filter: &Filter) -> (String, Vec<Param>) {
    let mut params = Vec::new();
    let where_clause = sql::filter_where::<D>(filter, &mut params);
    let aliases: Vec<String> = (0..keys.len()).map(|i| format!("k{i}")).collect();
    let group_by = if keys.is_empty() { String::new() } else { format!(" GROUP BY {}", aliases.join(", ")) };
    let key_list: String = aliases.iter().map(|k| format!("{k}, ")).collect();
    let key_exprs: String = keys.iter().zip(&aliases).map(|(k, a)| format!("{} AS {a}, ", k.expr)).collect();
    let order = order_by(sort, &aliases);
    params.push(Param::Int(i64::try_from(filter.limit).unwrap_or(i64::MAX).saturating_add(1)));
    let text = if D::PERCENTILE_DISC {
        // One `quantile_disc` over the list of fractions: one sort of each group's latencies
        // for the three, where three calls sort three times (2.5x slower at 10 M rows).
        format!(
            "SELECT {key_list}count, errors, no_response, q[1] AS p50_us, q[2] AS p95_us, q[3] AS p99_us, \
             max_us, req_bytes, resp_bytes, first_ts, last_ts FROM (\
             SELECT {key_list}count(*) AS count, \
             count(*) FILTER (WHERE status BETWEEN 500 AND 599) AS errors, \
             count(*) FILTER (WHERE status = 0) AS no_response, \
             quantile_disc(latency_us, [0.5, 0.95, 0.99]) FILTER (WHERE status <> 0) AS q, \
             max(latency_us) FILTER (WHERE status <> 0) AS max_us, \
             CAST(sum(req_bytes) AS BIGINT) AS req_bytes, CAST(sum(resp_bytes) AS BIGINT) AS resp_bytes, \
             min(ts) AS first_ts, max(ts) AS last_ts \
             FROM (SELECT {key_exprs}status, latency_us, req_bytes, resp_bytes, ts FROM traffic_logs{where_clause}) \
             AS selected{group_by}) AS grouped ORDER BY {order} LIMIT ?",
        )
    } else {
        let partition =
            if keys.is_empty() { String::new() } else { format!("PARTITION BY {}", aliases.join(", ")) };
        let answered_partition = if keys.is_empty() {
            "PARTITION BY status <> 0".to_owned()
        } else {
            format!("PARTITION BY {}, status <> 0", aliases.join(", "))
        };
        let pct = |p: u32| format!("max(CASE WHEN rn = ({p} * answered + 99) / 100 THEN latency_us END)");
        format!(
            "SELECT {key_list}count(*) AS count, \
             sum(CASE WHEN status BETWEEN 500 AND 599 THEN 1 ELSE 0 END) AS errors, \
             sum(CASE WHEN status = 0 THEN 1 ELSE 0 END) AS no_response, \
             {} AS p50_us, {} AS p95_us, {} AS p99_us, \
             max(CASE WHEN status <> 0 THEN latency_us END) AS max_us, \
             sum(req_bytes) AS req_bytes, sum(resp_bytes) AS resp_bytes, \
             min(ts) AS first_ts, max(ts) AS last_ts \
             FROM (SELECT {key_list}status, latency_us, req_bytes, resp_bytes, ts, \
                 CASE WHEN status <> 0 THEN row_number() OVER ({answered_partition} ORDER BY latency_us) END AS rn, \
                 sum(CASE WHEN status <> 0 THEN 1 ELSE 0 END) OVER ({partition}) AS answered \
               FROM (SELECT {key_exprs}status, latency_us, req_bytes, resp_bytes, ts FROM traffic_logs{where_clause}) \
               AS selected) AS numbered{group_by} ORDER BY {order} LIMIT ?",
            pct(50),
            pct(95),
            pct(99),
        )
    };
    (text, params)
}

fn time(us: Option<u64>) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    let us = i64::try_from(us.unwrap_or(0)).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::CorruptRow(format!("stats time {us} is out of range")))
}

/// As [`liteobs_model::stats::sort_groups`]: the sort key descending with unknown values
/// last, then count descending, then the keys ascending with unknown values first.
pub fn order_by(sort: SortKey, keys: &[String]) -> String {
    let mut terms = vec![format!("{} DESC NULLS LAST", sort.name())];
    if sort != SortKey::Count {
        terms.push("count DESC".into());
    }
    terms.extend(keys.iter().map(|k| format!("{k} ASC NULLS FIRST")));
    terms.join(", ")
}

/// What runs one grouped statement: keys, sort, the bounded filter, and the window (for the
/// rates) in; the groups (at most `limit + 1`) out.
pub type Grouped<'a> =
    dyn Fn(&[Key], SortKey, &Filter, DateTime<Utc>, DateTime<Utc>) -> Result<Vec<Group>, StoreError> + 'a;

/// [`super::Store::stats`] from a store's grouped statement.
pub fn stats_answer(
    query: &StatsQuery,
    now: DateTime<Utc>,
    grouped: &Grouped<'_>,
) -> Result<StatsResponse, StoreError> {
    let (since, until) = query.window(now);
    let filter = query.bounded_filter(now);
    let keys = stats_keys(&query.group_by);
    let mut groups = grouped(&keys, query.sort, &filter, since, until)?;
    let truncated = groups.len() > filter.limit;
    groups.truncate(filter.limit);
    Ok(StatsResponse { groups, since, until, truncated, routes_folded: None })
}

/// [`super::Store::map`] from a store's grouped statement, in dialect `D`.
pub fn map_answer<D: Dialect>(
    query: &StatsQuery,
    now: DateTime<Utc>,
    grouped: &Grouped<'_>,
) -> Result<MapResponse, StoreError> {
    let (since, until) = query.window(now);
    let filter = query.bounded_filter(now);
    let mut groups = grouped(&map_keys::<D>(), SortKey::Count, &filter, since, until)?;
    let truncated = groups.len() > filter.limit;
    groups.truncate(filter.limit);
    Ok(map::answer(groups.into_iter().map(map::edge_of).collect(), since, until, truncated))
}

/// The groups of the statement's rows (cells in [`int_columns`] order).
pub fn groups(
    keys: &[Key],
    rows: Vec<Vec<Cell>>,
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Group>, StoreError> {
    rows.into_iter()
        .map(|row| {
            if row.len() != keys.len() + FIGURES.len() {
                return Err(StoreError::CorruptRow(format!("a stats row has {} columns", row.len())));
            }
            let mut cells = row.into_iter();
            let mut key = GroupKey::new();
            for k in keys {
                let value = match cells.next() {
                    Some(Cell::Int(n)) => n.into(),
                    Some(Cell::Text(s)) => s.into(),
                    Some(Cell::Null) | None => serde_json::Value::Null,
                };
                key.insert(k.name.to_owned(), value);
            }
            let mut figure = |name: &str| -> Result<Option<u64>, StoreError> {
                match cells.next() {
                    Some(Cell::Int(n)) => u64::try_from(n)
                        .map(Some)
                        .map_err(|_| StoreError::CorruptRow(format!("stats {name} = {n} is negative"))),
                    Some(Cell::Null) | None => Ok(None),
                    Some(Cell::Text(s)) => {
                        Err(StoreError::CorruptRow(format!("stats {name} = {s:?} is text")))
                    }
                }
            };
            let count = figure("count")?.unwrap_or(0);
            Ok(Group {
                key,
                count,
                rate: rate(count, since, until),
                errors: figure("errors")?.unwrap_or(0),
                no_response: figure("no_response")?.unwrap_or(0),
                p50_us: figure("p50_us")?,
                p95_us: figure("p95_us")?,
                p99_us: figure("p99_us")?,
                max_us: figure("max_us")?,
                req_bytes: figure("req_bytes")?.unwrap_or(0),
                resp_bytes: figure("resp_bytes")?.unwrap_or(0),
                first_seen: time(figure("first_ts")?)?,
                last_seen: time(figure("last_ts")?)?,
            })
        })
        .collect()
}
