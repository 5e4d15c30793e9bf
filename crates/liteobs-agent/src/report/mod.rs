//! Reporting: getting records off the node.
//!
//! Two destinations:
//! * [`NdjsonWriter`]: one JSON record per line on a byte stream (standard output when the
//!   agent has no server), run on a thread of its own by [`stdout::ThreadedWriter`].
//! * [`Reporter`]: batches from a [`RecordQueue`] gzip-compressed as NDJSON and POSTed to
//!   `{server}/upload`, the only place that retries.
//!
//! The queue is the agent's one buffer between capture and network, bounded in records. Live
//! capture must never wait on the network, so a full queue drops its oldest records and counts
//! them ([`Overflow::DropOldest`]); a replay can wait instead ([`Overflow::Wait`]) so that a
//! slow server loses nothing. Besides the queue, the reporter holds the one batch it is
//! sending: at most `capacity + batch_size` records are held at once.
//!
//! Server answers: 200 with `{"accepted": N}` once the batch is committed. 400 (or another
//! 4xx but 401, 408 and 429) means the batch itself is bad: it is logged, counted and dropped,
//! never retried. 401 is fatal ([`ReportError::Unauthorized`]): no retry fixes a token. 413
//! splits the batch in two. Everything else (5xx, 408, 429, connection errors, timeouts) is
//! retried with exponential backoff until it succeeds or the shutdown deadline passes; the
//! records still held then are counted as abandoned. A TLS failure (an untrusted or misnamed
//! certificate, a server that does not speak TLS, or one that does when asked for http://) is
//! fatal too ([`ReportError::Tls`]): it is
//! configuration, which no retry fixes (see [`tls`]).

pub mod stdout;
pub mod tls;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use liteobs_model::{NdjsonEncoder, TrafficLog};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Writes records as NDJSON: one compact JSON object per line, the bytes serde_json would
/// write (see [`NdjsonEncoder`], which is several times faster).
pub struct NdjsonWriter<W: Write> {
    out: W,
    encoder: NdjsonEncoder,
    lines: Vec<u8>,
}

impl<W: Write> NdjsonWriter<W> {
    pub fn new(out: W) -> Self {
        NdjsonWriter { out, encoder: NdjsonEncoder::new(), lines: Vec::new() }
    }

