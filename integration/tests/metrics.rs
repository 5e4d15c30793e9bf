//! `-metrics-listen` on the real binaries: liteobs-agent replays a recorded capture into a real
//! liteobs-server, and both scrapes are checked against the work done, counted apart from the
//! programs: the capture's packets by reading the file here (pcap-file), its 200 exchanges by
//! how the fixture was made (`generated_fixtures.rs`, `keepalive_many`), the rows by a query.
//!
//! Why a replay that lingers rather than a live capture: `-read` exits when the file is done,
//! so the agent is run with `-metrics-linger`, which keeps its listener up after the replay
//! (until SIGTERM): the scrape then sees the final counters, which are exact, and the test
//! needs no root and no traffic of its own. The live side of `/healthz` (ready once
//! capturing) is checked by the root-only test below.
//!
//! The expositions are read by a small parser of the text format here, which also checks the
//! `# TYPE` lines against the catalog (`liteobs_model::metrics`) and that every sample belongs
//! to a declared family.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use liteobs_integration::{Server, backends, bin, http, privileged};
use liteobs_model::QueryResponse;
use liteobs_model::metrics::{MetricDef, agent, server};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/pcap/generated/keepalive-many.pcap")
}

/// The fixture's exchanges: 4 keep-alive connections × 50 requests, each answered.
const EXCHANGES: f64 = 200.0;

/// Packets in the capture, read here.
fn packets_in(path: &PathBuf) -> f64 {
    let file = std::fs::File::open(path).expect("fixture");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap file");
    let mut n = 0u64;
    while let Some(packet) = reader.next_packet() {
        packet.expect("a well-formed packet record");
        n += 1;
    }
    n as f64
}

/// One scrape, parsed: the declared families and every sample by `name{labels}`.
#[derive(Debug)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, f64>,
}

impl Exposition {
    /// Parses OpenMetrics text as prometheus-client writes it, refusing what a scraper would
    /// refuse: a sample before its family's `# TYPE`, a family declared twice, a sample given
    /// twice, a value that is not a number, anything after `# EOF` or no `# EOF`.
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition { types: BTreeMap::new(), samples: BTreeMap::new() };
        let mut lines = text.lines();
        for line in lines.by_ref() {
            if line == "# EOF" {
                break;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
                assert!(e.types.insert(name.into(), kind.into()).is_none(), "{name} declared twice");
                continue;
            }
            if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
            let (key, value) = match line.find('}') {
                Some(i) => (&line[..=i], line[i + 1..].trim()),
                None => line.split_once(' ').unwrap_or_else(|| panic!("no value in {line:?}")),
            };
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("{v:?} is not a number in {line:?}")),
            };
            let name = key.split('{').next().unwrap_or(key);
            let family = e.family_of(name);
            assert!(family.is_some(), "sample {name} has no # TYPE before it");
            assert!(e.samples.insert(key.into(), value).is_none(), "{key} twice");
        }
        assert!(lines.next().is_none(), "lines after # EOF");
        assert!(text.ends_with("# EOF\n"), "no # EOF at the end");
        e
    }

    /// The declared family a sample name belongs to, by its type's suffixes.
    fn family_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        let suffixes: &[(&str, &[&str])] = &[
            ("counter", &["_total", "_created"]),
            ("gauge", &[""]),
            ("histogram", &["_bucket", "_sum", "_count", "_created"]),
        ];
        for (kind, ends) in suffixes {
            for end in *ends {
                if let Some(base) = name.strip_suffix(end)
                    && self.types.get(base).map(String::as_str) == Some(*kind)
                {
                    return Some(base);
                }
            }
        }
        None
    }

    /// The families must be the catalog's, with its types.
    fn assert_catalog(&self, all: &[MetricDef]) {
        let want: BTreeMap<String, String> =
            all.iter().map(|d| (d.family().to_owned(), d.kind.as_str().to_owned())).collect();
        assert_eq!(self.types, want, "the families and types of a scrape are the catalog's");
    }

    fn get(&self, key: &str) -> f64 {
        *self.samples.get(key).unwrap_or_else(|| panic!("no sample {key}; have {:?}", self.samples.keys()))
    }
}

