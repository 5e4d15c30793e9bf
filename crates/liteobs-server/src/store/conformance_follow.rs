//! The follower's primitives on every backend, as [`super::conformance`] does for the rest:
//! [`Store::rows_after`] pages in `seq` order under any filter, [`Store::committed`] announces
//! each commit that wrote rows (and only those), a row merged later comes again as an update,
//! a follower paging while uploads commit sees every row once, in order, and `seq` never goes
//! back, even when retention deleted the newest rows before a restart.
//! [`follow_conformance_tests!`] stamps out one `#[test]` per check for a backend.

use std::path::Path;
use std::sync::Arc;

use chrono::Duration;
use liteobs_model::{Filter, TrafficLog};

use super::conformance::{corpus, halves};
use super::{Backend, RowRetention, SeqPage, SeqRecord, Store, StoreOptions, open};

fn page(after: u64, upto: u64, limit: usize) -> SeqPage {
    SeqPage { after, upto, limit, newest: false }
}

fn records(rows: &[SeqRecord]) -> Vec<TrafficLog> {
    rows.iter().map(|r| r.record.clone()).collect()
}

/// The filters of the reference checks that make sense for a stream (no time bounds needed).
fn filters() -> Vec<Filter> {
    let f = |params: &[(&str, &str)]| {
        Filter::from_params(params.iter().copied(), chrono::Utc::now()).expect("a filter")
    };
    vec![
        Filter::default(),
        f(&[("pid", "1003")]),
        f(&[("ip", "fd00::2")]),
        f(&[("method", "POST"), ("status", "5xx")]),
        f(&[("path", "/api/v")]),
        f(&[("namespace", "shop"), ("pod", "web")]),
        f(&[("pid", "424242")]),
    ]
}

/// Pages of any size, under every filter, are the matching records in insertion order; the
/// newest page is the last ones; the bounds are exclusive below and inclusive above.
pub fn rows_after_pages_in_seq_order_under_any_filter(s: &dyn Store) {
    let all = corpus(600);
    for batch in all.chunks(70) {
        s.insert(batch, None).expect("insert");
    }
    let last = *s.committed().borrow();
    assert_eq!(last, 600, "one seq per row, from 1");
    for f in filters() {
        let want: Vec<TrafficLog> = all.iter().filter(|r| f.matches(r)).cloned().collect();
        let whole = s.rows_after(&f, page(0, last, usize::MAX)).expect("rows");
        assert_eq!(records(&whole), want, "{f:?}");
        assert!(whole.windows(2).all(|w| w[0].seq < w[1].seq), "ascending seq");
        assert!(whole.iter().all(|r| !r.update), "nothing was merged");
        let mut paged = Vec::new();
        let mut cursor = 0;
        loop {
            let rows = s.rows_after(&f, page(cursor, last, 7)).expect("page");
            let Some(end) = rows.last() else { break };
            cursor = end.seq;
            paged.extend(rows);
        }
        assert_eq!(paged, whole, "pages of 7 make the whole, {f:?}");
        let newest =
            s.rows_after(&f, SeqPage { after: 0, upto: last, limit: 5, newest: true }).expect("newest");
        assert_eq!(newest, whole[whole.len().saturating_sub(5)..], "{f:?}");
    }
    let mid = s.rows_after(&Filter::default(), page(100, 130, 1000)).expect("range");
    assert_eq!(mid.iter().map(|r| r.seq).collect::<Vec<_>>(), (101..=130).collect::<Vec<_>>());
    assert_eq!(records(&mid), all[100..130]);
    assert!(s.rows_after(&Filter::default(), page(600, 600, 10)).expect("empty").is_empty());
    assert!(s.rows_after(&Filter::default(), page(0, 600, 0)).expect("no limit").is_empty());
}

