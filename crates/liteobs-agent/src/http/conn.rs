//! One connection's parser: the per-direction state machines fed by the reassembler's events,
//! the bytes they hold and what they charge to the shared budget. What a parsed head means for
//! the exchanges lives in [`super::exchange`], holding while an answer is awaited in
//! [`super::upgrade`]; this file moves bytes between states.

use std::collections::VecDeque;

use super::chunked::{ChunkOutcome, Chunked};
use super::exchange::Pending;
use super::head::{self, find_head_end, plausible_head};
use super::resync::{MAX_START_LINE, Scan, find_start};
use super::{HttpContext, lenient};
use crate::reassemble::{Dir, Event};

/// HTTP/1.x state of one TCP connection, both directions.
#[derive(Debug, Default)]
pub struct HttpConn {
    pub(super) client: Option<Dir>,
    pub(super) halves: [Half; 2],
    /// Requests not yet emitted, oldest first.
    pub(super) exchanges: VecDeque<Pending>,
    /// How many of `exchanges` (from the front) have their final response (or gave up on it).
    pub(super) responded: usize,
    pub(super) seen_data: bool,
    pub(super) any_message: bool,
    pub(super) closing: bool,
    pub(super) closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum State {
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
    /// Client side after a request whose answer decides how the bytes after it read (an
    /// upgrade, CONNECT, or `Expect: 100-continue` with a body): they are held until it comes.
    Await(Awaited),
    /// Nothing more to parse in this direction.
    Done,
}

/// What the client side waits for the answer about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Awaited {
    /// `Upgrade` or `CONNECT`: a 101 (or CONNECT 2xx) ends HTTP; anything else means the held
    /// bytes are the next request. `overflow` when bytes beyond the cap were dropped.
    Switch { overflow: bool },
    /// `Expect: 100-continue` with this body: a 100 means the body follows; a final status
    /// before it may mean the client dropped it. `answered` once a final status came with
    /// nothing held: the next bytes decide.
    Continue { body: AwaitedBody, answered: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AwaitedBody {
    Length(u64),
    Chunked,
}

impl AwaitedBody {
    pub(super) fn state(self) -> State {
        match self {
            AwaitedBody::Length(n) => State::Body(n),
            AwaitedBody::Chunked => State::Chunked(Chunked::default()),
        }
    }
}

/// Where body bytes being read go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Target {
    /// The newest request.
    Request,
    /// The response being read (`responded - 1`).
    Response,
    #[default]
    Discard,
}

/// Where a piece of a stream starts: the capture time of the packet that brought its first
/// byte and that byte's TCP sequence number as on the wire (what names an exchange across
/// captures, see [`super::Exchange::request_seq`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct At {
    pub(super) ts: i64,
    pub(super) seq: u32,
}

impl At {
    /// Where the byte `n` bytes further on starts (same packet, so same time).
    pub(super) fn advance(self, n: usize) -> At {
        At { ts: self.ts, seq: self.seq.wrapping_add(n as u32) }
    }
}

#[derive(Debug)]
pub(super) enum Held {
    Data(At, Vec<u8>),
    Gap(u64),
    End,
}