fn scrape(url: &str) -> Exposition {
    let resp = http().get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status(), 200, "GET {url}");
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "content type {ct:?}");
    Exposition::parse(&resp.into_body().read_to_string().expect("metrics body"))
}

fn get(url: &str) -> (u16, String) {
    let resp = http().get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (resp.status().as_u16(), resp.into_body().read_to_string().unwrap_or_default())
}

/// A running liteobs-agent whose stderr lines arrive on a channel; killed on drop.
struct Agent {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Agent {
    fn start(args: &[&str]) -> Agent {
        let mut child = Command::new(bin("liteobs-agent"))
            .args(args)
            .env_remove("LITEOBS_TOKEN")
            .env_remove("LITEOBS_SERVER")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting liteobs-agent");
        let stderr = child.stderr.take().expect("stderr pipe");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Agent { child, lines, seen: Vec::new() }
    }

    /// Waits for a log line containing `what`; answers it.
    fn wait_for(&mut self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what:?} from liteobs-agent; it said:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The metrics address the agent logged.
    fn metrics_addr(&mut self) -> String {
        let line = self.wait_for("serving /metrics and /healthz");
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no addr= in {line:?}"))
            .to_owned()
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().expect("waiting for liteobs-agent") {
                return st;
            }
            assert!(Instant::now() < deadline, "liteobs-agent did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rows(server: &Server) -> usize {
    let mut resp = http().get(&format!("{}/query?limit=10000", server.url)).call().expect("query");
    assert_eq!(resp.status(), 200);
    let body: QueryResponse = serde_json::from_reader(resp.body_mut().as_reader()).expect("query response");
    body.records.len()
}

#[test]
fn both_scrapes_match_the_work_done() {
    let packets = packets_in(&fixture());
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server =
            Server::start_with(backend, &dir.path().join("store"), &["-metrics-listen", "127.0.0.1:0"]);
        let server_metrics = server.metrics_url.clone().expect("the server printed its metrics address");
        let before = scrape(&server_metrics);
        before.assert_catalog(server::ALL);
        assert_eq!(before.get("liteobs_server_store_rows"), 0.0);

        let fixture = fixture();
        let mut agent = Agent::start(&[
            "-read",
            fixture.to_str().expect("a UTF-8 path"),
            "-server",
            &server.url,
            "-node",
            "metrics-node",
            "-batch-size",
            "50",
            "-flush-interval",
            "50ms",
            "-metrics-listen",
            "127.0.0.1:0",
            "-metrics-linger",
            "120s",
        ]);
        let addr = agent.metrics_addr();
        agent.wait_for("replay done");

        let a = scrape(&format!("http://{addr}/metrics"));
        a.assert_catalog(agent::ALL);
        assert_eq!(a.get("liteobs_agent_packets_total"), packets, "{backend}: every packet of the file");
        assert_eq!(a.get("liteobs_agent_exchanges_total"), EXCHANGES);
        assert_eq!(a.get("liteobs_agent_records_acked_total"), EXCHANGES);
        assert_eq!(a.get("liteobs_agent_flows_opened_total"), 4.0);
        assert_eq!(a.get("liteobs_agent_flows_open"), 0.0, "every connection closed at the end");
        for zero in [
            "liteobs_agent_gaps_total",
            "liteobs_agent_parse_errors_total",
            "liteobs_agent_records_dropped_total",
            "liteobs_agent_records_rejected_total",
            "liteobs_agent_upload_failures_total",
            "liteobs_agent_queue_records",
            "liteobs_agent_kernel_dropped_packets_total",
        ] {
            assert_eq!(a.get(zero), 0.0, "{zero}");
        }
        let batches = a.get("liteobs_agent_batches_acked_total");
        assert!(batches >= EXCHANGES / 50.0, "{batches} batches of at most 50");
        // One observation per attempt; none failed, so one per acknowledged batch.
        assert_eq!(a.get("liteobs_agent_upload_duration_seconds_count"), batches);
        assert_eq!(a.get("liteobs_agent_upload_duration_seconds_bucket{le=\"+Inf\"}"), batches);
        assert!(a.get("liteobs_agent_upload_duration_seconds_sum") > 0.0);
        assert_eq!(get(&format!("http://{addr}/healthz")), (200, "{\"status\":\"done\"}\n".to_owned()));
        assert_eq!(get(&format!("http://{addr}/nothing")).0, 404);

        // The server: what it ingested is what a query finds, and what the agent sent.
        let stored = rows(&server) as f64;
        assert_eq!(stored, EXCHANGES, "{backend}: one row per exchange");
        let s = scrape(&server_metrics);
        s.assert_catalog(server::ALL);
        let merged = s.get("liteobs_server_ingest_merged_records_total");
        assert_eq!(s.get("liteobs_server_ingest_records_total") - merged, stored);
        assert_eq!(s.get("liteobs_server_store_rows"), stored);
        assert!(s.get("liteobs_server_store_size_bytes") > 0.0);
        assert!(s.get("liteobs_server_ingest_bytes_total") > 0.0);
        assert_eq!(s.get("liteobs_server_uploads_total{outcome=\"stored\"}"), batches);
        assert_eq!(s.get("liteobs_server_uploads_total{outcome=\"duplicate\"}"), 0.0);
        assert_eq!(s.get("liteobs_server_request_duration_seconds_count{route=\"/upload\"}"), batches);
        assert_eq!(s.get("liteobs_server_write_batches_total"), batches);
        // The harness asked /healthz until it answered; the test asked /query once.
        assert_eq!(s.get("liteobs_server_request_duration_seconds_count{route=\"/query\"}"), 1.0);
        assert!(s.get("liteobs_server_request_duration_seconds_count{route=\"/healthz\"}") >= 1.0);

        // SIGTERM ends the linger at once, and the run is a success.
        let status = agent.stop();
        assert!(status.success(), "{backend}: liteobs-agent exited with {status}");
        assert!(server.stop().success());
    }
}

/// A bad or taken -metrics-listen is one clear error at start, before anything is read.
#[test]
fn a_taken_metrics_address_fails_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(bin("liteobs-agent"))
        .args(["-read", fixture().to_str().expect("a UTF-8 path"), "-metrics-listen", &addr])
        .env_remove("LITEOBS_SERVER")
        .stdout(Stdio::null())
        .output()
        .expect("liteobs-agent");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("-metrics-listen {addr}:")), "{err}");
}

