//! HTTP: two reassembled byte streams of one connection → request/response [`Exchange`]s.
//!
//! An [`HttpConn`] consumes the reassembler's [`Event`]s for one TCP connection. Each direction
//! has an incremental parser that copes with data split anywhere:
//!
//! * Heads are parsed with `httparse` straight from the segment when a head arrives whole, and
//!   buffered (up to `max_header_bytes`, else a parse error) only when it spans segments. A
//!   head httparse refuses gets a tolerant parser ([`lenient`]) before it counts as an error:
//!   servers answer more than RFC 9112 allows, and an observer records what they answered.
//!   HTTP/0.9 simple requests are recorded with status 0 and the raw answer's time and size.
//! * Bodies are framed by `Content-Length`, `Transfer-Encoding: chunked` (decoded incrementally,
//!   extensions and trailers tolerated; the count is of decoded data bytes) or, for responses
//!   without either, the end of the server's stream. HEAD responses, 1xx, 204 and 304 have none.
//! * Requests queue in order; each final response answers the oldest unanswered request
//!   (pipelining). Interim 1xx responses (`100 Continue`, `103 Early Hints`) are not answers.
//!   `101 Switching Protocols` and a 2xx answer to `CONNECT` end HTTP parsing of the connection;
//!   what the client sends while such an answer (or a `100 Continue`) is awaited is held and
//!   parsed once the answer says how ([`upgrade`]).
//!
//! Files: [`conn`] (the per-direction state machines and their buffers), [`exchange`]
//! (matching heads into exchanges), [`head`] (httparse), [`lenient`] (the fallback),
//! [`framing`] (RFC 9112 §6.3), [`chunked`], [`resync`], [`upgrade`].
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

mod chunked;
mod conn;
mod exchange;
mod framing;
mod head;
mod lenient;
mod resync;
mod upgrade;

#[cfg(test)]
mod tests;

pub use conn::HttpConn;

use crate::reassemble::{Dir, MemoryBudget};

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
    /// Capture time of the packet holding the first byte of the final response (for HTTP/0.9,
    /// of the raw answer); `None` when no response was seen.
    pub response_ts_us: Option<i64>,
    /// TCP sequence number (as on the wire, mod 2^32) of the request head's first byte. NAT
    /// does not rewrite sequence numbers, so every capture of this exchange (both nodes'
    /// agents, before and after DNAT) has the same one.
    pub request_seq: u32,
    /// The same for the final response head (for HTTP/0.9, the raw answer); `None` exactly
    /// when `response_ts_us` is.
    pub response_seq: Option<u32>,
    /// Final response status; 0 when no response was seen, and for an HTTP/0.9 answer (which
    /// has no status line; `response_ts_us` and `resp_bytes` tell it from no answer).
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
    /// for their request beyond the per-connection cap, bytes after an upgrade request beyond
    /// it, budget exhausted).
    pub buffer_dropped_bytes: u64,

    // What could not be parsed, or was parsed only by tolerating it, by kind. Each head or
    // connection is counted once, under the first kind that applies.
    /// Heads neither httparse nor the tolerant parser could read but that look like HTTP
    /// (counted in `parse_errors` too).
    pub unparsed_heads: u64,
    /// Heads over `max_header_bytes` (counted in `parse_errors` too).
    pub oversized_heads: u64,
    /// Broken chunked framing (counted in `parse_errors` too).
    pub bad_chunked: u64,
    /// Bytes that do not look like HTTP where a head was due, in a connection already known to
    /// be HTTP (counted in `parse_errors` too).
    pub not_http_messages: u64,
    /// Connections whose first bytes are not HTTP/1 (TLS, SSH, ...): ignored from there.
    pub not_http_connections: u64,
    /// Heads httparse refused and the tolerant parser read (no target, spaces in the target,
    /// truncated version, HTTP/0.9, whitespace before a colon, obs-fold or invalid header lines
    /// in a request, odd status lines).
    pub lenient_heads: u64,
    /// HTTP/0.9 exchanges answered (status 0 with a response time and size).
    pub http09_exchanges: u64,
    /// Invalid, negative, overflowing or conflicting Content-Length (a request: recorded, then
    /// resynchronised; a response: read until the connection ends).
    pub bad_content_length: u64,
    /// Requests whose final transfer coding is not chunked (recorded, then resynchronised).
    pub bad_transfer_encoding: u64,
    /// Messages with both Transfer-Encoding and Content-Length (Transfer-Encoding wins).
    pub length_with_encoding: u64,
    /// Final responses that answer no request seen (its request was lost or not captured).
    pub responses_without_request: u64,
    /// `Expect: 100-continue` requests answered with a final status whose client went on to
    /// its next request without the body.
    pub continue_bodies_skipped: u64,
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
