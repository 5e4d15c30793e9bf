//! Rate, errors and duration per group of exchanges: the contract of `GET /stats` and its
//! reference semantics.
//!
//! A [`StatsQuery`] is a [`Filter`] (every `/query` parameter) plus `group_by` (a comma list of
//! [`Dimension`]s), `sort` (a [`SortKey`]) and `limit` (groups). The answer, [`StatsResponse`],
//! holds per group its key and [`Group`]'s figures over the window `since..until` (the filter's
//! bounds; without them the [`DEFAULT_WINDOW`] before the server's clock).
//!
//! Durations are the latencies of the exchanges that had a response (status not 0); the
//! percentiles are exact: the nearest-rank value, the `⌈p·n/100⌉`-th smallest of the `n`
//! latencies (SQL's `percentile_disc`). [`reference`] computes the whole answer by brute force
//! over records in memory; both stores must give the same answer (the tests hold them to it).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::TrafficLog;
use crate::filter::{Filter, FilterError, bad};

/// The window when the query gives no `since`: the last 15 minutes before `until` (or now).
pub const DEFAULT_WINDOW: Duration = Duration::minutes(15);

/// What exchanges are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// The server side: `dst_ip`, `dst_port`, and its process name and pod when known.
    Server,
    /// The client side: `src_ip`, and its process name and pod when known (not the port,
    /// which changes with every connection).
    Client,
    Method,
    /// The request's route, its path template (`/item/{id}`: [`crate::route`]), as the server
    /// stored it.
    Route,
    Status,
    /// The node (agent) that saw the exchange.
    Node,
}

impl Dimension {
    pub const ALL: [Dimension; 6] = [
        Dimension::Server,
        Dimension::Client,
        Dimension::Method,
        Dimension::Route,
        Dimension::Status,
        Dimension::Node,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Server => "server",
            Dimension::Client => "client",
            Dimension::Method => "method",
            Dimension::Route => "route",
            Dimension::Status => "status",
            Dimension::Node => "node",
        }
    }

    /// The record columns this dimension groups by, in key order.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Dimension::Server => &["dst_ip", "dst_port", "dst_comm", "dst_namespace", "dst_pod"],
            Dimension::Client => &["src_ip", "src_comm", "src_namespace", "src_pod"],
            Dimension::Method => &["method"],
            Dimension::Route => &["route"],
            Dimension::Status => &["status"],
            Dimension::Node => &["node"],
        }
    }
}

/// How groups are ordered (largest first) before the `limit` is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    Count,
    Errors,
    NoResponse,
    P50Us,
    P95Us,
    P99Us,
    MaxUs,
    ReqBytes,
    RespBytes,
}

impl SortKey {
    pub const ALL: [SortKey; 9] = [
        SortKey::Count,
        SortKey::Errors,
        SortKey::NoResponse,
        SortKey::P50Us,
        SortKey::P95Us,
        SortKey::P99Us,
        SortKey::MaxUs,
        SortKey::ReqBytes,
        SortKey::RespBytes,
    ];

    /// The name in `sort=` and the answer's field it sorts by. (`rate` sorts as `count`.)
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Count => "count",
            SortKey::Errors => "errors",
            SortKey::NoResponse => "no_response",
            SortKey::P50Us => "p50_us",
            SortKey::P95Us => "p95_us",
            SortKey::P99Us => "p99_us",
            SortKey::MaxUs => "max_us",
            SortKey::ReqBytes => "req_bytes",
            SortKey::RespBytes => "resp_bytes",
        }
    }

    fn of(self, g: &Group) -> Option<u64> {
        match self {
            SortKey::Count => Some(g.count),
            SortKey::Errors => Some(g.errors),
            SortKey::NoResponse => Some(g.no_response),
            SortKey::P50Us => g.p50_us,
            SortKey::P95Us => g.p95_us,
            SortKey::P99Us => g.p99_us,
            SortKey::MaxUs => g.max_us,
            SortKey::ReqBytes => Some(g.req_bytes),
            SortKey::RespBytes => Some(g.resp_bytes),
        }
    }
}

