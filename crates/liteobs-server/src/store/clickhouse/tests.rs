//! The conformance suite's checks that take a store, against a real ClickHouse, then what is
//! ClickHouse's own: day retention, upgrade of an older table, the two-shard cluster with two
//! LiteObs servers writing at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use liteobs_model::{Filter, TrafficLog};

use super::testserver::{self, Node};
use super::{ClickhouseConfig, ClickhouseStore};
use crate::store::conformance as c;
use crate::store::{RowRetention, SeqPage, Store, StoreError, StoreOptions};

fn open(config: &ClickhouseConfig) -> ClickhouseStore {
    ClickhouseStore::open(config, StoreOptions::default()).expect("open the ClickHouse store")
}

fn with_store(test: &str, check: fn(&dyn Store)) {
    if testserver::unavailable(test) {
        return;
    }
    let node = testserver::single();
    let store = open(&testserver::config(node, &testserver::fresh_database(node)));
    check(&store);
}

macro_rules! store_checks {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                with_store(stringify!($name), c::$name)
            }
        )*
    };
}

store_checks!(
    empty_store_answers_nothing,
    every_filter_matches_the_reference,
    routes_and_node_ids_match_the_reference,
    records_round_trip_exactly,
    query_by_ip_and_pid_are_either_side,
    empty_batch_and_large_batch,
    extreme_values_survive,
    strings_compare_as_bytes,
    time_bounds_since_inclusive_until_exclusive,
    ties_limits_and_either_side,
    same_batch_id_twice_stores_once,
    concurrent_uploads_of_one_id_insert_once,
    stats_match_the_reference,
    map_matches_the_reference,
);

fn all(s: &dyn Store) -> Vec<TrafficLog> {
    s.query(&Filter { limit: liteobs_model::filter::MAX_LIMIT, ..Filter::default() }).expect("query")
}

fn sorted(mut v: Vec<TrafficLog>) -> Vec<TrafficLog> {
    v.sort_by_key(|r| serde_json::to_string(r).unwrap_or_default());
    v
}

fn at(t: DateTime<Utc>, mut records: Vec<TrafficLog>) -> Vec<TrafficLog> {
    for (i, r) in records.iter_mut().enumerate() {
        r.ts = t + chrono::Duration::seconds(i64::try_from(i).unwrap_or(0));
    }
    records
}

