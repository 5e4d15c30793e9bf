//! The reporter end to end against a scripted server: every answer the retry table names, its
//! outcome asserted on the wire (what was sent again, under which id, when), and the spool
//! across a simulated restart.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use liteobs_model::TrafficLog;
use tokio::sync::watch;
use tokio::time::Instant;

use super::testing::{Seen, Step, answer, rec, scripted_server};
use super::*;
use crate::spool::{Spool, SpoolConfig};

fn quick(server: &str) -> ReporterConfig {
    ReporterConfig {
        batch_size: 2,
        flush_interval: Duration::from_millis(10),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        request_timeout: Duration::from_secs(5),
        ..ReporterConfig::new(server)
    }
}

/// Runs a reporter over `records` (queue closed up front) with an optional deadline.
fn report_with(
    cfg: ReporterConfig,
    records: Vec<TrafficLog>,
    deadline: Option<Duration>,
    spool: Option<Spool>,
) -> Result<ReportStats, ReportError> {
    actix_rt::System::new().block_on(async move {
        let q = RecordQueue::new(100, Overflow::DropOldest);
        q.push(&mut records.clone());
        q.close();
        let (tx, rx) = watch::channel(deadline.map(|d| Instant::now() + d));
        let mut r = Reporter::new(cfg, Arc::new(ReportCounters::default()));
        if let Some(s) = spool {
            r = r.with_spool(s);
        }
        let out = r.run(&q, rx).await;
        drop(tx);
        out
    })
}

fn report(
    cfg: ReporterConfig,
    records: Vec<TrafficLog>,
    deadline: Option<Duration>,
) -> Result<ReportStats, ReportError> {
    report_with(cfg, records, deadline, None)
}

fn seen(log: &Arc<Mutex<Vec<Seen>>>) -> Vec<Seen> {
    log.lock().unwrap().clone()
}

fn recs(r: std::ops::Range<u32>) -> Vec<TrafficLog> {
    r.map(rec).collect()
}

