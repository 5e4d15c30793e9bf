//! The case against the real liteobs-server, each backend: a path holding NUL, `%` or
//! `_` is found by `?path=` prefixes exactly as `Filter::matches` finds it (SQLite once cut
//! strings at the NUL), and a row exactly at `since` is in, one exactly at `until` out.

use liteobs_integration::{Server, backends, http};
use serde_json::{Value, json};

fn record(path: &str, ts: &str) -> Value {
    json!({
        "ts": ts, "src_ip": "127.0.0.1", "src_port": 40000, "dst_ip": "127.0.0.2", "dst_port": 80,
        "method": "GET", "path": path, "status": 200, "latency_us": 1, "req_bytes": 0,
        "resp_bytes": 0, "node": "n"
    })
}

fn paths(server: &Server, query: &str) -> Vec<String> {
    let resp = http().get(&format!("{}/query?{query}", server.url)).call().expect("query");
    assert_eq!(resp.status().as_u16(), 200, "{query}");
    let v: Value = resp.into_body().read_json().expect("json");
    let mut p: Vec<String> = v["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["path"].as_str().unwrap_or("").to_owned())
        .collect();
    p.sort();
    p
}

#[test]
fn nul_wildcards_and_time_bounds_agree_on_every_backend() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(backend, &dir.path().join(format!("s.{backend}")), None, None);
        let body = json!([
            record("/a\u{0}b", "2026-11-25T10:00:00.000001Z"),
            record("/a%b", "2026-11-25T10:00:00.000002Z"),
            record("/a_b", "2026-11-25T10:00:00.000003Z"),
            record("/ab", "2026-11-25T10:00:00.000004Z"),
        ]);
        let resp = http().post(&format!("{}/upload", server.url)).send_json(&body).expect("upload");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(paths(&server, "path=/a%00"), ["/a\u{0}b"], "{backend}");
        assert_eq!(paths(&server, "path=/a%00b"), ["/a\u{0}b"], "{backend}");
        assert_eq!(paths(&server, "path=/a%25"), ["/a%b"], "{backend}");
        assert_eq!(paths(&server, "path=/a_"), ["/a_b"], "{backend}");
        assert_eq!(paths(&server, "path=/a").len(), 4, "{backend}");
        assert_eq!(
            paths(&server, "since=2026-11-25T10:00:00.000002Z&until=2026-11-25T10:00:00.000004Z"),
            ["/a%b", "/a_b"],
            "{backend}: since inclusive, until exclusive"
        );
        assert_eq!(
            paths(&server, "since=2026-11-25T10:00:00.0000015Z&until=2026-11-25T10:00:00.0000035Z"),
            ["/a%b", "/a_b"],
            "{backend}: bounds with nanoseconds"
        );
        server.stop();
    }
}
