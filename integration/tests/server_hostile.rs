//! The real liteobs-server against hostile clients: bodies with data after them, values no
//! column holds exactly, empty tokens, connections that send nothing or trickle, more
//! connections than the cap, and many large uploads at once. Every test bounds its own time
//! and connection count, and talks to loopback only.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use liteobs_integration::{Server, backends, bin, client, http};
use serde_json::{Value, json};

fn record(i: usize) -> Value {
    json!({
        "ts": format!("2026-11-25T10:00:{:02}.{:06}Z", i % 60, i % 1_000_000),
        "src_ip": "127.0.0.1", "src_port": 40000 + i % 20000, "dst_ip": "127.0.0.9", "dst_port": 8080,
        "method": "GET", "path": format!("/items/{i}"), "status": 200,
        "latency_us": 10, "req_bytes": 0, "resp_bytes": 5, "node": "n"
    })
}

fn post(server: &Server, content_type: &str, body: &[u8]) -> (u16, Value) {
    let resp = http()
        .post(&format!("{}/upload", server.url))
        .header("Content-Type", content_type)
        .send(body)
        .expect("upload request");
    let status = resp.status().as_u16();
    (status, resp.into_body().read_json().expect("JSON answer"))
}

fn stored(server: &Server) -> Vec<Value> {
    let mut resp = http().get(&format!("{}/query?limit=10000", server.url)).call().expect("query");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.body_mut().read_json().expect("JSON answer");
    v["records"].as_array().expect("records").clone()
}

