//! One conformance suite, run unchanged against every backend: same records in, same answers
//! out. Each check takes a fresh, empty store; [`conformance_tests!`] stamps out one `#[test]`
//! per check for a backend. The expected answers come from [`Filter::matches`], the reference
//! semantics, applied to the records in memory.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use liteobs_model::{Filter, StatusMatch, TrafficLog};

use std::path::Path;

use super::{Backend, Store, open};

fn base_time() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap_or_default()
}

/// A varied, deterministic set of records: `n` exchanges over 4 clients, 3 servers, several
/// methods, statuses and paths, IPv4 and IPv6, with and without PIDs, some sharing a timestamp.
pub fn corpus(n: usize) -> Vec<TrafficLog> {
    let clients: [IpAddr; 4] = ["10.0.0.1", "10.0.0.2", "fd00::1", "::ffff:10.0.0.9"]
        .map(|s| s.parse().unwrap_or(IpAddr::from([0; 4])));
    let servers: [IpAddr; 3] =
        ["10.0.1.1", "fd00::2", "127.0.0.1"].map(|s| s.parse().unwrap_or(IpAddr::from([0; 4])));
    let methods = ["GET", "POST", "PUT", "DELETE", "HEAD"];
    let statuses = [200u16, 201, 204, 301, 404, 500, 503, 0, 101];
    let paths = ["/", "/api/v1/items?id=7", "/api/v2/users", "/健康/检查", "/static/app.js", "/api"];
    (0..n)
        .map(|i| TrafficLog {
            // Every third record shares its predecessor's timestamp: ordering ties must break
            // by insertion order.
            ts: base_time() + Duration::microseconds((i - i % 3 / 2) as i64 * 1_000),
            src_ip: clients[i % 4],
            src_port: 40_000 + (i % 20_000) as u16,
            dst_ip: servers[i % 3],
            dst_port: [80, 8080, 443][i % 3],
            method: methods[i % 5].into(),
            path: paths[i % 6].into(),
            host: (i % 4 != 0).then(|| format!("svc-{}.test", i % 3)),
            status: statuses[i % 9],
            latency_us: (i as u64 * 37) % 100_000,
            req_bytes: (i as u64 * 11) % 5_000,
            resp_bytes: (i as u64 * 101) % 1_000_000,
            src_pid: (i % 5 != 0).then_some(1000 + (i % 7) as u32),
            src_comm: (i % 5 != 0).then(|| format!("client-{}", i % 7)),
            dst_pid: (i % 6 != 0).then_some(2000 + (i % 4) as u32),
            dst_comm: (i % 6 != 0).then(|| "nginx".to_string()),
            node: format!("node-{}", i % 2),
        })
        .collect()
}

/// What a correct store answers: matching records, newest first, ties newest-inserted first.
fn expected(records: &[TrafficLog], f: &Filter) -> Vec<TrafficLog> {
    let mut m: Vec<(usize, &TrafficLog)> = records.iter().enumerate().filter(|(_, r)| f.matches(r)).collect();
    m.sort_by(|a, b| b.1.ts.cmp(&a.1.ts).then(b.0.cmp(&a.0)));
    m.into_iter().take(f.limit).map(|(_, r)| r.clone()).collect()
}

fn filters() -> Vec<Filter> {
    let ip = |s: &str| s.parse().ok();
    let t = base_time();
    let f = Filter::default;
    vec![
        f(),
        Filter { limit: 1, ..f() },
        Filter { limit: 10_000, ..f() },
        Filter { ip: ip("10.0.0.1"), ..f() },
        Filter { ip: ip("fd00::2"), ..f() },
        Filter { ip: ip("::ffff:10.0.0.9"), ..f() },
        Filter { ip: ip("192.0.2.1"), ..f() },
        Filter { pid: Some(1003), ..f() },
        Filter { pid: Some(2001), ..f() },
        Filter { pid: Some(4242), ..f() },
        Filter { method: Some("POST".into()), ..f() },
        Filter { status: Some(StatusMatch::Exact(404)), ..f() },
        Filter { status: Some(StatusMatch::Class(5)), ..f() },
        Filter { status: Some(StatusMatch::Class(0)), ..f() },
        Filter { path_prefix: Some("/api".into()), ..f() },
        Filter { path_prefix: Some("/api/v1".into()), ..f() },
        Filter { path_prefix: Some("/健康".into()), ..f() },
        Filter { path_prefix: Some("/API".into()), ..f() },
        Filter { path_prefix: Some("%".into()), ..f() },
        Filter { since: Some(t + Duration::milliseconds(100)), ..f() },
        Filter { until: Some(t + Duration::milliseconds(100)), ..f() },
        Filter {
            since: Some(t + Duration::milliseconds(50)),
            until: Some(t + Duration::milliseconds(150)),
            limit: 10_000,
            ..f()
        },
        Filter {
            ip: ip("10.0.0.2"),
            pid: Some(1001),
            method: Some("GET".into()),
            status: Some(StatusMatch::Class(2)),
            limit: 10_000,
            ..f()
        },
    ]
}

pub fn empty_store_answers_nothing(s: &dyn Store) {
    for f in filters() {
        assert!(s.query(&f).expect("query").is_empty(), "{f:?}");
    }
}

pub fn every_filter_matches_the_reference(s: &dyn Store) {
    let records = corpus(600);
    // In several batches, as an agent would send them.
    for chunk in records.chunks(250) {
        assert_eq!(s.insert(chunk).expect("insert"), chunk.len());
    }
    for f in filters() {
        let got = s.query(&f).expect("query");
        let want = expected(&records, &f);
        assert_eq!(got.len(), want.len(), "row count for {f:?}");
        assert_eq!(got, want, "rows for {f:?}");
    }
}

