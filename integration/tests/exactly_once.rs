//! Exactly-once uploads against the real liteobs-server (each backend): a batch sent again with
//! its `Idempotency-Key` (the agent's retry after a lost answer) is acknowledged and not stored
//! again, also after the server was killed with SIGKILL and restarted on the same file, and when
//! the copies race; uploads without the header are stored every time.

use std::io::Write;
use std::process::Command;

use liteobs_integration::{Server, backends, http};
use liteobs_model::{BATCH_ID_HEADER, TrafficLog};
use serde_json::{Value, json};

fn batch(n: u32, tag: &str) -> Vec<TrafficLog> {
    (0..n)
        .map(|i| {
            serde_json::from_value(json!({
                "ts": format!("2026-11-25T10:00:{:02}.{:06}Z", i % 60, i),
                "src_ip": "127.0.0.1", "src_port": 40000 + i,
                "dst_ip": "127.0.0.2", "dst_port": 8080,
                "method": "GET", "path": format!("/{tag}/{i}"),
                "status": 200, "latency_us": 10, "req_bytes": 0, "resp_bytes": 1,
                "node": "node-1"
            }))
            .expect("valid record")
        })
        .collect()
}

/// Gzip NDJSON, as the agent sends it.
fn body(records: &[TrafficLog]) -> Vec<u8> {
    let nd: String = records.iter().map(|r| serde_json::to_string(r).expect("json") + "\n").collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(nd.as_bytes()).expect("gzip");
    gz.finish().expect("gzip")
}

fn post(server: &Server, body: &[u8], id: Option<&str>) -> (u16, Value) {
    let mut req = http()
        .post(&format!("{}/upload", server.url))
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip");
    if let Some(id) = id {
        req = req.header(BATCH_ID_HEADER, id);
    }
    let resp = req.send(body).expect("upload request");
    let status = resp.status().as_u16();
    (status, resp.into_body().read_json().expect("JSON answer"))
}

/// Rows stored whose path starts with `/tag/`.
fn count(server: &Server, tag: &str) -> usize {
    let resp =
        http().get(&format!("{}/query?limit=10000&path=/{tag}/", server.url)).call().expect("query request");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.into_body().read_json().expect("JSON answer");
    v["records"].as_array().expect("records").len()
}

fn kill_9(server: Server) {
    let status = Command::new("kill").args(["-KILL", &server.pid().to_string()]).status().expect("run kill");
    assert!(status.success());
    drop(server); // reaps the killed process
}

#[test]
fn a_repeated_batch_is_stored_once_across_kill_9_and_restart() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join(format!("once.{backend}"));
        let server = Server::start(backend, &db, None, None);
        let a = body(&batch(500, "a"));
        assert_eq!(post(&server, &a, Some("batch-a")), (200, json!({ "accepted": 500 })), "{backend}");
        // The agent did not see that answer and retries.
        assert_eq!(post(&server, &a, Some("batch-a")), (200, json!({ "accepted": 500, "duplicate": true })));
        assert_eq!(count(&server, "a"), 500, "{backend}");

        // The server dies without a shutdown; the agent retries against the restarted one.
        kill_9(server);
        let server = Server::start(backend, &db, None, None);
        assert_eq!(post(&server, &a, Some("batch-a")), (200, json!({ "accepted": 500, "duplicate": true })));
        assert_eq!(count(&server, "a"), 500, "{backend}: rows counted once after kill -9");

        // A new id is a new batch; no header is stored every time (older agents).
        let b = body(&batch(20, "b"));
        assert_eq!(post(&server, &b, Some("batch-b")).0, 200);
        assert_eq!(post(&server, &b, None), (200, json!({ "accepted": 20 })));
        assert_eq!(post(&server, &b, None), (200, json!({ "accepted": 20 })));
        assert_eq!(count(&server, "b"), 60, "{backend}");

        // A bad id is refused whole.
        let (status, v) = post(&server, &b, Some("not a valid id"));
        assert_eq!(status, 400, "{v}");
        assert_eq!(count(&server, "b"), 60);
        kill_9(server);
    }
}

#[test]
fn racing_copies_of_one_batch_insert_once() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join(format!("race.{backend}"));
        let server = Server::start(backend, &db, None, None);
        let bodies: Vec<(String, Vec<u8>)> =
            (0..10).map(|i| (format!("race-{i}"), body(&batch(100, &format!("r{i}"))))).collect();
        let fresh: usize = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut fresh = 0;
                        for (id, b) in &bodies {
                            let (status, v) = post(&server, b, Some(id));
                            assert_eq!((status, v["accepted"].clone()), (200, json!(100)), "{v}");
                            fresh += usize::from(v.get("duplicate").is_none());
                        }
                        fresh
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().expect("uploader")).sum()
        });
        assert_eq!(fresh, bodies.len(), "{backend}: exactly one copy of each batch was stored");
        for i in 0..10 {
            assert_eq!(count(&server, &format!("r{i}")), 100, "{backend}");
        }
        server.stop();
    }
}
