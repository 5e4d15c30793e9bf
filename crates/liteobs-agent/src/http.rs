//! HTTP: two reassembled byte streams of one connection → request/response [`Exchange`]s.
//!
//! An [`HttpConn`] consumes the reassembler's [`Event`]s for one TCP connection. Each direction
//! has an incremental parser that copes with data split anywhere:
//!
//! * Heads are parsed with `httparse` straight from the segment when a head arrives whole, and
//!   buffered (up to `max_header_bytes`, else a parse error) only when it spans segments.
//! * Bodies are framed by `Content-Length`, `Transfer-Encoding: chunked` (decoded incrementally,
//!   extensions and trailers tolerated; the count is of decoded data bytes) or, for responses
//!   without either, the end of the server's stream. HEAD responses, 1xx, 204 and 304 have none.
//! * Requests queue in order; each final response answers the oldest unanswered request
//!   (pipelining). Interim 1xx responses (`100 Continue`, `103 Early Hints`) are not answers.
//!   `101 Switching Protocols` and a 2xx answer to `CONNECT` end HTTP parsing of the connection.
//!
//! Which side is the client: the SYN sender when the pipeline saw the handshake
//! ([`HttpConn::set_client`]), otherwise the side whose stream first shows a request line (or
//! the peer of the side that first shows a status line).
//!
//! The two directions are delivered independently, so a response can be parsed before the
//! request it answers (capture reordering across directions). Such a response is held, bytes and
//! all, until a request arrives, so that its framing (HEAD, CONNECT) and matching are exact. A
//! response whose first packet is older than the oldest unanswered request cannot be its answer
//! and is skipped: that is what happens to the answer of a request lost in a capture gap.
//!
//! After a gap, a message whose remaining length is known (inside a `Content-Length` body or a
//! chunk) just counts the lost bytes; anything else ends the message in progress and the parser
//! resynchronises by scanning for the next plausible start line (`METHOD SP target SP HTTP/1.x`
//! or `HTTP/1.x NNN`). After a response-side gap, the next response answers the most recent
//! request sent before it; older unanswered ones are closed with status 0.

use std::collections::VecDeque;
use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig, Status};

use crate::reassemble::{Dir, Event, MemoryBudget};

/// Headers parsed on the stack; heads with more are retried with a heap array.
const STACK_HEADERS: usize = 96;
/// Longest start line considered while resynchronising.
const MAX_START_LINE: usize = 16 * 1024;
/// Methods accepted as a message start while resynchronising (any token is accepted when the
/// parser is in step with the stream).
const RESYNC_METHODS: [&[u8]; 18] = [
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"PURGE",
];

/// One HTTP request and what is known of its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The direction the request travelled (client → server).
    pub client: Dir,
    pub method: String,
    /// Request-target as sent.
    pub path: String,
    pub host: Option<String>,
    /// Capture time of the packet holding the first byte of the request.
    pub request_ts_us: i64,
    /// Capture time of the packet holding the first byte of the final response; `None` when
    /// no response was seen.
    pub response_ts_us: Option<i64>,
    /// Final response status; 0 when no response was seen.
    pub status: u16,
    /// Request body bytes (decoded chunk data when chunked).
    pub req_bytes: u64,
    /// Response body bytes (decoded chunk data when chunked).
    pub resp_bytes: u64,
}

/// Counters kept by the HTTP stage.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HttpStats {
    /// Exchanges emitted (answered or not).
    pub exchanges: u64,
    /// Exchanges emitted without a final response (status 0).
    pub unanswered: u64,
    /// Malformed heads, oversized heads, bad chunk framing, bad Content-Length.
    pub parse_errors: u64,
    /// Connections switched to another protocol (101, or 2xx to CONNECT).
    pub upgraded_connections: u64,
    /// Bytes discarded because a buffer limit was hit (oversized heads, responses waiting
    /// for their request beyond the per-connection cap, budget exhausted).
    pub buffer_dropped_bytes: u64,
}

/// What an [`HttpConn`] call may use: limits, the shared budget, counters and the output.
pub struct HttpContext<'c> {
    /// Cap on one message head (start line plus headers), and on a chunked trailer.
    pub max_header_bytes: usize,
    /// Cap on response bytes held while waiting for their request, per direction.
    pub max_conn_buffer: usize,
    pub budget: &'c MemoryBudget,
    pub stats: &'c mut HttpStats,
    /// Completed exchanges are appended here, in request order.
    pub out: &'c mut Vec<Exchange>,
}

/// HTTP/1.x state of one TCP connection, both directions.
#[derive(Debug, Default)]
pub struct HttpConn {
    client: Option<Dir>,
    halves: [Half; 2],
    /// Requests not yet emitted, oldest first.
    exchanges: VecDeque<Pending>,
    /// How many of `exchanges` (from the front) have their final response (or gave up on it).
    responded: usize,
    seen_data: bool,
    any_message: bool,
    closing: bool,
    closed: bool,
}

#[derive(Debug)]
struct Pending {
    method: String,
    path: String,
    host: Option<String>,
    req_ts: i64,
    req_bytes: u64,
    req_done: bool,
    is_head: bool,
    is_connect: bool,
    wants_upgrade: bool,
    status: u16,
    resp_ts: Option<i64>,
    resp_bytes: u64,
    resp_done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Expecting a message head (possibly partly in `buf`).
    Head,
    /// Inside a body with this many bytes left.
    Body(u64),
    Chunked(Chunked),
    /// Response body delimited by the end of the stream.
    UntilClose,
    /// Looking for a plausible message start (possibly partly in `buf`).
    #[default]
    Resync,
    /// Client side after an upgrade request, until the response says yes or no.
    AwaitUpgrade {
        discarded: bool,
    },
    /// Nothing more to parse in this direction.
    Done,
}

/// Where body bytes being read go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Target {
    /// The newest request.
    Request,
    /// The response being read (`responded - 1`).
    Response,
    #[default]
    Discard,
}

#[derive(Debug)]
enum Held {
    Data(i64, Vec<u8>),
    Gap(u64),
    End,
}

impl Held {
    fn bytes(&self) -> usize {
        match self {
            Held::Data(_, v) => v.len(),
            _ => 0,
        }
    }
}

#[derive(Debug, Default)]
struct Half {
    state: State,
    target: Target,
    /// Partial head (state `Head`) or an incomplete candidate start line (state `Resync`).
    buf: Vec<u8>,
    /// Capture time of `buf[0]`.
    buf_ts: i64,
    /// The first line of the buffered head was checked plausible.
    first_line_ok: bool,
    /// Response-side data waiting for the request it answers.
    held: VecDeque<Held>,
    held_bytes: usize,
    /// Bytes of `buf` and `held` charged to the budget.
    charged: usize,
    /// Unknown bytes were lost since the last message start (gap or parse error).
    lost_sync: bool,
    /// This stream was seen from its first byte.
    from_start: bool,
    ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Request,
    Response,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request,
    Response,
}

enum Parsed {
    /// A head of this many bytes was parsed and acted on.
    Ok(usize),
    /// The head does not end within the bytes given (nothing was changed).
    Partial,
    /// A response with no request to answer yet: hold the bytes from the head on.
    Blocked,
    Error,
}

impl HttpConn {
    pub fn new() -> HttpConn {
        HttpConn::default()
    }

    /// The direction requests travel in, once known.
    pub fn client(&self) -> Option<Dir> {
        self.client
    }

    /// Tells the parser which side is the client (from the TCP handshake). Ignored when a side
    /// was already decided. Before any data, this also means both streams are seen from their
    /// start, so a first message that is not HTTP marks the connection as not HTTP.
    pub fn set_client(&mut self, client: Dir) {
        if self.client.is_some() {
            return;
        }
        self.client = Some(client);
        if !self.seen_data {
            for h in &mut self.halves {
                h.state = State::Head;
                h.from_start = true;
            }
        }
    }