/// A commit that wrote rows is announced with its last `seq`; a repeated batch (nothing
/// written) wakes nobody; a new receiver starts at the current value; a reopened store
/// announces what it holds and goes on from there.
pub fn committed_announces_each_commit_that_wrote_rows(backend: Backend, path: &Path) {
    let s = open(backend, path, StoreOptions::default()).expect("open");
    let mut rx = s.committed();
    assert_eq!(*rx.borrow_and_update(), 0, "an empty store");
    let id = super::conformance::id("batch-1");
    s.insert(&corpus(10), Some(&id)).expect("insert");
    assert!(rx.has_changed().expect("sender alive"));
    assert_eq!(*rx.borrow_and_update(), 10);
    assert!(s.insert(&corpus(10), Some(&id)).expect("repeat").duplicate);
    assert!(!rx.has_changed().expect("sender alive"), "a repeat writes nothing and announces nothing");
    s.insert(&[], None).expect("empty batch");
    assert!(!rx.has_changed().expect("sender alive"), "nor does an empty batch");
    s.insert(&corpus(3), None).expect("insert");
    assert_eq!(*rx.borrow_and_update(), 13);
    assert_eq!(*s.committed().borrow(), 13, "a new receiver sees the current value");
    drop(s);
    let s = open(backend, path, StoreOptions::default()).expect("reopen");
    assert_eq!(*s.committed().borrow(), 13);
    s.insert(&corpus(2), None).expect("insert");
    let rows = s.rows_after(&Filter::default(), page(13, 15, 10)).expect("rows");
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [14, 15]);
}

/// A half that completes a stored row writes it again under a new `seq`, marked as an update;
/// the row's old `seq` is gone, so a follower past it gets the exchange once more, as an update,
/// and one that was not yet past it gets it once.
pub fn a_merged_row_comes_again_as_an_update(backend: Backend, path: &Path) {
    let options = StoreOptions { merge_window: Some(super::DEFAULT_MERGE_WINDOW), ..StoreOptions::default() };
    let s = open(backend, path, options).expect("open");
    let [a, _, b] = halves(1);
    s.insert(std::slice::from_ref(&a), None).expect("a");
    let others: Vec<TrafficLog> =
        corpus(3).into_iter().map(|r| TrafficLog { exchange_id: None, ..r }).collect();
    s.insert(&others, None).expect("others");
    let cursor = *s.committed().borrow();
    assert_eq!(cursor, 4);
    let first = s.rows_after(&Filter::default(), page(0, cursor, 10)).expect("rows");
    assert_eq!((first[0].seq, first[0].update, first[0].record.exchange_id), (1, false, a.exchange_id));
    assert_eq!(s.insert(std::slice::from_ref(&b), None).expect("b").merged, 1);
    let last = *s.committed().borrow();
    assert_eq!(last, 5, "the merged row took the next seq");
    let after = s.rows_after(&Filter::default(), page(cursor, last, 10)).expect("rows");
    assert_eq!(after.len(), 1);
    let merged = &after[0];
    assert_eq!((merged.seq, merged.update), (5, true));
    assert_eq!(merged.record, liteobs_model::merge::merge(a.clone(), b.clone()));
    let whole = s.rows_after(&Filter::default(), page(0, last, 10)).expect("rows");
    assert_eq!(whole.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3, 4, 5], "seq 1 is gone");
    // Halves that meet within one commit are a new row, not an update.
    let [c, _, d] = halves(2);
    s.insert(&[c, d], None).expect("both halves");
    let fresh = s.rows_after(&Filter::default(), page(last, last + 10, 10)).expect("rows");
    assert_eq!(fresh.iter().map(|r| (r.seq, r.update)).collect::<Vec<_>>(), [(6, false)]);
}

