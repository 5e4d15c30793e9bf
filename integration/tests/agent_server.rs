//! liteobs-agent reporting to a real liteobs-server that goes away and comes back mid-stream:
//! every record arrives exactly once.
//!
//! The agent replays a capture fed slowly through its standard input (`-read -`), so the test
//! decides when records are produced: the first half goes up while the server runs, the second
//! while it is stopped (the agent retries with backoff), and the server is then restarted on the
//! same port and database.
//!
//! As root, a second test captures live on `lo` (every TCP port) while curl talks to a python
//! http.server, uploading to the server: the exchanges arrive, and the agent's own uploads are
//! not captured.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use liteobs_integration::{LiveAgent, Server, WebServer, bin, http, privileged};
use liteobs_model::{QueryResponse, TrafficLog};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/pcap/generated/keepalive-many.pcap")
}

fn stored(server: &Server) -> Vec<TrafficLog> {
    let mut resp = http().get(&format!("{}/query?limit=10000", server.url)).call().expect("query");
    assert_eq!(resp.status(), 200);
    let body: QueryResponse = serde_json::from_reader(resp.body_mut().as_reader()).expect("query response");
    body.records
}

fn sorted(mut v: Vec<TrafficLog>) -> Vec<TrafficLog> {
    v.sort_by(|a, b| (a.ts, a.src_port, &a.path).cmp(&(b.ts, b.src_port, &b.path)));
    v
}

#[test]
fn agent_loses_nothing_while_the_server_restarts() {
    let capture = std::fs::read(fixture()).expect("fixtures/pcap/generated/keepalive-many.pcap");
    // As the server stores them: with their routes.
    let expected = liteobs_integration::with_routes(liteobs_integration::replayed(&fixture(), "it-node"));
    assert_eq!(expected.len(), 200);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.sqlite");
    let server = Server::start("sqlite", &db, None, None);
    let addr = server.addr().to_owned();

    let mut agent = Command::new(bin("liteobs-agent"))
        .args(["-read", "-", "-server", &server.url, "-node", "it-node"])
        .args(["-batch-size", "20", "-flush-interval", "50ms", "-max-backoff", "300ms"])
        .env_remove("LITEOBS_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting liteobs-agent");
    let mut stdin = agent.stdin.take().unwrap();
    let stderr = agent.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<String>>().join("\n")
    });

    // First half while the server is up; wait until some of it is stored.
    let half = capture.len() / 2;
    stdin.write_all(&capture[..half]).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        let n = stored(&server).len();
        if n >= 40 {
            break n;
        }
        assert!(Instant::now() < deadline, "the server stored only {n} records of the first half");
        std::thread::sleep(Duration::from_millis(50));
    };

    // Second half while it is down.
    assert!(server.stop().success(), "liteobs-server did not stop cleanly");
    stdin.write_all(&capture[half..]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    let server = Server::start("sqlite", &db, None, Some(&addr));
    drop(stdin); // end of the capture: the agent flushes and exits once all is acknowledged
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = agent.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the agent did not finish within 60 s of the restart");
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log.join().unwrap();
    assert!(status.success(), "agent failed:\n{log}");

    let got = stored(&server);
    eprintln!("{before} records stored before the stop, {} after the restart", got.len());
    for e in &expected {
        if !got.iter().any(|g| g.path == e.path) {
            eprintln!("MISSING {} {} {:?} {:?}", e.path, e.status, e.ts, e.exchange_id);
        }
    }
    assert_eq!(
        sorted(got),
        sorted(expected),
        "stored records differ from the capture's (lost or duplicated)"
    );
    let failures = log
        .lines()
        .find_map(|l| l.strip_prefix("upload_failures").map(|v| v.trim().parse::<u64>().unwrap_or(0)))
        .unwrap_or(0);
    assert!(failures > 0, "the agent never saw the server down, so this proved nothing:\n{log}");
}

#[test]
fn live_agent_uploads_what_it_sees_but_not_its_own_uploads() {
    if !privileged("live_agent_uploads_what_it_sees_but_not_its_own_uploads") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    let server = Server::start("sqlite", &dir.path().join("store.sqlite"), None, None);
    let web = WebServer::start(dir.path());
    let web_port = web.port;

    // No -ports: every TCP port, the server's included, so exclusion is what keeps uploads out.
    let agent = LiveAgent::start(&[
        "-iface",
        "lo",
        "-server",
        &server.url,
        "-node",
        "live-it",
        "-batch-size",
        "5",
        "-flush-interval",
        "100ms",
    ]);

    const N: usize = 12;
    for i in 0..N {
        web.get(&format!("/hello.txt?i={i}"));
        std::thread::sleep(Duration::from_millis(150)); // spread over several upload batches
    }
    let (status, log) = agent.stop();
    drop(web);
    assert!(status.success(), "agent failed:\n{log}");

    let got = stored(&server);
    let web_records = got.iter().filter(|r| r.dst_port == web_port).count();
    let server_port: u16 = server.addr().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap();
    let own = got.iter().filter(|r| r.dst_port == server_port).count();
    assert_eq!(web_records, N, "every curl exchange was uploaded:\n{log}");
    assert_eq!(own, 0, "the agent recorded its own uploads");
    assert!(got.iter().all(|r| r.node == "live-it" && r.status == 200));
}