    /// Encodes all of `records` into one buffer and writes it at once.
    pub fn write(&mut self, records: &[TrafficLog]) -> io::Result<()> {
        self.lines.clear();
        for r in records {
            self.encoder.encode(r, &mut self.lines);
        }
        self.out.write_all(&self.lines)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// NDJSON, gzip-compressed: the upload body.
pub fn encode_batch(records: &[TrafficLog]) -> io::Result<Vec<u8>> {
    let mut w =
        NdjsonWriter::new(GzEncoder::new(Vec::with_capacity(records.len() * 64), Compression::fast()));
    w.write(records)?;
    w.into_inner().finish()
}

/// What a full [`RecordQueue`] does with more records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Make room by dropping the oldest records (counted): for live capture.
    DropOldest,
    /// Block the producer until there is room: for replays.
    Wait,
}

/// The bounded queue between the capture thread (producer, synchronous) and the reporter
/// (consumer, async).
pub struct RecordQueue {
    state: Mutex<QueueState>,
    capacity: usize,
    /// Producers waiting for room.
    space: Condvar,
    /// The consumer waiting for records.
    ready: Notify,
}

struct QueueState {
    records: VecDeque<TrafficLog>,
    overflow: Overflow,
    closed: bool,
    dropped: u64,
    queued: u64,
    /// When the oldest record of the batch being gathered arrived.
    first_at: Option<Instant>,
}

impl RecordQueue {
    /// A queue of at most `capacity` records (at least 1).
    pub fn new(capacity: usize, overflow: Overflow) -> RecordQueue {
        RecordQueue {
            state: Mutex::new(QueueState {
                records: VecDeque::with_capacity(capacity.clamp(1, 1 << 16)),
                overflow,
                closed: false,
                dropped: 0,
                queued: 0,
                first_at: None,
            }),
            capacity: capacity.max(1),
            space: Condvar::new(),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves every record out of `batch` into the queue, dropping the oldest queued ones when
    /// full ([`Overflow::DropOldest`]) or waiting for room ([`Overflow::Wait`]).
    pub fn push(&self, batch: &mut Vec<TrafficLog>) {
        if batch.is_empty() {
            return;
        }
        let mut st = self.lock();
        for rec in batch.drain(..) {
            while st.records.len() >= self.capacity {
                if st.overflow == Overflow::Wait && !st.closed {
                    self.ready.notify_one();
                    st = self.space.wait(st).unwrap_or_else(|e| e.into_inner());
                } else {
                    st.records.pop_front();
                    st.dropped += 1;
                }
            }
            st.records.push_back(rec);
            st.queued += 1;
        }
        if st.first_at.is_none() {
            st.first_at = Some(Instant::now());
        }
        drop(st);
        self.ready.notify_one();
    }

    /// Stop waiting for room: a full queue drops its oldest from now on (a shutdown must not
    /// hang on a server that is down).
    pub fn stop_waiting(&self) {
        self.lock().overflow = Overflow::DropOldest;
        self.space.notify_all();
    }

    /// No more records will come; the consumer takes what is left and then sees the end.
    pub fn close(&self) {
        self.lock().closed = true;
        self.space.notify_all();
        self.ready.notify_one();
    }

    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records dropped to make room, so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Records ever pushed.
    pub fn queued(&self) -> u64 {
        self.lock().queued
    }

    fn take(&self, st: &mut QueueState, max: usize) -> Vec<TrafficLog> {
        let n = st.records.len().min(max);
        let batch: Vec<TrafficLog> = st.records.drain(..n).collect();
        st.first_at = if st.records.is_empty() { None } else { Some(Instant::now()) };
        self.space.notify_all();
        batch
    }

    /// Takes every record left (at shutdown, to count what is abandoned).
    pub fn take_all(&self) -> Vec<TrafficLog> {
        let mut st = self.lock();
        self.take(&mut st, usize::MAX)
    }

    /// The next batch: as soon as `max` records are there, or when the oldest waiting record
    /// has waited `linger`, or whatever is left once the queue is closed. None once closed and
    /// empty.
    pub async fn next_batch(&self, max: usize, linger: Duration) -> Option<Vec<TrafficLog>> {
        let max = max.max(1);
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                let mut st = self.lock();
                let n = st.records.len();
                if n >= max || (st.closed && n > 0) {
                    return Some(self.take(&mut st, max));
                }
                if st.closed {
                    return None;
                }
                match st.first_at {
                    Some(first) if n > 0 => {
                        if first.elapsed() >= linger {
                            return Some(self.take(&mut st, max));
                        }
                        Some(first + linger)
                    }
                    _ => None,
                }
            };
            match wake_at {
                Some(t) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(t) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// How the reporter talks to the server.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// The server's base URL (`http://host:port`); records go to `{server}/upload`.
    pub server: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Whom to trust for an `https://` server (None for `http://`).
    pub tls: Option<std::sync::Arc<liteobs_tls::ClientConfig>>,
    /// Records per upload, at most.
    pub batch_size: usize,
    /// The longest a record waits for its batch to fill.
    pub flush_interval: Duration,
    /// First retry delay; doubles per failure up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Per request, connection included.
    pub request_timeout: Duration,
}

impl ReporterConfig {
    /// Defaults for everything but the server.
    pub fn new(server: impl Into<String>) -> ReporterConfig {
        ReporterConfig {
            server: server.into(),
            token: None,
            tls: None,
            batch_size: 1000,
            flush_interval: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// The upload endpoint.
    pub fn upload_url(&self) -> String {
        format!("{}/upload", self.server.trim_end_matches('/'))
    }
}

/// The reporter's counters, shared with whoever logs them.
#[derive(Debug, Default)]
pub struct ReportCounters {
    records_acked: AtomicU64,
    batches_acked: AtomicU64,
    records_rejected: AtomicU64,
    batches_rejected: AtomicU64,
    upload_failures: AtomicU64,
    records_abandoned: AtomicU64,
}

/// A snapshot of [`ReportCounters`] plus the queue's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReportStats {
    /// Records the server acknowledged.
    pub records_acked: u64,
    pub batches_acked: u64,
    /// Records in batches the server refused as bad (400 and the like), dropped.
    pub records_rejected: u64,
    pub batches_rejected: u64,
    /// Upload attempts that failed and were retried (5xx, connection errors, timeouts).
    pub upload_failures: u64,
    /// Records dropped because the queue was full.
    pub records_dropped: u64,
    /// Records still held when the shutdown deadline passed.
    pub records_abandoned: u64,
    /// Records waiting in the queue.
    pub queued: u64,
}

impl ReportCounters {
    pub fn snapshot(&self, queue: &RecordQueue) -> ReportStats {
        let (dropped, queued) = {
            let st = queue.lock();
            (st.dropped, st.records.len() as u64)
        };
        ReportStats {
            records_acked: self.records_acked.load(Ordering::Relaxed),
            batches_acked: self.batches_acked.load(Ordering::Relaxed),
            records_rejected: self.records_rejected.load(Ordering::Relaxed),
            batches_rejected: self.batches_rejected.load(Ordering::Relaxed),
            upload_failures: self.upload_failures.load(Ordering::Relaxed),
            records_dropped: dropped,
            records_abandoned: self.records_abandoned.load(Ordering::Relaxed),
            queued,
        }
    }
}

/// Why the reporter stopped before its queue was empty.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{url} refused the agent's credentials (401 Unauthorized{detail}); set -token or LITEOBS_TOKEN to the server's token"
    )]
    Unauthorized { url: String, detail: String },
    #[error("{url}: {reason}")]
    Tls { url: String, reason: String },
    #[error("encoding a batch")]
    Encode(#[from] io::Error),
}

/// The result of one upload attempt.
#[derive(Debug)]
enum Outcome {
    Acked(Option<u64>),
    TooLarge,
    Rejected { status: u16, body: String },
    Unauthorized(String),
    Tls(String),
    Retry(String),
}

/// What became of a batch.
enum Delivery {
    Done,
    /// The shutdown deadline passed first; these records were not delivered.
    Abandoned(u64),
}

/// Uploads batches from a queue until it is closed and empty, or the shutdown deadline passes.
///
/// Runs on an actix (tokio current-thread) runtime: awc's client is not `Send`.
pub struct Reporter {
    cfg: ReporterConfig,
    url: String,
    client: awc::Client,
    counters: std::sync::Arc<ReportCounters>,
}

impl Reporter {
    pub fn new(cfg: ReporterConfig, counters: std::sync::Arc<ReportCounters>) -> Reporter {
        // Without `tls` only http:// works (awc: "SSL is not supported"); run.rs sets it for https://.
        let connector = awc::Connector::new();
        let connector = match &cfg.tls {
            Some(tls) => connector.rustls_0_23(tls.clone()),
            None => connector,
        };
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(cfg.request_timeout)
            .disable_redirects()
            .finish();
        let url = cfg.upload_url();
        Reporter { cfg, url, client, counters }
    }

    /// Delivers every batch. `deadline` starts as None; once a shutdown sets it, work still
    /// pending at that instant is abandoned (counted) and the reporter returns.
    pub async fn run(
        &self,
        queue: &RecordQueue,
        mut deadline: watch::Receiver<Option<Instant>>,
    ) -> Result<ReportStats, ReportError> {
        loop {
            let next = before_deadline(
                queue.next_batch(self.cfg.batch_size, self.cfg.flush_interval),
                &mut deadline,
            );
            let batch = match next.await {
                None => {
                    self.abandon(queue.take_all().len() as u64);
                    break;
                }
                Some(None) => break,
                Some(Some(batch)) => batch,
            };
            match self.deliver(batch, &mut deadline).await? {
                Delivery::Done => {}
                Delivery::Abandoned(n) => {
                    self.abandon(n + queue.take_all().len() as u64);
                    break;
                }
            }
        }
        Ok(self.counters.snapshot(queue))
    }

    fn abandon(&self, n: u64) {
        if n > 0 {
            tracing::warn!(records = n, "shutdown deadline passed: records not delivered");
            self.counters.records_abandoned.fetch_add(n, Ordering::Relaxed);
        }
    }

    async fn deliver(
        &self,
        records: Vec<TrafficLog>,
        deadline: &mut watch::Receiver<Option<Instant>>,
    ) -> Result<Delivery, ReportError> {
        // 413 splits a batch; the halves wait here, first half on top.
        let mut work = vec![records];
        while let Some(records) = work.pop() {
            let body = encode_batch(&records)?;
            let n = records.len() as u64;
            let mut backoff = self.cfg.initial_backoff;
            let mut failures: u32 = 0;
            loop {
                let Some(outcome) = before_deadline(self.post(body.clone()), deadline).await else {
                    let held: u64 = work.iter().map(|w| w.len() as u64).sum();
                    return Ok(Delivery::Abandoned(n + held));
                };
                match outcome {
                    Outcome::Acked(accepted) => {
                        if failures > 0 {
                            tracing::info!(
                                records = n,
                                attempts = failures + 1,
                                "upload succeeded after retries"
                            );
                        }
                        if let Some(a) = accepted.filter(|a| *a != n) {
                            tracing::warn!(
                                sent = n,
                                accepted = a,
                                "server accepted a different number of records"
                            );
                        }
                        self.counters.records_acked.fetch_add(n, Ordering::Relaxed);
                        self.counters.batches_acked.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Outcome::TooLarge if records.len() > 1 => {
                        let mut first = records;
                        let second = first.split_off(first.len() / 2);
                        tracing::warn!(records = n, "server said the batch is too large (413); splitting it");
                        work.push(second);
                        work.push(first);
                        break;
                    }
                    Outcome::TooLarge => {
                        tracing::error!(url = %self.url, "server refused a single record as too large (413); dropped");
                        self.counters.records_rejected.fetch_add(n, Ordering::Relaxed);
                        self.counters.batches_rejected.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Outcome::Rejected { status, body } => {
                        tracing::error!(url = %self.url, status, records = n, reason = %body, "server rejected a batch; dropped");
                        self.counters.records_rejected.fetch_add(n, Ordering::Relaxed);
                        self.counters.batches_rejected.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Outcome::Unauthorized(detail) => {
                        return Err(ReportError::Unauthorized { url: self.url.clone(), detail });
                    }
                    Outcome::Tls(reason) => return Err(ReportError::Tls { url: self.url.clone(), reason }),
                    Outcome::Retry(reason) => {
                        failures += 1;
                        self.counters.upload_failures.fetch_add(1, Ordering::Relaxed);
                        let wait = jitter(backoff);
                        // The first failure and then every tenth: a down server should not flood the log.
                        if failures == 1 || failures.is_multiple_of(10) {
                            tracing::warn!(url = %self.url, records = n, failures, retry_in_ms = wait.as_millis() as u64, %reason, "upload failed; retrying");
                        }
                        if before_deadline(tokio::time::sleep(wait), deadline).await.is_none() {
                            let held: u64 = work.iter().map(|w| w.len() as u64).sum();
                            return Ok(Delivery::Abandoned(n + held));
                        }
                        backoff = (backoff * 2).min(self.cfg.max_backoff);
                    }
                }
            }
        }
        Ok(Delivery::Done)
    }

    async fn post(&self, body: Vec<u8>) -> Outcome {
        let mut req = self
            .client
            .post(&self.url)
            .insert_header(("Content-Type", "application/x-ndjson"))
            .insert_header(("Content-Encoding", "gzip"));
        if let Some(token) = &self.cfg.token {
            req = req.bearer_auth(token);
        }
        let mut resp = match req.send_body(body).await {
            Ok(r) => r,
            Err(e) => {
                return tls::refusal(&self.url, &e)
                    .map_or_else(|| Outcome::Retry(e.to_string()), Outcome::Tls);
            }
        };
        let status = resp.status().as_u16();
        let text = match resp.body().limit(1 << 20).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if status == 200 => return Outcome::Retry(format!("reading the answer: {e}")),
            Err(_) => String::new(),
        };
        let excerpt = || text.chars().take(300).collect::<String>().trim().to_owned();
        match status {
            200..=299 => Outcome::Acked(
                serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("accepted").and_then(serde_json::Value::as_u64)),
            ),
            401 => Outcome::Unauthorized(if text.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", excerpt())
            }),
            413 => Outcome::TooLarge,
            408 | 429 => Outcome::Retry(format!("HTTP {status}")),
            400..=499 => Outcome::Rejected { status, body: excerpt() },
            _ => Outcome::Retry(format!("HTTP {status}: {}", excerpt())),
        }
    }
}

/// Runs `fut` unless the deadline (None until a shutdown sets it) passes first.
async fn before_deadline<F: std::future::Future>(
    fut: F,
    deadline: &mut watch::Receiver<Option<Instant>>,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        let current = *deadline.borrow_and_update();
        if let Some(t) = current {
            return tokio::select! {
                out = &mut fut => Some(out),
                _ = tokio::time::sleep_until(t) => None,
            };
        }
        tokio::select! {
            out = &mut fut => return Some(out),
            changed = deadline.changed() => {
                if changed.is_err() {
                    // No one can set a deadline any more.
                    return Some(fut.await);
                }
            }
        }
    }
}

/// Between half and all of `d`, so that agents that failed together do not retry together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let frac = 0.5 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(frac)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::thread;