/// A follower paging after its cursor each time a commit is announced, while uploads commit
/// from other threads, sees every row exactly once and in the order of `seq`.
pub fn a_follower_during_uploads_sees_every_row_once_in_order(backend: Backend, path: &Path) {
    let s: Arc<dyn Store> = open(backend, path, StoreOptions::default()).expect("open").into();
    let all = corpus(3_000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let seen = std::thread::scope(|scope| {
        for part in all.chunks(1_000) {
            let s = s.clone();
            scope.spawn(move || {
                for batch in part.chunks(25) {
                    s.insert(batch, None).expect("insert");
                }
            });
        }
        let mut rx = s.committed();
        let mut cursor = 0;
        let mut seen: Vec<SeqRecord> = Vec::new();
        while seen.len() < all.len() {
            let upto = *rx.borrow_and_update();
            loop {
                let rows = s.rows_after(&Filter::default(), page(cursor, upto, 100)).expect("page");
                cursor = match rows.last() {
                    Some(last) if rows.len() == 100 => last.seq,
                    _ => upto,
                };
                let done = rows.len() < 100;
                seen.extend(rows);
                if done {
                    break;
                }
            }
            if seen.len() < all.len() {
                rt.block_on(async {
                    tokio::time::timeout(std::time::Duration::from_secs(30), rx.changed())
                        .await
                        .expect("a commit within 30 s")
                        .expect("sender alive")
                });
            }
        }
        seen
    });
    assert_eq!(seen.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=3_000).collect::<Vec<u64>>());
    let mut got: Vec<String> = seen.iter().map(|r| serde_json::to_string(&r.record).expect("json")).collect();
    let mut want: Vec<String> = all.iter().map(|r| serde_json::to_string(r).expect("json")).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every row, once");
}

/// Retention that deletes the newest rows does not let a restart give their `seq`s again: a
/// follower's cursor from before still means "after these".
pub fn seq_never_goes_back_after_retention_and_a_restart(backend: Backend, path: &Path) {
    let start = chrono::DateTime::from_timestamp_micros(1_764_000_000_000_000).unwrap_or_default();
    let clock: super::Clock = Arc::new(move || start + Duration::days(30));
    let rows = RowRetention { max_age: Some(Duration::days(7)), max_bytes: None };
    let old: Vec<TrafficLog> = corpus(50).into_iter().map(|r| TrafficLog { ts: start, ..r }).collect();
    let s = open(backend, path, StoreOptions { clock, rows, ..StoreOptions::default() }).expect("open");
    s.insert(&old, None).expect("insert");
    assert_eq!(s.enforce_retention().expect("pass").expired, 50);
    let cursor = *s.committed().borrow();
    assert_eq!(cursor, 50);
    drop(s);
    let s = open(backend, path, StoreOptions::default()).expect("reopen");
    assert_eq!(*s.committed().borrow(), 50, "the last seq given, though its row is gone");
    s.insert(&corpus(2), None).expect("insert");
    let rows = s.rows_after(&Filter::default(), page(cursor, 1_000, 10)).expect("rows");
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [51, 52]);
}

/// Stamps out one `#[test]` per follow check for `$backend`, each on a fresh file.
macro_rules! follow_conformance_tests {
    ($backend:expr) => {
        mod follow_conformance {
            #[allow(unused_imports)]
            use crate::store::Backend;
            use crate::store::conformance_follow as c;
            fn path(dir: &tempfile::TempDir) -> std::path::PathBuf {
                dir.path().join($backend.default_path())
            }
            #[test]
            fn rows_after_pages_in_seq_order_under_any_filter() {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = crate::store::open($backend, &path(&dir), Default::default()).expect("open");
                c::rows_after_pages_in_seq_order_under_any_filter(store.as_ref());
            }
            #[test]
            fn committed_announces_each_commit_that_wrote_rows() {
                let dir = tempfile::tempdir().expect("tempdir");
                c::committed_announces_each_commit_that_wrote_rows($backend, &path(&dir))
            }
            #[test]
            fn a_merged_row_comes_again_as_an_update() {
                let dir = tempfile::tempdir().expect("tempdir");
                c::a_merged_row_comes_again_as_an_update($backend, &path(&dir))
            }
            #[test]
            fn a_follower_during_uploads_sees_every_row_once_in_order() {
                let dir = tempfile::tempdir().expect("tempdir");
                c::a_follower_during_uploads_sees_every_row_once_in_order($backend, &path(&dir))
            }
            #[test]
            fn seq_never_goes_back_after_retention_and_a_restart() {
                let dir = tempfile::tempdir().expect("tempdir");
                c::seq_never_goes_back_after_retention_and_a_restart($backend, &path(&dir))
            }
        }
    };
}
pub(crate) use follow_conformance_tests;
