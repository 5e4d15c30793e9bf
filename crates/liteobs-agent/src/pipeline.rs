//! Pipeline: captured frames → [`TrafficLog`] records, as one pure, synchronous step.
//!
//! [`Pipeline::push`] runs a frame through [`decode`](crate::decode), finds the connection in a
//! flow table keyed by [`FlowKey`] (the 4-tuple normalised so both directions map to one entry),
//! feeds the segment to that connection's [`Reassembler`] and hands its events to the
//! connection's [`HttpConn`]; completed exchanges come out as records. No I/O and no clock: time
//! is whatever the caller passes (packet timestamps for replays, the wall clock for live
//! expiry), so tests and replays are deterministic.
//!
//! Memory is bounded three ways: out-of-order data per direction (`max_conn_buffer`), all
//! buffering together (`max_total_buffer`, shared by reassembly and HTTP heads) and the number of
//! tracked connections (`max_flows`; when full, closed connections are forgotten first, then the
//! least recently active are flushed and evicted, in batches).
//!
//! A connection that closed (both FINs, or RST) stays in the table, without buffers, until it
//! has been idle for `idle_timeout_us`, so that late retransmissions are recognised as such
//! instead of opening a bogus mid-stream connection. A SYN with a new ISN reopens it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::mem;
use std::net::IpAddr;

use foldhash::fast::RandomState;

use chrono::{DateTime, Utc};
use liteobs_model::{TS_MAX_MICROS, TS_MIN_MICROS, TrafficLog};

use crate::decode::{self, DecodeError, TcpSegment};
use crate::http::{Exchange, HttpConn, HttpContext, HttpStats};
use crate::reassemble::{Context, Dir, Event, MemoryBudget, Reassembler, ReassemblyStats};

pub use crate::decode::LinkType;

/// Limits and identity of a [`Pipeline`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Written into every record's `node`.
    pub node: String,
    /// A connection with no packet for longer than this is flushed by [`Pipeline::expire`].
    pub idle_timeout_us: i64,
    /// Bytes one direction of one connection may hold out of order (and, for responses seen
    /// before their request, unparsed).
    pub max_conn_buffer: usize,
    /// Bytes held across all connections (out-of-order data, partial heads, held responses).
    pub max_total_buffer: usize,
    /// Largest HTTP message head (and chunked trailer) accepted.
    pub max_header_bytes: usize,
    /// Most connections tracked at once.
    pub max_flows: usize,
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            node: String::new(),
            idle_timeout_us: 60_000_000,
            max_conn_buffer: 4 << 20,
            max_total_buffer: 256 << 20,
            max_header_bytes: 64 << 10,
            max_flows: 100_000,
        }
    }
}

/// What the pipeline saw, cumulative since [`Pipeline::new`].
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counters {
    /// Frames pushed.
    pub packets: u64,
    /// Captured bytes of those frames.
    pub bytes: u64,
    /// Well-formed frames that are not TCP (ARP, UDP, ICMP, other EtherTypes).
    pub non_tcp: u64,
    /// Frames whose link, IP or TCP header is malformed or cut short.
    pub decode_errors: u64,
    /// IPv4/IPv6 fragments (skipped, not reassembled).
    pub ip_fragments: u64,
    /// Connections started (including a reused 4-tuple with a new SYN).
    pub flows_opened: u64,
    /// Connections flushed by [`Pipeline::expire`] after being idle.
    pub flows_expired: u64,
    /// Connections flushed early because `max_flows` was reached.
    pub flows_evicted: u64,
    /// Segments that arrived ahead of a hole and were held.
    pub out_of_order_segments: u64,
    /// Payload bytes seen again after being delivered or held (retransmissions, overlaps),
    /// including bytes arriving after their connection closed.
    pub retransmitted_bytes: u64,
    /// Holes given up on (never captured, cut by the snap length, or skipped because of a
    /// buffer cap); each is one gap event to the HTTP parser.
    pub gaps: u64,
    /// Bytes discarded because a buffer limit was reached (oversized heads, responses
    /// waiting for their request beyond `max_conn_buffer`, `max_total_buffer` exhausted).
    pub buffer_dropped_bytes: u64,
    /// Exchanges parsed: each one is a record, but those counted in `impossible_timestamps`.
    pub exchanges: u64,
    /// Records emitted with status 0 (no response seen).
    pub unanswered: u64,
    /// HTTP messages that could not be parsed (the parser resynchronised after each).
    pub parse_errors: u64,
    /// Connections that switched protocol (101 or CONNECT 2xx); parsing stopped there.
    pub upgraded_connections: u64,

    // --- Timestamps at the record boundary (see `Shared::record`) ---
    /// Exchanges not emitted because their request's or response's first packet is
    /// timestamped outside 1970..=9999 UTC ([`liteobs_model::ts_in_range`]), which the server
    /// refuses: a damaged or absurd capture clock. Counted in `exchanges` too. Like the
    /// HTTP counters below, left out of the serialized form while 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub impossible_timestamps: u64,
    /// Records emitted with `latency_us` 0 because their response's first packet is
    /// timestamped before their request's (a clock stepped back during the capture, or
    /// interfaces' clocks that disagree).
    #[serde(skip_serializing_if = "is_zero")]
    pub backwards_latency: u64,
    // --- HTTP parse counters by kind (owned by the http stage; see `http::HttpStats`);
    // left out of the serialized form while 0, so a report lists only the kinds that occurred.
    /// Heads that look like HTTP but neither parser could read (in `parse_errors`).
    #[serde(skip_serializing_if = "is_zero")]
    pub http_unparsed_heads: u64,
    /// Heads over `max_header_bytes` (in `parse_errors`).
    #[serde(skip_serializing_if = "is_zero")]
    pub http_oversized_heads: u64,
    /// Broken chunked framing (in `parse_errors`).
    #[serde(skip_serializing_if = "is_zero")]
    pub http_bad_chunked: u64,
    /// Non-HTTP bytes where a head was due on an HTTP connection (in `parse_errors`).
    #[serde(skip_serializing_if = "is_zero")]
    pub http_not_http_messages: u64,
    /// Connections whose first bytes are not HTTP/1 (ignored from there).
    #[serde(skip_serializing_if = "is_zero")]
    pub http_not_http_connections: u64,
    /// Heads httparse refused that the tolerant parser read.
    #[serde(skip_serializing_if = "is_zero")]
    pub http_lenient_heads: u64,
    /// HTTP/0.9 exchanges answered (status 0, with latency and resp_bytes).
    #[serde(skip_serializing_if = "is_zero")]
    pub http09_exchanges: u64,
    /// Invalid or conflicting Content-Length.
    #[serde(skip_serializing_if = "is_zero")]
    pub http_bad_content_length: u64,
    /// Requests whose final transfer coding is not chunked.
    #[serde(skip_serializing_if = "is_zero")]
    pub http_bad_transfer_encoding: u64,
    /// Messages with both Transfer-Encoding and Content-Length (Transfer-Encoding wins).
    #[serde(skip_serializing_if = "is_zero")]
    pub http_length_with_encoding: u64,
    /// Final responses that answer no request seen.
    #[serde(skip_serializing_if = "is_zero")]
    pub http_responses_without_request: u64,
    /// `Expect: 100-continue` bodies the client dropped after a final status.
    #[serde(skip_serializing_if = "is_zero")]
    pub http_continue_bodies_skipped: u64,
    // --- end of HTTP parse counters ---------------------------------------------------------
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A TCP connection's 4-tuple, normalised: endpoint `a` is the smaller of the two, so both
/// directions of a connection have the same key. [`Dir::AtoB`] is travel from `a` to `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub a: (IpAddr, u16),
    pub b: (IpAddr, u16),
}

