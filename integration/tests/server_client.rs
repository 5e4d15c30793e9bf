//! The real liteobs-server (each backend) and the real liteobs-client binary together:
//! upload over HTTP, query through the client in every output format, restart the server and
//! query again, and the error paths a user meets.

use liteobs_integration::{Server, backends, client, http, upload_gzip_ndjson, with_routes};
use liteobs_model::TrafficLog;
use serde_json::json;

const TOKEN: &str = "t0ken";

/// 60 records: PIDs 1000..1003 on the client side, 2000/2001 on the server side, IPv4 and IPv6;
/// each with the route the server will store (`/items/{id}`).
fn sample() -> Vec<TrafficLog> {
    with_routes(sample_as_sent())
}

fn sample_as_sent() -> Vec<TrafficLog> {
    (0..60u32)
        .map(|i| {
            serde_json::from_value(json!({
                "ts": format!("2026-11-25T10:{:02}:{:02}.{:06}Z", i / 60, i % 60, i * 7),
                "src_ip": if i % 3 == 0 { "::1".to_string() } else { format!("127.0.0.{}", 1 + i % 2) },
                "src_port": 40000 + i,
                "dst_ip": if i % 3 == 0 { "::1" } else { "127.0.0.9" },
                "dst_port": 8080,
                "method": if i % 4 == 0 { "POST" } else { "GET" },
                "path": format!("/items/{i}?q=ü"),
                "host": "svc.test",
                "status": if i % 10 == 9 { 503 } else { 200 },
                "latency_us": 1000 + i,
                "req_bytes": i,
                "resp_bytes": 10 * i,
                "src_pid": 1000 + i % 4,
                "src_comm": "curl",
                "dst_pid": 2000 + i % 2,
                "dst_comm": "nginx",
                "node": "node-1"
            }))
            .expect("valid record")
        })
        .collect()
}

fn upload(server: &Server, records: &[TrafficLog]) -> (u16, serde_json::Value) {
    upload_gzip_ndjson(server, Some(TOKEN), records)
}

fn query_json(server: &Server, args: &[&str]) -> Vec<TrafficLog> {
    let mut full = vec!["-server", &server.url, "-token", TOKEN, "-o", "json"];
    full.extend_from_slice(args);
    let (code, out, err) = client(&full);
    assert_eq!(code, 0, "client {args:?} failed: {err}");
    serde_json::from_str(&out).expect("client -o json prints a JSON array")
}

fn newest_first(mut v: Vec<TrafficLog>) -> Vec<TrafficLog> {
    v.sort_by_key(|r| std::cmp::Reverse(r.ts));
    v
}

#[test]
fn upload_query_restart_query_with_each_backend() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join(format!("it.{backend}"));
        let server = Server::start(backend, &db, Some(TOKEN), None);
        let records = sample();
        assert_eq!(upload(&server, &records), (200, json!({ "accepted": 60 })), "{backend}");

        // -pid (Go style) and --pid give the same answer: every exchange where either side is the PID.
        let by_pid = query_json(&server, &["-pid", "2001"]);
        let want = newest_first(records.iter().filter(|r| r.dst_pid == Some(2001)).cloned().collect());
        assert_eq!(by_pid, want, "{backend}: -pid 2001");
        assert_eq!(query_json(&server, &["--pid", "2001"]), want);
        let by_src = query_json(&server, &["-pid", "1002", "-limit", "5"]);
        assert_eq!(by_src.len(), 5);
        assert!(by_src.iter().all(|r| r.src_pid == Some(1002)));

        let by_ip = query_json(&server, &["-ip", "::1", "-status", "5xx"]);
        let want = newest_first(
            records.iter().filter(|r| r.src_ip.to_string() == "::1" && r.status >= 500).cloned().collect(),
        );
        assert_eq!(by_ip, want, "{backend}: -ip ::1 -status 5xx");
        let by_path = query_json(&server, &["-path", "/items/1", "-method", "get"]);
        assert!(
            !by_path.is_empty()
                && by_path.iter().all(|r| r.path.starts_with("/items/1") && r.method == "GET")
        );

        // The table names both processes and says how many rows and whether the limit cut them.
        let (code, table, _) =
            client(&["-server", &server.url, "-token", TOKEN, "-pid", "1001", "-limit", "3"]);
        assert_eq!(code, 0);
        assert!(table.contains("curl/1001") && table.contains("nginx/"), "{table}");
        assert!(table.contains("limit 3 reached"), "{table}");
        let (code, csv, _) =
            client(&["-server", &server.url, "-token", TOKEN, "-ip", "127.0.0.2", "-o", "csv"]);
        assert_eq!(code, 0);
        assert_eq!(
            csv.lines().count(),
            1 + records.iter().filter(|r| r.src_ip.to_string() == "127.0.0.2").count()
        );

        // Restart: everything is still there, and ordering holds across the restart.
        assert!(server.stop().success(), "{backend}: clean exit on SIGTERM");
        let server = Server::start(backend, &db, Some(TOKEN), None);
        let all = query_json(&server, &["-limit", "1000"]);
        assert_eq!(all, newest_first(records.clone()), "{backend}: after restart");
        assert_eq!(upload(&server, &records[..1]).0, 200);
        assert_eq!(query_json(&server, &["-limit", "1000"]).len(), 61);
    }
}

