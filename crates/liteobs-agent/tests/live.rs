//! Live capture, end to end: the agent binary captures on `lo` while real clients (curl, then
//! wrk) talk to a real nginx on a free loopback port; every exchange the clients completed must
//! come out of the agent as a record, the kernel must have dropped nothing, and an exchange made
//! just before SIGINT must still be drained from the kernel and recorded.
//!
//! Needs root (AF_PACKET), nginx, curl and wrk: skips with the reason when one is missing, and
//! fails instead under LITEOBS_REQUIRE_PRIVILEGED=1.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use liteobs_model::TrafficLog;
use support::{Guard, free_port, start_nginx, wait_listening};

const CURLS: usize = 25;

fn requirements() -> Result<(), String> {
    if !support::is_root() {
        return Err("live capture needs root".into());
    }
    for tool in ["nginx", "curl", "wrk"] {
        if !support::have_tool(tool) {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

/// Parses wrk's "N requests in 2.00s, ..." line.
fn wrk_requests(out: &str) -> Option<u64> {
    out.lines().find_map(|l| {
        let l = l.trim();
        let (n, rest) = l.split_once(' ')?;
        rest.starts_with("requests in").then(|| n.parse().ok()).flatten()
    })
}

/// The value of `name` in the agent's final counter table on stderr.
fn counter(stderr: &str, name: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(name)).then(|| it.next().and_then(|v| v.parse().ok())).flatten()
    })
}

#[test]
fn agent_sees_every_exchange_real_clients_make() {
    let req = requirements();
    if !support::may_run(req.is_ok(), req.as_ref().err().map_or("", String::as_str)) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "hello, world\n").unwrap();
    std::fs::write(root.join("page.html"), "<p>".repeat(2000)).unwrap();
    let port = free_port();
    let _nginx = start_nginx(tmp.path(), &root, port);
    assert!(wait_listening(port, Duration::from_secs(5)), "nginx did not start on port {port}");

    // The agent, printing NDJSON; stderr is watched for its "capturing" line.
    let mut agent = Guard::new(
        "liteobs-agent",
        Command::new(env!("CARGO_BIN_EXE_liteobs-agent"))
            .args([
                "-iface",
                "lo",
                "-ports",
                &port.to_string(),
                "-node",
                "live-test",
                "-stats-interval",
                "1s",
            ])
            .env_remove("LITEOBS_SERVER")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = agent.child.as_mut().unwrap().stdout.take().unwrap();
    let stderr = agent.child.as_mut().unwrap().stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    let err_reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("capturing") {
                let _ = ready_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    assert!(ready_rx.recv_timeout(Duration::from_secs(10)).is_ok(), "the agent did not start capturing");

    // curl: separate processes, one connection each.
    let url = format!("http://127.0.0.1:{port}/hello.txt");
    let mut curl_ok = 0;
    for i in 0..CURLS {
        let u = if i % 5 == 0 { format!("http://127.0.0.1:{port}/missing-{i}") } else { url.clone() };
        let st =
            Command::new("curl").args(["-s", "-o", "/dev/null", "--max-time", "5", &u]).status().unwrap();
        curl_ok += usize::from(st.success());
    }
    assert_eq!(curl_ok, CURLS, "curl failed against nginx");

    // wrk: keep-alive load for 3 seconds.
    let wrk = Command::new("wrk")
        .args(["-t", "2", "-c", "8", "-d", "3s", &format!("http://127.0.0.1:{port}/page.html")])
        .output()
        .unwrap();
    let wrk_out = String::from_utf8_lossy(&wrk.stdout).into_owned();
    let wrk_n =
        wrk_requests(&wrk_out).unwrap_or_else(|| panic!("no request count in wrk's output:\n{wrk_out}"));
    assert!(wrk_n > 1000, "wrk completed only {wrk_n} requests:\n{wrk_out}");

    // One last exchange, and the stop right after it: its packets are still in the kernel's
    // ring (a block not yet handed over) when SIGINT arrives; the drain must deliver them.
    let st = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/hello.txt?last=1"),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    agent.signal(libc::SIGINT);
    let status = agent.wait_timeout(Duration::from_secs(20)).expect("the agent did not stop after SIGINT");
    let out = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert!(status.success(), "agent exited with {status}:\n{err}");

    let records = liteobs_model::decode_ndjson(&out).expect("the agent's stdout is NDJSON");
    let ours: Vec<&TrafficLog> = records.iter().filter(|r| r.dst_port == port).collect();
    let last = ours.iter().filter(|r| r.path == "/hello.txt?last=1" && r.status == 200).count();
    assert_eq!(last, 1, "the exchange made just before SIGINT was drained and recorded");
    let curls: Vec<&&TrafficLog> =
        ours.iter().filter(|r| r.path != "/page.html" && r.path != "/hello.txt?last=1").collect();
    let wrks: Vec<&&TrafficLog> = ours.iter().filter(|r| r.path == "/page.html").collect();
    let wrk_answered = wrks.iter().filter(|r| r.status == 200 && r.resp_bytes == 6000).count() as u64;
    eprintln!(
        "curl: {CURLS} sent, {} recorded; wrk: {wrk_n} completed, {} recorded ({wrk_answered} answered 200 with the full body)",
        curls.len(),
        wrks.len()
    );
    assert_eq!(curls.len(), CURLS, "every curl exchange is recorded");
    assert_eq!(curls.iter().filter(|r| r.status == 404).count(), CURLS / 5);
    assert!(curls.iter().all(|r| r.node == "live-test" && r.method == "GET"));
    // Attribution is on by default (-pidmap ebpf) and ready before "capturing" is logged: both
    // ends of every curl exchange are known (exact PIDs: integration/tests/attribution_e2e.rs).
    let attributed = curls.iter().filter(|r| r.src_pid.is_some() && r.dst_pid.is_some()).count();
    assert_eq!(attributed, CURLS, "every curl exchange attributed on both sides");
    // wrk counts the responses it read; a request still in flight when it stopped (at most one
    // per connection) may also have been answered on the wire, or not at all.
    assert!(wrk_answered >= wrk_n, "wrk completed {wrk_n} requests but only {wrk_answered} were recorded");
    assert!(wrks.len() as u64 <= wrk_n + 8, "{} records for {wrk_n} wrk requests", wrks.len());
    assert_eq!(counter(&err, "kernel_dropped"), Some(0), "the kernel dropped packets:\n{err}");
    assert!(err.contains("counters"), "periodic counters were logged:\n{err}");
}