/// A `/stats` question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// Which exchanges count; `limit` is the number of groups answered.
    pub filter: Filter,
    /// Group by these, in this order (none: one group of everything). No repeats.
    pub group_by: Vec<Dimension>,
    pub sort: SortKey,
}

impl StatsQuery {
    /// From query parameters: `group_by`, `sort`, and every [`Filter`] parameter.
    pub fn from_params<'a, I>(params: I, now: DateTime<Utc>) -> Result<StatsQuery, FilterError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut group_by = Vec::new();
        let mut sort = SortKey::Count;
        let mut rest = Vec::new();
        for (key, value) in params {
            match key {
                "group_by" => {
                    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        let d = Dimension::ALL.into_iter().find(|d| d.name() == name).ok_or_else(|| {
                            bad(
                                key,
                                format!("{name:?} is not one of server, client, method, route, status, node"),
                            )
                        })?;
                        if group_by.contains(&d) {
                            return Err(bad(key, format!("{name:?} is given twice")));
                        }
                        group_by.push(d);
                    }
                }
                "sort" => {
                    let name = value.trim();
                    sort = if name == "rate" {
                        SortKey::Count
                    } else {
                        SortKey::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
                            bad(
                                key,
                                format!(
                                    "{name:?} is not one of count, rate, errors, no_response, p50_us, p95_us, \
                                     p99_us, max_us, req_bytes, resp_bytes"
                                ),
                            )
                        })?
                    };
                }
                _ => rest.push((key, value)),
            }
        }
        let filter = Filter::from_params(rest, now).map_err(|e| {
            if e.reason.starts_with("unknown parameter") {
                bad(&e.param, "unknown parameter (known: every /query parameter, group_by, sort)")
            } else {
                e
            }
        })?;
        Ok(StatsQuery { filter, group_by, sort })
    }

    /// The window the figures are over: the filter's bounds, or [`DEFAULT_WINDOW`] before
    /// `until` (or `now`).
    pub fn window(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let until = self.filter.until.unwrap_or(now);
        let since = self.filter.since.unwrap_or(until - DEFAULT_WINDOW);
        (since, until)
    }

    /// The filter with the window's bounds set: what the store selects.
    pub fn bounded_filter(&self, now: DateTime<Utc>) -> Filter {
        let (since, until) = self.window(now);
        Filter { since: Some(since), until: Some(until), ..self.filter.clone() }
    }
}

/// A group's key: each grouped column and its value (`null` when unknown), by column name.
pub type GroupKey = BTreeMap<String, serde_json::Value>;

/// One group's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: GroupKey,
    /// Exchanges.
    pub count: u64,
    /// `count` per second of the window.
    pub rate: f64,
    /// Exchanges answered with a 5xx status.
    pub errors: u64,
    /// Exchanges with no response (status 0).
    pub no_response: u64,
    /// Latency percentiles and maximum of the exchanges that had a response (µs); absent when
    /// none had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_us: Option<u64>,
    /// Body bytes, summed.
    pub req_bytes: u64,
    pub resp_bytes: u64,
    /// The earliest and latest exchange of the group.
    #[serde(serialize_with = "crate::record::ser_ts", deserialize_with = "crate::record::de_ts")]
    pub first_seen: DateTime<Utc>,
    #[serde(serialize_with = "crate::record::ser_ts", deserialize_with = "crate::record::de_ts")]
    pub last_seen: DateTime<Utc>,
}

/// The answer to `GET /stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// At most `limit` groups, by the sort key (largest first), then by count, then by key.
    pub groups: Vec<Group>,
    #[serde(serialize_with = "crate::record::ser_ts", deserialize_with = "crate::record::de_ts")]
    pub since: DateTime<Utc>,
    #[serde(serialize_with = "crate::record::ser_ts", deserialize_with = "crate::record::de_ts")]
    pub until: DateTime<Utc>,
    /// More groups matched than `limit`.
    pub truncated: bool,
    /// Exchanges the server has given a folded route (`/prefix/*`) since it started, because
    /// their server had passed its bound on distinct routes (`-max-routes`,
    /// `-max-route-segment-values`); a retried upload counts again. Set by the server's API,
    /// not by a store; absent from older servers' answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_folded: Option<u64>,
}

