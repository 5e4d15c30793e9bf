//! Exactly-once delivery end to end: the real agent uploads through a proxy that forwards
//! every upload to the real server but, for some of them, cuts the connection instead of
//! relaying the server's 200 — the batch is committed, the agent never hears so, and retries.
//! With batch ids (the `Idempotency-Key` header) the server acknowledges the repeat without
//! storing it again: every record is stored once. This is the failure a `kill -9` of the server
//! between commit and answer produces, made deterministic.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use liteobs_integration::{Server, bin, http};
use liteobs_model::{QueryResponse, TrafficLog};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/pcap/generated/keepalive-many.pcap")
}

/// One HTTP/1.1 message read off a stream: head and body bytes as sent (Content-Length or
/// chunked framing), or None at a clean end of stream.
fn read_message(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut msg = Vec::new();
    let mut content_length = 0usize;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        msg.extend_from_slice(line.as_bytes());
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().ok()?;
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if line == "\r\n" {
            break;
        }
    }
    if chunked {
        loop {
            let mut size_line = String::new();
            r.read_line(&mut size_line).ok()?;
            msg.extend_from_slice(size_line.as_bytes());
            let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0u8; size + 2];
            r.read_exact(&mut chunk).ok()?;
            msg.extend_from_slice(&chunk);
            if size == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0u8; content_length];
        r.read_exact(&mut body).ok()?;
        msg.extend_from_slice(&body);
    }
    Some(msg)
}

/// Counts of what the proxy did.
#[derive(Default)]
struct ProxyStats {
    uploads: AtomicUsize,
    cut: AtomicUsize,
    acknowledged_repeats: AtomicUsize,
}

/// Forwards each request to `upstream`; cuts the answer of uploads number 2, 5, 8, ... (1-based).
fn start_proxy(upstream: String, stats: Arc<ProxyStats>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address").to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { continue };
            let (upstream, stats) = (upstream.clone(), stats.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().expect("clone"));
                let mut client = client;
                while let Some(request) = read_message(&mut reader) {
                    let is_upload = request.starts_with(b"POST /upload");
                    let Ok(server) = TcpStream::connect(&upstream) else { return };
                    let mut server_w = server.try_clone().expect("clone");
                    if server_w.write_all(&request).is_err() {
                        return;
                    }
                    let Some(response) = read_message(&mut BufReader::new(server)) else { return };
                    if is_upload {
                        let n = stats.uploads.fetch_add(1, Ordering::SeqCst) + 1;
                        if n % 3 == 2 && n < 20 {
                            // Committed by the server; the agent never learns it.
                            stats.cut.fetch_add(1, Ordering::SeqCst);
                            let _ = client.shutdown(Shutdown::Both);
                            return;
                        }
                        let text = String::from_utf8_lossy(&response);
                        if text.contains("\"duplicate\":true") {
                            stats.acknowledged_repeats.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    if client.write_all(&response).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn sorted(mut v: Vec<TrafficLog>) -> Vec<TrafficLog> {
    v.sort_by(|a, b| (a.ts, a.src_port, &a.path).cmp(&(b.ts, b.src_port, &b.path)));
    v
}

#[test]
fn a_lost_acknowledgement_does_not_store_a_batch_twice() {
    // As the server stores them: with their routes.
    let expected = liteobs_integration::with_routes(liteobs_integration::replayed(&fixture(), "it-node"));
    assert_eq!(expected.len(), 200);

    for backend in liteobs_integration::backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(backend, &dir.path().join("store.db"), None, None);
        let stats = Arc::new(ProxyStats::default());
        let proxy = start_proxy(server.addr().to_owned(), stats.clone());

        let mut agent = Command::new(bin("liteobs-agent"))
            .arg("-read")
            .arg(fixture())
            .args(["-server", &proxy, "-node", "it-node"])
            .args(["-batch-size", "20", "-flush-interval", "50ms", "-max-backoff", "200ms"])
            .env_remove("LITEOBS_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting liteobs-agent");
        let stderr = agent.stderr.take().expect("stderr");
        let log = std::thread::spawn(move || {
            BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<String>>().join("\n")
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = agent.try_wait().expect("wait") {
                break st;
            }
            assert!(Instant::now() < deadline, "the agent did not finish within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = log.join().expect("log");
        assert!(status.success(), "agent failed ({backend}):\n{log}");

        let mut resp = http().get(&format!("{}/query?limit=10000", server.url)).call().expect("query");
        let body: QueryResponse =
            serde_json::from_reader(resp.body_mut().as_reader()).expect("query response");
        let cut = stats.cut.load(Ordering::SeqCst);
        let repeats = stats.acknowledged_repeats.load(Ordering::SeqCst);
        eprintln!(
            "{backend}: {} uploads, {cut} answers cut, {repeats} repeats acknowledged",
            stats.uploads.load(Ordering::SeqCst)
        );
        assert!(cut >= 3, "the proxy cut only {cut} answers: the test proved nothing");
        // A retry may itself be cut (and be acknowledged as a repeat on the next try), so at
        // least one and at most `cut` repeats reach the agent.
        assert!(
            (1..=cut).contains(&repeats),
            "{repeats} repeats acknowledged for {cut} cut answers ({backend})"
        );
        assert_eq!(
            sorted(body.records),
            sorted(expected.clone()),
            "stored records differ: lost or duplicated ({backend})"
        );
    }
}
