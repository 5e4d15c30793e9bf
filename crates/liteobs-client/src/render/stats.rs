//! `liteobs-client stats`: the figures per group as a table, JSON or CSV; pure, no I/O.
//!
//! The table has one column per grouped dimension (SERVER as `addr:port` and the process name
//! or `namespace/pod`; CLIENT as the address and the same; METHOD, STATUS, NODE), then COUNT,
//! RATE (per second of the window), ERRORS (5xx, with their share), NO-RESP, P50, P95, P99 and
//! MAX (latencies of the answered exchanges, in the table's units), and a last line naming the
//! window. Key cells come from the network: they are escaped and cut at [`KEY_MAX`] columns.
//! JSON is the server's answer as it came; CSV has a header of the key columns and the
//! figures' names, one row per group, raw numbers.

use liteobs_model::format_ts;
use liteobs_model::stats::{Group, StatsResponse};
use serde_json::Value;

use super::cells;
use super::grid;
use super::text::{ellipsize, printable};

/// A key cell is cut to this many columns.
pub const KEY_MAX: usize = 40;

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
        (Some(pod), _) => Some(cells::pod(text(key, &format!("{prefix}_namespace")), pod, None)),
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
    if let Some(s) = key.get("status").and_then(Value::as_u64) {
        out.push(("STATUS", cells::status(u16::try_from(s).unwrap_or(0))));
    }
    if let Some(n) = text(&key, "node") {
        out.push(("NODE", printable(n).into_owned()));
    }
    out.into_iter().map(|(h, c)| (h, ellipsize(&c, KEY_MAX).into_owned())).collect()
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

fn latency(us: Option<u64>) -> String {
    us.map_or_else(|| "-".to_owned(), |us| cells::latency(us, 200))
}

/// The table, ending with the line that names the window (and says when groups were cut).
pub fn table(resp: &StatsResponse) -> String {
    let figures = ["COUNT", "RATE", "ERRORS", "NO-RESP", "P50", "P95", "P99", "MAX"];
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<&str> = Vec::new();
    for g in &resp.groups {
        let keys = key_cells(g);
        if header.is_empty() {
            header = keys.iter().map(|(h, _)| *h).chain(figures).collect();
        }
        let mut row: Vec<String> = keys.into_iter().map(|(_, c)| c).collect();
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
        rows.push(row);
    }
    let mut out = String::new();
    if !rows.is_empty() {
        // Keys to the left, figures to the right.
        let keys = header.len() - figures.len();
        out.push_str(&grid::aligned(&header, &rows, |i| i < keys));
    }
    let n = resp.groups.len();
    let noun = if n == 1 { "group" } else { "groups" };
    out.push_str(&format!("{n} {noun}, {} to {}", format_ts(&resp.since), format_ts(&resp.until)));
    if resp.truncated {
        out.push_str(" (more groups match — raise -limit)");
    }
    out.push('\n');
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
        }
    }

    #[test]
    fn table_by_server_and_method() {
        insta::assert_snapshot!(table(&answer()));
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
        assert_eq!(table(&empty), "0 groups, 2026-12-01T11:45:00.000000Z to 2026-12-01T12:00:00.000000Z\n");
    }
}