/// Live on `lo` (root): `/healthz` answers ok once the agent is capturing, and the packet
/// counter moves with traffic the test makes, while the agent runs.
#[test]
fn live_capture_is_healthy_and_counts_as_it_goes() {
    if !privileged("live_capture_is_healthy_and_counts_as_it_goes") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let mut agent =
        Agent::start(&["-iface", "lo", "-ports", &port, "-pidmap", "off", "-metrics-listen", "127.0.0.1:0"]);
    let addr = agent.metrics_addr();
    agent.wait_for("capturing");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(&format!("http://{addr}/healthz"));
        if status == 200 {
            assert_eq!(body, "{\"status\":\"ok\"}\n");
            break;
        }
        assert_eq!(body, "{\"status\":\"starting\"}\n");
        assert!(Instant::now() < deadline, "/healthz still {status} {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A connection to the watched port: a handshake's packets at least.
    let server = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let client =
        std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("port"))).expect("connect");
    let accepted = server.join().expect("accept thread").expect("accept");
    drop((client, accepted));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(&format!("http://{addr}/metrics"));
        m.assert_catalog(agent::ALL);
        if m.get("liteobs_agent_packets_total") >= 3.0 && m.get("liteobs_agent_flows_opened_total") >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the live counters did not move: {:?}", m.samples);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(agent.stop().success());
}
