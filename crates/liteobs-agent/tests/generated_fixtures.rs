//! Edge-case captures that real peers rarely produce on demand: segments out of order,
//! retransmitted, overlapping or lost, heads split byte by byte, every link framing the agent
//! decodes, and requests that never get an answer.
//!
//! This test builds each one in memory and checks it against the committed file in
//! fixtures/pcap/generated/, so that the files and their recipe cannot drift apart. To
//! (re)write the files after changing a recipe:
//!
//!     LITEOBS_BLESS_FIXTURES=1 cargo test --release -p liteobs-agent --test generated_fixtures
//!
//! and then review the records they produce (`--test fixtures`, insta snapshots).

mod support;

use support::{Conn, Framing, Segment, SynthCapture, fixtures_dir};

const GET_A: &[u8] = b"GET /a?x=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: gen\r\nAccept: */*\r\n\r\n";
const GET_B: &[u8] = b"GET /b HTTP/1.1\r\nHost: example.test\r\nUser-Agent: gen\r\n\r\n";

fn ok(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: example.test\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn split(data: &[u8], at: &[usize]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut start = 0;
    for &a in at {
        parts.push(data[start..a].to_vec());
        start = a;
    }
    parts.push(data[start..].to_vec());
    parts
}

/// Two exchanges on one keep-alive connection, in order: the baseline the others vary.
fn keepalive(framing: Framing, client: &str, server: &str) -> SynthCapture {
    let mut cap = SynthCapture::new(framing);
    let mut c = Conn::new(client, 40_001, server, 8080);
    c.handshake(&mut cap);
    let s = c.client(GET_A);
    cap.push(&s);
    cap.push(&c.ack_from_server());
    cap.pause(1_500);
    let s = c.server(&ok("hello, world\n"));
    cap.push(&s);
    cap.push(&c.ack_from_client());
    cap.pause(20_000);
    let s = c.client(&post("/submit", "name=value&x=y"));
    cap.push(&s);
    cap.pause(700);
    let s = c.server(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    cap.push(&s);
    c.close(&mut cap);
    cap
}

/// The request arrives as parts 1, 3, 2; the response as 2, 1.
fn out_of_order() -> SynthCapture {
    let mut cap = SynthCapture::new(Framing::Ethernet);
    let mut c = Conn::new("10.0.0.1", 40_002, "10.0.0.2", 80);
    c.handshake(&mut cap);
    let req: Vec<Segment> = split(GET_A, &[10, 40]).iter().map(|p| c.client(p)).collect();
    Conn::send_all(&mut cap, &[req[0].clone(), req[2].clone(), req[1].clone()]);
    cap.pause(900);
    let body = "out of order body ".repeat(10);
    let resp = ok(&body);
    let parts: Vec<Segment> = split(&resp, &[60]).iter().map(|p| c.server(p)).collect();
    Conn::send_all(&mut cap, &[parts[1].clone(), parts[0].clone()]);
    cap.push(&c.ack_from_client());
    let s = c.client(GET_B);
    cap.push(&s);
    let s = c.server(&ok("b"));
    cap.push(&s);
    c.close(&mut cap);
    cap
}

/// Every data segment is sent twice; the response's second copy also with new boundaries.
fn retransmission() -> SynthCapture {
    let mut cap = SynthCapture::new(Framing::Ethernet);
    let mut c = Conn::new("10.0.0.1", 40_003, "10.0.0.2", 80);
    c.handshake(&mut cap);
    let s = c.client(GET_A);
    cap.push(&s);
    cap.pause(200_000);
    cap.push(&s);
    let resp = ok("retransmitted body\n");
    let parts: Vec<Segment> = split(&resp, &[30]).iter().map(|p| c.server(p)).collect();
    Conn::send_all(&mut cap, &parts);
    cap.pause(200_000);
    // The whole response again as one segment: old data under new boundaries.
    cap.push(&c.server_at(resp.len() as u32, &resp));
    cap.push(&c.ack_from_client());
    let s = c.client(GET_B);
    cap.push(&s);
    let s = c.server(&ok("b"));
    cap.push(&s);
    cap.push(&s);
    c.close(&mut cap);
    cap
}

/// Segments that overlap part of what came before (same bytes, as TCP requires).
fn overlap() -> SynthCapture {
    let mut cap = SynthCapture::new(Framing::Ethernet);
    let mut c = Conn::new("10.0.0.1", 40_004, "10.0.0.2", 80);
    c.handshake(&mut cap);
    // Request: [0, 30) then [20, end).
    let first = c.client(&GET_A[..30]);
    cap.push(&first);
    c.cseq += (GET_A.len() - 30) as u32;
    cap.push(&c.client_at((GET_A.len() - 20) as u32, &GET_A[20..]));
    let resp = ok(&"overlapping ".repeat(8));
    // Response: [40, end) first (held out of order), then [0, 50) covering the hole and more.
    c.sseq += resp.len() as u32;
    cap.push(&c.server_at((resp.len() - 40) as u32, &resp[40..]));
    cap.push(&c.server_at(resp.len() as u32, &resp[..50]));
    cap.push(&c.ack_from_client());
    c.close(&mut cap);
    cap
}

/// A response body segment the capture missed, then a second exchange on the same connection.
fn lost_segment() -> SynthCapture {
    let mut cap = SynthCapture::new(Framing::Ethernet);
    let mut c = Conn::new("10.0.0.1", 40_005, "10.0.0.2", 80);
    c.handshake(&mut cap);
    let s = c.client(GET_A);
    cap.push(&s);
    let body = "x".repeat(3000);
    let resp = ok(&body);
    let parts: Vec<Segment> = split(&resp, &[1000, 2000]).iter().map(|p| c.server(p)).collect();
    Conn::send_all(&mut cap, &[parts[0].clone(), parts[2].clone()]); // parts[1] never captured
    cap.push(&c.ack_from_client());
    cap.pause(5_000);
    let s = c.client(GET_B);
    cap.push(&s);
    let s = c.server(&ok("after the gap"));
    cap.push(&s);
    c.close(&mut cap);
    cap
}

/// Request and response heads one byte per segment.
fn byte_by_byte() -> SynthCapture {
    let mut cap = SynthCapture::new(Framing::Ethernet);
    let mut c = Conn::new("10.0.0.1", 40_006, "10.0.0.2", 80);
    c.handshake(&mut cap);
    for b in GET_A {
        let s = c.client(&[*b]);
        cap.push(&s);
    }
    let resp = ok("split head");
    let head_len = resp.len() - "split head".len();
    for b in &resp[..head_len] {
        let s = c.server(&[*b]);
        cap.push(&s);
    }
    let s = c.server(&resp[head_len..]);
    cap.push(&s);
    c.close(&mut cap);
    cap
}

/// The server closes without answering.
fn no_response_fin() -> SynthCapture {
    let mut cap = SynthCapture::new(Framing::Ethernet);
    let mut c = Conn::new("10.0.0.1", 40_007, "10.0.0.2", 80);
    c.handshake(&mut cap);
    let s = c.client(GET_A);
    cap.push(&s);
    cap.pause(3_000);
    c.close(&mut cap);
    cap
}

/// The capture ends while a request waits for its answer (the replay's end flushes it), and a
/// second connection's request is never answered while the clock moves 2 minutes on (idle
/// expiry by packet time).
fn no_response_idle_and_eof() -> SynthCapture {
    let mut cap = SynthCapture::new(Framing::Ethernet);
    let mut idle = Conn::new("10.0.0.1", 40_008, "10.0.0.2", 80);
    idle.handshake(&mut cap);
    let s = idle.client(GET_A);
    cap.push(&s);
    cap.pause(120_000_000);
    let mut late = Conn::new("10.0.0.3", 40_009, "10.0.0.2", 80);
    late.handshake(&mut cap);
    let s = late.client(GET_B);
    cap.push(&s);
    cap
}

/// The capture starts in the middle of a keep-alive connection (no handshake seen).
fn midstream() -> SynthCapture {
    let mut cap = SynthCapture::new(Framing::Ethernet);
    let mut c = Conn::new("10.0.0.1", 40_010, "10.0.0.2", 80);
    let s = c.client(GET_A);
    cap.push(&s);
    let s = c.server(&ok("mid"));
    cap.push(&s);
    let s = c.client(GET_B);
    cap.push(&s);
    let s = c.server(&ok("stream"));
    cap.push(&s);
    c.close(&mut cap);
    cap
}

/// 4 keep-alive connections taking turns, 50 exchanges each: enough records for several
/// upload batches (the integration tests replay it against a real server).
fn keepalive_many() -> SynthCapture {
    let mut cap = SynthCapture::new(Framing::Ethernet);
    let mut conns: Vec<Conn> =
        (0..4u16).map(|i| Conn::new("127.0.0.1", 41_000 + i, "127.0.0.1", 8080)).collect();
    for c in conns.iter_mut() {
        c.handshake(&mut cap);
    }
    for round in 0..50 {
        for (i, c) in conns.iter_mut().enumerate() {
            let req = format!("GET /item/{round}?conn={i} HTTP/1.1\r\nHost: example.test\r\n\r\n");
            let s = c.client(req.as_bytes());
            cap.push(&s);
            cap.pause(250);
            let s = c.server(&ok(&"y".repeat(round * 3 + i)));
            cap.push(&s);
            cap.push(&c.ack_from_client());
            cap.pause(10_000);
        }
    }
    for c in conns.iter_mut() {
        c.close(&mut cap);
    }
    cap
}

fn recipes() -> Vec<(&'static str, SynthCapture)> {
    vec![
        ("out-of-order", out_of_order()),
        ("retransmission", retransmission()),
        ("overlap", overlap()),
        ("lost-segment", lost_segment()),
        ("byte-by-byte", byte_by_byte()),
        ("no-response-fin", no_response_fin()),
        ("no-response-idle-and-eof", no_response_idle_and_eof()),
        ("midstream", midstream()),
        ("keepalive-many", keepalive_many()),
        ("framing-sll", keepalive(Framing::LinuxSll, "127.0.0.1", "127.0.0.1")),
        ("framing-sll2-ipv6", keepalive(Framing::LinuxSll2, "::1", "::1")),
        ("framing-vlan", keepalive(Framing::Vlan(42), "192.0.2.10", "192.0.2.20")),
        ("framing-null", keepalive(Framing::Null, "127.0.0.1", "127.0.0.1")),
        ("framing-raw-ipv6", keepalive(Framing::RawIp, "2001:db8::1", "2001:db8::2")),
    ]
}

#[test]
fn generated_captures_match_their_recipes() {
    let dir = fixtures_dir().join("pcap/generated");
    let bless = std::env::var("LITEOBS_BLESS_FIXTURES").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, cap) in recipes() {
        let path = dir.join(format!("{name}.pcap"));
        let bytes = cap.to_pcap();
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
            continue;
        }
        match std::fs::read(&path) {
            Ok(committed) if committed == bytes => {}
            Ok(_) => stale.push(format!("{name}.pcap differs from its recipe")),
            Err(e) => stale.push(format!("{name}.pcap: {e}")),
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nrewrite with LITEOBS_BLESS_FIXTURES=1 cargo test --release -p liteobs-agent --test generated_fixtures",
        stale.join("\n")
    );
    // Nothing in the directory that no recipe makes.
    let names: Vec<String> = recipes().iter().map(|(n, _)| format!("{n}.pcap")).collect();
    for f in support::generated_fixtures() {
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(names.contains(&file), "{file} has no recipe in this test");
    }
}