    use flate2::read::GzDecoder;

    use super::*;

    pub(crate) fn rec(i: u32) -> TrafficLog {
        serde_json::from_value(serde_json::json!({
            "ts": "2026-11-25T14:00:00.000001Z", "src_ip": "127.0.0.1", "src_port": 40000,
            "dst_ip": "127.0.0.1", "dst_port": 8080, "method": "GET", "path": format!("/{i}"),
            "status": 200, "latency_us": 5, "req_bytes": 0, "resp_bytes": 2, "node": "n"
        }))
        .unwrap()
    }

    fn paths(recs: &[TrafficLog]) -> Vec<String> {
        recs.iter().map(|r| r.path.clone()).collect()
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_them() {
        let q = RecordQueue::new(3, Overflow::DropOldest);
        q.push(&mut (0..5).map(rec).collect());
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.queued(), 5);
        assert_eq!(paths(&q.take_all()), ["/2", "/3", "/4"]);
    }

    #[test]
    fn waiting_queue_blocks_the_producer_until_there_is_room() {
        let q = Arc::new(RecordQueue::new(2, Overflow::Wait));
        let producer = {
            let q = q.clone();
            thread::spawn(move || q.push(&mut (0..6).map(rec).collect()))
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut got = Vec::new();
        while got.len() < 6 {
            let b = rt.block_on(q.next_batch(2, Duration::from_millis(5))).unwrap();
            got.extend(b);
        }
        producer.join().unwrap();
        assert_eq!(paths(&got), ["/0", "/1", "/2", "/3", "/4", "/5"]);
        assert_eq!(q.dropped(), 0);
        q.close();
        assert!(rt.block_on(q.next_batch(2, Duration::from_millis(5))).is_none());
    }

    #[test]
    fn batches_by_size_then_by_time_then_at_close() {
        let q = RecordQueue::new(100, Overflow::DropOldest);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        q.push(&mut (0..5).map(rec).collect());
        let b = rt.block_on(q.next_batch(2, Duration::from_secs(3600))).unwrap();
        assert_eq!(b.len(), 2, "a full batch goes at once");
        let t0 = std::time::Instant::now();
        let b = rt.block_on(q.next_batch(10, Duration::from_millis(50))).unwrap();
        assert_eq!(b.len(), 3, "a partial batch goes after the linger");
        assert!(t0.elapsed() >= Duration::from_millis(20));
        q.push(&mut vec![rec(9)]);
        q.close();
        let b = rt.block_on(q.next_batch(10, Duration::from_secs(3600))).unwrap();
        assert_eq!(paths(&b), ["/9"], "a closed queue hands out what is left at once");
        assert!(rt.block_on(q.next_batch(10, Duration::from_secs(3600))).is_none());
    }

    #[test]
    fn upload_body_is_gzipped_ndjson() {
        let body = encode_batch(&[rec(1), rec(2)]).unwrap();
        let mut text = String::new();
        GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
        let back = liteobs_model::decode_ndjson(text.as_bytes()).unwrap();
        assert_eq!(back, vec![rec(1), rec(2)]);
    }

    /// One request as the fake server saw it.
    #[derive(Debug)]
    struct Seen {
        headers: Headers,
        records: Vec<TrafficLog>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    /// A scripted HTTP server on loopback: answers request i with `script[i]` (the last entry
    /// repeats). `None` closes the connection without answering. Every answer closes.
    fn fake_server(script: Vec<Option<(u16, &'static str)>>) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { return };
                let Some((headers, body)) = read_request(&mut conn) else { continue };
                let mut text = String::new();
                let _ = GzDecoder::new(&body[..]).read_to_string(&mut text);
                let records = liteobs_model::decode_ndjson(text.as_bytes()).unwrap_or_default();
                log.lock().unwrap().push(Seen { headers, records });
                let step = script.get(i).or(script.last()).cloned().flatten();
                if let Some((status, body)) = step {
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

    fn quick(server: &str) -> ReporterConfig {
        ReporterConfig {
            batch_size: 2,
            flush_interval: Duration::from_millis(10),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            request_timeout: Duration::from_secs(5),
            ..ReporterConfig::new(server)
        }
    }

    /// Runs a reporter over `records` (queue closed up front) with an optional deadline.
    fn report(
        cfg: ReporterConfig,
        records: Vec<TrafficLog>,
        deadline: Option<Duration>,
    ) -> Result<ReportStats, ReportError> {
        actix_rt::System::new().block_on(async move {
            let q = RecordQueue::new(100, Overflow::DropOldest);
            q.push(&mut records.clone());
            q.close();
            let (tx, rx) = watch::channel(deadline.map(|d| Instant::now() + d));
            let r = Reporter::new(cfg, Arc::new(ReportCounters::default()));
            let out = r.run(&q, rx).await;
            drop(tx);
            out
        })
    }

    #[test]
    fn uploads_batches_with_headers_and_token() {
        let (url, seen) = fake_server(vec![Some((200, r#"{"accepted": 2}"#))]);
        let cfg = ReporterConfig { token: Some("s3cret".into()), ..quick(&url) };
        let stats = report(cfg, (0..5).map(rec).collect(), None).unwrap();
        assert_eq!((stats.records_acked, stats.batches_acked, stats.upload_failures), (5, 3, 0));
        let seen = seen.lock().unwrap();
        let all: Vec<TrafficLog> = seen.iter().flat_map(|s| s.records.clone()).collect();
        assert_eq!(all, (0..5).map(rec).collect::<Vec<_>>());
        assert_eq!(seen[0].header("content-type"), Some("application/x-ndjson"));
        assert_eq!(seen[0].header("content-encoding"), Some("gzip"));
        assert_eq!(seen[0].header("authorization"), Some("Bearer s3cret"));
    }

    #[test]
    fn server_errors_and_dropped_connections_are_retried_without_loss_or_duplicates() {
        let (url, seen) =
            fake_server(vec![Some((503, "busy")), None, Some((500, "oops")), Some((200, "{}"))]);
        let stats = report(quick(&url), (0..4).map(rec).collect(), None).unwrap();
        assert_eq!(stats.records_acked, 4);
        assert_eq!(stats.upload_failures, 3);
        let seen = seen.lock().unwrap();
        assert!(seen[0].header("authorization").is_none());
        // Requests 0-2 carried the first batch and failed; 3 and 4 were acked.
        let acked: Vec<TrafficLog> = seen[3..].iter().flat_map(|s| s.records.clone()).collect();
        assert_eq!(acked, (0..4).map(rec).collect::<Vec<_>>());
    }

    #[test]
    fn bad_batch_is_dropped_and_counted_not_retried() {
        let (url, seen) =
            fake_server(vec![Some((400, r#"{"error":"record 0, field `status`"}"#)), Some((200, "{}"))]);
        let stats = report(quick(&url), (0..4).map(rec).collect(), None).unwrap();
        assert_eq!((stats.records_rejected, stats.batches_rejected), (2, 1));
        assert_eq!((stats.records_acked, stats.upload_failures), (2, 0));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn unauthorized_is_a_clear_error() {
        let (url, _) = fake_server(vec![Some((401, "bad token"))]);
        let e = report(quick(&url), vec![rec(0)], None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("401 Unauthorized: bad token"), "{msg}");
        assert!(msg.contains("LITEOBS_TOKEN"), "{msg}");
    }

    #[test]
    fn too_large_batches_are_split() {
        let (url, seen) = fake_server(vec![Some((413, "")), Some((200, "{}"))]);
        let cfg = ReporterConfig { batch_size: 4, ..quick(&url) };
        let stats = report(cfg, (0..4).map(rec).collect(), None).unwrap();
        assert_eq!((stats.records_acked, stats.batches_acked), (4, 2));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.iter().map(|s| s.records.len()).collect::<Vec<_>>(), [4, 2, 2]);
    }

    #[test]
    fn shutdown_deadline_abandons_what_the_server_never_took() {
        // Nothing listens on this port: every attempt is a connection error.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let t0 = std::time::Instant::now();
        let stats = report(
            quick(&format!("http://127.0.0.1:{port}")),
            (0..5).map(rec).collect(),
            Some(Duration::from_millis(300)),
        )
        .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(3));
        assert_eq!(stats.records_acked, 0);
        assert_eq!(stats.records_abandoned, 5);
        assert!(stats.upload_failures >= 2);
    }

    #[test]
    fn ndjson_lines() {
        let mut w = NdjsonWriter::new(Vec::new());
        w.write(&[rec(1), rec(2)]).unwrap();
        let text = String::from_utf8(w.into_inner()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with("\"node\":\"n\"}\n"), "{text}");
    }
}