#[test]
fn retention_drops_whole_days_and_gives_the_space_back() {
    if testserver::unavailable("retention_drops_whole_days_and_gives_the_space_back") {
        return;
    }
    let node = testserver::single();
    let config = testserver::config(node, &testserver::fresh_database(node));
    let now = DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default();
    let clock = Arc::new(Mutex::new(now));
    let read = Arc::clone(&clock);
    let options = StoreOptions {
        clock: Arc::new(move || *read.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
        rows: RowRetention { max_age: Some(chrono::Duration::days(7)), max_bytes: None },
        ..StoreOptions::default()
    };
    let store = ClickhouseStore::open(&config, options).expect("open");
    let old = at(now - chrono::Duration::days(10), c::corpus(40));
    let edge = at(now - chrono::Duration::days(7) + chrono::Duration::hours(1), c::corpus(30));
    let young = at(now - chrono::Duration::hours(2), c::corpus(20));
    for batch in [&old, &edge, &young] {
        store.insert(batch, None).expect("insert");
    }
    store.shared.poll().expect("poll");
    let before = store.size();
    let report = store.enforce_retention().expect("retention pass");
    assert_eq!(
        report.expired, 40,
        "the day 10 days back goes, the day 7 days back stays (part of it is younger)"
    );
    let left = all(&store);
    assert_eq!(left.len(), 50);
    assert!(left.iter().all(|r| r.ts > now - chrono::Duration::days(8)));
    let after = store.size();
    assert_eq!(after.rows, 50);
    assert!(after.bytes < before.bytes, "dropping a partition removes its files: {before:?} -> {after:?}");
    // The size bound drops the oldest remaining day, never the newest.
    let bounded =
        StoreOptions { rows: RowRetention { max_age: None, max_bytes: Some(1) }, ..StoreOptions::default() };
    let store = ClickhouseStore::open(&config, bounded).expect("reopen");
    let report = store.enforce_retention().expect("size pass");
    assert_eq!(report.evicted, 30);
    assert_eq!(sorted(all(&store)), sorted(young.clone()));
}

#[test]
fn an_older_table_is_upgraded_in_place_and_keeps_its_rows() {
    if testserver::unavailable("an_older_table_is_upgraded_in_place_and_keeps_its_rows") {
        return;
    }
    let node = testserver::single();
    let db = testserver::fresh_database(node);
    let config = testserver::config(node, &db);
    let records = c::corpus(25);
    drop({
        let store = open(&config);
        store.insert(&records, None).expect("insert");
        store
    });
    // As a server of schema version 3 left it: no `route` column.
    testserver::run(node, &format!("ALTER TABLE {db}.traffic_logs DROP COLUMN route"));
    let store = open(&config);
    let got = all(&store);
    assert_eq!(got.len(), 25);
    assert!(got.iter().all(|r| r.route.is_none()), "rows from before the upgrade have no route");
    let mut fresh = c::corpus(3);
    for r in &mut fresh {
        r.path = "/upgraded".into();
    }
    store.insert(&fresh, None).expect("insert after the upgrade");
    let routed =
        store.query(&Filter { path_prefix: Some("/upgraded".into()), ..Filter::default() }).expect("query");
    assert!(routed.iter().all(|r| r.route.as_deref() == Some("/upgraded")));
}

#[test]
fn a_foreign_table_is_refused() {
    if testserver::unavailable("a_foreign_table_is_refused") {
        return;
    }
    let node = testserver::single();
    let db = testserver::fresh_database(node);
    testserver::run(node, &format!("CREATE TABLE {db}.traffic_logs (x UInt8) ENGINE = Memory"));
    let err = ClickhouseStore::open(&testserver::config(node, &db), StoreOptions::default()).map(drop);
    assert!(matches!(err, Err(StoreError::ForeignSchema { .. })), "{err:?}");
}

#[test]
fn followers_see_committed_rows_in_order() {
    if testserver::unavailable("followers_see_committed_rows_in_order") {
        return;
    }
    let node = testserver::single();
    let store = open(&testserver::config(node, &testserver::fresh_database(node)));
    let mut watch = store.committed();
    let first = c::corpus(7);
    store.insert(&first, None).expect("insert");
    let deadline = Instant::now() + Duration::from_secs(10);
    while *watch.borrow_and_update() == 0 {
        assert!(Instant::now() < deadline, "the commit was not announced");
        std::thread::sleep(Duration::from_millis(50));
    }
    let upto = *watch.borrow();
    let page = SeqPage { after: 0, upto, limit: 100, newest: false };
    let rows = store.rows_after(&Filter::default(), page).expect("rows_after");
    assert_eq!(rows.iter().map(|r| r.record.clone()).collect::<Vec<_>>(), first, "in upload order");
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// Two ClickHouse servers, one shard each, one `remote_servers` cluster.
fn two_shards() -> (Node, Node) {
    let ports = [free_tcp(), free_tcp()];
    let xml = testserver::cluster_xml("liteobs_two", &ports);
    (testserver::start_with(ports[0], &xml), testserver::start_with(ports[1], &xml))
}

fn free_tcp() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

#[test]
fn two_servers_write_one_sharded_cluster_exactly_once() {
    if testserver::unavailable("two_servers_write_one_sharded_cluster_exactly_once") {
        return;
    }
    let (a, b) = two_shards();
    for node in [&a, &b] {
        testserver::run(node, "CREATE DATABASE liteobs");
    }
    // Each LiteObs server knows both nodes, and talks to its own first.
    let replica = |first: &Node, second: &Node, n: u16| ClickhouseConfig {
        urls: vec![first.url(), second.url()],
        database: "liteobs".into(),
        cluster: Some("liteobs_two".into()),
        replica: Some(n),
        ..Default::default()
    };
    let one = Arc::new(open(&replica(&a, &b, 1)));
    let two = Arc::new(open(&replica(&b, &a, 2)));
    let records = c::corpus(600);
    let batches: Vec<(String, Vec<TrafficLog>)> =
        records.chunks(20).enumerate().map(|(i, b)| (format!("batch-{i}"), b.to_vec())).collect();
    // Every batch is sent to both servers at once (an agent's retry landing on the other
    // replica while the first upload is still in flight), from two threads each.
    let mut handles = Vec::new();
    for (store, offset) in
        [(Arc::clone(&one), 0), (Arc::clone(&two), 1), (Arc::clone(&one), 1), (Arc::clone(&two), 0)]
    {
        let batches = batches.clone();
        handles.push(std::thread::spawn(move || {
            let mut fresh = 0;
            for (i, (id, batch)) in batches.iter().enumerate() {
                if i % 2 == offset {
                    let receipt = store.insert(batch, Some(&c::id(id))).expect("insert");
                    assert_eq!(receipt.accepted, batch.len());
                    fresh += usize::from(!receipt.duplicate);
                }
            }
            fresh
        }));
    }
    let fresh: usize = handles.into_iter().map(|h| h.join().expect("uploader")).sum();
    assert!(fresh >= batches.len(), "every batch was stored by someone ({fresh} of {})", batches.len());
    for store in [&one, &two] {
        assert_eq!(
            sorted(all(store.as_ref())),
            sorted(records.clone()),
            "each record once, through either server"
        );
    }
    // Both shards hold rows: the Distributed table spread them.
    for node in [&a, &b] {
        let n: u64 = testserver::run(node, "SELECT count() FROM liteobs.traffic_logs_local")
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(n > 0 && n < 2 * 600, "a shard holds {n} rows");
    }
    // POST /sql's view reads every shard's visible rows.
    let counted =
        one.sql(&crate::store::SqlQuery { sql: "SELECT count() AS n FROM traffic".into(), limit: 1 });
    assert_eq!(counted.expect("sql").rows, vec![vec![serde_json::json!(600)]]);
    // Aggregates are computed across the shards and match the reference.
    let now = records.iter().map(|r| r.ts).max().unwrap_or_default() + chrono::Duration::seconds(1);
    let query = liteobs_model::stats::StatsQuery {
        filter: Filter { since: Some(now - chrono::Duration::days(365)), ..Filter::default() },
        group_by: vec![liteobs_model::stats::Dimension::Server],
        sort: liteobs_model::stats::SortKey::Count,
    };
    let got = one.stats(&query, now).expect("stats");
    let want = liteobs_model::stats::reference(&records, &query, now);
    assert_eq!(got.groups, want.groups);
}

#[test]
fn sql_reads_the_visible_rows_and_refuses_what_is_not_a_read() {
    if testserver::unavailable("sql_reads_the_visible_rows_and_refuses_what_is_not_a_read") {
        return;
    }
    let node = testserver::single();
    let db = testserver::fresh_database(node);
    let store = open(&testserver::config(node, &db));
    let records = c::corpus(30);
    store.insert(&records, Some(&c::id("sql-1"))).expect("insert");
    // Rows of an upload that never claimed them (a server that died before its claim): not seen.
    testserver::run(
        node,
        &format!(
            "INSERT INTO {db}.traffic_logs (seq, ts, src_ip, src_port, dst_ip, dst_port, method, path, status, latency_us, req_bytes, resp_bytes, node, batch, attempt) VALUES (1, 0, '10.9.9.9', 1, '10.9.9.8', 2, 'GET', '/orphan', 200, 1, 0, 0, 'n', 7, 7)"
        ),
    );
    let ask = |sql: &str, limit: usize| store.sql(&crate::store::SqlQuery { sql: sql.into(), limit });
    let answer = ask("SELECT count() AS n, sum(status = 500) AS errors FROM traffic", 10).expect("count");
    let want = records.len();
    assert_eq!(
        answer.rows,
        vec![vec![
            serde_json::json!(want),
            serde_json::json!(records.iter().filter(|r| r.status == 500).count())
        ]]
    );
    assert_eq!(answer.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["n", "errors"]);
    let newest = ask("SELECT ts_us, path FROM traffic ORDER BY ts_us DESC", 5).expect("rows");
    assert_eq!(newest.rows.len(), 5);
    assert!(newest.truncated);
    let view = ask("SELECT * FROM traffic LIMIT 1", 1).expect("view");
    assert_eq!(view.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>(), super::sql::view_columns());
    for hostile in [
        "SELECT * FROM url('http://127.0.0.1:1/', TSV, 'a String')",
        "SELECT * FROM file('/etc/passwd', TSV, 'a String')",
        "SELECT 1 SETTINGS readonly = 0",
        "INSERT INTO traffic_logs SELECT * FROM traffic_logs",
        "SELECT 1; DROP TABLE traffic_logs",
    ] {
        let err = ask(hostile, 10).expect_err(hostile);
        assert_eq!(err.kind, crate::store::SqlErrorKind::Refused, "{hostile}: {err:?}");
    }
    let err = ask("SELECT nope FROM traffic", 10).expect_err("unknown column");
    assert_eq!(err.kind, crate::store::SqlErrorKind::Engine);
}
