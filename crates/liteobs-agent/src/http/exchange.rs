//! Exchange matching: parsed heads become pending requests, responses answer the oldest
//! unanswered one (pipelining), and requests leave in order once both sides are done. Also the
//! HTTP/0.9 answer (a raw body until the server closes) and what a 101 or a CONNECT 2xx ends.
//! How bytes reach the heads is [`super::conn`]'s business.

use super::conn::{At, AwaitedBody, HttpConn, Kind, Parsed, Role, State, Target};
use super::framing::{self, Body, Oddity};
use super::head::{self, HeadParse, head_kind};
use super::{Exchange, HttpContext, HttpStats};
use crate::reassemble::Dir;

/// A request not yet emitted, and what is known of its response.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) host: Option<String>,
    pub(super) req_ts: i64,
    pub(super) req_seq: u32,
    pub(super) req_bytes: u64,
    pub(super) req_done: bool,
    pub(super) is_head: bool,
    pub(super) is_connect: bool,
    pub(super) wants_upgrade: bool,
    /// An HTTP/0.9 simple request: answered by a body without a status line.
    pub(super) http09: bool,
    pub(super) status: u16,
    pub(super) resp_ts: Option<i64>,
    pub(super) resp_seq: Option<u32>,
    pub(super) resp_bytes: u64,
    pub(super) resp_done: bool,
}

fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn count(stats: &mut HttpStats, oddity: Option<Oddity>) {
    match oddity {
        None => {}
        Some(Oddity::BadContentLength) => stats.bad_content_length += 1,
        Some(Oddity::BadTransferEncoding) => stats.bad_transfer_encoding += 1,
        Some(Oddity::LengthWithEncoding) => stats.length_with_encoding += 1,
    }
}

impl HttpConn {
    pub(super) fn decide(&mut self, d: Dir, kind: Kind) {
        if self.client.is_none() {
            self.client = Some(match kind {
                Kind::Request => d,
                Kind::Response => d.reverse(),
            });
        }
    }

    pub(super) fn parse_head(&mut self, d: Dir, at: At, head: &[u8], cx: &mut HttpContext<'_>) -> Parsed {
        match self.role(d) {
            Role::Request => self.request_head(d, at, head, cx),
            Role::Response => self.response_head(d, at, head, cx),
            // The head decides which side is the client, once it parsed completely.
            Role::Unknown if head_kind(head) == Some(Kind::Response) => self.response_head(d, at, head, cx),
            Role::Unknown => self.request_head(d, at, head, cx),
        }
    }

    fn request_head(&mut self, d: Dir, at: At, head: &[u8], cx: &mut HttpContext<'_>) -> Parsed {
        let (len, req) = match head::request(head) {
            HeadParse::Complete(len, req) => (len, req),
            HeadParse::Partial => return Parsed::Partial,
            HeadParse::Invalid => return Parsed::Error,
        };
        self.decide(d, Kind::Request);
        if req.lenient {
            cx.stats.lenient_heads += 1;
        }
        let (body, oddity) = framing::request_body(&req.facts);
        count(cx.stats, oddity);
        let is_connect = req.method.eq_ignore_ascii_case(b"CONNECT");
        self.any_message = true;
        self.exchanges.push_back(Pending {
            method: text(req.method),
            path: text(req.path),
            host: req.facts.host.map(|h| text(h.trim_ascii())),
            req_ts: at.ts,
            req_seq: at.seq,
            req_bytes: 0,
            req_done: false,
            is_head: req.method.eq_ignore_ascii_case(b"HEAD"),
            is_connect,
            wants_upgrade: req.facts.upgrade,
            http09: req.http09,
            status: 0,
            resp_ts: None,
            resp_seq: None,
            resp_bytes: 0,
            resp_done: false,
        });
        let server = d.reverse();
        if self.halves[server.index()].ended && self.halves[server.index()].held.is_empty() {
            // The server already closed its side: this request will get no answer.
            self.give_up_responses();
        }
        self.half(d).target = Target::Request;
        match body {
            _ if is_connect => self.message_done(d, cx),
            Body::Length(n) if req.facts.expect_continue => self.await_continue(d, AwaitedBody::Length(n)),
            Body::Chunked if req.facts.expect_continue => self.await_continue(d, AwaitedBody::Chunked),
            Body::Length(n) => self.half(d).state = State::Body(n),
            Body::Chunked => self.half(d).state = State::Chunked(Default::default()),
            Body::None | Body::UntilClose => self.message_done(d, cx),
            Body::Unframed => {
                self.message_done(d, cx);
                self.lose_sync(d);
            }
        }
        self.release_held(server, cx);
        Parsed::Ok(len)
    }