    /// True once [`Event::Closed`] was handled.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True when neither direction will be parsed again (upgraded, not HTTP, or both ended):
    /// the rest of the connection's bytes do not matter.
    pub fn is_done(&self) -> bool {
        self.halves.iter().all(|h| h.state == State::Done)
    }

    /// Handles one reassembler event.
    pub fn on_event(&mut self, ev: Event<'_>, cx: &mut HttpContext<'_>) {
        if self.closed {
            return;
        }
        match ev {
            Event::Data { dir, ts_us, bytes } => {
                self.seen_data = true;
                self.feed(dir, ts_us, bytes, cx);
            }
            Event::Gap { dir, len } => self.gap(dir, len, cx),
            Event::End { dir } => self.end(dir, cx),
            Event::Closed => self.close(cx),
        }
        self.sync_budget(cx);
    }

    fn role(&self, d: Dir) -> Role {
        match self.client {
            Some(c) if c == d => Role::Request,
            Some(_) => Role::Response,
            None => Role::Unknown,
        }
    }

    fn half(&mut self, d: Dir) -> &mut Half {
        &mut self.halves[d.index()]
    }

    fn feed(&mut self, d: Dir, ts: i64, mut bytes: &[u8], cx: &mut HttpContext<'_>) {
        while !bytes.is_empty() {
            if !self.half(d).held.is_empty() {
                self.hold(d, ts, bytes, cx);
                return;
            }
            let before = self.half(d).state;
            let consumed = match before {
                State::Done => return,
                State::AwaitUpgrade { .. } => {
                    self.half(d).state = State::AwaitUpgrade { discarded: true };
                    return;
                }
                State::UntilClose => {
                    self.body_bytes(d, bytes.len() as u64);
                    bytes.len()
                }
                State::Body(remaining) => {
                    let n = remaining.min(bytes.len() as u64);
                    self.body_bytes(d, n);
                    if n == remaining {
                        self.message_done(d, cx);
                    } else {
                        self.half(d).state = State::Body(remaining - n);
                    }
                    n as usize
                }
                State::Chunked(mut chunked) => {
                    let step = chunked.step(bytes, cx.max_header_bytes);
                    self.body_bytes(d, step.body);
                    match step.outcome {
                        ChunkOutcome::More => self.half(d).state = State::Chunked(chunked),
                        ChunkOutcome::Done => self.message_done(d, cx),
                        ChunkOutcome::Error => {
                            cx.stats.parse_errors += 1;
                            self.message_done(d, cx);
                            self.lose_sync(d);
                        }
                    }
                    step.consumed
                }
                State::Head => self.head(d, ts, bytes, cx),
                State::Resync => self.resync(d, ts, bytes, cx),
            };
            if consumed == 0 && self.half(d).state == before && self.half(d).held.is_empty() {
                // Every branch consumes or changes state; never spin if one does not.
                debug_assert!(false, "HTTP parser made no progress in {before:?}");
                return;
            }
            bytes = bytes.get(consumed..).unwrap_or_default();
        }
    }

    /// State `Head`: returns how many bytes of `bytes` were used.
    fn head(&mut self, d: Dir, ts: i64, bytes: &[u8], cx: &mut HttpContext<'_>) -> usize {
        let max = cx.max_header_bytes;
        let role = self.role(d);
        let h = self.half(d);
        if h.buf.is_empty() {
            let blank = bytes.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
            if blank > 0 {
                return blank;
            }
            // Parse straight from the segment: httparse finds the end of the head itself, so a
            // head that arrived whole is scanned once.
            let window = &bytes[..bytes.len().min(max)];
            match self.parse_head(d, ts, window, cx) {
                Parsed::Ok(end) => end,
                Parsed::Blocked => {
                    self.hold(d, ts, bytes, cx);
                    bytes.len()
                }
                // Judged only once its first line is complete, like a head split over segments.
                Parsed::Error if memchr::memchr(b'\n', window).is_some() || bytes.len() > max => {
                    self.head_failed(d, cx);
                    1
                }
                Parsed::Partial if bytes.len() > max => {
                    // Longer than allowed: drop it whole, up to its end when that is here.
                    let dropped = find_head_end(bytes, 0).unwrap_or(bytes.len());
                    cx.stats.buffer_dropped_bytes += dropped as u64;
                    self.head_failed(d, cx);
                    dropped
                }
                parsed @ (Parsed::Error | Parsed::Partial) => {
                    // Partial: httparse accepted everything so far, so a complete first line is
                    // plausible. Error: the first line is still incomplete.
                    let h = self.half(d);
                    h.buf.extend_from_slice(bytes);
                    h.buf_ts = ts;
                    h.first_line_ok =
                        matches!(parsed, Parsed::Partial) && memchr::memchr(b'\n', bytes).is_some();
                    bytes.len()
                }
            }
        } else {
            let old = h.buf.len();
            let take = bytes.len().min((max + 4).saturating_sub(old).max(1));
            h.buf.extend_from_slice(&bytes[..take]);
            match find_head_end(&h.buf, old.saturating_sub(2)) {
                Some(end) if end <= max => {
                    let mut buf = std::mem::take(&mut h.buf);
                    let head_ts = h.buf_ts;
                    match self.parse_head(d, head_ts, &buf[..end], cx) {
                        Parsed::Ok(_) => end.saturating_sub(old),
                        Parsed::Blocked => {
                            buf.truncate(old);
                            let h = self.half(d);
                            h.held_bytes += buf.len();
                            h.held.push_back(Held::Data(head_ts, buf));
                            0
                        }
                        Parsed::Error | Parsed::Partial => {
                            self.head_failed(d, cx);
                            end.saturating_sub(old).max(1)
                        }
                    }
                }
                found => {
                    if found.is_some() || h.buf.len() > max {
                        cx.stats.buffer_dropped_bytes += h.buf.len() as u64;
                        h.buf.clear();
                        self.head_failed(d, cx);
                    } else if !h.first_line_ok && h.buf.contains(&b'\n') {
                        if plausible_head(&h.buf, role) {
                            h.first_line_ok = true;
                        } else {
                            h.buf.clear();
                            self.head_failed(d, cx);
                        }
                    }
                    take
                }
            }
        }
    }