/// The nearest-rank position (1-based) of percentile `p` among `n` values: `⌈p·n/100⌉`, at
/// least 1.
pub fn rank(p: u64, n: u64) -> u64 {
    (p * n).div_ceil(100).max(1)
}

/// `count` over the window, per second.
pub fn rate(count: u64, since: DateTime<Utc>, until: DateTime<Utc>) -> f64 {
    let micros = (until - since).num_microseconds().unwrap_or(i64::MAX).max(1);
    count as f64 * 1e6 / micros as f64
}

/// A record's key under `group_by`.
pub fn key_of(r: &TrafficLog, group_by: &[Dimension]) -> GroupKey {
    let mut key = GroupKey::new();
    let text = |s: &Option<String>| s.as_ref().map_or(serde_json::Value::Null, |s| s.clone().into());
    for d in group_by {
        match d {
            Dimension::Server => {
                key.insert("dst_ip".into(), r.dst_ip.to_string().into());
                key.insert("dst_port".into(), r.dst_port.into());
                key.insert("dst_comm".into(), text(&r.dst_comm));
                key.insert("dst_namespace".into(), text(&r.dst_namespace));
                key.insert("dst_pod".into(), text(&r.dst_pod));
            }
            Dimension::Client => {
                key.insert("src_ip".into(), r.src_ip.to_string().into());
                key.insert("src_comm".into(), text(&r.src_comm));
                key.insert("src_namespace".into(), text(&r.src_namespace));
                key.insert("src_pod".into(), text(&r.src_pod));
            }
            Dimension::Method => {
                key.insert("method".into(), r.method.clone().into());
            }
            Dimension::Route => {
                key.insert("route".into(), text(&r.route));
            }
            Dimension::Status => {
                key.insert("status".into(), r.status.into());
            }
            Dimension::Node => {
                key.insert("node".into(), r.node.clone().into());
            }
        }
    }
    key
}

