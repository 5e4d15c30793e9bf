//! Test helpers of the report module: record builders and a scripted HTTP server.
//!
//! The scripted server is a fake on purpose: it answers what no real server can be made to
//! answer on cue (429, 408, a cut connection after the body, 503 with Retry-After), so that
//! every [`super::retry::Outcome`] is exercised end to end through the real awc client.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use liteobs_model::TrafficLog;

pub(crate) fn rec(i: u32) -> TrafficLog {
    serde_json::from_value(serde_json::json!({
        "ts": "2026-11-25T14:00:00.000001Z", "src_ip": "127.0.0.1", "src_port": 40000,
        "dst_ip": "127.0.0.1", "dst_port": 8080, "method": "GET", "path": format!("/{i}"),
        "status": 200, "latency_us": 5, "req_bytes": 0, "resp_bytes": 2, "node": "n"
    }))
    .unwrap()
}

pub(crate) fn paths(recs: &[TrafficLog]) -> Vec<String> {
    recs.iter().map(|r| r.path.clone()).collect()
}

/// One answer of the scripted server.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Status, extra headers, body; the connection is closed after it.
    Answer(u16, Vec<(&'static str, &'static str)>, String),
    /// Read the whole request, then close without a word.
    Cut,
}

pub(crate) fn answer(status: u16, body: &str) -> Step {
    Step::Answer(status, Vec::new(), body.to_owned())
}

/// One request as the scripted server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub headers: Vec<(String, String)>,
    pub records: Vec<TrafficLog>,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The batch id header.
    pub fn id(&self) -> &str {
        self.header(liteobs_model::BATCH_ID_HEADER).unwrap_or("")
    }
}

/// A scripted HTTP server on loopback: answers request i with `script[i]` (the last entry
/// repeats).
pub(crate) fn scripted_server(script: Vec<Step>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let Some((headers, body)) = read_request(&mut conn) else { continue };
            let records = super::encoder::ndjson_lines(&body)
                .unwrap_or_default()
                .iter()
                .filter_map(|l| serde_json::from_slice(l).ok())
                .collect();
            log.lock().unwrap().push(Seen { headers, records, at: Instant::now() });
            let step = script.get(i).or(script.last()).cloned().unwrap_or(Step::Cut);
            if let Step::Answer(status, extra, body) = step {
                let extra: String = extra.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes());
            }
        }
    });
    (url, seen)
}

type Headers = Vec<(String, String)>;

fn read_request(conn: &mut TcpStream) -> Option<(Headers, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let mut hdrs = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut hdrs);
        if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
            let headers: Headers = req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < head + len {
                let n = conn.read(&mut chunk).ok().filter(|n| *n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some((headers, buf[head..head + len].to_vec()));
        }
        let n = conn.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}