#[test]
fn bodies_with_data_after_them_or_inexact_values_are_400_and_nothing_is_stored() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(backend, &dir.path().join("db"), None, None);
        let good = record(1).to_string();
        let with = |field: &str, value: &str| {
            let mut v = record(2);
            v[field] = serde_json::from_str(value).expect("value");
            v.to_string()
        };
        let cases: Vec<(&str, String)> = vec![
            ("application/json", "[]]".to_owned()),
            ("application/json", format!("[{good}] {{garbage")),
            ("application/x-ndjson", format!("{good}\n{good} }}{{\n")),
            ("application/x-ndjson", format!("{good}\n{}\n", with("latency_us", "18446744073709551615"))),
            ("application/x-ndjson", format!("{good}\n{}\n", with("resp_bytes", "9223372036854775808"))),
            ("application/x-ndjson", format!("{good}\n{}\n", with("status", "200.0"))),
            ("application/x-ndjson", format!("{good}\n{}\n", with("ts", r#""9999-12-31T23:59:59-23:59""#))),
        ];
        for (ct, body) in &cases {
            let (status, v) = post(&server, ct, body.as_bytes());
            assert_eq!(status, 400, "{backend}: {body}: {v}");
        }
        let (_, v) = post(&server, "application/x-ndjson", cases[3].1.as_bytes());
        assert_eq!((v["index"].clone(), v["field"].clone()), (json!(1), json!("latency_us")), "{v}");
        assert!(stored(&server).is_empty(), "{backend}: nothing of a refused body is stored");

        // The largest values that fit are stored and come back exactly, NUL and astral chars too.
        let mut edge = record(3);
        edge["latency_us"] = json!(i64::MAX);
        edge["req_bytes"] = json!(i64::MAX);
        edge["path"] = json!("/\u{0}\u{1f600}");
        edge["ts"] = json!("9999-12-31T23:59:59.999999Z");
        let mut first = record(4);
        first["ts"] = json!("1970-01-01T00:00:00.000000Z");
        let body = format!("[{edge},{first}]");
        assert_eq!(post(&server, "application/json", body.as_bytes()), (200, json!({ "accepted": 2 })));
        // Stored with the routes the server gives them.
        let routed = |mut v: Value| {
            let route = liteobs_model::route::route(v["path"].as_str().unwrap_or(""), &Default::default());
            v["route"] = json!(route);
            v
        };
        assert_eq!(stored(&server), vec![routed(edge.clone()), routed(first.clone())], "{backend}");
        // ... and the client prints them.
        let (code, out, err) = client(&["-server", &server.url, "-o", "json"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(serde_json::from_str::<Value>(&out).expect("JSON").as_array().map(Vec::len), Some(2));
    }
}

#[test]
fn an_empty_or_blank_token_is_refused_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(bin("liteobs-server"));
        cmd.args(["-db-type", "sqlite", "-listen", "127.0.0.1:0", "-db-path"]).arg(&db).args(args);
        cmd.env_remove("LITEOBS_TOKEN");
        if let Some(v) = env {
            cmd.env("LITEOBS_TOKEN", v);
        }
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("run liteobs-server");
        // A server that takes the token as "none" serves forever: bound the wait.
        let until = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("wait").is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let out = child.wait_with_output().expect("liteobs-server output");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (args, env) in [
        (&["-token", ""][..], None),
        (&["-token", "  "], None),
        (&[], Some("")),
        (&[], Some(" \t")),
        (&["-token", "a b"], None),
    ] {
        let (code, out, err) = run(args, env);
        assert_eq!(code, Some(1), "{args:?} {env:?}: {err}");
        assert!(!out.contains("listening"), "{args:?} {env:?}: it must not serve");
        let line: Vec<&str> = err.lines().filter(|l| l.starts_with("liteobs-server:")).collect();
        assert_eq!(line.len(), 1, "{err}");
        assert!(line[0].contains("-token (or LITEOBS_TOKEN)"), "{err}");
    }
    assert!(!db.exists(), "refused before the store is created");
}

/// A connection that sends `head` and then waits; `closed` says whether the server has ended
/// it (EOF or reset after whatever answer it sent).
struct Slow {
    stream: TcpStream,
    answer: Vec<u8>,
    closed: bool,
}

impl Slow {
    fn open(addr: &str, head: &str) -> Slow {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(head.as_bytes()).expect("send head");
        stream.set_nonblocking(true).expect("nonblocking");
        Slow { stream, answer: Vec::new(), closed: false }
    }

    /// Reads what has arrived; true once the server closed the connection.
    fn poll(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        while !self.closed {
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => self.answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.closed = true,
            }
        }
        self.closed
    }

    /// Sends one more byte, ignoring a connection the server already ended.
    fn trickle(&mut self) {
        let _ = self.stream.write(b" ");
    }
}

fn upload_head(len: usize) -> String {
    format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// Times one /healthz and one /query on fresh connections.
fn probe(server: &Server) -> Duration {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    let t = Instant::now();
    for path in ["/healthz", "/query?limit=5"] {
        let resp = agent.get(&format!("{}{path}", server.url)).header("Connection", "close").call();
        assert_eq!(resp.map(|r| r.status().as_u16()).ok(), Some(200), "{path} must answer meanwhile");
    }
    t.elapsed()
}

#[test]
fn slow_and_silent_connections_are_closed_at_their_deadline_while_others_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with("sqlite", &dir.path().join("db"), &["-body-timeout", "3"]);
    let started = Instant::now();
    let mut silent: Vec<Slow> = (0..100).map(|_| Slow::open(server.addr(), &upload_head(100_000))).collect();
    let mut trickling: Vec<Slow> =
        (0..100).map(|_| Slow::open(server.addr(), &upload_head(100_000))).collect();
    // A head that never ends: the request-head deadline (5 s) is the one that applies.
    let mut headless: Vec<Slow> =
        (0..100).map(|_| Slow::open(server.addr(), "POST /upload HTTP/1.1\r\nHost: x\r\n")).collect();
    let mut slowest_probe = Duration::ZERO;
    let deadline = started + Duration::from_secs(15);
    loop {
        slowest_probe = slowest_probe.max(probe(&server));
        for s in &mut trickling {
            if !s.poll() {
                s.trickle();
            }
        }
        for s in &mut headless {
            if !s.poll() {
                s.trickle();
            }
        }
        let open = silent
            .iter_mut()
            .chain(&mut trickling)
            .chain(&mut headless)
            .map(|s| !s.poll())
            .filter(|o| *o)
            .count();
        if open == 0 || Instant::now() > deadline {
            assert_eq!(open, 0, "{open} of 300 slow connections still open after {:?}", started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "closed before the deadline: {took:?}");
    assert!(slowest_probe < Duration::from_secs(2), "/healthz + /query took {slowest_probe:?}");
    for s in silent.iter().chain(&trickling) {
        let answer = String::from_utf8_lossy(&s.answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "a late body is told why: {answer:?}");
        assert!(answer.contains("-body-timeout"), "{answer:?}");
    }
    assert!(stored(&server).is_empty());
}

#[test]
fn connections_past_the_cap_wait_for_a_free_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        "sqlite",
        &dir.path().join("db"),
        &["-max-connections", "20", "-body-timeout", "3"],
    );
    // Whatever the worker count, 24 connections fill a cap of 20 shared between workers.
    let started = Instant::now();
    let slow: Vec<Slow> = (0..24).map(|_| Slow::open(server.addr(), &upload_head(1000))).collect();
    std::thread::sleep(Duration::from_millis(300));
    let quick = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .new_agent();
    assert!(quick.get(&format!("{}/healthz", server.url)).call().is_err(), "the cap is full: no answer yet");
    // Once the slow ones hit their deadline, a new connection is served.
    let resp = http().get(&format!("{}/healthz", server.url)).call().expect("healthz");
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(3), "{:?}", started.elapsed());
    drop(slow);
}

