//! The ClickHouse backend through real `liteobs-server` processes: two of them (replicas, as a
//! Deployment behind one Service runs them) on a two-shard ClickHouse cluster, every batch
//! uploaded to both at once with its `Idempotency-Key` (an agent's retry landing on the other
//! replica while the first upload is in flight). Each record is stored once and both replicas
//! answer `/query`, `/stats` and `/map` alike; killing one with SIGKILL loses nothing it
//! acknowledged, and a retry of everything through the other is all duplicates.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use liteobs_integration::{Server, http};
use liteobs_model::{BATCH_ID_HEADER, TrafficLog};
use liteobs_server::store::clickhouse::testserver;
use serde_json::{Value, json};

fn record(i: u32) -> TrafficLog {
    serde_json::from_value(json!({
        "ts": format!("2026-11-25T10:{:02}:{:02}.{:06}Z", (i / 60) % 60, i % 60, i),
        "src_ip": format!("10.1.{}.{}", i % 7, i % 200), "src_port": 40000 + (i % 20000),
        "dst_ip": format!("10.2.0.{}", i % 3), "dst_port": 8080,
        "method": if i.is_multiple_of(5) { "POST" } else { "GET" }, "path": format!("/items/{}", i % 11),
        "status": if i.is_multiple_of(13) { 503 } else { 200 }, "latency_us": 100 + (i * 37) % 5000,
        "req_bytes": i % 100, "resp_bytes": 10 * (i % 50),
        "src_pid": 100 + i % 4, "src_comm": "client", "node": "node-1"
    }))
    .expect("valid record")
}

fn body(records: &[TrafficLog]) -> Vec<u8> {
    let nd: String = records.iter().map(|r| serde_json::to_string(r).expect("json") + "\n").collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(nd.as_bytes()).expect("gzip");
    gz.finish().expect("gzip")
}

fn post(url: &str, body: &[u8], id: &str) -> (u16, Value) {
    let resp = http()
        .post(&format!("{url}/upload"))
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip")
        .header(BATCH_ID_HEADER, id)
        .send(body)
        .expect("upload request");
    let status = resp.status().as_u16();
    (status, resp.into_body().read_json().expect("JSON answer"))
}

fn get(url: &str) -> Value {
    let resp = http().get(url).call().expect("request");
    assert_eq!(resp.status().as_u16(), 200, "{url}");
    resp.into_body().read_json().expect("JSON answer")
}

/// Every stored record's path and source port, counted.
fn stored(url: &str) -> BTreeMap<(String, u64), usize> {
    let v = get(&format!("{url}/query?limit=10000"));
    let mut out = BTreeMap::new();
    for r in v["records"].as_array().expect("records") {
        let key = (r["path"].as_str().unwrap_or("").to_owned(), r["src_port"].as_u64().unwrap_or(0));
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

#[test]
fn two_replicas_on_a_two_shard_cluster_store_every_record_once() {
    if testserver::unavailable("two_replicas_on_a_two_shard_cluster_store_every_record_once") {
        return;
    }
    let tcp = [free(), free()];
    let xml = testserver::cluster_xml("liteobs", &tcp);
    let a = testserver::start_with(tcp[0], &xml);
    let b = testserver::start_with(tcp[1], &xml);
    for node in [&a, &b] {
        testserver::run(node, "CREATE DATABASE liteobs");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = |urls: String, n: &str| {
        Server::start_with(
            "clickhouse",
            &dir.path().join("unused"),
            &[
                "-clickhouse-url",
                &urls,
                "-clickhouse-database",
                "liteobs",
                "-clickhouse-cluster",
                "liteobs",
                "-clickhouse-replica",
                n,
            ],
        )
    };
    let one = replica(format!("{},{}", a.url(), b.url()), "1");
    let two = replica(format!("{},{}", b.url(), a.url()), "2");

    let records: Vec<TrafficLog> = (0..2000).map(record).collect();
    let batches: Vec<(String, Vec<u8>, usize)> =
        records.chunks(100).enumerate().map(|(i, c)| (format!("agent-1-{i}"), body(c), c.len())).collect();
    let urls = [one.url.clone(), two.url.clone()];
    let threads: Vec<_> = urls
        .iter()
        .map(|url| {
            let (url, batches) = (url.clone(), batches.clone());
            std::thread::spawn(move || {
                batches
                    .iter()
                    .map(|(id, body, n)| {
                        let (status, answer) = post(&url, body, id);
                        assert_eq!(status, 200, "{answer}");
                        assert_eq!(answer["accepted"].as_u64(), Some(*n as u64), "{answer}");
                        answer["duplicate"].as_bool().unwrap_or(false)
                    })
                    .filter(|dup| !dup)
                    .count()
            })
        })
        .collect();
    let fresh: usize = threads.into_iter().map(|t| t.join().expect("uploader")).sum();
    assert!(fresh >= batches.len(), "every batch stored by one of them ({fresh})");

    let want: BTreeMap<(String, u64), usize> = records.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry((r.path.clone(), u64::from(r.src_port))).or_insert(0) += 1;
        m
    });
    for url in &urls {
        assert_eq!(stored(url), want, "{url}: every record once");
    }
    let window = "since=2026-11-25T00:00:00Z&until=2026-11-26T00:00:00Z";
    let stats = |url: &str| get(&format!("{url}/stats?group_by=server,route&{window}"))["groups"].clone();
    assert_eq!(stats(&urls[0]), stats(&urls[1]));
    let groups = stats(&urls[0]);
    let counted: u64 =
        groups.as_array().expect("groups").iter().map(|g| g["count"].as_u64().unwrap_or(0)).sum();
    assert_eq!(counted, 2000);
    let errors: u64 =
        groups.as_array().expect("groups").iter().map(|g| g["errors"].as_u64().unwrap_or(0)).sum();
    assert_eq!(errors, records.iter().filter(|r| r.status == 503).count() as u64);
    let map = |url: &str| get(&format!("{url}/map?{window}"))["edges"].clone();
    assert_eq!(map(&urls[0]), map(&urls[1]));

    // One replica dies without a word; the other has everything, and a retry of every batch
    // through it stores nothing twice.
    let killed = Command::new("kill").args(["-KILL", &one.pid().to_string()]).status().expect("kill");
    assert!(killed.success());
    drop(one);
    for (id, body, n) in &batches {
        let (status, answer) = post(&urls[1], body, id);
        assert_eq!(
            (status, answer["duplicate"].as_bool(), answer["accepted"].as_u64()),
            (200, Some(true), Some(*n as u64))
        );
    }
    assert_eq!(stored(&urls[1]), want);
}

fn free() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}
