//! The live stream (`GET /query?follow=1`, `liteobs-client -follow`) between the real
//! binaries: uploads appear once each, in order, on both backends; a follower that loses the
//! server (stopped and started again on the same port and file) resumes from its cursor and
//! loses and repeats nothing, and the stop does not wait on open streams; a cursor resumes the
//! raw stream exactly after it; the follower cap answers 503; and, as root, a live agent on
//! `lo` while curl makes requests to a python http.server: each exchange appears exactly once,
//! in order. (TLS and the token: `tls.rs`.)

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use liteobs_integration::{
    LiveAgent, Server, WebServer, backends, bin, http, privileged, upload_gzip_ndjson, with_routes,
};
use liteobs_model::TrafficLog;
use liteobs_model::follow::{FollowLine, parse_line};

/// `n` distinct records (each its own path), starting at `from`.
fn records(from: usize, n: usize) -> Vec<TrafficLog> {
    (from..from + n)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "ts": format!("2026-11-25T10:{:02}:{:02}.{:06}Z", i / 3600 % 60, i / 60 % 60, i % 60 * 1000 + 1),
                "src_ip": "10.1.0.1", "src_port": 40000 + i, "dst_ip": "10.1.0.2", "dst_port": 8080,
                "method": "GET", "path": format!("/follow/{i}"), "status": 200,
                "latency_us": 100 + i, "req_bytes": 0, "resp_bytes": 10, "node": "n1"
            }))
            .expect("record")
        })
        .collect()
}

/// A running `liteobs-client -follow`, its stdout lines arriving on a channel.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Follower {
    fn start(args: &[&str]) -> Follower {
        let mut child = Command::new(bin("liteobs-client"))
            .arg("-follow")
            .args(args)
            .env_remove("LITEOBS_SERVER")
            .env_remove("LITEOBS_TOKEN")
            .env_remove("LITEOBS_CA_FILE")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("liteobs-client -follow");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>().join("\n")
        });
        Follower { child, lines, stderr: Some(stderr) }
    }

    /// The next `n` lines, within `timeout` for all of them.
    fn take(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => got.push(line),
                Err(_) => panic!("only {} of {n} lines within {timeout:?}: {got:#?}", got.len()),
            }
        }
        got
    }

    /// Whatever else arrives within `wait` (to check that nothing more does).
    fn more(&self, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            got.push(line);
        }
        got
    }

    /// Ctrl-C; the exit status and stderr.
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            assert!(Instant::now() < deadline, "liteobs-client did not stop within 10 s of SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = self.stderr.take().map(|h| h.join().expect("stderr")).unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of `-o json` as records; none may be an update here (no exchange is merged).
fn as_records(lines: &[String]) -> Vec<TrafficLog> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v.get("update").is_none(), "nothing here is merged: {l}");
            let mut one = liteobs_model::decode_ndjson(l.as_bytes()).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(one.len(), 1);
            one.remove(0)
        })
        .collect()
}

fn server(backend: &str, dir: &Path, extra: &[&str]) -> Server {
    let mut flags = vec!["-follow-heartbeat", "200ms"];
    flags.extend_from_slice(extra);
    Server::start_with(backend, &dir.join(format!("store.{backend}")), &flags)
}

fn upload(server: &Server, batch: &[TrafficLog]) {
    let (status, answer) = upload_gzip_ndjson(server, None, batch);
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn uploads_appear_once_each_in_order_on_both_backends() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(backend, dir.path(), &[]);
        let before = records(0, 7);
        upload(&server, &before);
        // -limit asks for a backlog: what was stored before the stream started comes first, so
        // nothing depends on when the client connects.
        let follower = Follower::start(&["-server", &server.url, "-o", "json", "-limit", "10000"]);
        let first = as_records(&follower.take(7, Duration::from_secs(20)));
        assert_eq!(first, with_routes(before.clone()), "{backend}: the backlog, oldest first");
        let live = records(7, 120);
        for batch in live.chunks(10) {
            upload(&server, batch);
        }
        let got = as_records(&follower.take(120, Duration::from_secs(20)));
        assert_eq!(got, with_routes(live), "{backend}: each upload once, in order");
        assert!(follower.more(Duration::from_millis(600)).is_empty(), "{backend}: and nothing more");
        let (status, stderr) = follower.interrupt();
        assert!(status.success(), "{backend}: Ctrl-C exits 0: {status:?}\n{stderr}");
    }
}

#[test]
fn a_follower_resumes_after_a_server_restart_losing_and_repeating_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = server("sqlite", dir.path(), &[]);
    let addr = server.addr().to_owned();
    let follower = Follower::start(&["-server", &server.url, "-o", "json", "-limit", "10000"]);
    let a = records(0, 30);
    upload(&server, &a);
    assert_eq!(as_records(&follower.take(30, Duration::from_secs(20))), with_routes(a.clone()));

    // The stream is open: the graceful stop must not wait for it (actix would, 30 s).
    let stopping = Instant::now();
    assert!(server.stop().success());
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?} with a stream open");

    let server = Server::try_start_with(
        "sqlite",
        &dir.path().join("store.sqlite"),
        None,
        Some(&addr),
        &["-follow-heartbeat", "200ms"],
    )
    .expect("restart on the same port");
    let b = records(30, 40);
    for batch in b.chunks(8) {
        upload(&server, batch);
    }
    let got = as_records(&follower.take(40, Duration::from_secs(30)));
    assert_eq!(got, with_routes(b), "after the restart: exactly what came after the cursor");
    assert!(follower.more(Duration::from_millis(600)).is_empty(), "nothing twice");
    let (status, stderr) = follower.interrupt();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("reconnecting in"), "the client said it lost the server:\n{stderr}");
}