    /// State `Resync`: scan for a plausible message start.
    fn resync(&mut self, d: Dir, ts: i64, bytes: &[u8], cx: &mut HttpContext<'_>) -> usize {
        let role = self.role(d);
        let max_line = cx.max_header_bytes.clamp(16, MAX_START_LINE);
        let h = self.half(d);
        if h.buf.is_empty() {
            match find_start(bytes, role, max_line) {
                Scan::Found(p, kind) => {
                    h.state = State::Head;
                    self.decide(d, kind);
                    p
                }
                Scan::Partial(p) => {
                    h.buf.extend_from_slice(&bytes[p..]);
                    h.buf_ts = ts;
                    bytes.len()
                }
                Scan::None => bytes.len(),
            }
        } else {
            // Complete the carried candidate line, and no more: the head parser takes over
            // from the end of the start line.
            let old = h.buf.len();
            let line_end = bytes.iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| i + 1);
            let take = line_end.min((max_line + 1).saturating_sub(old).max(1));
            h.buf.extend_from_slice(&bytes[..take]);
            match find_start(&h.buf, role, max_line) {
                Scan::Found(p, kind) => {
                    h.buf.drain(..p);
                    if p >= old {
                        h.buf_ts = ts;
                    }
                    h.state = State::Head;
                    h.first_line_ok = true;
                    self.decide(d, kind);
                }
                Scan::Partial(p) => {
                    h.buf.drain(..p);
                    if p >= old {
                        h.buf_ts = ts;
                    }
                }
                Scan::None => h.buf.clear(),
            }
            take
        }
    }

    fn decide(&mut self, d: Dir, kind: Kind) {
        if self.client.is_none() {
            self.client = Some(match kind {
                Kind::Request => d,
                Kind::Response => d.reverse(),
            });
        }
    }

    fn parse_head(&mut self, d: Dir, ts: i64, head: &[u8], cx: &mut HttpContext<'_>) -> Parsed {
        match self.role(d) {
            Role::Request => self.request_head(d, ts, head, cx),
            Role::Response => self.response_head(d, ts, head, cx),
            // The head decides which side is the client, once it parsed completely.
            Role::Unknown if head_kind(head) == Some(Kind::Response) => self.response_head(d, ts, head, cx),
            Role::Unknown => self.request_head(d, ts, head, cx),
        }
    }

    fn request_head(&mut self, d: Dir, ts: i64, head: &[u8], cx: &mut HttpContext<'_>) -> Parsed {
        let (len, req) = match with_headers(head, parse_request) {
            Ok(Status::Complete(parsed)) => parsed,
            Ok(Status::Partial) => return Parsed::Partial,
            Err(()) => return Parsed::Error,
        };
        self.decide(d, Kind::Request);
        let body = match (req.facts.chunked, req.facts.content_length) {
            (Some(true), _) => Some(State::Chunked(Chunked::default())),
            (Some(false), _) | (None, Some(Err(()))) => return Parsed::Error,
            (None, Some(Ok(n))) if n > 0 => Some(State::Body(n)),
            _ => None,
        };
        let is_connect = req.method.eq_ignore_ascii_case("CONNECT");
        self.any_message = true;
        self.exchanges.push_back(Pending {
            method: req.method.to_owned(),
            path: req.path.to_owned(),
            host: req.facts.host.map(|h| match std::str::from_utf8(h) {
                Ok(h) => h.trim().to_owned(),
                Err(_) => String::from_utf8_lossy(h).trim().to_owned(),
            }),
            req_ts: ts,
            req_bytes: 0,
            req_done: false,
            is_head: req.method.eq_ignore_ascii_case("HEAD"),
            is_connect,
            wants_upgrade: req.facts.upgrade,
            status: 0,
            resp_ts: None,
            resp_bytes: 0,
            resp_done: false,
        });
        let server = d.reverse();
        if self.halves[server.index()].ended && self.halves[server.index()].held.is_empty() {
            // The server already closed its side: this request will get no answer.
            self.give_up_responses();
        }
        let h = self.half(d);
        h.target = Target::Request;
        match body {
            Some(state) if !is_connect => h.state = state,
            _ => self.message_done(d, cx),
        }
        self.release_held(server, cx);
        Parsed::Ok(len)
    }

    fn response_head(&mut self, d: Dir, ts: i64, head: &[u8], cx: &mut HttpContext<'_>) -> Parsed {
        let (len, resp) = match with_headers(head, parse_response) {
            Ok(Status::Complete(parsed)) => parsed,
            Ok(Status::Partial) => return Parsed::Partial,
            Err(()) => return Parsed::Error,
        };
        self.decide(d, Kind::Response);
        let code = resp.code;
        self.any_message = true;
        if self.half(d).lost_sync {
            // Bytes were lost before this response: it answers the newest request sent before
            // it; older unanswered requests lost their answers in the gap.
            while self.responded + 1 < self.exchanges.len() && self.exchanges[self.responded + 1].req_ts <= ts
            {
                self.exchanges[self.responded].resp_done = true;
                self.responded += 1;
            }
        }
        if self.responded >= self.exchanges.len() && !self.closing {
            return Parsed::Blocked;
        }
        self.half(d).lost_sync = false;
        let matched = self.exchanges.get(self.responded).is_some_and(|e| e.req_ts <= ts);
        let (is_head, is_connect) = match self.exchanges.get(self.responded) {
            Some(e) if matched => (e.is_head, e.is_connect),
            _ => (false, false),
        };
        let interim = (100..200).contains(&code) && code != 101;
        let upgrade = matched && (code == 101 || (is_connect && (200..300).contains(&code)));
        let body = if interim || upgrade || is_head || code == 204 || code == 304 {
            None
        } else {
            match (resp.facts.chunked, resp.facts.content_length) {
                (Some(true), _) => Some(State::Chunked(Chunked::default())),
                (Some(false), _) | (None, None) => Some(State::UntilClose),
                (None, Some(Err(()))) => return Parsed::Error,
                (None, Some(Ok(0))) => None,
                (None, Some(Ok(n))) => Some(State::Body(n)),
            }
        };
        if interim {
            self.half(d).state = State::Head;
            return Parsed::Ok(len);
        }
        let target = if matched {
            let e = &mut self.exchanges[self.responded];
            e.status = code;
            e.resp_ts = Some(ts);
            let wanted_upgrade = e.wants_upgrade || e.is_connect;
            if upgrade {
                e.req_done = true;
                e.resp_done = true;
            }
            self.responded += 1;
            if upgrade {
                self.upgrade(cx);
                self.emit_ready(cx);
                return Parsed::Ok(len);
            }
            if wanted_upgrade {
                let client = self.half(d.reverse());
                if let State::AwaitUpgrade { discarded } = client.state {
                    client.state = if discarded { State::Resync } else { State::Head };
                }
            }
            Target::Response
        } else {
            Target::Discard
        };
        let h = self.half(d);
        h.target = target;
        match body {
            Some(state) => h.state = state,
            None => self.message_done(d, cx),
        }
        Parsed::Ok(len)
    }

    fn upgrade(&mut self, cx: &mut HttpContext<'_>) {
        cx.stats.upgraded_connections += 1;
        tracing::trace!("connection upgraded; HTTP parsing ends");
        for h in &mut self.halves {
            h.state = State::Done;
            h.buf = Vec::new();
            h.held.clear();
            h.held_bytes = 0;
        }
    }

    /// A head did not parse (or was too large).
    fn head_failed(&mut self, d: Dir, cx: &mut HttpContext<'_>) {
        if !self.any_message && self.half(d).from_start {
            tracing::trace!("first message is not HTTP/1.x; ignoring the connection");
            for h in &mut self.halves {
                h.state = State::Done;
                h.buf = Vec::new();
                h.held.clear();
                h.held_bytes = 0;
            }
            return;
        }
        cx.stats.parse_errors += 1;
        self.lose_sync(d);
    }

    fn lose_sync(&mut self, d: Dir) {
        let h = self.half(d);
        if h.state != State::Done {
            h.state = State::Resync;
        }
        h.buf.clear();
        h.lost_sync = true;
        h.target = Target::Discard;
    }

    fn body_bytes(&mut self, d: Dir, n: u64) {
        let e = match self.half(d).target {
            Target::Request => self.exchanges.back_mut(),
            Target::Response => self.responded.checked_sub(1).and_then(|i| self.exchanges.get_mut(i)),
            Target::Discard => None,
        };
        match (self.halves[d.index()].target, e) {
            (Target::Request, Some(e)) => e.req_bytes += n,
            (Target::Response, Some(e)) => e.resp_bytes += n,
            _ => {}
        }
    }

    /// The message being read in `d` is complete (or given up on).
    fn message_done(&mut self, d: Dir, cx: &mut HttpContext<'_>) {
        let target = std::mem::take(&mut self.half(d).target);
        let mut next = State::Head;
        match target {
            Target::Request => {
                if let Some(e) = self.exchanges.back_mut() {
                    e.req_done = true;
                    if (e.wants_upgrade || e.is_connect) && !e.resp_done && e.status == 0 {
                        next = State::AwaitUpgrade { discarded: false };
                    }
                }
            }
            Target::Response => {
                if let Some(e) = self.responded.checked_sub(1).and_then(|i| self.exchanges.get_mut(i)) {
                    e.resp_done = true;
                }
            }
            Target::Discard => {}
        }
        let h = self.half(d);
        if h.state != State::Done {
            h.state = next;
        }
        self.emit_ready(cx);
    }

    fn gap(&mut self, d: Dir, len: u64, cx: &mut HttpContext<'_>) {
        let h = self.half(d);
        if !h.held.is_empty() {
            h.held.push_back(Held::Gap(len));
            return;
        }
        match h.state {
            State::Done => {}
            State::AwaitUpgrade { .. } => h.state = State::AwaitUpgrade { discarded: true },
            State::UntilClose => self.body_bytes(d, len),
            State::Body(remaining) if len < remaining => {
                self.body_bytes(d, len);
                self.half(d).state = State::Body(remaining - len);
            }
            State::Body(remaining) => {
                self.body_bytes(d, remaining);
                self.message_done(d, cx);
                if len > remaining {
                    self.lose_sync(d);
                }
            }
            State::Chunked(Chunked::Data { remaining }) if len <= remaining => {
                self.body_bytes(d, len);
                self.half(d).state = State::Chunked(if len == remaining {
                    Chunked::DataEnd
                } else {
                    Chunked::Data { remaining: remaining - len }
                });
            }
            State::Chunked(_) => {
                self.message_done(d, cx);
                self.lose_sync(d);
            }
            State::Head | State::Resync => self.lose_sync(d),
        }
    }

    fn end(&mut self, d: Dir, cx: &mut HttpContext<'_>) {
        let closing = self.closing;
        let h = self.half(d);
        if h.ended {
            return;
        }
        if !h.held.is_empty() && !closing {
            h.held.push_back(Held::End);
            return;
        }
        match h.state {
            State::UntilClose | State::Body(_) | State::Chunked(_) => self.message_done(d, cx),
            _ => {}
        }
        let h = self.half(d);
        h.state = State::Done;
        h.ended = true;
        h.buf = Vec::new();
        if self.client == Some(d.reverse()) {
            // The server will send nothing more.
            self.give_up_responses();
            self.emit_ready(cx);
        }
    }

    fn give_up_responses(&mut self) {
        while self.responded < self.exchanges.len() {
            self.exchanges[self.responded].resp_done = true;
            self.responded += 1;
        }
    }

    fn close(&mut self, cx: &mut HttpContext<'_>) {
        self.closing = true;
        for d in [Dir::AtoB, Dir::BtoA] {
            self.release_held(d, cx);
        }
        for d in [Dir::AtoB, Dir::BtoA] {
            self.end(d, cx);
        }
        self.give_up_responses();
        for e in &mut self.exchanges {
            e.req_done = true;
        }
        self.emit_ready(cx);
        self.closed = true;
    }

    /// Keeps response-side bytes until a request arrives for them.
    fn hold(&mut self, d: Dir, ts: i64, bytes: &[u8], cx: &mut HttpContext<'_>) {
        let h = self.half(d);
        h.held.push_back(Held::Data(ts, bytes.to_vec()));
        h.held_bytes += bytes.len();
        if h.held_bytes > cx.max_conn_buffer {
            tracing::trace!(?d, bytes = h.held_bytes, "response without request dropped");
            cx.stats.buffer_dropped_bytes += h.held_bytes as u64;
            h.held.clear();
            h.held_bytes = 0;
            self.lose_sync(d);
        }
    }

    /// Re-runs held response-side events now that a request (or the close) may match them.
    fn release_held(&mut self, d: Dir, cx: &mut HttpContext<'_>) {
        let h = self.half(d);
        if h.held.is_empty() {
            return;
        }
        let mut items = std::mem::take(&mut h.held);
        h.held_bytes = 0;
        while let Some(item) = items.pop_front() {
            match item {
                Held::Data(ts, bytes) => self.feed(d, ts, &bytes, cx),
                Held::Gap(len) => self.gap(d, len, cx),
                Held::End => self.end(d, cx),
            }
            let h = self.half(d);
            if !h.held.is_empty() {
                h.held_bytes += items.iter().map(Held::bytes).sum::<usize>();
                h.held.extend(items);
                return;
            }
        }
    }

    fn emit_ready(&mut self, cx: &mut HttpContext<'_>) {
        let client = self.client.unwrap_or(Dir::AtoB);
        while self.exchanges.front().is_some_and(|e| e.req_done && e.resp_done) {
            let Some(e) = self.exchanges.pop_front() else {
                break;
            };
            self.responded = self.responded.saturating_sub(1);
            cx.stats.exchanges += 1;
            if e.status == 0 {
                cx.stats.unanswered += 1;
            }
            cx.out.push(Exchange {
                client,
                method: e.method,
                path: e.path,
                host: e.host,
                request_ts_us: e.req_ts,
                response_ts_us: e.resp_ts.filter(|_| e.status != 0),
                status: e.status,
                req_bytes: e.req_bytes,
                resp_bytes: e.resp_bytes,
            });
        }
    }

    /// Charges buffered bytes to the shared budget; drops them when it is exhausted.
    fn sync_budget(&mut self, cx: &mut HttpContext<'_>) {
        for d in [Dir::AtoB, Dir::BtoA] {
            let h = self.half(d);
            let want = h.buf.len() + h.held_bytes;
            if want <= h.charged {
                cx.budget.give_back(h.charged - want);
                h.charged = want;
            } else if cx.budget.try_take(want - h.charged) {
                h.charged = want;
            } else {
                cx.stats.buffer_dropped_bytes += want as u64;
                cx.budget.give_back(h.charged);
                h.charged = 0;
                h.held.clear();
                h.held_bytes = 0;
                self.lose_sync(d);
            }
        }
    }
}

