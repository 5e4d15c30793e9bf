//! One exchange, one row, against the real liteobs-server (each backend): two uploaders play the
//! agents of two nodes, each posting its half of the same exchanges (the client's node knows
//! the client's pod, the server's node the server's), concurrently, in shuffled orders and
//! batch sizes, with retries of some batches. `/query` must show each exchange exactly once,
//! with both sides, and count nothing twice.

use std::io::Write;

use liteobs_integration::{Server, backends, http};
use liteobs_model::{BATCH_ID_HEADER, TrafficLog};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const EXCHANGES: u32 = 400;

/// Exchange `i` as node `node` saw it: the client's node names the client, the server's node
/// the server, and each stamps it by its own clock (node b's runs 4 ms ahead).
fn half(i: u32, node: &str) -> TrafficLog {
    let skew_us = if node == "node-b" { 4_000 } else { 0 };
    let mut r: TrafficLog = serde_json::from_value(json!({
        "ts": format!("2026-11-25T10:00:{:02}.{:06}Z", (i / 1000) % 60, (i % 1000) * 900 + skew_us),
        "src_ip": "10.244.1.5", "src_port": 40000 + i,
        "dst_ip": "10.244.2.7", "dst_port": 8080,
        "method": "GET", "path": format!("/merge/{i}"),
        "status": 200, "latency_us": 10, "req_bytes": 0, "resp_bytes": 1,
        "node": node,
        "exchange_id": (0x1000_0000_i64 + i64::from(i)) << 32 | i64::from(i),
    }))
    .expect("valid record");
    if node == "node-a" {
        r.src_pid = Some(1000 + i);
        r.src_pod = Some(format!("client-{}", i % 7));
        r.src_namespace = Some("shop".into());
        r.src_node = Some("node-a".into());
    } else {
        r.dst_pid = Some(2000 + i % 3);
        r.dst_pod = Some("web-0".into());
        r.dst_namespace = Some("shop".into());
        r.dst_node = Some("node-b".into());
    }
    r
}

fn body(records: &[TrafficLog]) -> Vec<u8> {
    let nd: String = records.iter().map(|r| serde_json::to_string(r).expect("json") + "\n").collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(nd.as_bytes()).expect("gzip");
    gz.finish().expect("gzip")
}

fn post(url: &str, records: &[TrafficLog], id: &str) -> Value {
    let resp = http()
        .post(&format!("{url}/upload"))
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip")
        .header(BATCH_ID_HEADER, id)
        .send(&body(records))
        .expect("upload request");
    assert_eq!(resp.status().as_u16(), 200);
    resp.into_body().read_json().expect("JSON answer")
}

/// One node's agent: its halves in a shuffled order, cut into batches of 1..=50, some sent
/// twice (a retry after a lost answer). Answers how many of its records the server merged.
fn upload_node(url: String, node: &'static str, seed: u64) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut records: Vec<TrafficLog> = (0..EXCHANGES).map(|i| half(i, node)).collect();
    records.shuffle(&mut rng);
    let mut merged = 0;
    let mut rest = &records[..];
    let mut n = 0;
    while !rest.is_empty() {
        let cut = rng.random_range(1..=50).min(rest.len());
        let (batch, tail) = rest.split_at(cut);
        let id = format!("{node}-{seed}-{n}");
        let answer = post(&url, batch, &id);
        assert_eq!(answer["accepted"].as_u64(), Some(batch.len() as u64), "{answer}");
        merged += answer["merged"].as_u64().unwrap_or(0) as usize;
        if rng.random_bool(0.2) {
            let again = post(&url, batch, &id);
            assert_eq!(again["duplicate"], json!(true), "{again}");
        }
        rest = tail;
        n += 1;
    }
    merged
}

#[test]
fn two_nodes_halves_uploaded_concurrently_are_one_row_each() {
    for backend in backends() {
        for seed in [1_u64, 2] {
            let dir = tempfile::tempdir().expect("tempdir");
            let server = Server::start(backend, &dir.path().join(format!("merge.{backend}")), None, None);
            let (a, b) = (server.url.clone(), server.url.clone());
            let ta = std::thread::spawn(move || upload_node(a, "node-a", seed));
            let tb = std::thread::spawn(move || upload_node(b, "node-b", seed + 100));
            let merged = ta.join().expect("node a") + tb.join().expect("node b");
            assert_eq!(merged, EXCHANGES as usize, "{backend}: every exchange merged once");

            let resp = http()
                .get(&format!("{}/query?limit=10000&path=/merge/", server.url))
                .call()
                .expect("query request");
            let v: Value = resp.into_body().read_json().expect("JSON answer");
            let rows: Vec<TrafficLog> = serde_json::from_value(v["records"].clone()).expect("records decode");
            assert_eq!(rows.len(), EXCHANGES as usize, "{backend} seed {seed}: one row per exchange");
            for r in &rows {
                let i: u32 = r.path.trim_start_matches("/merge/").parse().expect("path");
                assert_eq!(r.src_pid, Some(1000 + i), "{r:?}");
                assert_eq!(r.dst_pid, Some(2000 + i % 3), "{r:?}");
                assert_eq!(
                    (r.src_pod.as_deref(), r.dst_pod.as_deref()),
                    (Some(format!("client-{}", i % 7).as_str()), Some("web-0"))
                );
                assert_eq!((r.src_node.as_deref(), r.dst_node.as_deref()), (Some("node-a"), Some("node-b")));
                assert_eq!(r.node, "node-a", "the client's node gives the row its time and node");
                assert_eq!(r.ts, half(i, "node-a").ts);
            }
            // The pod filter sees the merged rows from either side.
            let resp = http()
                .get(&format!("{}/query?limit=10000&path=/merge/&namespace=shop&pod=web", server.url))
                .call()
                .expect("query request");
            let v: Value = resp.into_body().read_json().expect("JSON answer");
            assert_eq!(v["records"].as_array().map(Vec::len), Some(EXCHANGES as usize));
            server.stop();
        }
    }
}