#[test]
fn many_large_slow_uploads_stay_within_the_memory_budget_and_none_accepted_is_lost() {
    const MAX_BODY: usize = 8 << 20;
    // A body of just under 8 MiB of small records decodes to about 30 MiB of records (with the
    // pod and exchange fields of schema 3), so the budget holds two of them at most.
    const BUDGET: usize = 64 << 20;
    const UPLOADS: usize = 48;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        "sqlite",
        &dir.path().join("db"),
        &["-max-body", &MAX_BODY.to_string(), "-upload-memory", &BUDGET.to_string(), "-body-timeout", "60"],
    );
    // One body of just under -max-body, each line a record with a distinct path.
    let mut body = Vec::new();
    let mut records = 0;
    while body.len() < MAX_BODY - 400 {
        body.extend_from_slice(record(records).to_string().as_bytes());
        body.push(b'\n');
        records += 1;
    }
    let before = server.memory_kib("VmRSS");
    let addr = server.addr().to_owned();
    let threads: Vec<_> = (0..UPLOADS)
        .map(|_| {
            let (addr, body) = (addr.clone(), body.clone());
            std::thread::spawn(move || -> (u16, String) {
                let mut s = TcpStream::connect(&addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(90))).expect("timeout");
                s.write_all(upload_head(body.len()).as_bytes()).expect("head");
                // About 3 s per body, so all of them are in flight together.
                for piece in body.chunks(body.len() / 20 + 1) {
                    if s.write_all(piece).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(150));
                }
                let mut answer = Vec::new();
                let _ = s.read_to_end(&mut answer);
                let answer = String::from_utf8_lossy(&answer).into_owned();
                let status = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
                (status, answer)
            })
        })
        .collect();
    let answers: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().expect("uploader")).collect();
    let peak = server.memory_kib("VmHWM");
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let busy: Vec<&String> = answers.iter().filter(|(s, _)| *s == 503).map(|(_, a)| a).collect();
    let other: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s != 200 && *s != 503).collect();
    assert!(
        other.is_empty(),
        "every upload gets 200 or 503: {:?}",
        other.iter().map(|(s, a)| (s, a.get(..200))).collect::<Vec<_>>()
    );
    assert!(ok >= 1, "some fit the budget");
    assert!(!busy.is_empty(), "{UPLOADS} × {} MiB cannot all fit {} MiB", MAX_BODY >> 20, BUDGET >> 20);
    for a in &busy {
        assert!(a.to_ascii_lowercase().contains("retry-after: 2\r\n"), "{}", &a[..a.len().min(300)]);
    }
    for (_, a) in answers.iter().filter(|(s, _)| *s == 200) {
        assert!(a.ends_with(&format!("{{\"accepted\":{records}}}")), "{}", &a[..a.len().min(300)]);
    }
    // Accepted means stored: count the rows once the server is stopped.
    let db = server.db_path.clone();
    assert!(server.stop().success());
    let conn = rusqlite::Connection::open(&db).expect("open the store");
    let rows: i64 = conn.query_row("SELECT COUNT(*) FROM traffic_logs", [], |r| r.get(0)).expect("count");
    assert_eq!(rows as usize, ok * records, "{ok} accepted batches of {records}");
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "{UPLOADS} uploads of {} MiB, budget {} MiB: {ok} accepted, {} refused; RSS {} MiB before, peak {} MiB",
        body.len() >> 20,
        BUDGET >> 20,
        busy.len(),
        before / 1024,
        peak / 1024
    );
    // Unbounded, the bodies alone would be 48 × 8 MiB = 384 MiB. Measured here: 84..106 MiB of
    // growth (the budget, plus SQLite's and the allocator's own share): bounded, not exact.
    assert!(
        growth_mib < 4 * (BUDGET as u64 >> 20),
        "peak grew by {growth_mib} MiB over a {} MiB budget",
        BUDGET >> 20
    );
}
