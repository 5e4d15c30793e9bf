//! `liteobs-client stats`: the figures per group as a table, JSON or CSV; pure, no I/O.
//!
//! The table has one column per grouped dimension (SERVER as `addr:port` and the process name
//! or `namespace/pod`; CLIENT as the address and the same; METHOD, ROUTE, STATUS, NODE), then COUNT,
//! RATE (per second of the window), ERRORS (5xx, with their share), NO-RESP, P50, P95, P99 and
//! MAX (latencies of the answered exchanges, human), and a last line naming the window (and how
//! many routes the server folded into wildcards, when it did). It fits
//! the width by the rules of [`super::fit`]: key cells (escaped: they come from the network) are
//! cut in their middle down to [`KEY_MIN`] columns, then figures go in this order: P50, MAX,
//! NO-RESP, P99, RATE ([`DROP_ORDER`]); COUNT, ERRORS and P95 (the rate, errors and duration of
//! RED) always stay. `-o wide` adds the request and response bytes and the first and last time
//! seen, and drops nothing. JSON is the server's answer as it came; CSV has a header of the key
//! columns and the figures' names, one row per group, raw numbers.

use liteobs_model::format_ts;
use liteobs_model::stats::{Group, StatsResponse};
use serde_json::Value;

use super::fit::{Cut, Fit, Spec};
use super::grid::Grid;
use super::table::footer;
use super::text::printable;
use super::{View, cells};

/// A key cell (a server, a client, a node) is not cut below this many columns before figures
/// are dropped.
pub const KEY_MIN: usize = 24;

/// The order in which figures are dropped when cutting the keys is not enough.
pub const DROP_ORDER: [&str; 5] = ["P50", "MAX", "NO-RESP", "P99", "RATE"];

/// A figure's column: right-aligned, dropped in [`DROP_ORDER`] (unless `wide`).
pub(crate) fn figure(header: &str, order: &[&str], wide: bool) -> Spec {
    let spec = Spec::fixed(header, true);
    match order.iter().position(|h| *h == header) {
        Some(rank) if !wide => spec.dropped(u8::try_from(rank).unwrap_or(u8::MAX)),
        _ => spec,
    }
}

/// A name's column: cut in its middle down to [`KEY_MIN`].
pub(crate) fn name(header: &str) -> Spec {
    Spec::fixed(header, false).cut(Cut::Middle, KEY_MIN, 0)
}

/// `how` for a table with or without `-o wide`.
pub(crate) fn how(wide: bool) -> Fit {
    if wide { Fit::Whole } else { Fit::Width }
}

fn text<'a>(key: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    key.get(name).and_then(Value::as_str)
}

/// `10.0.0.2:8080 nginx`, `10.0.0.2:8080 shop/payments-5c8d7f9b4-q7wzt`, or the address alone.
fn side(key: &serde_json::Map<String, Value>, prefix: &str) -> Option<String> {
    let ip = text(key, &format!("{prefix}_ip"))?;
    let addr = match key.get(&format!("{prefix}_port")).and_then(Value::as_u64) {
        Some(port) => match ip.parse() {
            Ok(ip) => cells::endpoint(ip, u16::try_from(port).unwrap_or(0)),
            Err(_) => format!("{ip}:{port}"),
        },
        None => ip.to_owned(),
    };
    let who = match (text(key, &format!("{prefix}_pod")), text(key, &format!("{prefix}_comm"))) {
        (Some(pod), _) => Some(cells::pod(text(key, &format!("{prefix}_namespace")), pod)),
        (None, Some(comm)) => Some(printable(comm).into_owned()),
        (None, None) => None,
    };
    Some(match who {
        Some(who) => format!("{} {who}", printable(&addr)),
        None => printable(&addr).into_owned(),
    })
}

/// The key columns a group shows: header and cell.
fn key_cells(g: &Group) -> Vec<(&'static str, String)> {
    let key: serde_json::Map<String, Value> = g.key.clone().into_iter().collect();
    let mut out = Vec::new();
    if let Some(server) = side(&key, "dst") {
        out.push(("SERVER", server));
    }
    if let Some(client) = side(&key, "src") {
        out.push(("CLIENT", client));
    }
    if let Some(m) = text(&key, "method") {
        out.push(("METHOD", printable(m).into_owned()));
    }
    if key.contains_key("route") {
        // A record stored before routes existed has none: shown as `-`.
        let route = text(&key, "route").map_or_else(|| "-".to_owned(), |r| printable(r).into_owned());
        out.push(("ROUTE", route));
    }
    if let Some(s) = key.get("status").and_then(Value::as_u64) {
        out.push(("STATUS", cells::status(u16::try_from(s).unwrap_or(0), false)));
    }
    if let Some(n) = text(&key, "node") {
        out.push(("NODE", printable(n).into_owned()));
    }
    out
}