#[test]
fn bad_uploads_lose_nothing_already_accepted() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(backend, &dir.path().join("bad.db"), Some(TOKEN), None);
        assert_eq!(upload(&server, &sample()[..10]).0, 200);
        let resp = http()
            .post(&format!("{}/upload", server.url))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .content_type("application/json")
            .send("[{\"ts\": 5}]")
            .expect("request");
        assert_eq!(resp.status().as_u16(), 400);
        let v: serde_json::Value = resp.into_body().read_json().expect("json error");
        assert_eq!(v["index"], json!(0));
        assert!(v["error"].as_str().expect("error text").contains("record 0"));
        let resp = http().post(&format!("{}/upload", server.url)).send(&b"[]"[..]).expect("request");
        assert_eq!(resp.status().as_u16(), 401, "{backend}: no token");
        assert_eq!(query_json(&server, &["-limit", "100"]).len(), 10, "{backend}");
    }
}

#[test]
fn client_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("sqlite", &dir.path().join("e.sqlite"), Some(TOKEN), None);

    let (code, out, err) = client(&["-server", &server.url, "-token", "wrong", "-pid", "1"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("401") && err.lines().count() == 1, "{err}");

    let (code, _, err) = client(&["-server", &server.url, "-token", TOKEN, "-status", "abc"]);
    assert_ne!(code, 0);
    assert!(err.contains("status"), "{err}");

    let url = server.url.clone();
    drop(server);
    let (code, _, err) = client(&["-server", &url, "-pid", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains(&url) && err.lines().count() == 1, "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn server_names_an_unknown_flag_as_typed() {
    for (args, want) in [
        (&["-bogus"][..], "error: unexpected argument '-bogus' found (every flag is listed by -help)"),
        (
            &["-db-type", "sqlite", "-listn=127.0.0.1:0"],
            "error: unexpected argument '-listn' found (every flag is listed by -help)",
        ),
        (&["-"], "error: unexpected argument '-' found"),
    ] {
        let out = std::process::Command::new(liteobs_integration::bin("liteobs-server"))
            .args(args)
            .output()
            .expect("run server");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().next(), Some(want), "{args:?}");
    }
}

#[test]
fn server_refuses_bad_flags_and_foreign_files() {
    let out = std::process::Command::new(liteobs_integration::bin("liteobs-server"))
        .args(["-db-type", "oracle"])
        .output()
        .expect("run server");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("oracle"));

    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![7u8; 8192]).expect("write");
    for backend in backends() {
        let out = std::process::Command::new(liteobs_integration::bin("liteobs-server"))
            .args(["-db-type", backend, "-listen", "127.0.0.1:0", "-db-path"])
            .arg(&junk)
            .output()
            .expect("run server");
        assert!(!out.status.success(), "{backend}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("junk.db") && !err.contains("panicked"), "{backend}: {err}");
    }
}