/// Key order for ties: column by column in the order given, null first, text by bytes,
/// numbers by value (what both stores' `ORDER BY ... NULLS FIRST` does).
pub fn compare_keys(a: &GroupKey, b: &GroupKey, columns: &[&str]) -> Ordering {
    use serde_json::Value;
    for column in columns {
        let order = match (a.get(*column), b.get(*column)) {
            (Some(Value::Null) | None, Some(Value::Null) | None) => Ordering::Equal,
            (Some(Value::Null) | None, _) => Ordering::Less,
            (_, Some(Value::Null) | None) => Ordering::Greater,
            (Some(Value::Number(x)), Some(Value::Number(y))) => {
                x.as_u64().unwrap_or(0).cmp(&y.as_u64().unwrap_or(0))
            }
            (Some(x), Some(y)) => {
                x.as_str().unwrap_or("").as_bytes().cmp(y.as_str().unwrap_or("").as_bytes())
            }
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// Orders groups as the answer does: the sort key descending (unknown last), then count
/// descending, then the key's `columns` ascending.
pub fn sort_groups(groups: &mut [Group], sort: SortKey, columns: &[&str]) {
    groups.sort_by(|a, b| {
        let by_key = match (sort.of(a), sort.of(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_key.then(b.count.cmp(&a.count)).then_with(|| compare_keys(&a.key, &b.key, columns))
    });
}

/// The answer by brute force over `records` (the reference both stores are tested against).
pub fn reference(records: &[TrafficLog], query: &StatsQuery, now: DateTime<Utc>) -> StatsResponse {
    let (since, until) = query.window(now);
    let filter = query.bounded_filter(now);
    let mut groups = grouped(records, &filter, since, until, |r| key_of(r, &query.group_by));
    let columns: Vec<&str> = query.group_by.iter().flat_map(|d| d.columns().iter().copied()).collect();
    sort_groups(&mut groups, query.sort, &columns);
    let truncated = groups.len() > query.filter.limit;
    groups.truncate(query.filter.limit);
    StatsResponse { groups, since, until, truncated, routes_folded: None }
}

/// The groups of the records `filter` selects, by `key`, unsorted (for [`reference`] and the
/// map's reference).
pub fn grouped(
    records: &[TrafficLog],
    filter: &Filter,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    key: impl Fn(&TrafficLog) -> GroupKey,
) -> Vec<Group> {
    let mut by_key: BTreeMap<String, (GroupKey, Vec<&TrafficLog>)> = BTreeMap::new();
    for r in records.iter().filter(|r| filter.matches(r)) {
        let key = key(r);
        let text = serde_json::to_string(&key).unwrap_or_default();
        by_key.entry(text).or_insert_with(|| (key, Vec::new())).1.push(r);
    }
    by_key
        .into_values()
        .map(|(key, rs)| {
            let mut latencies: Vec<u64> = rs.iter().filter(|r| r.status != 0).map(|r| r.latency_us).collect();
            latencies.sort_unstable();
            let n = latencies.len() as u64;
            let pct = |p: u64| (n > 0).then(|| latencies[(rank(p, n) - 1) as usize]);
            let count = rs.len() as u64;
            Group {
                key,
                count,
                rate: rate(count, since, until),
                errors: rs.iter().filter(|r| (500..600).contains(&r.status)).count() as u64,
                no_response: rs.iter().filter(|r| r.status == 0).count() as u64,
                p50_us: pct(50),
                p95_us: pct(95),
                p99_us: pct(99),
                max_us: latencies.last().copied(),
                req_bytes: rs.iter().map(|r| r.req_bytes).sum(),
                resp_bytes: rs.iter().map(|r| r.resp_bytes).sum(),
                first_seen: rs.iter().map(|r| r.ts).min().unwrap_or(since),
                last_seen: rs.iter().map(|r| r.ts).max().unwrap_or(since),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn nearest_rank() {
        assert_eq!((rank(50, 1), rank(95, 1), rank(99, 1)), (1, 1, 1));
        assert_eq!((rank(50, 4), rank(95, 4), rank(99, 4)), (2, 4, 4));
        assert_eq!((rank(50, 20), rank(95, 20), rank(99, 20)), (10, 19, 20));
        assert_eq!((rank(50, 100), rank(95, 100), rank(99, 100)), (50, 95, 99));
        assert_eq!((rank(50, 101), rank(95, 101), rank(99, 101)), (51, 96, 100));
    }

    #[test]
    fn parameters() {
        let q = StatsQuery::from_params(
            [("group_by", "server, method"), ("sort", "p95_us"), ("status", "5xx")],
            now(),
        )
        .unwrap();
        assert_eq!(q.group_by, [Dimension::Server, Dimension::Method]);
        assert_eq!(q.sort, SortKey::P95Us);
        assert!(q.filter.status.is_some());
        assert_eq!(StatsQuery::from_params([("sort", "rate")], now()).unwrap().sort, SortKey::Count);
        let q = StatsQuery::from_params([("group_by", "server,route")], now()).unwrap();
        assert_eq!(q.group_by, [Dimension::Server, Dimension::Route]);
        let err = StatsQuery::from_params([("group_by", "route,pod")], now()).unwrap_err();
        assert_eq!(err.param, "group_by");
        assert!(StatsQuery::from_params([("group_by", "server,server")], now()).is_err());
        assert!(StatsQuery::from_params([("sort", "fast")], now()).is_err());
        let err = StatsQuery::from_params([("groupby", "server")], now()).unwrap_err();
        assert!(err.reason.contains("group_by"), "{err}");
        let q = StatsQuery::from_params([], now()).unwrap();
        assert_eq!(q.window(now()), (now() - DEFAULT_WINDOW, now()));
    }
}