/// A raw stream: its lines, read on a thread, until the reader is dropped.
fn raw_stream(url: &str) -> (u16, mpsc::Receiver<FollowLine>) {
    let resp = http().get(url).call().expect("follow request");
    let status = resp.status().as_u16();
    let (tx, rx) = mpsc::channel();
    if status == 200 {
        let reader = BufReader::new(resp.into_body().into_reader());
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if tx.send(parse_line(line.as_bytes()).expect("a follow line")).is_err() {
                    break;
                }
            }
        });
    }
    (status, rx)
}

fn next_line(rx: &mpsc::Receiver<FollowLine>) -> FollowLine {
    rx.recv_timeout(Duration::from_secs(10)).expect("a line within 10 s")
}

#[test]
fn a_cursor_resumes_the_raw_stream_exactly_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = server("sqlite", dir.path(), &[]);
    let all = records(0, 50);
    upload(&server, &all[..20]);
    upload(&server, &all[20..]);
    let (status, rx) = raw_stream(&format!("{}/query?follow=1&cursor=0", server.url));
    assert_eq!(status, 200);
    let mut seqs = Vec::new();
    loop {
        match next_line(&rx) {
            FollowLine::Record { seq, .. } => seqs.push(seq),
            FollowLine::Cursor { cursor: 50, .. } => break,
            FollowLine::Cursor { .. } => {}
        }
    }
    assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
    drop(rx);
    let (_, rx) = raw_stream(&format!("{}/query?follow=1&cursor={}", server.url, seqs[34]));
    assert_eq!(next_line(&rx), FollowLine::Cursor { cursor: 35, heartbeat: false });
    let mut rest = Vec::new();
    loop {
        match next_line(&rx) {
            FollowLine::Record { record, .. } => rest.push(record),
            FollowLine::Cursor { cursor: 50, .. } => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rest, with_routes(all[35..].to_vec()));
    assert_eq!(next_line(&rx), FollowLine::Cursor { cursor: 50, heartbeat: true }, "then heartbeats");
}

#[test]
fn the_follower_cap_gives_503_with_retry_after_until_a_stream_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = server("sqlite", dir.path(), &["-max-followers", "2"]);
    let (s1, first) = raw_stream(&format!("{}/query?follow=1", server.url));
    let (s2, second) = raw_stream(&format!("{}/query?follow=1", server.url));
    assert_eq!((s1, s2), (200, 200));
    next_line(&first);
    next_line(&second);
    let resp = http().get(&format!("{}/query?follow=1", server.url)).call().expect("third");
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));
    let plain = http().get(&format!("{}/query", server.url)).call().expect("query");
    assert_eq!(plain.status().as_u16(), 200, "queries are not streams");
    drop(first);
    // The server notices at the next heartbeat (200 ms) that the client is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, rx) = raw_stream(&format!("{}/query?follow=1", server.url));
        if status == 200 {
            next_line(&rx);
            break;
        }
        assert!(Instant::now() < deadline, "the closed stream's slot never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_live_agent_on_lo_each_request_appears_once_in_order() {
    if !privileged("a_live_agent_on_lo_each_request_appears_once_in_order") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    let server = server("sqlite", dir.path(), &[]);
    let web = WebServer::start(dir.path());
    let port = web.port.to_string();
    // Only the web server's port: the follower's own stream and the uploads are not captured.
    let agent = LiveAgent::start(&[
        "-iface",
        "lo",
        "-ports",
        &port,
        "-server",
        &server.url,
        "-node",
        "follow-it",
        "-batch-size",
        "5",
        "-flush-interval",
        "100ms",
    ]);
    let follower = Follower::start(&["-server", &server.url, "-o", "json", "-limit", "10000"]);

    const N: usize = 25;
    for i in 0..N {
        web.get(&format!("/hello.txt?i={i}"));
        if i % 5 == 4 {
            std::thread::sleep(Duration::from_millis(150)); // over several upload batches
        }
    }
    let got = as_records(&follower.take(N, Duration::from_secs(30)));
    let more = follower.more(Duration::from_millis(800));
    let (status, follow_log) = follower.interrupt();
    let (_, log) = agent.stop();
    let paths: Vec<String> = got.iter().map(|r| r.path.clone()).collect();
    let want: Vec<String> = (0..N).map(|i| format!("/hello.txt?i={i}")).collect();
    assert_eq!(paths, want, "each request once, in order:\n{log}");
    assert!(more.is_empty(), "nothing more (no repeats): {more:?}");
    assert!(got.iter().all(|r| r.status == 200 && r.dst_port == web.port && r.node == "follow-it"));
    assert!(status.success(), "{follow_log}");
}