    fn response_head(&mut self, d: Dir, at: At, head: &[u8], cx: &mut HttpContext<'_>) -> Parsed {
        let ts = at.ts;
        let (len, resp) = match head::response(head) {
            HeadParse::Complete(len, resp) => (len, resp),
            HeadParse::Partial => return Parsed::Partial,
            HeadParse::Invalid => return Parsed::Error,
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
        if resp.lenient {
            cx.stats.lenient_heads += 1;
        }
        self.half(d).lost_sync = false;
        let matched = self.exchanges.get(self.responded).is_some_and(|e| e.req_ts <= ts);
        let (is_head, is_connect) = match self.exchanges.get(self.responded) {
            Some(e) if matched => (e.is_head, e.is_connect),
            _ => (false, false),
        };
        // The client side waits on exactly this answer when it is for its newest request.
        let awaited = matched && self.responded + 1 == self.exchanges.len();
        let interim = (100..200).contains(&code) && code != 101;
        let upgrade = matched && (code == 101 || (is_connect && (200..300).contains(&code)));
        let body = if interim || upgrade || is_head || code == 204 || code == 304 {
            Body::None
        } else {
            let (body, oddity) = framing::response_body(&resp.facts);
            count(cx.stats, oddity);
            body
        };
        let client = d.reverse();
        if interim {
            self.half(d).state = State::Head;
            if awaited && code == 100 {
                self.settle_await(client, Some(code), cx);
            }
            return Parsed::Ok(len);
        }
        let target = if matched {
            let e = &mut self.exchanges[self.responded];
            e.status = code;
            e.resp_ts = Some(ts);
            e.resp_seq = Some(at.seq);
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
            Target::Response
        } else {
            cx.stats.responses_without_request += 1;
            Target::Discard
        };
        let h = self.half(d);
        h.target = target;
        match body {
            Body::Length(n) => h.state = State::Body(n),
            Body::Chunked => h.state = State::Chunked(Default::default()),
            Body::UntilClose | Body::Unframed => h.state = State::UntilClose,
            Body::None => self.message_done(d, cx),
        }
        if awaited {
            self.settle_await(client, Some(code), cx);
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

    /// Whether the server's bytes here are the answer to an HTTP/0.9 request: in step, the
    /// oldest unanswered request is a simple one, and they do not start a status line (a
    /// server may answer 0.9 with a full response).
    pub(super) fn answers_simple_request(&self, d: Dir, at: At, bytes: &[u8]) -> bool {
        let h = &self.halves[d.index()];
        self.role(d) == Role::Response
            && h.buf.is_empty()
            && !h.lost_sync
            && self.exchanges.get(self.responded).is_some_and(|e| e.http09 && e.req_ts <= at.ts)
            && !b"HTTP/".starts_with(&bytes[..bytes.len().min(5)])
    }

    /// The server's stream from here to its end is the answer to the oldest unanswered
    /// (HTTP/0.9) request.
    pub(super) fn start_simple_response(&mut self, d: Dir, at: At) {
        if let Some(e) = self.exchanges.get_mut(self.responded) {
            e.resp_ts = Some(at.ts);
            e.resp_seq = Some(at.seq);
            self.responded += 1;
            let h = self.half(d);
            h.target = Target::Response;
            h.state = State::UntilClose;
        }
    }

    pub(super) fn give_up_responses(&mut self) {
        while self.responded < self.exchanges.len() {
            self.exchanges[self.responded].resp_done = true;
            self.responded += 1;
        }
    }

    pub(super) fn emit_ready(&mut self, cx: &mut HttpContext<'_>) {
        let client = self.client.unwrap_or(Dir::AtoB);
        while self.exchanges.front().is_some_and(|e| e.req_done && e.resp_done) {
            let Some(e) = self.exchanges.pop_front() else {
                break;
            };
            self.responded = self.responded.saturating_sub(1);
            cx.stats.exchanges += 1;
            // An HTTP/0.9 answer has no status line: status 0, but its time and size are real.
            let answered = e.status != 0 || (e.http09 && e.resp_ts.is_some());
            if !answered {
                cx.stats.unanswered += 1;
            } else if e.http09 {
                cx.stats.http09_exchanges += 1;
            }
            cx.out.push(Exchange {
                client,
                method: e.method,
                path: e.path,
                host: e.host,
                request_ts_us: e.req_ts,
                response_ts_us: e.resp_ts.filter(|_| answered),
                request_seq: e.req_seq,
                response_seq: e.resp_seq.filter(|_| answered),
                status: e.status,
                req_bytes: e.req_bytes,
                resp_bytes: e.resp_bytes,
            });
        }
    }
}
