//! The `-metrics-listen` HTTP/1.1 server: `GET /metrics` and `GET /healthz` (and `HEAD` of
//! both), one request per connection, answered with `Connection: close`.
//!
//! Bounded for hostile clients: a request head is read for at most [`HEAD_TIMEOUT`] and
//! [`MAX_HEAD`] bytes, at most [`MAX_CONNECTIONS`] are served at once (more are closed at once),
//! and a bad request gets a 400, never a panic. [`answer`] is pure (request line → response);
//! the rest moves bytes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::AgentMetrics;

/// Longest a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// The content type prometheus-client's text encoder writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A response.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }
}

/// The response to `method path` (the path may carry a query string, ignored).
pub fn answer(metrics: &AgentMetrics, method: &str, path: &str) -> Answer {
    let route = path.split(['?', '#']).next().unwrap_or("");
    if !matches!(route, "/metrics" | "/healthz") {
        return Answer::text(404, format!("no such route: {route} (try /metrics or /healthz)\n"));
    }
    if method != "GET" && method != "HEAD" {
        return Answer::text(405, format!("{route} answers GET and HEAD only\n"));
    }
    if route == "/metrics" {
        return Answer { status: 200, content_type: OPENMETRICS, body: metrics.encode() };
    }
    let v = metrics.health();
    Answer {
        status: if v.ok { 200 } else { 503 },
        content_type: "application/json",
        body: format!("{{\"status\":\"{}\"}}\n", v.status),
    }
}

/// Binds `addr` and serves on a thread of its own; answers the bound address.
pub fn serve(addr: &str, metrics: Arc<AgentMetrics>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("liteobs-metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(stream) = conn else { continue };
            if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::AcqRel);
                drop(stream);
                continue;
            }
            let (metrics, active) = (metrics.clone(), active.clone());
            let spawned = std::thread::Builder::new().name("liteobs-metrics-conn".into()).spawn({
                let active = active.clone();
                move || {
                    connection(stream, &metrics);
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::AcqRel);
            }
        }
    })?;
    Ok(bound)
}

/// Reads one request head and writes its answer; any I/O failure just ends the connection.
fn connection(mut stream: TcpStream, metrics: &AgentMetrics) {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (reply, head_only) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("");
                break (answer(metrics, method, req.path.unwrap_or("")), method == "HEAD");
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => break (Answer::text(431, "request head too large\n"), false),
            Err(e) => break (Answer::text(400, format!("bad request: {e}\n")), false),
        }
    };
    let _ = stream.set_write_timeout(Some(HEAD_TIMEOUT));
    let _ = write_answer(&mut stream, &reply, head_only);
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_answer(out: &mut impl Write, a: &Answer, head_only: bool) -> io::Result<()> {
    let allow = if a.status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        a.status,
        reason(a.status),
        a.content_type,
        a.body.len()
    );
    out.write_all(head.as_bytes())?;
    if !head_only {
        out.write_all(a.body.as_bytes())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};

    use super::*;
    use crate::metrics::{Phase, Published};
    use crate::report::UploadLatency;

    fn metrics() -> (Arc<Published>, Arc<AgentMetrics>) {
        let published = Arc::new(Published::default());
        let m = Arc::new(AgentMetrics::new(published.clone(), &UploadLatency::default()));
        (published, m)
    }

    /// One request over a real socket; the status line and the body.
    fn ask(addr: SocketAddr, request: &[u8]) -> (String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        let mut rest = String::new();
        // A refused head is answered and the connection reset: keep what arrived.
        let _ = r.read_to_string(&mut rest);
        let body = rest.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status.trim_end().to_owned(), body)
    }

    #[test]
    fn routes_methods_and_health() {
        let (published, m) = metrics();
        let addr = serve("127.0.0.1:0", m).unwrap();
        let (st, body) = ask(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            (st.as_str(), body.as_str()),
            ("HTTP/1.1 503 Service Unavailable", "{\"status\":\"starting\"}\n")
        );
        published.set_phase(Phase::Live);
        let (st, body) = ask(addr, b"GET /healthz?probe=1 HTTP/1.1\r\n\r\n");
        assert_eq!((st.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "{\"status\":\"ok\"}\n"));
        let (st, body) = ask(addr, b"GET /metrics HTTP/1.0\r\n\r\n");
        assert_eq!(st, "HTTP/1.1 200 OK");
        assert!(body.contains("# TYPE liteobs_agent_packets counter\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        let (st, body) = ask(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert_eq!((st.as_str(), body.as_str()), ("HTTP/1.1 200 OK", ""));
        assert_eq!(ask(addr, b"POST /metrics HTTP/1.1\r\n\r\n").0, "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(ask(addr, b"GET /upload HTTP/1.1\r\n\r\n").0, "HTTP/1.1 404 Not Found");
    }

    /// Garbage, a head that never ends and a client that says nothing: each gets an answer or
    /// a closed connection, and the server goes on answering.
    #[test]
    fn hostile_requests_get_errors_not_a_dead_server() {
        let (_, m) = metrics();
        let addr = serve("127.0.0.1:0", m).unwrap();
        assert_eq!(ask(addr, b"\x00\x01\x02 nonsense\r\n\r\n").0, "HTTP/1.1 400 Bad Request");
        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD * 2));
        assert_eq!(ask(addr, &huge).0, "HTTP/1.1 431 Request Header Fields Too Large");
        // Silent clients hold every slot until they go; one more is closed unanswered, not
        // queued, and once they are gone the server answers again.
        let silent: Vec<TcpStream> =
            (0..MAX_CONNECTIONS).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(try_ask(addr, b"GET /healthz HTTP/1.1\r\n\r\n"), None);
        drop(silent);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match try_ask(addr, b"GET /healthz HTTP/1.1\r\n\r\n") {
                Some(status) => break assert_eq!(status, "HTTP/1.1 503 Service Unavailable"),
                None => assert!(Instant::now() < deadline, "no answer once the silent clients left"),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The status line of an answer, None when the connection is closed without one.
    fn try_ask(addr: SocketAddr, request: &[u8]) -> Option<String> {
        let mut s = TcpStream::connect(addr).ok()?;
        let _ = s.write_all(request);
        let mut status = String::new();
        BufReader::new(s).read_line(&mut status).ok()?;
        (!status.is_empty()).then(|| status.trim_end().to_owned())
    }

    #[test]
    fn a_taken_address_is_an_error() {
        let (_, m) = metrics();
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        assert!(serve(&addr, m.clone()).is_err());
        assert!(serve("not an address", m).is_err());
    }
}