#[test]
fn uploads_batches_with_headers_token_and_one_id_each() {
    let (url, log) = scripted_server(vec![answer(200, r#"{"accepted": 2}"#)]);
    let cfg = ReporterConfig { token: Some("s3cret".into()), ..quick(&url) };
    let stats = report(cfg, recs(0..5), None).unwrap();
    assert_eq!((stats.records_acked, stats.batches_acked, stats.upload_failures), (5, 3, 0));
    let seen = seen(&log);
    let all: Vec<TrafficLog> = seen.iter().flat_map(|s| s.records.clone()).collect();
    assert_eq!(all, recs(0..5));
    assert_eq!(seen[0].header("content-type"), Some("application/x-ndjson"));
    assert_eq!(seen[0].header("content-encoding"), Some("gzip"));
    assert_eq!(seen[0].header("authorization"), Some("Bearer s3cret"));
    let ids: std::collections::HashSet<&str> = seen.iter().map(Seen::id).collect();
    assert_eq!(ids.len(), 3, "one id per batch");
    assert!(ids.iter().all(|id| BatchId::parse(id).is_ok()), "{ids:?}");
}

#[test]
fn every_retried_answer_resends_the_same_bytes_under_the_same_id() {
    let retried: Vec<(&str, Step)> = vec![
        ("429", answer(429, "slow down")),
        ("408", answer(408, "")),
        ("503", answer(503, "busy")),
        ("503 with Retry-After", Step::Answer(503, vec![("Retry-After", "0")], "{}".into())),
        ("500", answer(500, "oops")),
        ("502", answer(502, "")),
        ("connection cut after the body", Step::Cut),
    ];
    for (what, step) in retried {
        let (url, log) = scripted_server(vec![step.clone(), step, answer(200, r#"{"accepted": 2}"#)]);
        let stats = report(quick(&url), recs(0..2), None).unwrap();
        assert_eq!((stats.records_acked, stats.upload_failures, stats.records_rejected), (2, 2, 0), "{what}");
        let seen = seen(&log);
        assert_eq!(seen.len(), 3, "{what}");
        assert!(!seen[0].id().is_empty(), "{what}: no {} header", liteobs_model::BATCH_ID_HEADER);
        for s in &seen[1..] {
            assert_eq!(s.id(), seen[0].id(), "{what}: a retry under another id would be inserted twice");
            assert_eq!(s.records, recs(0..2), "{what}");
        }
    }
}

#[test]
fn retry_after_is_obeyed_but_bounded_by_max_backoff() {
    // Honoured: 1 s asked, backoff alone would be 10 ms.
    let (url, log) = scripted_server(vec![
        Step::Answer(503, vec![("Retry-After", "1")], String::new()),
        answer(200, "{}"),
    ]);
    let cfg = ReporterConfig { max_backoff: Duration::from_secs(5), ..quick(&url) };
    report(cfg, recs(0..1), None).unwrap();
    let s = seen(&log);
    let gap = s[1].at - s[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}, the server asked for 1 s");
    assert!(gap < Duration::from_secs(3), "{gap:?}");

    // Bounded: an hour asked, -max-backoff is 300 ms.
    let (url, log) = scripted_server(vec![
        Step::Answer(429, vec![("Retry-After", "3600")], String::new()),
        answer(200, "{}"),
    ]);
    let cfg = ReporterConfig { max_backoff: Duration::from_millis(300), ..quick(&url) };
    report(cfg, recs(0..1), None).unwrap();
    let s = seen(&log);
    let gap = s[1].at - s[0].at;
    assert!(gap >= Duration::from_millis(280) && gap < Duration::from_secs(2), "retried after {gap:?}");
}

#[test]
fn a_bad_record_is_dropped_and_its_ten_neighbours_resent() {
    let bad = r#"{"error": "record 4, field `status`: invalid value", "index": 4, "field": "status"}"#;
    let (url, log) =
        scripted_server(vec![answer(400, bad), answer(503, ""), answer(200, r#"{"accepted": 10}"#)]);
    let cfg = ReporterConfig { batch_size: 11, ..quick(&url) };
    let stats = report(cfg, recs(0..11), None).unwrap();
    assert_eq!((stats.records_acked, stats.records_rejected, stats.batches_resent), (10, 1, 1));
    let s = seen(&log);
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].records, recs(0..11));
    let rest: Vec<TrafficLog> = (0..11).filter(|i| *i != 4).map(rec).collect();
    assert_eq!(s[1].records, rest, "the batch without record 4, in order");
    assert_eq!(s[1].id(), format!("{}.r4", s[0].id()), "the rest has its own id, derived");
    assert_eq!(s[2].id(), s[1].id(), "and keeps it on retry");
    assert_eq!(s[2].records, rest);
}

#[test]
fn a_400_without_index_drops_the_batch_once_and_counts_it() {
    let (url, log) = scripted_server(vec![answer(400, r#"{"error": "malformed gzip"}"#), answer(200, "{}")]);
    let stats = report(quick(&url), recs(0..4), None).unwrap();
    assert_eq!((stats.records_rejected, stats.batches_rejected), (2, 1));
    assert_eq!((stats.records_acked, stats.upload_failures), (2, 0));
    assert_eq!(seen(&log).len(), 2, "not retried");
}

#[test]
fn resends_are_bounded() {
    let (url, log) = scripted_server(vec![answer(400, r#"{"error": "bad", "index": 0}"#)]);
    let cfg = ReporterConfig { batch_size: 10, max_resends: 3, ..quick(&url) };
    let stats = report(cfg, recs(0..10), None).unwrap();
    assert_eq!(seen(&log).len(), 4, "the batch, then 3 resends");
    assert_eq!(
        (stats.records_rejected, stats.records_acked),
        (10, 0),
        "3 dropped one by one, then the last 7"
    );
}

#[test]
fn an_index_outside_the_batch_drops_it_rather_than_guess() {
    let (url, log) = scripted_server(vec![answer(400, r#"{"error": "bad", "index": 9}"#)]);
    let stats = report(quick(&url), recs(0..2), None).unwrap();
    assert_eq!((stats.records_rejected, stats.batches_rejected, stats.batches_resent), (2, 1, 0));
    assert_eq!(seen(&log).len(), 1);
}

#[test]
fn too_large_batches_are_split_each_half_under_a_stable_derived_id() {
    let (url, log) = scripted_server(vec![answer(413, ""), answer(503, ""), answer(200, "{}")]);
    let cfg = ReporterConfig { batch_size: 4, ..quick(&url) };
    let stats = report(cfg, recs(0..4), None).unwrap();
    assert_eq!((stats.records_acked, stats.batches_acked), (4, 2));
    let s = seen(&log);
    assert_eq!(s.iter().map(|s| s.records.len()).collect::<Vec<_>>(), [4, 2, 2, 2]);
    let root = s[0].id();
    assert_eq!(s[1].id(), format!("{root}.a"));
    assert_eq!(s[2].id(), format!("{root}.a"), "the half keeps its id on retry");
    assert_eq!(s[3].id(), format!("{root}.b"));
    assert_eq!(s[1].records, recs(0..2));
    assert_eq!(s[3].records, recs(2..4));
}

#[test]
fn a_single_record_too_large_is_dropped_and_counted() {
    let (url, _) = scripted_server(vec![answer(413, "")]);
    let stats = report(quick(&url), recs(0..1), None).unwrap();
    assert_eq!((stats.records_rejected, stats.records_acked), (1, 0));
}

#[test]
fn unauthorized_is_a_clear_error() {
    let (url, log) = scripted_server(vec![answer(401, "bad token")]);
    let e = report(quick(&url), vec![rec(0)], None).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("401 Unauthorized: bad token"), "{msg}");
    assert!(msg.contains("LITEOBS_TOKEN"), "{msg}");
    assert_eq!(seen(&log).len(), 1, "not retried");
}

#[test]
fn a_duplicate_answer_is_a_delivery_counted_as_such() {
    let (url, log) = scripted_server(vec![answer(200, r#"{"accepted": 2, "duplicate": true}"#)]);
    let stats = report(quick(&url), recs(0..2), None).unwrap();
    assert_eq!((stats.records_acked, stats.batches_duplicate, stats.upload_failures), (2, 1, 0));
    assert_eq!(seen(&log).len(), 1);
}

#[test]
fn shutdown_deadline_abandons_what_the_server_never_took() {
    // Nothing listens on this port: every attempt is a connection error.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t0 = std::time::Instant::now();
    let stats =
        report(quick(&format!("http://127.0.0.1:{port}")), recs(0..5), Some(Duration::from_millis(300)))
            .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(stats.records_acked, 0);
    assert_eq!(stats.records_abandoned, 5);
    assert!(stats.upload_failures >= 2);
}

#[test]
fn spooled_batches_outlive_the_reporter_and_go_out_later_under_the_same_ids() {
    let dir = tempfile::tempdir().unwrap();
    let spool = || Spool::open(&SpoolConfig { dir: dir.path().to_owned(), max_bytes: 1 << 20 }).unwrap().0;

    // The server is down (503) until the shutdown deadline: nothing is abandoned, all is on disk.
    let (url, down) = scripted_server(vec![answer(503, "")]);
    let stats =
        report_with(quick(&url), recs(0..5), Some(Duration::from_millis(300)), Some(spool())).unwrap();
    assert_eq!((stats.records_acked, stats.records_abandoned, stats.records_spooled), (0, 0, 5));
    let tried = seen(&down);
    assert!(!tried.is_empty());
    assert!(
        tried.iter().all(|s| s.id() == tried[0].id() && s.records == recs(0..2)),
        "oldest batch first, one id"
    );

    // A later run, with nothing new: the spool goes out, oldest first, the first batch under
    // the id it was tried with before.
    let (url, up) = scripted_server(vec![answer(200, "{}")]);
    let stats = report_with(quick(&url), Vec::new(), None, Some(spool())).unwrap();
    assert_eq!((stats.records_acked, stats.records_spooled), (5, 0));
    let sent = seen(&up);
    assert_eq!(sent.iter().flat_map(|s| s.records.clone()).collect::<Vec<_>>(), recs(0..5));
    assert_eq!(sent[0].id(), tried[0].id());
    let left = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".batch"))
        .count();
    assert_eq!(left, 0, "delivered files are deleted");
}

#[test]
fn a_replay_waits_for_room_in_a_full_spool_instead_of_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let one = crate::spool::file::encoded_len(&Batch::encode(&recs(0..2)).unwrap());
    let spool = Spool::open(&SpoolConfig { dir: dir.path().to_owned(), max_bytes: one * 2 }).unwrap().0;
    let (url, log) = scripted_server(vec![answer(503, ""), answer(503, ""), answer(200, "{}")]);
    let stats = actix_rt::System::new()
        .block_on(async move {
            let q = RecordQueue::new(100, Overflow::Wait);
            q.push(&mut recs(0..10));
            q.close();
            let (_tx, rx) = watch::channel(None);
            Reporter::new(quick(&url), Arc::new(ReportCounters::default()))
                .with_spool(spool)
                .run(&q, rx)
                .await
        })
        .unwrap();
    assert_eq!((stats.records_acked, stats.records_spool_dropped), (10, 0));
    let all: Vec<TrafficLog> = seen(&log).iter().skip(2).flat_map(|s| s.records.clone()).collect();
    assert_eq!(all, recs(0..10));
}

#[test]
fn a_spool_that_stops_taking_writes_falls_back_to_memory_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let spool = Spool::open(&SpoolConfig { dir: spool_dir.clone(), max_bytes: 1 << 20 }).unwrap().0;
    // The disk goes away under the agent: every write fails from now on.
    std::fs::remove_dir_all(&spool_dir).unwrap();
    let (url, log) = scripted_server(vec![answer(200, "{}")]);
    let stats = report_with(quick(&url), recs(0..5), None, Some(spool)).unwrap();
    assert_eq!((stats.records_acked, stats.spool_write_errors), (5, 3));
    let all: Vec<TrafficLog> = seen(&log).iter().flat_map(|s| s.records.clone()).collect();
    assert_eq!(all, recs(0..5));
}