/// The framing-relevant headers of a message.
#[derive(Debug, Default)]
struct Facts<'b> {
    host: Option<&'b [u8]>,
    /// `Some(Err)` when values are unparsable or disagree.
    content_length: Option<Result<u64, ()>>,
    /// `Some(true)` when the final transfer coding is chunked, `Some(false)` for other codings.
    chunked: Option<bool>,
    upgrade: bool,
}

impl<'b> Facts<'b> {
    fn from_headers(headers: &[Header<'b>]) -> Facts<'b> {
        let mut facts = Facts::default();
        for h in headers {
            let name = h.name;
            // The length first: most headers are none of these four, and this says so at once.
            if !matches!(name.len(), 4 | 7 | 14 | 17) {
                continue;
            }
            if name.eq_ignore_ascii_case("host") {
                facts.host.get_or_insert(h.value);
            } else if name.eq_ignore_ascii_case("content-length") {
                for part in h.value.split(|&b| b == b',') {
                    let n = parse_decimal(part.trim_ascii()).ok_or(());
                    facts.content_length = Some(match (facts.content_length, n) {
                        (None, n) => n,
                        (Some(Ok(a)), Ok(b)) if a == b => Ok(a),
                        _ => Err(()),
                    });
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
                if !last.trim_ascii().is_empty() {
                    facts.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                }
            } else if name.eq_ignore_ascii_case("upgrade") {
                facts.upgrade = true;
            }
        }
        facts
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))
}

struct RequestHead<'b> {
    method: &'b str,
    path: &'b str,
    facts: Facts<'b>,
}

struct ResponseHead<'b> {
    code: u16,
    facts: Facts<'b>,
}

/// The parser settings: an observer records what servers and clients actually send, so it
/// accepts the common deviations (invalid header lines are skipped rather than failing the
/// whole head; spaces before the colon and folded lines in responses). Start lines stay strict.
fn parser_config() -> ParserConfig {
    let mut config = ParserConfig::default();
    config
        .ignore_invalid_headers_in_requests(true)
        .ignore_invalid_headers_in_responses(true)
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true);
    config
}

/// A parsed head: its length and what it says.
type HeadStatus<T> = Status<(usize, T)>;