impl Held {
    pub(super) fn bytes(&self) -> usize {
        match self {
            Held::Data(_, v) => v.len(),
            _ => 0,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Half {
    pub(super) state: State,
    pub(super) target: Target,
    /// Partial head (state `Head`) or an incomplete candidate start line (state `Resync`).
    pub(super) buf: Vec<u8>,
    /// Where `buf[0]` starts.
    pub(super) buf_ts: At,
    /// The first line of the buffered head was checked plausible.
    pub(super) first_line_ok: bool,
    /// Events held for later: on the response side, data waiting for the request it answers;
    /// on the client side, data sent while an answer is awaited.
    pub(super) held: VecDeque<Held>,
    pub(super) held_bytes: usize,
    /// Bytes of `buf` and `held` charged to the budget.
    pub(super) charged: usize,
    /// Unknown bytes were lost since the last message start (gap or parse error).
    pub(super) lost_sync: bool,
    /// This stream was seen from its first byte.
    pub(super) from_start: bool,
    pub(super) ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Request,
    Response,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Request,
    Response,
}

pub(super) enum Parsed {
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
            Event::Data { dir, ts_us, seq, bytes } => {
                self.seen_data = true;
                self.feed(dir, At { ts: ts_us, seq }, bytes, cx);
            }
            Event::Gap { dir, len } => self.gap(dir, len, cx),
            Event::End { dir } => self.end(dir, cx),
            Event::Closed => self.close(cx),
        }
        self.sync_budget(cx);
    }

    pub(super) fn role(&self, d: Dir) -> Role {
        match self.client {
            Some(c) if c == d => Role::Request,
            Some(_) => Role::Response,
            None => Role::Unknown,
        }
    }

    pub(super) fn half(&mut self, d: Dir) -> &mut Half {
        &mut self.halves[d.index()]
    }

    pub(super) fn feed(&mut self, d: Dir, mut ts: At, mut bytes: &[u8], cx: &mut HttpContext<'_>) {
        while !bytes.is_empty() {
            if !self.half(d).held.is_empty() {
                // Waiting on the line after an answered `Expect: 100-continue`: each piece may
                // decide it, so it goes through the waiting state rather than behind the rest.
                if let State::Await(awaited @ Awaited::Continue { answered: true, .. }) = self.half(d).state {
                    self.await_data(d, ts, bytes, awaited, cx);
                } else {
                    self.hold(d, ts, bytes, cx);
                }
                return;
            }
            let before = self.half(d).state;
            let consumed = match before {
                State::Done => return,
                State::Await(awaited) => {
                    if self.await_data(d, ts, bytes, awaited, cx) {
                        return;
                    }
                    0
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
                            cx.stats.bad_chunked += 1;
                            self.message_done(d, cx);
                            self.lose_sync(d);
                        }
                    }
                    step.consumed
                }
                State::Head if self.answers_simple_request(d, ts, bytes) => {
                    self.start_simple_response(d, ts);
                    0
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
            ts = ts.advance(consumed);
        }
    }

    /// State `Head`: returns how many bytes of `bytes` were used.
    fn head(&mut self, d: Dir, ts: At, bytes: &[u8], cx: &mut HttpContext<'_>) -> usize {
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
                    self.head_failed(d, head::looks_like_http(window), cx);
                    1
                }
                Parsed::Partial if bytes.len() > max => {
                    // Longer than allowed: drop it whole, up to its end when that is here.
                    let dropped = find_head_end(bytes, 0).unwrap_or(bytes.len());
                    cx.stats.buffer_dropped_bytes += dropped as u64;
                    cx.stats.oversized_heads += 1;
                    self.head_failed(d, true, cx);
                    dropped
                }
                parsed @ (Parsed::Error | Parsed::Partial) => {
                    // Partial: the head parsers accepted everything so far, so a complete first
                    // line is plausible. Error: the first line is still incomplete.
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
            // An HTTP/0.9 request ends with its line, not with a blank line.
            let simple = if !h.first_line_ok && role != Role::Response {
                lenient::simple_request_len(&h.buf)
            } else {
                None
            };
            match simple.or_else(|| find_head_end(&h.buf, old.saturating_sub(2))) {
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
                            self.head_failed(d, head::looks_like_http(&buf), cx);
                            end.saturating_sub(old).max(1)
                        }
                    }
                }
                found => {
                    if found.is_some() || h.buf.len() > max {
                        cx.stats.buffer_dropped_bytes += h.buf.len() as u64;
                        cx.stats.oversized_heads += 1;
                        h.buf.clear();
                        self.head_failed(d, true, cx);
                    } else if !h.first_line_ok && h.buf.contains(&b'\n') {
                        if plausible_head(&h.buf, role) {
                            h.first_line_ok = true;
                        } else {
                            let http = head::looks_like_http(&h.buf);
                            self.half(d).buf.clear();
                            self.head_failed(d, http, cx);
                        }
                    }
                    take
                }
            }
        }
    }

    /// State `Resync`: scan for a plausible message start.
    fn resync(&mut self, d: Dir, ts: At, bytes: &[u8], cx: &mut HttpContext<'_>) -> usize {
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
                    h.buf_ts = ts.advance(p);
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
                    h.buf_ts = if p >= old { ts.advance(p - old) } else { h.buf_ts.advance(p) };
                    h.state = State::Head;
                    h.first_line_ok = true;
                    self.decide(d, kind);
                }
                Scan::Partial(p) => {
                    h.buf.drain(..p);
                    h.buf_ts = if p >= old { ts.advance(p - old) } else { h.buf_ts.advance(p) };
                }
                Scan::None => h.buf.clear(),
            }
            take
        }
    }

    /// A head did not parse (or was too large). `http` says whether its bytes look like an
    /// attempt at HTTP: a connection whose very first message does not is taken for another
    /// protocol and no longer parsed (counted once); otherwise it is a parse error and the
    /// direction resynchronises on the next start line.
    pub(super) fn head_failed(&mut self, d: Dir, http: bool, cx: &mut HttpContext<'_>) {
        if !self.any_message && self.half(d).from_start && !http {
            tracing::trace!("first message is not HTTP/1.x; ignoring the connection");
            cx.stats.not_http_connections += 1;
            for h in &mut self.halves {
                h.state = State::Done;
                h.buf = Vec::new();
                h.held.clear();
                h.held_bytes = 0;
            }
            return;
        }
        cx.stats.parse_errors += 1;
        if http {
            cx.stats.unparsed_heads += 1;
        } else {
            cx.stats.not_http_messages += 1;
        }
        self.lose_sync(d);
    }

    pub(super) fn lose_sync(&mut self, d: Dir) {
        let h = self.half(d);
        if h.state != State::Done {
            h.state = State::Resync;
        }
        h.buf.clear();
        h.lost_sync = true;
        h.target = Target::Discard;
    }

    pub(super) fn body_bytes(&mut self, d: Dir, n: u64) {
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
    pub(super) fn message_done(&mut self, d: Dir, cx: &mut HttpContext<'_>) {
        let target = std::mem::take(&mut self.half(d).target);
        let mut next = State::Head;
        match target {
            Target::Request => {
                if let Some(e) = self.exchanges.back_mut() {
                    e.req_done = true;
                    if (e.wants_upgrade || e.is_connect) && !e.resp_done && e.status == 0 {
                        next = State::Await(Awaited::Switch { overflow: false });
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
        if !h.held.is_empty() || matches!(h.state, State::Await(_)) {
            h.held.push_back(Held::Gap(len));
            return;
        }
        match h.state {
            State::Done | State::Await(_) => {}
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

    pub(super) fn end(&mut self, d: Dir, cx: &mut HttpContext<'_>) {
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
        h.held.clear();
        h.held_bytes = 0;
        if self.client == Some(d.reverse()) {
            // The server will send nothing more.
            self.give_up_responses();
            self.emit_ready(cx);
        }
    }

    fn close(&mut self, cx: &mut HttpContext<'_>) {
        self.closing = true;
        // A client still waiting for an answer gets none: settle what it sent first, so that
        // its requests are recorded.
        if let Some(client) = self.client {
            self.settle_await(client, None, cx);
        }
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

    /// Keeps response-side bytes until a request arrives for them, and client-side bytes
    /// behind an awaited answer; both capped by `max_conn_buffer`.
    pub(super) fn hold(&mut self, d: Dir, ts: At, bytes: &[u8], cx: &mut HttpContext<'_>) {
        let h = self.half(d);
        h.held.push_back(Held::Data(ts, bytes.to_vec()));
        h.held_bytes += bytes.len();
        if h.held_bytes > cx.max_conn_buffer {
            if let State::Await(awaited) = h.state {
                self.await_overflow(d, awaited, cx);
                return;
            }
            tracing::trace!(?d, bytes = h.held_bytes, "response without request dropped");
            cx.stats.buffer_dropped_bytes += h.held_bytes as u64;
            h.held.clear();
            h.held_bytes = 0;
            self.lose_sync(d);
        }
    }

    /// Re-runs held events now that a request (or the close, or the awaited answer) may
    /// decide them.
    pub(super) fn release_held(&mut self, d: Dir, cx: &mut HttpContext<'_>) {
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