pub fn records_round_trip_exactly(s: &dyn Store) {
    let records = corpus(40);
    s.insert(&records).expect("insert");
    let mut got = s.query(&Filter { limit: 100, ..Filter::default() }).expect("query");
    got.reverse();
    // Reversed newest-first order is insertion order only where timestamps are distinct, so
    // compare as sets keyed by (ts, src_port).
    let key = |r: &TrafficLog| (r.ts, r.src_port);
    let mut want = records.clone();
    want.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(got, want);
}

pub fn query_by_ip_and_pid_are_either_side(s: &dyn Store) {
    let records = corpus(200);
    s.insert(&records).expect("insert");
    let ip: IpAddr = "127.0.0.1".parse().expect("ip");
    let by_ip = s.query_by_ip(ip, 10_000).expect("by ip");
    assert!(!by_ip.is_empty());
    assert!(by_ip.iter().all(|r| r.src_ip == ip || r.dst_ip == ip));
    assert_eq!(by_ip.len(), records.iter().filter(|r| r.src_ip == ip || r.dst_ip == ip).count());
    let mut loopback = corpus(1);
    loopback[0].src_pid = Some(77);
    loopback[0].dst_pid = Some(88);
    s.insert(&loopback).expect("insert");
    assert_eq!(s.query_by_pid(77, 10).expect("src side").len(), 1);
    assert_eq!(s.query_by_pid(88, 10).expect("dst side").len(), 1);
    assert_eq!(s.query_by_pid(1002, 3).expect("limit").len(), 3);
}

pub fn empty_batch_and_large_batch(s: &dyn Store) {
    assert_eq!(s.insert(&[]).expect("empty"), 0);
    let big = corpus(25_000);
    assert_eq!(s.insert(&big).expect("large"), big.len());
    let all = s.query(&Filter { limit: 10_000, ..Filter::default() }).expect("query");
    assert_eq!(all.len(), 10_000);
    assert_eq!(all, expected(&big, &Filter { limit: 10_000, ..Filter::default() }));
}

pub fn extreme_values_survive(s: &dyn Store) {
    let mut r = corpus(1).remove(0);
    r.latency_us = i64::MAX as u64;
    r.resp_bytes = 0;
    r.src_port = u16::MAX;
    r.status = 999;
    r.src_pid = Some(u32::MAX);
    r.path = format!("/{}", "ü".repeat(4000));
    r.method = "PROPFIND".into();
    r.src_comm = Some("x\u{0}y".into());
    s.insert(std::slice::from_ref(&r)).expect("insert");
    assert_eq!(s.query(&Filter::default()).expect("query"), vec![r.clone()]);
    assert_eq!(s.query_by_pid(u32::MAX, 1).expect("by pid"), vec![r]);
}

/// Data survives a reopen, and `seq` continues so that ordering stays right across restarts.
pub fn reopen_keeps_data_and_order(backend: Backend, path: &Path) {
    let records = corpus(30);
    {
        let s = open(backend, path).expect("open");
        s.insert(&records[..20]).expect("insert");
    }
    let s = open(backend, path).expect("reopen");
    s.insert(&records[20..]).expect("insert after reopen");
    let f = Filter { limit: 1000, ..Filter::default() };
    assert_eq!(s.query(&f).expect("query"), expected(&records, &f));
}

/// A file that is not a database of this kind is refused with an error naming it.
pub fn garbage_file_is_refused(backend: Backend, path: &Path) {
    std::fs::write(path, vec![0x5a; 64 * 1024]).expect("write garbage");
    let err = open(backend, path).err().expect("garbage must not open");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

/// Stamps out one `#[test]` per conformance check for `$backend`, each on a fresh file.
macro_rules! conformance_tests {
    ($backend:expr) => {
        mod conformance {
            use crate::store::Backend;
            use crate::store::conformance as c;
            fn path(dir: &tempfile::TempDir) -> std::path::PathBuf {
                dir.path().join($backend.default_path())
            }
            fn with_store(check: fn(&dyn crate::store::Store)) {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = crate::store::open($backend, &path(&dir)).expect("open");
                check(store.as_ref());
            }
            #[test]
            fn reopen_keeps_data_and_order() {
                let dir = tempfile::tempdir().expect("tempdir");
                c::reopen_keeps_data_and_order($backend, &path(&dir))
            }
            #[test]
            fn garbage_file_is_refused() {
                let dir = tempfile::tempdir().expect("tempdir");
                c::garbage_file_is_refused($backend, &path(&dir))
            }
            #[test]
            fn empty_store_answers_nothing() {
                with_store(c::empty_store_answers_nothing)
            }
            #[test]
            fn every_filter_matches_the_reference() {
                with_store(c::every_filter_matches_the_reference)
            }
            #[test]
            fn records_round_trip_exactly() {
                with_store(c::records_round_trip_exactly)
            }
            #[test]
            fn query_by_ip_and_pid_are_either_side() {
                with_store(c::query_by_ip_and_pid_are_either_side)
            }
            #[test]
            fn empty_batch_and_large_batch() {
                with_store(c::empty_batch_and_large_batch)
            }
            #[test]
            fn extreme_values_survive() {
                with_store(c::extreme_values_survive)
            }
        }
    };
}
pub(crate) use conformance_tests;