#[test]
fn server_logs_are_plain_text_when_not_on_a_terminal() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(liteobs_integration::bin("liteobs-server"))
        .args(["-db-type", "sqlite", "-listen", "127.0.0.1:0", "-db-path"])
        .arg(dir.path().join("plain.sqlite"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run server");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.starts_with("listening on ") {
        line.clear();
        assert!(stdout.read_line(&mut line).expect("read stdout") > 0, "the server exited before listening");
    }
    child.kill().expect("kill server");
    let mut log = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut log).expect("read stderr");
    let _ = child.wait();
    assert!(log.contains("store open"), "{log}");
    assert!(!log.contains('\x1b'), "colour codes in a log that is not a terminal: {log:?}");
}

/// The real server (SQLite) and client: `-pod web -o json` shows exactly the exchanges where
/// either side's pod name starts with `web`, and `-namespace` with `-pod` must hold for one
/// side. The expectation is the model's reference semantics (`Filter::matches`).
#[test]
fn pod_and_namespace_filters_through_the_real_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("sqlite", &dir.path().join("pods.sqlite"), Some(TOKEN), None);
    let mut records = sample();
    for (i, r) in records.iter_mut().enumerate() {
        match i % 4 {
            0 => {
                r.src_namespace = Some("shop".into());
                r.src_pod = Some(format!("web-7d9f8b6c4-{i:05}"));
            }
            1 => {
                r.dst_namespace = Some("db".into());
                r.dst_pod = Some("web-db-0".into());
                r.src_namespace = Some("shop".into());
                r.src_pod = Some("checkout-5c8d7f9b4-q7wzt".into());
            }
            2 => {
                r.dst_namespace = Some("shop".into());
                r.dst_pod = Some("api-0".into());
            }
            _ => {} // host processes on both sides
        }
    }
    assert_eq!(upload(&server, &records).0, 200);
    let now = chrono::Utc::now();
    for args in [&["-pod", "web"][..], &["-namespace", "shop"], &["-namespace", "shop", "-pod", "web"]] {
        let params: Vec<(&str, &str)> =
            args.chunks(2).map(|kv| (kv[0].trim_start_matches('-'), kv[1])).collect();
        let filter = liteobs_model::Filter::from_params(params, now).expect("valid filter");
        let want = newest_first(records.iter().filter(|r| filter.matches(r)).cloned().collect());
        assert!(!want.is_empty() && want.len() < records.len(), "{args:?}: the test must select some");
        let mut full = args.to_vec();
        full.extend(["-limit", "1000"]);
        assert_eq!(query_json(&server, &full), want, "{args:?}");
    }
}

/// `liteobs-client stats` against the real server, each backend: the figures per server and
/// method are what the brute-force reference computes from the uploaded records, in JSON, and
/// the table names the groups.
#[test]
fn stats_through_the_real_server_and_client() {
    use liteobs_model::stats::{StatsQuery, StatsResponse, reference};
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(backend, &dir.path().join(format!("stats.{backend}")), Some(TOKEN), None);
        let records = sample();
        assert_eq!(upload(&server, &records), (200, json!({ "accepted": 60 })), "{backend}");
        let window = ["-since", "2026-11-25T10:00:00Z", "-until", "2026-11-25T10:01:00Z"];
        let mut args = vec!["-server", &server.url, "-token", TOKEN, "stats", "-group-by", "server,method"];
        args.extend(window);
        let (code, table, err) = client(&args);
        assert_eq!(code, 0, "{backend}: {err}");
        assert!(table.starts_with("SERVER") && table.contains("127.0.0.9:8080 nginx"), "{backend}:\n{table}");
        args.extend(["-o", "json", "-sort", "p99_us"]);
        let (code, out, err) = client(&args);
        assert_eq!(code, 0, "{backend}: {err}");
        let got: StatsResponse = serde_json::from_str(&out).expect("stats JSON");
        let params =
            [("group_by", "server,method"), ("sort", "p99_us"), ("since", window[1]), ("until", window[3])];
        let query = StatsQuery::from_params(params, chrono::Utc::now()).expect("query");
        let mut want = reference(&records, &query, chrono::Utc::now());
        want.routes_folded = Some(0);
        assert_eq!(got, want, "{backend}");
        assert_eq!(got.groups.len(), 4, "two servers by two methods");
        let (code, _, err) = client(&["-server", &server.url, "-token", TOKEN, "stats", "-group-by", "pod"]);
        assert_eq!(code, 2, "{backend}: a bad grouping is refused before the call: {err}");
        assert!(err.contains("-group-by"), "{err}");
    }
}