fn parse_request<'b>(
    head: &'b [u8],
    headers: &mut [MaybeUninit<Header<'b>>],
) -> Result<HeadStatus<RequestHead<'b>>, httparse::Error> {
    let mut req = httparse::Request::new(&mut []);
    Ok(match parser_config().parse_request_with_uninit_headers(&mut req, head, headers)? {
        Status::Complete(len) => match (req.method, req.path) {
            (Some(method), Some(path)) => {
                Status::Complete((len, RequestHead { method, path, facts: Facts::from_headers(req.headers) }))
            }
            _ => return Err(httparse::Error::Token),
        },
        Status::Partial => Status::Partial,
    })
}

fn parse_response<'b>(
    head: &'b [u8],
    headers: &mut [MaybeUninit<Header<'b>>],
) -> Result<HeadStatus<ResponseHead<'b>>, httparse::Error> {
    let mut resp = httparse::Response::new(&mut []);
    Ok(match parser_config().parse_response_with_uninit_headers(&mut resp, head, headers)? {
        Status::Complete(len) => match resp.code {
            Some(code) => {
                Status::Complete((len, ResponseHead { code, facts: Facts::from_headers(resp.headers) }))
            }
            None => return Err(httparse::Error::Status),
        },
        Status::Partial => Status::Partial,
    })
}

/// Runs a head parser with an uninitialised stack header array (initialising 96 headers cost
/// more than parsing a typical head), retrying with a heap array sized for the head when there
/// are more headers than that. `Err` means the bytes are not an HTTP head.
fn with_headers<'b, T>(
    head: &'b [u8],
    parse: impl Fn(&'b [u8], &mut [MaybeUninit<Header<'b>>]) -> Result<HeadStatus<T>, httparse::Error>,
) -> Result<HeadStatus<T>, ()> {
    let mut headers = [const { MaybeUninit::uninit() }; STACK_HEADERS];
    match parse(head, &mut headers) {
        Ok(parsed) => Ok(parsed),
        Err(httparse::Error::TooManyHeaders) => {
            // A header line is at least "a:\n", 3 bytes.
            let mut headers: Vec<MaybeUninit<Header<'b>>> =
                std::iter::repeat_with(MaybeUninit::uninit).take(head.len() / 3 + 1).collect();
            parse(head, &mut headers).map_err(|_| ())
        }
        Err(_) => Err(()),
    }
}

/// Whether a head whose first line is complete (but whose end is not yet seen) still parses.
fn plausible_head(buf: &[u8], role: Role) -> bool {
    let request = || with_headers(buf, parse_request).is_ok();
    let response = || with_headers(buf, parse_response).is_ok();
    match role {
        Role::Request => request(),
        Role::Response => response(),
        Role::Unknown => request() || response(),
    }
}

fn head_kind(head: &[u8]) -> Option<Kind> {
    let start = head.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    Some(if head[start..].starts_with(b"HTTP/") { Kind::Response } else { Kind::Request })
}

/// Index just past the blank line that ends a head, searching for line ends from `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    memchr::memchr_iter(b'\n', rest).map(|pos| from + pos).find_map(|lf| {
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => Some(lf + 3),
            _ => None,
        }
    })
}

enum Scan {
    /// A start line of this kind begins here.
    Found(usize, Kind),
    /// A candidate begins here but the bytes end before it can be judged.
    Partial(usize),
    None,
}

fn find_start(bytes: &[u8], role: Role, max_line: usize) -> Scan {
    for (p, b) in bytes.iter().enumerate() {
        if !b.is_ascii_uppercase() {
            continue;
        }
        match check_start(&bytes[p..], role, max_line) {
            Verdict::Valid(kind) => return Scan::Found(p, kind),
            Verdict::Incomplete => return Scan::Partial(p),
            Verdict::Invalid => {}
        }
    }
    Scan::None
}

enum Verdict {
    Valid(Kind),
    Incomplete,
    Invalid,
}

/// Is `s` the start of an HTTP/1.x message? Stricter than the head parser (known methods, a
/// full request line), because a false positive inside a body costs a parse error.
fn check_start(s: &[u8], role: Role, max_line: usize) -> Verdict {
    if role != Role::Request {
        match match_template(s, b"HTTP/1.V DDD ") {
            Some(false) => {}
            Some(true) => return Verdict::Valid(Kind::Response),
            None => return Verdict::Incomplete,
        }
    }
    if role == Role::Response {
        return Verdict::Invalid;
    }
    let Some(sp) = s.iter().take(12).position(|&b| b == b' ') else {
        let prefix_of_method = RESYNC_METHODS.iter().any(|m| m.starts_with(s));
        return if s.len() < 12 && prefix_of_method { Verdict::Incomplete } else { Verdict::Invalid };
    };
    if !RESYNC_METHODS.contains(&&s[..sp]) {
        return Verdict::Invalid;
    }
    let target = &s[sp + 1..];
    let target_len = target.iter().take(max_line).position(|&b| !(0x21..0x7f).contains(&b) && b < 0x80);
    let Some(target_len) = target_len else {
        return if target.len() < max_line { Verdict::Incomplete } else { Verdict::Invalid };
    };
    if target_len == 0 || target[target_len] != b' ' {
        return Verdict::Invalid;
    }
    match match_template(&target[target_len + 1..], b"HTTP/1.VE") {
        Some(true) => Verdict::Valid(Kind::Request),
        Some(false) => Verdict::Invalid,
        None => Verdict::Incomplete,
    }
}

/// Matches `s` against a template where `V` is `0` or `1`, `D` a digit, ` ` (at the end of a
/// status line template) a space or line end, and `E` a line end (`\r\n` or `\n`).
/// `None` when `s` ends before the template could be decided.
fn match_template(s: &[u8], template: &[u8]) -> Option<bool> {
    for (i, &t) in template.iter().enumerate() {
        let b = *s.get(i)?;
        let ok = match t {
            b'V' => b == b'0' || b == b'1',
            b'D' => b.is_ascii_digit(),
            b' ' if i > 0 && i + 1 == template.len() => matches!(b, b' ' | b'\r' | b'\n'),
            b'E' if b == b'\r' => *s.get(i + 1)? == b'\n',
            b'E' => b == b'\n',
            t => b == t,
        };
        if !ok {
            return Some(false);
        }
    }
    Some(true)
}

/// Incremental decoder of a chunked body (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Reading a chunk-size line: the value so far, digits seen, and whether the hex digits are
    /// over (extensions or whitespace follow).
    Size {
        value: u64,
        digits: u8,
        rest: bool,
    },
    Data {
        remaining: u64,
    },
    /// The line end after chunk data.
    DataEnd,
    /// Trailer section: bytes on the current line and in the whole section.
    Trailer {
        line: usize,
        total: usize,
    },
}

impl Default for Chunked {
    fn default() -> Chunked {
        Chunked::Size { value: 0, digits: 0, rest: false }
    }
}

enum ChunkOutcome {
    More,
    Done,
    Error,
}

struct ChunkStep {
    consumed: usize,
    body: u64,
    outcome: ChunkOutcome,
}

