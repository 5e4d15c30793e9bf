//! The server's query-string filter parsing: `serde_urlencoded` pairs into
//! `Filter::from_params`, exactly as `GET /query` does it.
//!
//! Input: the query string (UTF-8; other inputs are skipped, as actix hands the handler a
//! `&str`).
//!
//! Properties: no panic; a filter that parses, written back as a query string (the client's
//! form: one `name=value` per set field, times in RFC 3339), parses to the same filter; its
//! reference semantics (`Filter::matches`) run on any record without panicking.

#![no_main]

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use liteobs_model::filter::DEFAULT_LIMIT;
use liteobs_model::{Filter, StatusMatch, TrafficLog};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 18, 0, 0).single().expect("a valid date")
}

fn parse(query: &str) -> Option<Filter> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    Filter::from_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), now()).ok()
}

/// The filter as query parameters, or `None` when a time cannot be written in RFC 3339
/// (a relative age can reach before year 0).
fn to_query(f: &Filter) -> Option<String> {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    let time = |t: &DateTime<Utc>| {
        let text = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        DateTime::parse_from_rfc3339(&text).is_ok().then_some(text)
    };
    if let Some(ip) = f.ip {
        pairs.push(("ip", ip.to_string()));
    }
    if let Some(pid) = f.pid {
        pairs.push(("pid", pid.to_string()));
    }
    if let Some(m) = &f.method {
        pairs.push(("method", m.clone()));
    }
    match f.status {
        Some(StatusMatch::Exact(c)) => pairs.push(("status", c.to_string())),
        Some(StatusMatch::Class(d)) => pairs.push(("status", format!("{d}xx"))),
        None => {}
    }
    if let Some(p) = &f.path_prefix {
        pairs.push(("path", p.clone()));
    }
    if let Some(n) = &f.namespace {
        pairs.push(("namespace", n.clone()));
    }
    if let Some(p) = &f.pod_prefix {
        pairs.push(("pod", p.clone()));
    }
    for (name, value) in [("route", &f.route), ("client", &f.client), ("server", &f.server)] {
        if let Some(v) = value {
            pairs.push((name, v.clone()));
        }
    }
    if let Some(t) = &f.since {
        pairs.push(("since", time(t)?));
    }
    if let Some(t) = &f.until {
        pairs.push(("until", time(t)?));
    }
    if f.limit != DEFAULT_LIMIT {
        pairs.push(("limit", f.limit.to_string()));
    }
    Some(serde_urlencoded::to_string(&pairs).expect("strings always encode"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Some(filter) = parse(query) else {
        return;
    };
    if let Some(written) = to_query(&filter) {
        assert_eq!(parse(&written).as_ref(), Some(&filter), "{query:?} → {filter:?} → {written:?}");
    }
    let record = TrafficLog {
        ts: now(),
        src_ip: filter.ip.unwrap_or([127, 0, 0, 1].into()),
        src_port: 1,
        dst_ip: [127, 0, 0, 1].into(),
        dst_port: 80,
        method: filter.method.clone().unwrap_or_default(),
        path: filter.path_prefix.clone().unwrap_or_default(),
        host: None,
        status: filter.status.map_or(0, |s| s.range().1),
        latency_us: 0,
        req_bytes: 0,
        resp_bytes: 0,
        src_pid: filter.pid,
        src_comm: None,
        dst_pid: None,
        dst_comm: None,
        src_namespace: None,
        src_pod: None,
        src_container: None,
        src_container_id: None,
        src_node: None,
        dst_namespace: None,
        dst_pod: None,
        dst_container: None,
        dst_container_id: None,
        dst_node: None,
        dst_service_ip: None,
        dst_service_port: None,
        exchange_id: None,
        route: None,
        node: String::new(),
    };
    let _ = filter.matches(&record);
});