/// Three integer writes instead of the derive's walk through two enums and their byte arrays
/// (looked up once per packet). Equal keys hash equally; an IPv4 address and the IPv6 address
/// `::a.b.c.d` only share a hash, not equality.
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => u128::from(v4.to_bits()),
            IpAddr::V6(v6) => v6.to_bits(),
        };
        state.write_u128(bits(self.a.0));
        state.write_u128(bits(self.b.0));
        state.write_u32(u32::from(self.a.1) << 16 | u32::from(self.b.1));
    }
}

impl FlowKey {
    /// The key of a segment's connection and the direction the segment travels in.
    pub fn of(seg: &TcpSegment<'_>) -> (FlowKey, Dir) {
        let src = (seg.src_ip, seg.src_port);
        let dst = (seg.dst_ip, seg.dst_port);
        if src <= dst {
            (FlowKey { a: src, b: dst }, Dir::AtoB)
        } else {
            (FlowKey { a: dst, b: src }, Dir::BtoA)
        }
    }

    /// (source, destination) endpoints of travel in `dir`.
    pub fn endpoints(&self, dir: Dir) -> ((IpAddr, u16), (IpAddr, u16)) {
        match dir {
            Dir::AtoB => (self.a, self.b),
            Dir::BtoA => (self.b, self.a),
        }
    }
}

/// The stateful frame → record step. See the module docs.
pub struct Pipeline {
    /// foldhash, not the standard SipHash: the table is looked up once per packet and SipHash
    /// was a tenth of the replay's time. Its seed is random per process, so crafted tuples
    /// cannot be aimed at one bucket from outside without seeing the agent's memory.
    flows: HashMap<FlowKey, Flow, RandomState>,
    shared: Shared,
    next_id: u64,
    /// Flows with a live connection (not lingering after close).
    active: usize,
    /// Connections the last [`Pipeline::push`] started (see [`Pipeline::opened`]).
    opened: Vec<FlowKey>,
    counters: Counters,
}

/// Everything a connection's stages share, kept apart from the flow table so that one flow
/// and the shared state can be borrowed at once.
struct Shared {
    cfg: PipelineConfig,
    budget: MemoryBudget,
    reassembly: ReassemblyStats,
    http: HttpStats,
    /// Exchanges of the connection being driven, before they become records.
    exchanges: Vec<Exchange>,
    /// `impossible_timestamps` and `backwards_latency` of [`Counters`].
    impossible_timestamps: u64,
    backwards_latency: u64,
}

struct Flow {
    /// Creation order, for deterministic flush order.
    id: u64,
    last_seen_us: i64,
    /// `None` once the connection closed (the entry lingers until idle).
    conn: Option<Box<Connection>>,
    /// The client's (direction, ISN) of the connection that closed here, to tell a
    /// retransmitted SYN from a new connection.
    closed_syn: Option<(Dir, u32)>,
    /// The connection is still going but carries nothing to parse (upgraded to another
    /// protocol, or not HTTP): its packets are ignored until a new SYN or idle expiry.
    passive: bool,
}

struct Connection {
    reassembler: Reassembler,
    http: HttpConn,
}

impl Connection {
    fn new() -> Box<Connection> {
        Box::new(Connection { reassembler: Reassembler::new(), http: HttpConn::new() })
    }
}

impl Shared {
    /// Runs one reassembler operation on `conn`, its events through the HTTP parser, and
    /// turns finished exchanges into records.
    fn drive(
        &mut self,
        key: &FlowKey,
        conn: &mut Connection,
        out: &mut Vec<TrafficLog>,
        op: impl FnOnce(&mut Reassembler, &mut Context<'_>, &mut dyn FnMut(Event<'_>)),
    ) {
        let Connection { reassembler, http } = conn;
        let mut cx = Context {
            max_conn_buffer: self.cfg.max_conn_buffer,
            budget: &self.budget,
            stats: &mut self.reassembly,
        };
        let mut hcx = HttpContext {
            max_header_bytes: self.cfg.max_header_bytes,
            max_conn_buffer: self.cfg.max_conn_buffer,
            budget: &self.budget,
            stats: &mut self.http,
            out: &mut self.exchanges,
        };
        op(reassembler, &mut cx, &mut |ev| http.on_event(ev, &mut hcx));
        // Taken and put back, so that `record` may borrow `self` and the vector is reused.
        let mut exchanges = mem::take(&mut self.exchanges);
        for e in exchanges.drain(..) {
            if let Some(r) = self.record(key, e) {
                out.push(r);
            }
        }
        self.exchanges = exchanges;
    }

    /// The record of an exchange, or None (counted) when its timestamps are ones the server's
    /// contract refuses: a record is never emitted that its batch would be rejected for.
    fn record(&mut self, key: &FlowKey, e: Exchange) -> Option<TrafficLog> {
        let in_range = |us: i64| (TS_MIN_MICROS..=TS_MAX_MICROS).contains(&us);
        if !in_range(e.request_ts_us) || e.response_ts_us.is_some_and(|r| !in_range(r)) {
            self.impossible_timestamps += 1;
            tracing::debug!(
                request_ts_us = e.request_ts_us,
                response_ts_us = e.response_ts_us,
                "exchange skipped: a timestamp outside 1970..=9999 UTC"
            );
            return None;
        }
        // Both in range, so the difference fits in an i64 and the latency in the record's.
        let latency_us = match e.response_ts_us.map(|r| r - e.request_ts_us) {
            Some(d) if d < 0 => {
                self.backwards_latency += 1;
                0
            }
            Some(d) => d.unsigned_abs(),
            None => 0,
        };
        let ts = DateTime::<Utc>::from_timestamp_micros(e.request_ts_us)?;
        Some(record(key, &self.cfg.node, ts, latency_us, e))
    }

    fn flush(&mut self, key: &FlowKey, conn: &mut Connection, out: &mut Vec<TrafficLog>) {
        self.drive(key, conn, out, |r, cx, mut emit| r.flush(cx, &mut emit));
    }
}