impl Chunked {
    /// Consumes bytes until the body ends, the input ends or the framing is broken (at least
    /// one byte is consumed when `bytes` is not empty).
    fn step(&mut self, bytes: &[u8], max_trailer: usize) -> ChunkStep {
        let mut i = 0;
        let mut body = 0;
        let stop = |i, body, outcome| ChunkStep { consumed: i, body, outcome };
        while i < bytes.len() {
            match self {
                Chunked::Data { remaining } => {
                    let n = (*remaining).min((bytes.len() - i) as u64);
                    body += n;
                    i += n as usize;
                    *remaining -= n;
                    if *remaining == 0 {
                        *self = Chunked::DataEnd;
                    }
                    continue;
                }
                Chunked::Size { value, digits, rest } => {
                    let b = bytes[i];
                    i += 1;
                    match b {
                        b'\n' if *digits == 0 => return stop(i, body, ChunkOutcome::Error),
                        b'\n' if *value == 0 => *self = Chunked::Trailer { line: 0, total: 0 },
                        b'\n' => *self = Chunked::Data { remaining: *value },
                        _ if *rest => {}
                        b';' | b' ' | b'\t' | b'\r' if *digits > 0 => *rest = true,
                        _ => match (b as char).to_digit(16) {
                            Some(h) if *digits < 16 => {
                                *value = *value * 16 + u64::from(h);
                                *digits += 1;
                            }
                            _ => return stop(i, body, ChunkOutcome::Error),
                        },
                    }
                }
                Chunked::DataEnd => {
                    let b = bytes[i];
                    i += 1;
                    match b {
                        b'\r' => {}
                        b'\n' => *self = Chunked::default(),
                        _ => return stop(i, body, ChunkOutcome::Error),
                    }
                }
                Chunked::Trailer { line, total } => {
                    let b = bytes[i];
                    i += 1;
                    *total += 1;
                    if *total > max_trailer {
                        return stop(i, body, ChunkOutcome::Error);
                    }
                    match b {
                        b'\n' if *line == 0 => return stop(i, body, ChunkOutcome::Done),
                        b'\n' => *line = 0,
                        b'\r' => {}
                        _ => *line += 1,
                    }
                }
            }
        }
        stop(i, body, ChunkOutcome::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dir::{AtoB, BtoA};

    /// Drives one `HttpConn` with A as the client unless told otherwise.
    struct Rig {
        conn: HttpConn,
        budget: MemoryBudget,
        stats: HttpStats,
        out: Vec<Exchange>,
        ts: i64,
        max_header_bytes: usize,
        max_conn_buffer: usize,
    }

    impl Rig {
        fn new() -> Rig {
            let mut r = Rig::unknown_client();
            r.conn.set_client(AtoB);
            r
        }

        fn unknown_client() -> Rig {
            Rig {
                conn: HttpConn::new(),
                budget: MemoryBudget::new(1 << 30),
                stats: HttpStats::default(),
                out: Vec::new(),
                ts: 0,
                max_header_bytes: 64 * 1024,
                max_conn_buffer: 1 << 20,
            }
        }

        fn event(&mut self, ev: Event<'_>) {
            let mut cx = HttpContext {
                max_header_bytes: self.max_header_bytes,
                max_conn_buffer: self.max_conn_buffer,
                budget: &self.budget,
                stats: &mut self.stats,
                out: &mut self.out,
            };
            self.conn.on_event(ev, &mut cx);
        }

        fn send(&mut self, dir: Dir, bytes: &[u8]) {
            self.ts += 1000;
            let ts_us = self.ts;
            self.event(Event::Data { dir, ts_us, bytes });
        }

        fn at(&mut self, ts_us: i64, dir: Dir, bytes: &[u8]) {
            self.event(Event::Data { dir, ts_us, bytes });
        }

        fn c(&mut self, bytes: &[u8]) {
            self.send(AtoB, bytes);
        }

        fn s(&mut self, bytes: &[u8]) {
            self.send(BtoA, bytes);
        }

        fn gap(&mut self, dir: Dir, len: u64) {
            self.event(Event::Gap { dir, len });
        }

        fn close(&mut self) {
            self.event(Event::End { dir: AtoB });
            self.event(Event::End { dir: BtoA });
            self.event(Event::Closed);
            assert_eq!(self.budget.used(), 0, "budget leaked");
        }

        /// (method, path, status, req_bytes, resp_bytes) of each exchange so far.
        fn summary(&self) -> Vec<(String, String, u16, u64, u64)> {
            self.out
                .iter()
                .map(|e| (e.method.clone(), e.path.clone(), e.status, e.req_bytes, e.resp_bytes))
                .collect()
        }
    }

    fn x(method: &str, path: &str, status: u16, req: u64, resp: u64) -> (String, String, u16, u64, u64) {
        (method.into(), path.into(), status, req, resp)
    }

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n";
    const OK5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn simple_exchange_fields() {
        let mut r = Rig::new();
        r.at(
            1_000,
            AtoB,
            b"POST /api/v1/items?id=7 HTTP/1.1\r\nHost:  example.test \r\nContent-Length: 3\r\n\r\nabc",
        );
        r.at(3_500, BtoA, b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(
            r.out,
            vec![Exchange {
                client: AtoB,
                method: "POST".into(),
                path: "/api/v1/items?id=7".into(),
                host: Some("example.test".into()),
                request_ts_us: 1_000,
                response_ts_us: Some(3_500),
                status: 201,
                req_bytes: 3,
                resp_bytes: 2,
            }]
        );
        assert_eq!(r.stats.exchanges, 1);
        r.close();
        assert_eq!(r.stats.unanswered, 0);
        assert_eq!(r.stats.parse_errors, 0);
    }

    #[test]
    fn keep_alive_sequence() {
        let mut r = Rig::new();
        assert!(!r.conn.is_done());
        for i in 0..3 {
            r.c(format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
            r.s(OK5);
        }
        assert_eq!(
            r.summary(),
            vec![x("GET", "/0", 200, 0, 5), x("GET", "/1", 200, 0, 5), x("GET", "/2", 200, 0, 5)]
        );
        r.close();
    }

    #[test]
    fn pipelined_requests_match_in_order() {
        let mut r = Rig::new();
        r.c(b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody");
        assert!(r.out.is_empty());
        r.s(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop");
        assert_eq!(
            r.summary(),
            vec![x("GET", "/1", 200, 0, 1), x("HEAD", "/2", 200, 0, 0), x("POST", "/3", 404, 4, 3)]
        );
        r.close();
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;name=value\r\nhello\r\nA ; ext\r\n0123456789\r\n0\r\nX-Trailer: yes\r\nChecksum: 1\r\n\r\n";

    #[test]
    fn chunked_with_extensions_and_trailers_split_everywhere() {
        for split in 0..=CHUNKED.len() {
            let mut r = Rig::new();
            r.c(GET);
            r.s(&CHUNKED[..split]);
            r.s(&CHUNKED[split..]);
            r.c(GET);
            r.s(OK5);
            assert_eq!(
                r.summary(),
                vec![x("GET", "/a", 200, 0, 15), x("GET", "/a", 200, 0, 5)],
                "split at {split}"
            );
            r.close();
            assert_eq!(r.stats.parse_errors, 0);
        }
    }

    #[test]
    fn chunked_request_body_byte_by_byte() {
        let mut r = Rig::new();
        let req = b"PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        for b in req.iter() {
            r.c(std::slice::from_ref(b));
        }
        r.s(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(r.summary(), vec![x("PUT", "/up", 204, 19, 0)]);
        r.close();
    }

    #[test]
    fn head_split_byte_by_byte_keeps_first_packet_time() {
        let mut r = Rig::new();
        let start = r.ts + 1000;
        for b in GET.iter() {
            r.c(std::slice::from_ref(b));
        }
        let resp_start = r.ts + 1000;
        for b in OK5.iter() {
            r.s(std::slice::from_ref(b));
        }
        assert_eq!(r.summary(), vec![x("GET", "/a", 200, 0, 5)]);
        assert_eq!(r.out[0].request_ts_us, start);
        assert_eq!(r.out[0].response_ts_us, Some(resp_start));
        assert_eq!(r.out[0].host.as_deref(), Some("example.test"));
        r.close();
    }

    #[test]
    fn no_body_statuses_and_interim_responses() {
        let mut r = Rig::new();
        r.c(GET);
        r.s(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n");
        r.c(GET);
        r.s(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
        r.c(GET);
        r.s(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n");
        r.s(OK5);
        assert_eq!(
            r.summary(),
            vec![x("GET", "/a", 204, 0, 0), x("GET", "/a", 304, 0, 0), x("GET", "/a", 200, 0, 5)]
        );
        r.close();
    }

    #[test]
    fn expect_100_continue() {
        let mut r = Rig::new();
        r.at(10, AtoB, b"POST /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
        r.at(20, BtoA, b"HTTP/1.1 100 Continue\r\n\r\n");
        r.at(30, AtoB, b"data");
        r.at(40, BtoA, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(r.summary(), vec![x("POST", "/p", 200, 4, 2)]);
        assert_eq!(r.out[0].response_ts_us, Some(40));
        r.close();
    }

    #[test]
    fn close_delimited_response() {
        let mut r = Rig::new();
        r.c(b"GET /old HTTP/1.0\r\n\r\n");
        r.s(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nsome ");
        r.s(b"text");
        assert!(r.out.is_empty());
        r.event(Event::End { dir: BtoA });
        assert_eq!(r.summary(), vec![x("GET", "/old", 200, 0, 9)]);
        r.close();
        assert_eq!(r.out.len(), 1);
    }

    #[test]
    fn unanswered_requests_are_flushed_with_status_zero() {
        let mut r = Rig::new();
        r.c(GET);
        r.s(OK5);
        r.c(b"GET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n");
        r.close();
        assert_eq!(
            r.summary(),
            vec![x("GET", "/a", 200, 0, 5), x("GET", "/b", 0, 0, 0), x("GET", "/c", 0, 0, 0)]
        );
        assert_eq!(r.out[1].response_ts_us, None);
        assert_eq!((r.stats.exchanges, r.stats.unanswered), (3, 2));
    }

    #[test]
    fn server_fin_answers_nothing_more() {
        let mut r = Rig::new();
        r.c(GET);
        r.event(Event::End { dir: BtoA });
        assert_eq!(r.summary(), vec![x("GET", "/a", 0, 0, 0)]);
        r.c(GET);
        assert_eq!(r.out.len(), 2);
        r.close();
    }

    #[test]
    fn oversized_head_is_a_parse_error_then_recovers() {
        let mut r = Rig::new();
        r.max_header_bytes = 256;
        r.c(GET);
        r.s(OK5);
        let mut big = b"GET /big HTTP/1.1\r\n".to_vec();
        for i in 0..40 {
            big.extend_from_slice(format!("X-Filler-{i}: 0123456789\r\n").as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        for part in big.chunks(50) {
            r.c(part);
        }
        assert_eq!(r.stats.parse_errors, 1);
        assert!(r.stats.buffer_dropped_bytes > 256);
        r.s(OK5); // answer to the dropped request; it has no request to go to
        r.c(b"GET /after HTTP/1.1\r\n\r\n");
        r.s(OK5);
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/a", 200, 0, 5), x("GET", "/after", 200, 0, 5)]);
    }

    #[test]
    fn upgrade_ends_parsing_and_is_counted() {
        let mut r = Rig::new();
        r.c(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        r.s(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello");
        r.c(b"\x81\x85\x00\x00\x00\x00hello GET / HTTP/1.1\r\n\r\n");
        r.s(b"HTTP/1.1 200 OK\r\n\r\n");
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/ws", 101, 0, 0)]);
        assert!(r.conn.is_done());
        assert_eq!(r.stats.upgraded_connections, 1);
        assert_eq!(r.stats.parse_errors, 0);
    }

    #[test]
    fn connect_tunnel() {
        let mut r = Rig::new();
        r.c(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n");
        r.s(b"HTTP/1.1 200 Connection established\r\n\r\n");
        r.c(b"\x16\x03\x01\x02\x00 TLS bytes");
        r.s(b"\x16\x03\x03 more TLS");
        r.close();
        assert_eq!(r.summary(), vec![x("CONNECT", "example.test:443", 200, 0, 0)]);
        assert_eq!(r.stats.upgraded_connections, 1);
        assert_eq!(r.stats.parse_errors, 0);
    }

    #[test]
    fn declined_upgrade_keeps_parsing() {
        let mut r = Rig::new();
        r.c(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        r.s(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n");
        r.c(GET);
        r.s(OK5);
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/ws", 426, 0, 0), x("GET", "/a", 200, 0, 5)]);
        assert_eq!(r.stats.upgraded_connections, 0);
    }

    #[test]
    fn gap_inside_known_length_body_is_subtracted() {
        let mut r = Rig::new();
        r.c(GET);
        r.s(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab");
        r.gap(BtoA, 5);
        r.s(b"cde");
        r.c(GET);
        r.s(OK5);
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/a", 200, 0, 10), x("GET", "/a", 200, 0, 5)]);
        assert_eq!(r.stats.parse_errors, 0);
    }

    #[test]
    fn gap_inside_chunk_data_is_subtracted() {
        let mut r = Rig::new();
        r.c(GET);
        r.s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n01");
        r.gap(BtoA, 8);
        r.s(b"\r\n0\r\n\r\n");
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/a", 200, 0, 10)]);
    }

    #[test]
    fn gap_over_a_message_boundary_resyncs_on_the_next_start_line() {
        let mut r = Rig::new();
        r.at(10, AtoB, b"GET /1 HTTP/1.1\r\n\r\n");
        r.at(20, BtoA, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab");
        // The rest of the body and most of the next response are lost.
        r.gap(BtoA, 30);
        r.at(30, AtoB, b"GET /2 HTTP/1.1\r\n\r\n");
        r.at(40, BtoA, b"ength: 0\r\n\r\n");
        r.at(50, AtoB, b"GET /3 HTTP/1.1\r\n\r\n");
        r.at(60, BtoA, b"xx HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
        r.close();
        // /2's response was in the gap; /3's is found again.
        assert_eq!(
            r.summary(),
            vec![x("GET", "/1", 200, 0, 4), x("GET", "/2", 0, 0, 0), x("GET", "/3", 201, 0, 0)]
        );
        assert_eq!(r.stats.unanswered, 1);
    }

    #[test]
    fn gap_in_a_chunk_size_line_drops_the_message() {
        let mut r = Rig::new();
        r.c(GET);
        r.s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
        r.gap(BtoA, 3);
        r.s(b"morejunk\r\n0\r\n\r\n");
        r.c(GET);
        r.s(OK5);
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/a", 200, 0, 5), x("GET", "/a", 200, 0, 5)]);
    }

    #[test]
    fn lost_request_does_not_shift_responses() {
        let mut r = Rig::new();
        r.at(10, AtoB, b"GET /1 HTTP/1.1\r\n\r\n");
        r.at(20, BtoA, OK5);
        r.gap(AtoB, 19); // "GET /2 HTTP/1.1\r\n\r\n" lost
        r.at(40, BtoA, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#2");
        r.at(50, AtoB, b"GET /3 HTTP/1.1\r\n\r\n");
        r.at(60, BtoA, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n##3");
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/1", 200, 0, 5), x("GET", "/3", 200, 0, 3)]);
        assert_eq!(r.out[1].response_ts_us, Some(60));
    }

    #[test]
    fn response_seen_before_its_request_waits_for_it() {
        let mut r = Rig::new();
        r.at(20, BtoA, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel");
        r.at(25, BtoA, b"lo");
        assert!(r.out.is_empty());
        r.at(10, AtoB, b"HEAD /h HTTP/1.1\r\n\r\n");
        // Had the response been parsed before the request was known to be HEAD, its
        // Content-Length would have been taken as a body.
        assert_eq!(r.summary(), vec![x("HEAD", "/h", 200, 0, 0)]);
        r.close();
        // The stray "hello" is left as an unfinished head and dropped at the close.
        assert_eq!(r.stats.parse_errors, 0);
    }

    #[test]
    fn response_without_request_is_dropped_at_close() {
        let mut r = Rig::new();
        r.s(OK5);
        r.close();
        assert!(r.out.is_empty());
        assert_eq!(r.stats.exchanges, 0);
    }

    #[test]
    fn held_responses_are_capped() {
        let mut r = Rig::new();
        r.max_conn_buffer = 64;
        r.s(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
        r.s(&[b'x'; 100]);
        assert_eq!(r.stats.buffer_dropped_bytes, 40 + 100);
        r.c(GET);
        r.s(OK5);
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/a", 200, 0, 5)]);
    }

    #[test]
    fn mid_stream_client_is_decided_by_the_first_request_line() {
        let mut r = Rig::unknown_client();
        // Joined in the middle of a response body and a request body.
        r.at(5, AtoB, b"tail of an upload\r\n");
        r.at(8, BtoA, b"end of a body");
        r.at(10, BtoA, b"GET /not-a-request HTTP/1.1 is just text in a body\r\n");
        assert_eq!(r.conn.client(), None);
        r.at(12, AtoB, b"xx}GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.conn.client(), Some(AtoB));
        r.at(15, BtoA, b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/next", 200, 0, 5)]);
        assert_eq!(r.out[0].client, AtoB);
    }

    #[test]
    fn mid_stream_status_line_names_the_server() {
        let mut r = Rig::unknown_client();
        r.at(5, BtoA, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(r.conn.client(), Some(AtoB));
        r.at(10, AtoB, b"GET /x HTTP/1.1\r\n\r\n");
        r.at(12, BtoA, OK5);
        r.close();
        // The first response predates every request seen, so it answers none of them.
        assert_eq!(r.summary(), vec![x("GET", "/x", 200, 0, 5)]);
        assert_eq!(r.out[0].response_ts_us, Some(12));
    }

    #[test]
    fn resync_start_line_split_across_segments() {
        let mut r = Rig::unknown_client();
        r.c(b"garbage GE");
        r.c(b"T /split HTT");
        r.c(b"P/1.1\r\nHost: h\r\n");
        r.c(b"\r\n");
        r.s(b"junk HTTP/1.");
        r.s(b"1 200 OK\r\nContent-Length: 0\r\n\r\n");
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/split", 200, 0, 0)]);
    }

    #[test]
    fn not_http_from_the_start_is_ignored_quietly() {
        let mut r = Rig::new();
        r.c(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 client hello\r\n");
        r.s(b"\x16\x03\x03 server hello");
        assert!(r.conn.is_done());
        r.c(b"GET / HTTP/1.1\r\n\r\n"); // inside TLS this would be ciphertext anyway
        r.close();
        assert!(r.out.is_empty());
        assert_eq!(r.stats.parse_errors, 0);
    }

    #[test]
    fn bad_request_framing_is_a_parse_error() {
        let mut r = Rig::new();
        r.c(GET);
        r.s(OK5);
        r.c(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello");
        r.c(b"POST /y HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
        r.c(b"GET /z HTTP/1.1\r\n\r\n");
        r.s(OK5);
        r.close();
        assert_eq!(r.stats.parse_errors, 2);
        assert_eq!(r.summary(), vec![x("GET", "/a", 200, 0, 5), x("GET", "/z", 200, 0, 5)]);
    }

    #[test]
    fn chunk_decoder_rejects_bad_sizes() {
        for bad in [&b"\r\n"[..], b"xyz\r\n", b"11111111111111111\r\n", b"5\r\nhelloX"] {
            let mut c = Chunked::default();
            assert!(
                matches!(c.step(bad, 100).outcome, ChunkOutcome::Error),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut c = Chunked::default();
        let step = c.step(b"0\r\nA: b\r\n", 5);
        assert!(matches!(step.outcome, ChunkOutcome::Error), "trailer too long");
    }

    #[test]
    fn tolerates_common_header_deviations() {
        let mut r = Rig::new();
        r.c(b"GET /lenient HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n");
        r.s(b"HTTP/1.1  200  OK\r\nContent-Length : 5\r\nX-Folded: a\r\n b\r\n\r\nhello");
        r.c(GET);
        r.s(OK5);
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/lenient", 200, 0, 5), x("GET", "/a", 200, 0, 5)]);
        assert_eq!(r.stats.parse_errors, 0);
    }

    #[test]
    fn many_headers_fall_back_to_the_heap() {
        let mut r = Rig::new();
        let mut req = b"GET /many HTTP/1.1\r\n".to_vec();
        for i in 0..(STACK_HEADERS + 10) {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"Host: last\r\n\r\n");
        r.c(&req);
        r.s(OK5);
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/many", 200, 0, 5)]);
        assert_eq!(r.out[0].host.as_deref(), Some("last"));
    }

    #[test]
    fn budget_exhaustion_drops_partial_heads() {
        let mut r = Rig::new();
        r.budget = MemoryBudget::new(10);
        r.c(b"GET /partial HTTP/1.1\r\nHost: x");
        assert_eq!(r.stats.buffer_dropped_bytes, 30);
        assert_eq!(r.budget.used(), 0);
        r.c(b"\r\n\r\n");
        r.c(GET);
        r.s(OK5);
        r.close();
        assert_eq!(r.summary(), vec![x("GET", "/a", 200, 0, 5)]);
    }

    #[test]
    fn start_line_checks() {
        let req = |s: &[u8]| matches!(check_start(s, Role::Request, 100), Verdict::Valid(Kind::Request));
        let resp = |s: &[u8]| matches!(check_start(s, Role::Response, 100), Verdict::Valid(Kind::Response));
        let incomplete = |s: &[u8]| matches!(check_start(s, Role::Unknown, 100), Verdict::Incomplete);
        assert!(req(b"GET / HTTP/1.1\r\n"));
        assert!(req(b"OPTIONS * HTTP/1.0\n"));
        assert!(!req(b"GET / HTTP/2.0\r\n"));
        assert!(!req(b"GET  / HTTP/1.1\r\n"));
        assert!(!req(b"FETCH / HTTP/1.1\r\n"));
        assert!(!req(b"HTTP/1.1 200 OK\r\n"));
        assert!(resp(b"HTTP/1.1 200 OK"));
        assert!(resp(b"HTTP/1.0 404\r\n"));
        assert!(!resp(b"HTTP/1.1 20x"));
        assert!(!resp(b"GET / HTTP/1.1\r\n"));
        assert!(incomplete(b"GE"));
        assert!(incomplete(b"GET /abc"));
        assert!(incomplete(b"GET /abc HTTP/1.1\r"));
        assert!(incomplete(b"HTTP/1.1 2"));
        assert!(matches!(check_start(b"GET /x HTTP/1.1\r\n", Role::Response, 100), Verdict::Invalid));
        // A target longer than the line limit is not a start line.
        let long = [&b"GET /"[..], &[b'a'; 200]].concat();
        assert!(matches!(check_start(&long, Role::Request, 100), Verdict::Invalid));
    }

    #[test]
    fn head_end_search() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nbody", 0), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        assert_eq!(find_head_end(b"a\r\n\r\n", 3), None);
        assert_eq!(find_head_end(b"a\r\n\r\n", 2), Some(5));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_events_never_panic_and_release_the_budget(
            events in proptest::collection::vec(
                (0u8..4, proptest::bool::ANY, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
                0..40,
            ),
            known_client in proptest::bool::ANY,
        ) {
            let mut r = if known_client { Rig::new() } else { Rig::unknown_client() };
            r.max_header_bytes = 128;
            r.max_conn_buffer = 256;
            let vocabulary: [&[u8]; 6] = [GET, OK5, CHUNKED, b"HTTP/1.1 100 Continue\r\n\r\n", b"\r\n", b"0\r\n\r\n"];
            for (kind, dir, bytes) in events {
                let dir = if dir { AtoB } else { BtoA };
                match kind {
                    0 => r.send(dir, &bytes),
                    1 => r.send(dir, vocabulary[bytes.len() % vocabulary.len()]),
                    2 => r.gap(dir, bytes.len() as u64),
                    _ => r.event(Event::End { dir }),
                }
            }
            r.close();
            proptest::prop_assert_eq!(r.stats.exchanges, r.out.len() as u64);
        }
    }
}