/// `12.5/s`, `0.03/s`, `1520/s`.
fn rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}/s")
    } else if r >= 1.0 {
        format!("{r:.1}/s")
    } else {
        format!("{r:.2}/s")
    }
}

/// `3 (1.2%)`, `0`.
fn errors(errors: u64, count: u64) -> String {
    if errors == 0 || count == 0 {
        return errors.to_string();
    }
    format!("{errors} ({:.1}%)", errors as f64 * 100.0 / count as f64)
}

pub(crate) fn latency(us: Option<u64>) -> String {
    us.map_or_else(|| "-".to_owned(), cells::latency)
}

/// `11:45:00 to 12:00:00 (15m00s)`: a window in the table's short times.
pub(crate) fn window(
    since: &chrono::DateTime<chrono::Utc>,
    until: &chrono::DateTime<chrono::Utc>,
    view: &View,
) -> String {
    let span = (*until - *since).num_microseconds().and_then(|us| u64::try_from(us).ok()).unwrap_or(0);
    format!("{} to {} ({})", view.clock.short(since), view.clock.short(until), cells::latency(span))
}

/// The table, ending with the line that names the window (and says when groups were cut);
/// `wide` adds bytes and times and drops no figure.
pub fn table(resp: &StatsResponse, wide: bool, view: &View) -> String {
    let mut figures = vec!["COUNT", "RATE", "ERRORS", "NO-RESP", "P50", "P95", "P99", "MAX"];
    if wide {
        figures.extend(["REQ", "RESP", "FIRST SEEN", "LAST SEEN"]);
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    for g in &resp.groups {
        let key = key_cells(g);
        if keys.is_empty() {
            keys = key.iter().map(|(h, _)| *h).collect();
        }
        let mut row: Vec<String> = key.into_iter().map(|(_, c)| c).collect();
        row.extend([
            g.count.to_string(),
            rate(g.rate),
            errors(g.errors, g.count),
            g.no_response.to_string(),
            latency(g.p50_us),
            latency(g.p95_us),
            latency(g.p99_us),
            latency(g.max_us),
        ]);
        if wide {
            row.extend([
                cells::size(g.req_bytes),
                cells::size(g.resp_bytes),
                view.clock.short(&g.first_seen),
                view.clock.short(&g.last_seen),
            ]);
        }
        rows.push(row);
    }
    let mut out = String::new();
    if !rows.is_empty() {
        let specs = keys
            .iter()
            .map(|k| if matches!(*k, "METHOD" | "STATUS") { Spec::fixed(*k, false) } else { name(k) })
            .chain(figures.iter().map(|f| figure(f, &DROP_ORDER, wide)))
            .collect();
        let grid = Grid::measured(specs, &rows, view.width, how(wide), view.colour);
        out.push_str(&grid.header());
        out.push('\n');
        for row in &rows {
            out.push_str(&grid.row(row, |_| None));
            out.push('\n');
        }
    }
    let n = resp.groups.len();
    let noun = if n == 1 { "group" } else { "groups" };
    let mut last = format!("{n} {noun}, {}", window(&resp.since, &resp.until, view));
    if resp.truncated {
        last.push_str(" (more groups match — raise -limit)");
    }
    if let Some(folded) = resp.routes_folded.filter(|n| *n > 0) {
        last.push_str(&format!("; the server folded {folded} routes into wildcards (/prefix/*)"));
    }
    for line in footer(&last, view.width) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The answer as the server gave it, pretty.
pub fn json(resp: &StatsResponse) -> Result<String, serde_json::Error> {
    let mut out = serde_json::to_string_pretty(resp)?;
    out.push('\n');
    Ok(out)
}

/// A header of the key columns and the figures, one row per group.
pub fn csv(resp: &StatsResponse) -> Result<String, super::csv::CsvError> {
    let figures = [
        "count",
        "rate",
        "errors",
        "no_response",
        "p50_us",
        "p95_us",
        "p99_us",
        "max_us",
        "req_bytes",
        "resp_bytes",
        "first_seen",
        "last_seen",
    ];
    let keys: Vec<String> = resp.groups.first().map(|g| g.key.keys().cloned().collect()).unwrap_or_default();
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record(keys.iter().map(String::as_str).chain(figures))?;
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for g in &resp.groups {
        let mut row: Vec<String> = keys
            .iter()
            .map(|k| match g.key.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            })
            .collect();
        row.extend([
            g.count.to_string(),
            g.rate.to_string(),
            g.errors.to_string(),
            g.no_response.to_string(),
            opt(g.p50_us),
            opt(g.p95_us),
            opt(g.p99_us),
            opt(g.max_us),
            g.req_bytes.to_string(),
            g.resp_bytes.to_string(),
            format_ts(&g.first_seen),
            format_ts(&g.last_seen),
        ]);
        w.write_record(&row)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use liteobs_model::stats::GroupKey;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn key(v: Value) -> GroupKey {
        serde_json::from_value(v).unwrap()
    }

    fn answer() -> StatsResponse {
        let group = |key: GroupKey, count: u64, errors: u64, p: [Option<u64>; 4]| Group {
            key,
            count,
            rate: count as f64 / 900.0,
            errors,
            no_response: 1,
            p50_us: p[0],
            p95_us: p[1],
            p99_us: p[2],
            max_us: p[3],
            req_bytes: 10 * count,
            resp_bytes: 300 * count,
            first_seen: at("2026-12-01T11:45:01Z"),
            last_seen: at("2026-12-01T11:59:59Z"),
        };
        StatsResponse {
            groups: vec![
                group(
                    key(
                        json!({"dst_ip": "10.244.2.9", "dst_port": 8080, "dst_comm": "node", "dst_namespace": "shop", "dst_pod": "payments-5c8d7f9b4-q7wzt", "method": "POST"}),
                    ),
                    120_000,
                    360,
                    [Some(850), Some(4_200), Some(12_500), Some(2_100_000)],
                ),
                group(
                    key(
                        json!({"dst_ip": "::1", "dst_port": 80, "dst_comm": "nginx", "dst_namespace": null, "dst_pod": null, "method": "GET"}),
                    ),
                    45,
                    0,
                    [Some(120), Some(300), Some(300), Some(310)],
                ),
                group(
                    key(
                        json!({"dst_ip": "10.0.0.5", "dst_port": 9100, "dst_comm": "evil\u{1b}[2J", "dst_namespace": null, "dst_pod": null, "method": "GET"}),
                    ),
                    1,
                    0,
                    [None, None, None, None],
                ),
            ],
            since: at("2026-12-01T11:45:00Z"),
            until: at("2026-12-01T12:00:00Z"),
            truncated: true,
            routes_folded: None,
        }
    }

    const NOW: &str = "2026-12-01T12:00:05Z";

    fn view(width: Option<usize>) -> View {
        crate::render::fixtures::view_at(NOW, width)
    }

    #[test]
    fn table_by_server_and_method() {
        insta::assert_snapshot!(table(&answer(), false, &view(None)));
    }

    #[test]
    fn table_at_80_120_and_200_columns() {
        let all = crate::render::fixtures::at_80_120_200(NOW, |wide, view| table(&answer(), wide, view));
        insta::assert_snapshot!(all);
    }

    #[test]
    fn every_line_fits_every_width() {
        crate::render::fixtures::fits_every_width(NOW, |view| table(&answer(), false, view));
    }

    fn by_route() -> StatsResponse {
        let mut resp = answer();
        let routes = [Some("/api/v1/charges/{id}"), Some("/*"), None];
        for (g, route) in resp.groups.iter_mut().zip(routes) {
            g.key.remove("method");
            g.key.insert("route".into(), route.map_or(Value::Null, Value::from));
        }
        resp.truncated = false;
        resp.routes_folded = Some(12);
        resp
    }

    #[test]
    fn table_by_server_and_route() {
        insta::assert_snapshot!(table(&by_route(), false, &view(Some(120))));
    }

    #[test]
    fn csv_by_route_has_a_route_column() {
        let csv = csv(&by_route()).unwrap();
        let header = csv.lines().next().unwrap();
        assert!(
            header.starts_with("dst_comm,dst_ip,dst_namespace,dst_pod,dst_port,route,count,"),
            "{header}"
        );
        assert!(csv.contains(",/api/v1/charges/{id},"), "{csv}");
    }

    #[test]
    fn csv_has_the_key_columns_then_the_figures() {
        insta::assert_snapshot!(csv(&answer()).unwrap());
    }

    #[test]
    fn json_parses_back_to_the_answer() {
        let back: StatsResponse = serde_json::from_str(&json(&answer()).unwrap()).unwrap();
        assert_eq!(back, answer());
    }

    #[test]
    fn no_groups_is_the_window_line_alone() {
        let empty = StatsResponse { groups: vec![], truncated: false, ..answer() };
        assert_eq!(table(&empty, false, &view(None)), "0 groups, 11:45:00 to 12:00:00 (15m00s)\n");
    }
}