fn record(key: &FlowKey, node: &str, ts: DateTime<Utc>, latency_us: u64, e: Exchange) -> TrafficLog {
    let ((src_ip, src_port), (dst_ip, dst_port)) = key.endpoints(e.client);
    TrafficLog {
        ts,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        method: e.method,
        path: e.path,
        host: e.host,
        status: e.status,
        latency_us,
        req_bytes: e.req_bytes,
        resp_bytes: e.resp_bytes,
        src_pid: None,
        src_comm: None,
        dst_pid: None,
        dst_comm: None,
        src_namespace: None,
        src_pod: None,
        src_container: None,
        src_container_id: None,
        src_node: None,
        dst_namespace: None,
        dst_pod: None,
        dst_container: None,
        dst_container_id: None,
        dst_node: None,
        dst_service_ip: None,
        dst_service_port: None,
        exchange_id: Some(exchange_id(e.request_seq, e.response_seq)),
        route: None,
        node: node.to_owned(),
    }
}

/// [`TrafficLog::exchange_id`]: the request head's first sequence number in the high 32 bits,
/// the response head's in the low 32 (0 without a response), as the same bits in an `i64`.
pub fn exchange_id(request_seq: u32, response_seq: Option<u32>) -> i64 {
    ((u64::from(request_seq) << 32) | u64::from(response_seq.unwrap_or(0))) as i64
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig) -> Pipeline {
        Pipeline {
            flows: HashMap::with_hasher(RandomState::default()),
            shared: Shared {
                budget: MemoryBudget::new(cfg.max_total_buffer),
                cfg,
                reassembly: ReassemblyStats::default(),
                http: HttpStats::default(),
                exchanges: Vec::new(),
                impossible_timestamps: 0,
                backwards_latency: 0,
            },
            next_id: 0,
            active: 0,
            opened: Vec::new(),
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.shared.cfg
    }

    /// One captured frame. Never panics on any input. `ts_us` = capture time, microseconds
    /// since the Unix epoch. Records completed by this frame are appended to `out`.
    pub fn push(&mut self, ts_us: i64, link: LinkType, frame: &[u8], out: &mut Vec<TrafficLog>) {
        self.opened.clear();
        self.counters.packets += 1;
        self.counters.bytes += frame.len() as u64;
        match decode::decode(link, frame) {
            Ok(seg) => self.segment(ts_us, &seg, out),
            Err(DecodeError::NotTcp(_)) => self.counters.non_tcp += 1,
            Err(DecodeError::IpFragment) => self.counters.ip_fragments += 1,
            Err(error) => {
                self.counters.decode_errors += 1;
                tracing::trace!(%error, "frame not decoded");
            }
        }
        self.sync_counters();
    }

    fn segment(&mut self, ts_us: i64, seg: &TcpSegment<'_>, out: &mut Vec<TrafficLog>) {
        let (key, dir) = FlowKey::of(seg);
        // One lookup for a known connection (every packet but the first of each).
        let flow = match self.flows.get_mut(&key) {
            Some(flow) => flow,
            None => {
                if !self.open_flow(key, ts_us, seg, out) {
                    return;
                }
                let Some(flow) = self.flows.get_mut(&key) else {
                    return;
                };
                flow
            }
        };
        flow.last_seen_us = flow.last_seen_us.max(ts_us);
        // Port reuse: a SYN with a new ISN ends whatever this 4-tuple held.
        if let Some(conn) = flow.conn.as_deref_mut()
            && conn.reassembler.is_new_connection(dir, seg)
        {
            self.shared.flush(&key, conn, out);
            flow.conn = None;
            flow.closed_syn = None;
            self.active -= 1;
        }
        if flow.conn.is_none() {
            // Closed and lingering: only a SYN that is not a retransmission of the old one
            // starts a new connection; anything else is late traffic of the old one.
            let syn_only = seg.flags.syn && !seg.flags.ack && !seg.flags.rst;
            if !syn_only || flow.closed_syn == Some((dir, seg.seq)) {
                if !flow.passive {
                    self.shared.reassembly.retransmitted_bytes += seg.payload.len() as u64;
                }
                return;
            }
            flow.conn = Some(Connection::new());
            flow.closed_syn = None;
            flow.passive = false;
            self.active += 1;
            self.counters.flows_opened += 1;
            self.opened.push(key);
        }
        let Some(conn) = flow.conn.as_deref_mut() else {
            return;
        };
        if let Some(client) = Reassembler::client_from_syn(dir, seg) {
            conn.http.set_client(client);
        }
        self.shared.drive(&key, conn, out, |r, cx, mut emit| r.segment(dir, ts_us, seg, cx, &mut emit));
        if conn.reassembler.is_closed() {
            flow.closed_syn = conn.reassembler.client_isn();
            flow.conn = None;
            self.active -= 1;
        } else if conn.http.is_done() {
            // Upgraded or not HTTP: stop reassembling (and buffering) what nobody will parse.
            flow.closed_syn = conn.reassembler.client_isn();
            flow.passive = true;
            self.shared.flush(&key, conn, out);
            flow.conn = None;
            self.active -= 1;
        }
    }

    /// A segment of a connection not in the table: starts tracking it, unless the segment
    /// cannot start anything (pure ACKs and resets of unknown connections). Returns whether
    /// the flow now exists.
    #[cold]
    fn open_flow(
        &mut self,
        key: FlowKey,
        ts_us: i64,
        seg: &TcpSegment<'_>,
        out: &mut Vec<TrafficLog>,
    ) -> bool {
        let occupies_seq = seg.flags.syn || seg.flags.fin || !seg.payload.is_empty() || seg.missing > 0;
        if !occupies_seq || seg.flags.rst {
            return false;
        }
        self.make_room(out);
        let id = self.next_id;
        self.next_id += 1;
        self.flows.insert(
            key,
            Flow { id, last_seen_us: ts_us, conn: Some(Connection::new()), closed_syn: None, passive: false },
        );
        self.active += 1;
        self.counters.flows_opened += 1;
        self.opened.push(key);
        true
    }

    /// Makes room for one more flow when the table is full.
    fn make_room(&mut self, out: &mut Vec<TrafficLog>) {
        let max = self.shared.cfg.max_flows.max(1);
        if self.flows.len() < max {
            return;
        }
        self.flows.retain(|_, f| f.conn.is_some());
        if self.flows.len() < max {
            return;
        }
        // Evict the least recently active ~1.5%, so that a full table costs one scan per
        // batch rather than per new connection.
        let batch = (max / 64).max(1);
        let mut candidates: Vec<(i64, u64, FlowKey)> =
            self.flows.iter().map(|(k, f)| (f.last_seen_us, f.id, *k)).collect();
        if batch < candidates.len() {
            candidates.select_nth_unstable(batch - 1);
            candidates.truncate(batch);
        }
        candidates.sort_by_key(|&(_, id, _)| id);
        tracing::debug!(evicted = candidates.len(), "flow table full; evicting idle connections");
        for (_, _, key) in candidates {
            if let Some(mut flow) = self.flows.remove(&key)
                && let Some(conn) = flow.conn.as_deref_mut()
            {
                self.shared.flush(&key, conn, out);
                self.active -= 1;
                self.counters.flows_evicted += 1;
            }
        }
    }

    /// Expire connections idle for longer than `idle_timeout_us` (relative to `now_us`),
    /// emitting what they hold (unanswered requests with status 0). Also gives up holes that
    /// the peer acknowledged long enough ago on connections that went quiet.
    pub fn expire(&mut self, now_us: i64, out: &mut Vec<TrafficLog>) {
        let timeout = self.shared.cfg.idle_timeout_us;
        let mut idle: Vec<(u64, FlowKey)> = Vec::new();
        let mut stalled: Vec<(u64, FlowKey)> = Vec::new();
        for (key, flow) in &self.flows {
            if now_us.saturating_sub(flow.last_seen_us) > timeout {
                idle.push((flow.id, *key));
            } else if flow.conn.as_ref().is_some_and(|c| c.reassembler.has_acked_hole()) {
                stalled.push((flow.id, *key));
            }
        }
        idle.sort_unstable();
        stalled.sort_unstable();
        for (_, key) in idle {
            if let Some(mut flow) = self.flows.remove(&key)
                && let Some(conn) = flow.conn.as_deref_mut()
            {
                self.shared.flush(&key, conn, out);
                self.active -= 1;
                self.counters.flows_expired += 1;
            }
        }
        for (_, key) in stalled {
            if let Some(flow) = self.flows.get_mut(&key)
                && let Some(conn) = flow.conn.as_deref_mut()
            {
                self.shared.drive(&key, conn, out, |r, cx, mut emit| r.poll(now_us, cx, &mut emit));
                if conn.reassembler.is_closed() {
                    flow.conn = None;
                    self.active -= 1;
                }
            }
        }
        self.sync_counters();
    }

    /// End of input: flush every connection as if closed.
    pub fn finish(&mut self, out: &mut Vec<TrafficLog>) {
        let mut flows: Vec<(FlowKey, Flow)> = self.flows.drain().collect();
        flows.sort_unstable_by_key(|(_, f)| f.id);
        for (key, mut flow) in flows {
            if let Some(conn) = flow.conn.as_deref_mut() {
                self.shared.flush(&key, conn, out);
            }
        }
        self.active = 0;
        self.sync_counters();
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The connections the last [`Pipeline::push`] started, including a new connection on a
    /// reused 4-tuple (its records, if any, come later). Whatever was learnt about an earlier
    /// connection on the same tuple (its processes, for instance) no longer applies. Records
    /// that the same push completed belong to the earlier connection.
    pub fn opened(&self) -> &[FlowKey] {
        &self.opened
    }

    /// Connections currently tracked with live state (closed ones lingering for late
    /// retransmissions are not counted).
    pub fn open_flows(&self) -> usize {
        self.active
    }

    /// Bytes currently held in buffers across all connections.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.budget.used()
    }

    fn sync_counters(&mut self) {
        let (r, h, c) = (&self.shared.reassembly, &self.shared.http, &mut self.counters);
        c.out_of_order_segments = r.out_of_order_segments;
        c.retransmitted_bytes = r.retransmitted_bytes;
        c.gaps = r.gaps;
        c.buffer_dropped_bytes = h.buffer_dropped_bytes;
        c.exchanges = h.exchanges;
        c.unanswered = h.unanswered;
        c.parse_errors = h.parse_errors;
        c.upgraded_connections = h.upgraded_connections;
        // HTTP parse counters by kind.
        c.http_unparsed_heads = h.unparsed_heads;
        c.http_oversized_heads = h.oversized_heads;
        c.http_bad_chunked = h.bad_chunked;
        c.http_not_http_messages = h.not_http_messages;
        c.http_not_http_connections = h.not_http_connections;
        c.http_lenient_heads = h.lenient_heads;
        c.http09_exchanges = h.http09_exchanges;
        c.http_bad_content_length = h.bad_content_length;
        c.http_bad_transfer_encoding = h.bad_transfer_encoding;
        c.http_length_with_encoding = h.length_with_encoding;
        c.http_responses_without_request = h.responses_without_request;
        c.http_continue_bodies_skipped = h.continue_bodies_skipped;
        // Timestamps at the record boundary.
        c.impossible_timestamps = self.shared.impossible_timestamps;
        c.backwards_latency = self.shared.backwards_latency;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::ALL_LINKS;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Packet {
        ts_us: i64,
        frame: Vec<u8>,
    }

    /// Frames of one TCP conversation, with sequence and acknowledgment numbers kept the way
    /// the two stacks would.
    struct Conversation {
        link: LinkType,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        client_seq: u32,
        server_seq: u32,
        ts_us: i64,
        /// Largest payload per segment.
        mss: usize,
        packets: Vec<Packet>,
    }

    const T0: i64 = 1_764_079_364_000_000; // 2025-11-25T14:02:44Z

    impl Conversation {
        fn new(client: &str, server: &str) -> Conversation {
            let (client, server): (std::net::SocketAddr, std::net::SocketAddr) =
                (client.parse().unwrap(), server.parse().unwrap());
            Conversation {
                link: LinkType::Ethernet,
                client: (client.ip(), client.port()),
                server: (server.ip(), server.port()),
                client_seq: 0xffff_ff00, // wraps during the conversation
                server_seq: 1_000_000,
                ts_us: T0,
                mss: 1460,
                packets: Vec::new(),
            }
        }

        fn frame(&self, from_client: bool, flags: &str, payload: &[u8]) -> Vec<u8> {
            let (src, dst, seq, ack) = if from_client {
                (self.client, self.server, self.client_seq, self.server_seq)
            } else {
                (self.server, self.client, self.server_seq, self.client_seq)
            };
            let ip = match (src.0, dst.0) {
                (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
                (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
                _ => panic!("mixed address families"),
            };
            let mut tcp = ip.tcp(src.1, dst.1, seq, 65535);
            if flags.contains('S') {
                tcp = tcp.syn();
            }
            if flags.contains('F') {
                tcp = tcp.fin();
            }
            if flags.contains('R') {
                tcp = tcp.rst();
            }
            if flags.contains('A') {
                tcp = tcp.ack(ack);
            }
            let mut packet = Vec::new();
            tcp.write(&mut packet, payload).unwrap();
            link_frame(self.link, src.0.is_ipv4(), &packet)
        }

        fn emit(&mut self, from_client: bool, flags: &str, payload: &[u8]) {
            self.ts_us += 1_000;
            let frame = self.frame(from_client, flags, payload);
            self.packets.push(Packet { ts_us: self.ts_us, frame });
            let used = payload.len() as u32 + u32::from(flags.contains('S')) + u32::from(flags.contains('F'));
            if from_client {
                self.client_seq = self.client_seq.wrapping_add(used);
            } else {
                self.server_seq = self.server_seq.wrapping_add(used);
            }
        }

        fn handshake(&mut self) -> &mut Self {
            self.emit(true, "S", b"");
            self.emit(false, "SA", b"");
            self.emit(true, "A", b"");
            self
        }

        fn client_sends(&mut self, data: &[u8]) -> &mut Self {
            for chunk in data.chunks(self.mss) {
                self.emit(true, "A", chunk);
            }
            self.emit(false, "A", b"");
            self
        }

        fn server_sends(&mut self, data: &[u8]) -> &mut Self {
            for chunk in data.chunks(self.mss) {
                self.emit(false, "A", chunk);
            }
            self.emit(true, "A", b"");
            self
        }

        fn close(&mut self) -> &mut Self {
            self.emit(true, "FA", b"");
            self.emit(false, "FA", b"");
            self.emit(true, "A", b"");
            self
        }
    }

    /// Wraps an IP packet in the framing of `link`.
    fn link_frame(link: LinkType, v4: bool, ip: &[u8]) -> Vec<u8> {
        let ether_type: [u8; 2] = if v4 { [0x08, 0x00] } else { [0x86, 0xdd] };
        let mut frame = match link {
            LinkType::Ethernet => {
                [&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1][..], &[0x81, 0x00, 0x00, 0x07], &ether_type].concat()
            }
            LinkType::LinuxSll => [&[0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0][..], &ether_type].concat(),
            LinkType::LinuxSll2 => {
                [&ether_type[..], &[0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0]].concat()
            }
            LinkType::Null => (if v4 { 2u32 } else { 30 }).to_le_bytes().to_vec(),
            LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => Vec::new(),
        };
        frame.extend_from_slice(ip);
        frame
    }

    fn run_with(cfg: PipelineConfig, link: LinkType, packets: &[Packet]) -> (Vec<TrafficLog>, Pipeline) {
        let mut p = Pipeline::new(cfg);
        let mut out = Vec::new();
        for packet in packets {
            p.push(packet.ts_us, link, &packet.frame, &mut out);
        }
        p.finish(&mut out);
        assert_eq!(p.buffered_bytes(), 0, "buffer budget leaked");
        (out, p)
    }

    fn config() -> PipelineConfig {
        PipelineConfig { node: "node-a".into(), ..PipelineConfig::default() }
    }

    fn run(packets: &[Packet]) -> (Vec<TrafficLog>, Pipeline) {
        run_with(config(), LinkType::Ethernet, packets)
    }

    /// Exchanges whose request or response is stamped outside 1970..=9999 UTC are counted and
    /// skipped, however far out (no overflow at the ends of `i64`), and the exchanges around
    /// them are still emitted. (Each is on a connection of its own: on one keep-alive
    /// connection, http.rs matches a response only to a request stamped no later than it.)
    #[test]
    fn impossible_timestamps_are_counted_and_skipped() {
        const YEAR_11476_US: i64 = 299_970_000_000_000_000;
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        // (path, request time, response time); None: a normal time.
        let plan: [(&str, Option<i64>, Option<i64>); 6] = [
            ("/1", None, None),
            ("/future", Some(YEAR_11476_US), None),
            ("/late-answer", None, Some(i64::MAX)),
            ("/1969", Some(-1_000_000), None),
            ("/ends", Some(i64::MIN), Some(i64::MAX)),
            ("/6", None, None),
        ];
        let mut packets = Vec::new();
        for (i, (path, req_ts, resp_ts)) in plan.iter().enumerate() {
            let mut c = Conversation::new(&format!("10.0.0.1:{}", 40_000 + i), "10.0.0.2:80");
            let normal = T0 + i as i64 * 10_000_000;
            c.ts_us = normal;
            c.handshake();
            c.ts_us = req_ts.unwrap_or(normal + 10_000).saturating_sub(1_000);
            c.emit(true, "A", format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            c.ts_us = resp_ts.unwrap_or(normal + 12_000).saturating_sub(1_000);
            c.emit(false, "A", ok);
            c.ts_us = normal + 20_000;
            c.close();
            packets.extend(c.packets);
        }
        let (records, p) = run(&packets);
        let got: Vec<(&str, u64)> = records.iter().map(|r| (r.path.as_str(), r.latency_us)).collect();
        assert_eq!(got, [("/1", 2_000), ("/6", 2_000)]);
        let n = p.counters();
        assert_eq!((n.exchanges, n.impossible_timestamps), (6, 4));
    }

    /// At the record boundary, whatever the HTTP stage hands over: a response stamped before
    /// its request gives latency 0 (counted), and the extremes of `i64` neither overflow nor
    /// become a record.
    #[test]
    fn record_latency_never_overflows_or_goes_negative() {
        let mut p = Pipeline::new(config());
        let key = FlowKey { a: ("10.0.0.1".parse().unwrap(), 1), b: ("10.0.0.2".parse().unwrap(), 80) };
        let exchange = |request_ts_us, response_ts_us| Exchange {
            client: Dir::AtoB,
            method: "GET".into(),
            path: "/".into(),
            host: None,
            request_ts_us,
            response_ts_us,
            request_seq: 0,
            response_seq: None,
            status: 200,
            req_bytes: 0,
            resp_bytes: 0,
        };
        let latency =
            |p: &mut Pipeline, req, resp| p.shared.record(&key, exchange(req, resp)).map(|r| r.latency_us);
        assert_eq!(latency(&mut p, T0, Some(T0 + 5)), Some(5));
        assert_eq!(latency(&mut p, T0, Some(T0 - 5)), Some(0));
        assert_eq!(latency(&mut p, TS_MIN_MICROS, Some(TS_MAX_MICROS)), Some(253_402_300_799_999_999));
        assert_eq!(latency(&mut p, i64::MIN, Some(i64::MAX)), None);
        assert_eq!(latency(&mut p, T0, Some(i64::MIN)), None);
        assert_eq!(latency(&mut p, TS_MAX_MICROS + 1, None), None);
        p.sync_counters();
        assert_eq!((p.counters().backwards_latency, p.counters().impossible_timestamps), (1, 3));
    }

    const REQ1: &[u8] = b"GET /api/v1/items?id=7 HTTP/1.1\r\nHost: example.test\r\n\r\n";
    const RESP1: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world!";
    const REQ2: &[u8] = b"POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 300\r\n\r\n";
    const RESP2: &[u8] = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nmade\r\n0\r\n\r\n";

    /// Two keep-alive exchanges, the second with a 300-byte upload, then an orderly close.
    fn keep_alive(mss: usize) -> Conversation {
        let mut c = Conversation::new("10.0.0.1:51234", "10.0.0.2:8080");
        c.mss = mss;
        c.handshake().client_sends(REQ1).server_sends(RESP1);
        let body: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        c.client_sends(&[REQ2, &body].concat()).server_sends(RESP2).close();
        c
    }

    /// method, path, status, req_bytes, resp_bytes, host, client.
    type Shape = (String, String, u16, u64, u64, Option<String>, (IpAddr, u16));

    /// The fields that do not depend on how the bytes were split into packets.
    fn shape(records: &[TrafficLog]) -> Vec<Shape> {
        records
            .iter()
            .map(|r| {
                (
                    r.method.clone(),
                    r.path.clone(),
                    r.status,
                    r.req_bytes,
                    r.resp_bytes,
                    r.host.clone(),
                    (r.src_ip, r.src_port),
                )
            })
            .collect()
    }

    #[test]
    fn keep_alive_conversation_gives_complete_records() {
        let c = keep_alive(1460);
        let (out, p) = run(&c.packets);
        assert_eq!(out.len(), 2);
        let r = &out[0];
        // Packet 4 (after the handshake) carries the request, packet 6 the response.
        let (req_ts, resp_ts) = (c.packets[3].ts_us, c.packets[5].ts_us);
        assert_eq!(r.ts_micros(), req_ts);
        assert_eq!(r.latency_us, (resp_ts - req_ts) as u64);
        assert_eq!((r.src_ip, r.src_port), ("10.0.0.1".parse().unwrap(), 51234));
        assert_eq!((r.dst_ip, r.dst_port), ("10.0.0.2".parse().unwrap(), 8080));
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/api/v1/items?id=7"));
        assert_eq!(r.host.as_deref(), Some("example.test"));
        assert_eq!((r.status, r.req_bytes, r.resp_bytes), (200, 0, 12));
        assert_eq!(r.node, "node-a");
        assert_eq!(
            (r.src_pid, r.src_comm.as_deref(), r.dst_pid, r.dst_comm.as_deref()),
            (None, None, None, None)
        );
        let r = &out[1];
        assert_eq!((r.method.as_str(), r.status, r.req_bytes, r.resp_bytes), ("POST", 201, 300, 4));

        let n = p.counters();
        assert_eq!(n.packets, c.packets.len() as u64);
        assert_eq!(n.bytes, c.packets.iter().map(|p| p.frame.len() as u64).sum::<u64>());
        assert_eq!((n.flows_opened, n.exchanges, n.unanswered, n.parse_errors, n.gaps), (1, 2, 0, 0, 0));
        assert_eq!(
            (n.non_tcp, n.decode_errors, n.out_of_order_segments, n.retransmitted_bytes),
            (0, 0, 0, 0)
        );
        assert_eq!(p.open_flows(), 0);
    }

    #[test]
    fn records_come_out_as_soon_as_the_response_completes() {
        let c = keep_alive(1460);
        let mut p = Pipeline::new(config());
        let mut out = Vec::new();
        for (i, packet) in c.packets.iter().enumerate() {
            p.push(packet.ts_us, LinkType::Ethernet, &packet.frame, &mut out);
            if i == 5 {
                assert_eq!(out.len(), 1, "the first exchange is complete with packet 6");
                assert_eq!(p.open_flows(), 1);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(p.open_flows(), 0, "both FINs close the connection");
    }

    #[test]
    fn every_link_type_and_ipv6_give_the_same_records() {
        let reference = shape(&run(&keep_alive(1460).packets).0);
        for link in ALL_LINKS {
            for (client, server) in
                [("10.0.0.1:51234", "10.0.0.2:8080"), ("[fd00::1]:51234", "[fd00::2]:8080")]
            {
                let v4 = client.starts_with('1');
                if (link == LinkType::Ipv4 && !v4) || (link == LinkType::Ipv6 && v4) {
                    continue;
                }
                let mut c = Conversation::new(client, server);
                c.link = link;
                c.handshake().client_sends(REQ1).server_sends(RESP1).close();
                let (out, p) = run_with(config(), link, &c.packets);
                assert_eq!(out.len(), 1, "{link:?} {client}");
                let (got, want) = (&shape(&out)[0], &reference[0]);
                assert_eq!(
                    (&got.0, &got.1, got.2, got.3, got.4, &got.5),
                    (&want.0, &want.1, want.2, want.3, want.4, &want.5)
                );
                assert_eq!(
                    out[0].src_ip,
                    client.rsplit_once(':').unwrap().0.trim_matches(['[', ']']).parse::<IpAddr>().unwrap()
                );
                assert_eq!(p.counters().decode_errors, 0);
            }
        }
    }

    #[test]
    fn mid_stream_capture_decides_the_client_from_http() {
        let mut c = keep_alive(1460);
        // Drop the handshake; the capture starts with the first request.
        let packets = c.packets.split_off(3);
        let (out, _) = run(&packets);
        assert_eq!(shape(&out), shape(&run(&keep_alive(1460).packets).0));
        assert_eq!(out[0].src_port, 51234);
    }

    #[test]
    fn capture_starting_with_a_response_skips_it() {
        let c = keep_alive(1460);
        // Start right at the first response: its request was before the capture.
        let (out, p) = run(&c.packets[5..]);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].method.as_str(), out[0].status, out[0].src_port), ("POST", 201, 51234));
        assert_eq!(p.counters().parse_errors, 0);
    }

    #[test]
    fn idle_connections_expire_with_unanswered_requests() {
        let mut c = Conversation::new("10.0.0.1:40000", "10.0.0.2:80");
        c.handshake().client_sends(REQ1);
        let last = c.ts_us;
        let mut p = Pipeline::new(PipelineConfig { idle_timeout_us: 5_000_000, ..config() });
        let mut out = Vec::new();
        for packet in &c.packets {
            p.push(packet.ts_us, LinkType::Ethernet, &packet.frame, &mut out);
        }
        p.expire(last + 5_000_000, &mut out);
        assert!(out.is_empty(), "idle for exactly the timeout is not longer than it");
        assert_eq!(p.open_flows(), 1);
        p.expire(last + 5_000_001, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].status, out[0].latency_us, out[0].method.as_str()), (0, 0, "GET"));
        let n = p.counters();
        assert_eq!((n.flows_expired, n.unanswered, n.exchanges), (1, 1, 1));
        assert_eq!(p.open_flows(), 0);
        p.finish(&mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn finish_flushes_open_connections_in_order() {
        let mut packets = Vec::new();
        for port in [40003u16, 40001, 40002] {
            let mut c = Conversation::new(&format!("10.0.0.1:{port}"), "10.0.0.2:80");
            c.handshake().client_sends(REQ1);
            packets.extend(c.packets);
        }
        let (out, p) = run(&packets);
        let ports: Vec<u16> = out.iter().map(|r| r.src_port).collect();
        assert_eq!(ports, vec![40003, 40001, 40002], "first-seen order");
        assert_eq!(p.counters().unanswered, 3);
    }

    #[test]
    fn flow_table_full_evicts_the_least_recently_active() {
        let mut p = Pipeline::new(PipelineConfig { max_flows: 2, ..config() });
        let mut out = Vec::new();
        let mut conversations: Vec<Conversation> =
            (0..3).map(|i| Conversation::new(&format!("10.0.0.1:{}", 40000 + i), "10.0.0.2:80")).collect();
        for c in &mut conversations {
            c.handshake().client_sends(REQ1);
        }
        for c in &conversations[..2] {
            for packet in &c.packets {
                p.push(packet.ts_us, LinkType::Ethernet, &packet.frame, &mut out);
            }
        }
        assert_eq!(p.open_flows(), 2);
        for packet in &conversations[2].packets {
            p.push(packet.ts_us + 10, LinkType::Ethernet, &packet.frame, &mut out);
        }
        assert_eq!(p.counters().flows_evicted, 1);
        assert_eq!(p.open_flows(), 2);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].src_port, out[0].status), (40000, 0));
    }

    #[test]
    fn non_tcp_fragments_and_garbage_are_counted() {
        let mut p = Pipeline::new(config());
        let mut out = Vec::new();
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .udp(1, 2)
            .write(&mut udp, b"x")
            .unwrap();
        p.push(T0, LinkType::Ethernet, &udp, &mut out);
        let c = keep_alive(1460);
        let mut fragment = c.packets[3].frame.clone();
        fragment[14 + 4 + 6] |= 0x20; // more fragments (after Ethernet and the VLAN tag)
        p.push(T0, LinkType::Ethernet, &fragment, &mut out);
        p.push(T0, LinkType::Ethernet, &[0xff; 10], &mut out);
        p.push(T0, LinkType::RawIp, &[0x45, 0, 0], &mut out);
        let n = p.counters();
        assert_eq!((n.packets, n.non_tcp, n.ip_fragments, n.decode_errors, n.flows_opened), (4, 1, 1, 2, 0));
        assert_eq!(n.bytes, (udp.len() + fragment.len() + 13) as u64);
    }

    #[test]
    fn lost_segment_becomes_a_gap_and_later_exchanges_survive() {
        let mut c = Conversation::new("10.0.0.1:40000", "10.0.0.2:80");
        c.handshake().client_sends(REQ1);
        let lost_at = c.packets.len();
        c.server_sends(RESP1).client_sends(REQ1).server_sends(RESP1).close();
        let mut packets = c.packets.clone();
        packets.remove(lost_at); // the whole first response
        let (out, p) = run(&packets);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].status, out[1].status, out[1].resp_bytes), (0, 200, 12));
        assert_eq!(p.counters().gaps, 1);
        assert_eq!(p.counters().unanswered, 1);
    }

    #[test]
    fn acknowledged_loss_is_skipped_without_waiting_for_the_close() {
        let mut c = Conversation::new("10.0.0.1:40000", "10.0.0.2:80");
        c.handshake().client_sends(REQ1);
        let lost_at = c.packets.len();
        c.server_sends(RESP1).client_sends(REQ1).server_sends(RESP1);
        let mut packets = c.packets.clone();
        packets.remove(lost_at);
        let mut p = Pipeline::new(config());
        let mut out = Vec::new();
        for packet in &packets {
            p.push(packet.ts_us, LinkType::Ethernet, &packet.frame, &mut out);
        }
        assert!(out.is_empty(), "the second response waits behind the hole");
        p.expire(c.ts_us + crate::reassemble::ACKED_HOLE_GRACE_US, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].status, out[1].status), (0, 200));
        assert_eq!(p.open_flows(), 1, "the connection itself is still open");
    }

    #[test]
    fn port_reuse_and_late_retransmissions() {
        let mut first = Conversation::new("10.0.0.1:40000", "10.0.0.2:80");
        first.handshake().client_sends(REQ1).server_sends(RESP1).close();
        let mut packets = first.packets.clone();
        // Late duplicates of the old connection's SYN and request: no new flow.
        packets.push(Packet { ts_us: first.ts_us + 1, frame: first.packets[0].frame.clone() });
        packets.push(Packet { ts_us: first.ts_us + 2, frame: first.packets[3].frame.clone() });
        let mut second = Conversation::new("10.0.0.1:40000", "10.0.0.2:80");
        second.client_seq = 5;
        second.ts_us = first.ts_us + 10_000;
        second
            .handshake()
            .client_sends(REQ2)
            .server_sends(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
            .close();
        packets.extend(second.packets);
        let (out, p) = run(&packets);
        assert_eq!(out.iter().map(|r| r.status).collect::<Vec<_>>(), vec![200, 500]);
        assert_eq!(p.counters().flows_opened, 2);
        assert_eq!(p.counters().retransmitted_bytes, REQ1.len() as u64);

        // Each start is reported by the push that saw it, the reuse included.
        let mut p = Pipeline::new(config());
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for (i, packet) in packets.iter().enumerate() {
            p.push(packet.ts_us, LinkType::Ethernet, &packet.frame, &mut out);
            starts.extend(p.opened().iter().map(|k| (i, *k)));
        }
        let key = FlowKey { a: ("10.0.0.1".parse().unwrap(), 40000), b: ("10.0.0.2".parse().unwrap(), 80) };
        let second_syn = first.packets.len() + 2;
        assert_eq!(starts, vec![(0, key), (second_syn, key)]);
    }

    #[test]
    fn upgraded_connections_stop_being_tracked() {
        let mut c = Conversation::new("10.0.0.1:40000", "10.0.0.2:80");
        c.handshake()
            .client_sends(
                b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            )
            .server_sends(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
        let upgraded_at = c.packets.len();
        for _ in 0..5 {
            c.client_sends(b"\x81\x85\x01\x02\x03\x04frame").server_sends(b"\x81\x05hello");
        }
        c.close();
        let mut p = Pipeline::new(config());
        let mut out = Vec::new();
        for (i, packet) in c.packets.iter().enumerate() {
            p.push(packet.ts_us, LinkType::Ethernet, &packet.frame, &mut out);
            if i + 1 == upgraded_at {
                assert_eq!(p.open_flows(), 0, "nothing left to parse once upgraded");
            }
        }
        p.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].path.as_str(), out[0].status), ("/chat", 101));
        let n = p.counters();
        assert_eq!(
            (n.upgraded_connections, n.flows_opened, n.retransmitted_bytes, n.parse_errors),
            (1, 1, 0, 0)
        );
    }

    #[test]
    fn rst_closes_and_flushes() {
        let mut c = Conversation::new("10.0.0.1:40000", "10.0.0.2:80");
        c.handshake().client_sends(REQ1);
        c.emit(false, "R", b"");
        let mut p = Pipeline::new(config());
        let mut out = Vec::new();
        for packet in &c.packets {
            p.push(packet.ts_us, LinkType::Ethernet, &packet.frame, &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, 0);
        assert_eq!(p.open_flows(), 0);
    }

    #[test]
    fn snaplen_truncation_is_a_gap_inside_the_body() {
        let mut c = Conversation::new("10.0.0.1:40000", "10.0.0.2:80");
        c.handshake().client_sends(REQ1);
        let big_at = c.packets.len();
        let body = vec![b'z'; 1000];
        c.server_sends(&[b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", &body[..]].concat());
        c.client_sends(REQ1).server_sends(RESP1).close();
        let mut packets = c.packets.clone();
        packets[big_at].frame.truncate(200);
        let (out, p) = run(&packets);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].status, out[0].resp_bytes), (200, 1000));
        assert_eq!((out[1].status, out[1].resp_bytes), (200, 12));
        assert_eq!(p.counters().gaps, 1);
    }

    #[test]
    fn small_buffer_caps_degrade_to_gaps_not_stalls() {
        let c = keep_alive(40);
        let mut packets = c.packets.clone();
        // Hold back the client's second segment until the end: everything after it is out of order.
        let held = packets.remove(4);
        packets.push(held);
        let cfg = PipelineConfig { max_conn_buffer: 200, ..config() };
        let (out, p) = run_with(cfg, LinkType::Ethernet, &packets);
        assert!(p.counters().gaps >= 1);
        assert!(p.counters().out_of_order_segments >= 1);
        assert!(!out.is_empty());
    }

    /// `n` random keys give a permutation of `0..n`.
    fn permutation(keys: &[u32], n: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by_key(|&i| (keys.get(i).copied().unwrap_or(0), i));
        idx
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_frames_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..20)) {
            for link in ALL_LINKS {
                let mut p = Pipeline::new(config());
                let mut out = Vec::new();
                for (i, f) in frames.iter().enumerate() {
                    p.push(T0 + i as i64, link, f, &mut out);
                }
                p.expire(T0 + 100_000_000, &mut out);
                p.finish(&mut out);
                prop_assert_eq!(p.counters().packets, frames.len() as u64);
                prop_assert_eq!(p.buffered_bytes(), 0);
            }
        }

        #[test]
        fn damaged_conversations_never_panic(
            mss in 1usize..200,
            keys in proptest::collection::vec(any::<u32>(), 256),
            damage in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<u8>()), 0..30),
        ) {
            let c = keep_alive(mss);
            let mut packets: Vec<Packet> = permutation(&keys, c.packets.len()).into_iter().map(|i| c.packets[i].clone()).collect();
            for (which, at, xor) in damage {
                let n = packets.len();
                let f = &mut packets[which as usize % n].frame;
                match xor % 3 {
                    0 => f.truncate(at as usize % (f.len() + 1)),
                    1 => { let l = f.len(); if l > 0 { f[at as usize % l] ^= xor; } }
                    _ => { packets.remove(which as usize % n); }
                }
                if packets.is_empty() { break; }
            }
            let cfg = PipelineConfig { max_conn_buffer: 512, max_total_buffer: 4096, max_header_bytes: 256, ..config() };
            let (_out, p) = run_with(cfg, LinkType::Ethernet, &packets);
            prop_assert_eq!(p.open_flows(), 0);
        }

        #[test]
        fn any_split_of_the_bytes_gives_the_same_exchanges(mss in 1usize..400) {
            let reference = shape(&run(&keep_alive(1460).packets).0);
            let (out, p) = run(&keep_alive(mss).packets);
            prop_assert_eq!(shape(&out), reference);
            prop_assert_eq!(p.counters().parse_errors, 0);
        }

        #[test]
        fn permuted_and_duplicated_segments_give_the_same_records(
            mss in 8usize..400,
            keys in proptest::collection::vec(any::<u32>(), 256),
            dups in proptest::collection::vec((any::<u16>(), any::<u16>()), 0..12),
        ) {
            let c = keep_alive(mss);
            let (expected, _) = run(&c.packets);
            prop_assert_eq!(expected.len(), 2);
            // The handshake (SYN, SYN-ACK) first, as a capture would show it; everything after it
            // in any order, with any packet (the SYN included) duplicated anywhere after that.
            let (handshake, rest) = c.packets.split_at(2);
            let mut packets = handshake.to_vec();
            packets.extend(permutation(&keys, rest.len()).into_iter().map(|i| rest[i].clone()));
            for (which, at) in dups {
                let copy = c.packets[which as usize % c.packets.len()].clone();
                let at = 2 + at as usize % (packets.len() - 1);
                packets.insert(at, copy);
            }
            let (got, p) = run(&packets);
            prop_assert_eq!(got, expected);
            prop_assert_eq!(p.counters().gaps, 0);
            prop_assert_eq!(p.counters().parse_errors, 0);
        }
    }
}
