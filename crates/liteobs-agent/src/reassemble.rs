//! Reassemble: TCP segments of one connection → two ordered byte streams.
//!
//! A [`Reassembler`] is a plain state machine for one TCP connection. It takes decoded segments
//! (in capture order, which is not sequence order) and hands the HTTP stage [`Event`]s through a
//! callback: in-order [`Event::Data`] (borrowed from the segment when it arrived in order, from
//! the out-of-order store otherwise), [`Event::Gap`] when bytes are known to be lost,
//! [`Event::End`] when a direction's FIN is reached and [`Event::Closed`] when the connection is
//! over. It never does I/O and never allocates for a segment that arrives in order.
//!
//! Sequence numbers are turned into 64-bit stream offsets relative to the next expected byte
//! (wrapping 32-bit arithmetic), so wraparound needs no special cases. A direction starts at its
//! SYN (ISN + 1) or, for connections first seen mid-stream, at the first segment that carries
//! data or a FIN.
//!
//! Holes (bytes not captured) are waited for, because capture order is not sequence order. A
//! hole is given up on, and reported as a [`Event::Gap`] of its exact length, when:
//! * holding the data behind it would exceed the per-direction cap or the shared
//!   [`MemoryBudget`];
//! * the peer has acknowledged bytes past it for at least [`ACKED_HOLE_GRACE_US`] of capture
//!   time (the receiver has them, so the capture dropped them and no retransmission will come);
//! * the connection ends (RST, idle expiry, end of input).
//!
//! A FIN behind a hole waits for the hole like data does.

use std::cell::Cell;
use std::collections::BTreeMap;

use crate::decode::TcpSegment;

/// How long (capture time) a hole the peer has already acknowledged is waited for before it is
/// declared lost. Covers timestamp reordering between capture queues, which is far shorter.
pub const ACKED_HOLE_GRACE_US: i64 = 200_000;

/// Bookkeeping cost charged per held out-of-order segment on top of its payload bytes, so that
/// a flood of tiny segments is bounded too.
const HELD_OVERHEAD: usize = 64;

/// A direction of a connection whose endpoints are called A and B (the pipeline's flow key
/// decides which is which; the reassembler does not care).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    AtoB = 0,
    BtoA = 1,
}

impl Dir {
    pub fn reverse(self) -> Dir {
        match self {
            Dir::AtoB => Dir::BtoA,
            Dir::BtoA => Dir::AtoB,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the reassembler tells the next stage, in stream order per direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// The next bytes of `dir`'s stream. `ts_us` is the capture time of the segment they came in;
    /// `seq` the TCP sequence number of `bytes[0]` as on the wire (mod 2^32): NAT does not
    /// rewrite it, so every capture of these bytes names them alike.
    Data { dir: Dir, ts_us: i64, seq: u32, bytes: &'a [u8] },
    /// The next `len` bytes of `dir`'s stream were on the wire but will never be seen.
    Gap { dir: Dir, len: u64 },
    /// `dir` will send nothing more (its FIN was reached, or the connection is being flushed).
    End { dir: Dir },
    /// The connection is over; nothing follows.
    Closed,
}

/// Bytes held for out-of-order data (and unparsed HTTP heads) across all connections, against a
/// limit. Shared by reference; interior mutability lets the reassembler and the HTTP stage,
/// which run nested, both charge it.
#[derive(Debug)]
pub struct MemoryBudget {
    used: Cell<usize>,
    limit: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget { used: Cell::new(0), limit }
    }

    /// Bytes currently charged.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// Charges `n` bytes if they fit under the limit.
    pub fn try_take(&self, n: usize) -> bool {
        let used = self.used.get();
        match used.checked_add(n) {
            Some(total) if total <= self.limit => {
                self.used.set(total);
                true
            }
            _ => false,
        }
    }

    /// Returns `n` previously charged bytes.
    pub fn give_back(&self, n: usize) {
        self.used.set(self.used.get().saturating_sub(n));
    }
}

/// Counters kept by the reassembly stage (summed over connections by the pipeline).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Segments that arrived ahead of a hole.
    pub out_of_order_segments: u64,
    /// Payload bytes received again after they had been delivered or held (duplicates and
    /// overlaps), and trimmed.
    pub retransmitted_bytes: u64,
    /// Gap events delivered.
    pub gaps: u64,
}

/// What a reassembler call may use besides the segment: the per-direction cap, the shared
/// budget and the counters.
pub struct Context<'c> {
    /// Bytes (payload plus a small per-segment overhead) one direction may hold out of order.
    pub max_conn_buffer: usize,
    pub budget: &'c MemoryBudget,
    pub stats: &'c mut ReassemblyStats,
}

/// The reassembly state of one TCP connection, both directions.
#[derive(Debug, Default)]
pub struct Reassembler {
    halves: [Half; 2],
    client: Option<Dir>,
    closed: bool,
}

/// An out-of-order segment waiting for the hole before it.
#[derive(Debug)]
struct Held {
    ts_us: i64,
    data: Vec<u8>,
    /// Snap-length-truncated bytes following `data`.
    missing: u64,
}

impl Held {
    fn len(&self) -> i64 {
        self.data.len() as i64 + self.missing as i64
    }

    fn cost(&self) -> usize {
        self.data.len() + HELD_OVERHEAD
    }
}

/// One direction's stream.
#[derive(Debug, Default)]
struct Half {
    started: bool,
    /// Initial sequence number, when the SYN was seen.
    isn: Option<u32>,
    /// Sequence number of the byte at `next_off`.
    next_seq: u32,
    /// Stream offset of the next byte to deliver (0 = first byte after the SYN, or the first
    /// byte seen for mid-stream connections). The FIN counts as one offset, like in TCP.
    next_off: i64,
    /// Highest offset any segment of this direction reached.
    high_off: i64,
    fin_off: Option<i64>,
    ended: bool,
    held: BTreeMap<i64, Held>,
    held_cost: usize,
    /// Highest offset the peer acknowledged.
    peer_ack: Option<i64>,
    /// Since when (capture time) the peer has acknowledged bytes past `next_off`, and what
    /// `next_off` was then: progress restarts the wait.
    acked_ahead_since: Option<(i64, i64)>,
}

impl Reassembler {
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    /// The direction the client sends in, when a SYN or SYN-ACK told us (the HTTP stage decides
    /// otherwise).
    pub fn client(&self) -> Option<Dir> {
        self.client
    }

    /// The client's direction implied by a SYN (the sender) or SYN-ACK (the receiver), if
    /// `seg` is one.
    pub fn client_from_syn(dir: Dir, seg: &TcpSegment<'_>) -> Option<Dir> {
        match (seg.flags.syn && !seg.flags.rst, seg.flags.ack) {
            (true, false) => Some(dir),
            (true, true) => Some(dir.reverse()),
            _ => None,
        }
    }

    /// The client's direction and initial sequence number, when its SYN was seen.
    pub fn client_isn(&self) -> Option<(Dir, u32)> {
        let client = self.client?;
        Some((client, self.halves[client.index()].isn?))
    }

    /// Whether a direction has a hole the peer already acknowledged (see [`Reassembler::poll`]).
    pub fn has_acked_hole(&self) -> bool {
        !self.closed && self.halves.iter().any(|h| h.acked_hole_end().is_some())
    }

    /// True once [`Event::Closed`] has been emitted.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether this segment would open a new connection on the same 4-tuple: a SYN (without
    /// ACK) whose ISN differs from the one this connection started with.
    pub fn is_new_connection(&self, dir: Dir, seg: &TcpSegment<'_>) -> bool {
        if !seg.flags.syn || seg.flags.ack || seg.flags.rst {
            return false;
        }
        let half = &self.halves[dir.index()];
        half.started && half.offset_of(seg.seq.wrapping_add(1)) != 0
    }

    /// Bytes held out of order, both directions (payload plus per-segment overhead).
    pub fn held_bytes(&self) -> usize {
        self.halves.iter().map(|h| h.held_cost).sum()
    }

    /// Takes one segment travelling in `dir`, captured at `ts_us`.
    pub fn segment(
        &mut self,
        dir: Dir,
        ts_us: i64,
        seg: &TcpSegment<'_>,
        cx: &mut Context<'_>,
        emit: &mut impl FnMut(Event<'_>),
    ) {
        if self.closed {
            return;
        }
        if seg.flags.rst {
            self.flush(cx, emit);
            return;
        }
        if self.client.is_none() {
            self.client = Reassembler::client_from_syn(dir, seg);
        }
        let len = seg.payload.len() as i64 + i64::from(seg.missing);
        let half = &mut self.halves[dir.index()];
        if !half.started {
            if seg.flags.syn {
                half.start(seg.seq.wrapping_add(1));
                half.isn = Some(seg.seq);
            } else if len > 0 || seg.flags.fin {
                half.start(seg.seq);
            }
        }
        if half.started && !half.ended {
            let data_seq = seg.seq.wrapping_add(u32::from(seg.flags.syn));
            let off = half.offset_of(data_seq);
            half.high_off = half.high_off.max(off + len + i64::from(seg.flags.fin));
            if seg.flags.fin && half.fin_off.is_none() && off + len >= half.next_off {
                half.fin_off = Some(off + len);
            }
            if len > 0 {
                half.accept(dir, ts_us, off, seg.payload, seg.missing.into(), cx, emit);
            }
            half.try_finish(dir, cx, emit);
        } else if half.ended {
            cx.stats.retransmitted_bytes += len as u64;
        }
        if seg.flags.ack {
            let peer = &mut self.halves[dir.reverse().index()];
            if peer.started {
                let acked = peer.offset_of(seg.ack);
                peer.peer_ack = Some(peer.peer_ack.map_or(acked, |a| a.max(acked)));
            }
        }
        self.poll(ts_us, cx, emit);
    }

    /// Gives up holes the peer acknowledged more than [`ACKED_HOLE_GRACE_US`] before `now_us`.
    /// Called after every segment; the pipeline also calls it on its expiry ticks, so a stalled
    /// connection that goes quiet still makes progress.
    pub fn poll(&mut self, now_us: i64, cx: &mut Context<'_>, emit: &mut impl FnMut(Event<'_>)) {
        if self.closed {
            return;
        }
        for dir in [Dir::AtoB, Dir::BtoA] {
            let half = &mut self.halves[dir.index()];
            let Some(target) = half.acked_hole_end() else {
                half.acked_ahead_since = None;
                continue;
            };
            match half.acked_ahead_since {
                Some((since, at)) if at == half.next_off => {
                    if now_us.saturating_sub(since) >= ACKED_HOLE_GRACE_US {
                        half.skip_holes_until(dir, target, cx, emit);
                        half.acked_ahead_since = None;
                    }
                }
                _ => half.acked_ahead_since = Some((now_us, half.next_off)),
            }
        }
        self.close_if_done(emit);
    }

    /// Ends the connection: every hole is given up, held data delivered, [`Event::End`] sent
    /// for each direction still open, then [`Event::Closed`]. Used for RST, idle expiry,
    /// eviction and end of input.
    pub fn flush(&mut self, cx: &mut Context<'_>, emit: &mut impl FnMut(Event<'_>)) {
        if self.closed {
            return;
        }
        for dir in [Dir::AtoB, Dir::BtoA] {
            let half = &mut self.halves[dir.index()];
            if half.started && !half.ended {
                let target = half.high_off;
                half.skip_holes_until(dir, target, cx, emit);
                if !half.ended {
                    half.ended = true;
                    emit(Event::End { dir });
                }
            }
            half.drop_held(cx);
        }
        self.closed = true;
        emit(Event::Closed);
    }

    fn close_if_done(&mut self, emit: &mut impl FnMut(Event<'_>)) {
        if !self.closed && self.halves.iter().all(|h| h.ended) {
            self.closed = true;
            emit(Event::Closed);
        }
    }
}

impl Half {
    fn start(&mut self, seq: u32) {
        self.started = true;
        self.next_seq = seq;
    }

    /// Stream offset of sequence number `seq`, taking the nearest interpretation modulo 2^32.
    fn offset_of(&self, seq: u32) -> i64 {
        self.next_off + i64::from(seq.wrapping_sub(self.next_seq) as i32)
    }

    fn advance(&mut self, n: i64) {
        self.next_off += n;
        self.next_seq = self.next_seq.wrapping_add(n as u32);
    }

    /// End of the hole the peer has acknowledged past, if there is one. Acknowledgements are
    /// only trusted up to bytes this direction was seen to send.
    fn acked_hole_end(&self) -> Option<i64> {
        let acked = self.peer_ack?.min(self.high_off);
        (!self.ended && acked > self.next_off).then_some(acked)
    }

    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        dir: Dir,
        ts_us: i64,
        off: i64,
        payload: &[u8],
        missing: u64,
        cx: &mut Context<'_>,
        emit: &mut impl FnMut(Event<'_>),
    ) {
        let len = payload.len() as i64 + missing as i64;
        if off + len <= self.next_off {
            cx.stats.retransmitted_bytes += len as u64;
            return;
        }
        if off <= self.next_off {
            self.deliver(dir, ts_us, off, payload, missing, cx, emit);
            self.release_held(dir, cx, emit);
            return;
        }
        cx.stats.out_of_order_segments += 1;
        let cost = payload.len() + HELD_OVERHEAD;
        let fits = self.held_cost + cost <= cx.max_conn_buffer && cx.budget.try_take(cost);
        if !fits {
            tracing::trace!(?dir, hole = off - self.next_off, "out-of-order buffer full");
            self.skip_holes_until(dir, off, cx, emit);
            if !self.ended && off + len > self.next_off {
                self.deliver(dir, ts_us, off, payload, missing, cx, emit);
                self.release_held(dir, cx, emit);
            }
            return;
        }
        self.held_cost += cost;
        let held = Held { ts_us, data: payload.to_vec(), missing };
        match self.held.get_mut(&off) {
            None => {
                self.held.insert(off, held);
            }
            Some(old) => {
                // Same start twice: keep the longer copy, count the other as retransmitted.
                let (keep_new, dup) =
                    if held.len() > old.len() { (true, old.len()) } else { (false, held.len()) };
                cx.stats.retransmitted_bytes += dup as u64;
                let freed = if keep_new { std::mem::replace(old, held).cost() } else { held.cost() };
                self.held_cost -= freed;
                cx.budget.give_back(freed);
            }
        }
    }

    /// Delivers a piece that starts at or before `next_off` and ends after it.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        dir: Dir,
        ts_us: i64,
        off: i64,
        payload: &[u8],
        missing: u64,
        cx: &mut Context<'_>,
        emit: &mut impl FnMut(Event<'_>),
    ) {
        let trim = (self.next_off - off).max(0) as u64;
        cx.stats.retransmitted_bytes += trim;
        if let Some(bytes) = payload.get(trim as usize..).filter(|b| !b.is_empty()) {
            emit(Event::Data { dir, ts_us, seq: self.next_seq, bytes });
            self.advance(bytes.len() as i64);
        }
        let lost = missing.saturating_sub(trim.saturating_sub(payload.len() as u64));
        if lost > 0 {
            cx.stats.gaps += 1;
            emit(Event::Gap { dir, len: lost });
            self.advance(lost as i64);
        }
    }

    /// Delivers held segments that the stream has caught up with.
    fn release_held(&mut self, dir: Dir, cx: &mut Context<'_>, emit: &mut impl FnMut(Event<'_>)) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > self.next_off {
                break;
            }
            let (off, held) = entry.remove_entry();
            let cost = held.cost();
            self.held_cost -= cost;
            cx.budget.give_back(cost);
            if off + held.len() > self.next_off {
                self.deliver(dir, held.ts_us, off, &held.data, held.missing, cx, emit);
            } else {
                cx.stats.retransmitted_bytes += held.len() as u64;
            }
        }
    }

    /// Consumes the FIN once everything before it was delivered.
    fn try_finish(&mut self, dir: Dir, cx: &mut Context<'_>, emit: &mut impl FnMut(Event<'_>)) {
        if let Some(fin) = self.fin_off
            && !self.ended
            && self.next_off >= fin
        {
            self.ended = true;
            self.advance(1);
            self.drop_held(cx);
            emit(Event::End { dir });
        }
    }

    /// Declares every hole before `target` lost, delivering held data in between.
    fn skip_holes_until(
        &mut self,
        dir: Dir,
        target: i64,
        cx: &mut Context<'_>,
        emit: &mut impl FnMut(Event<'_>),
    ) {
        loop {
            self.release_held(dir, cx, emit);
            self.try_finish(dir, cx, emit);
            if self.ended || self.next_off >= target {
                return;
            }
            let mut hole_end = target;
            if let Some((&next_held, _)) = self.held.first_key_value() {
                hole_end = hole_end.min(next_held);
            }
            if let Some(fin) = self.fin_off {
                hole_end = hole_end.min(fin);
            }
            let len = hole_end - self.next_off;
            if len <= 0 {
                return;
            }
            cx.stats.gaps += 1;
            emit(Event::Gap { dir, len: len as u64 });
            self.advance(len);
        }
    }

    fn drop_held(&mut self, cx: &mut Context<'_>) {
        for held in std::mem::take(&mut self.held).into_values() {
            cx.stats.retransmitted_bytes += held.len() as u64;
        }
        cx.budget.give_back(self.held_cost);
        self.held_cost = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags;
    use std::net::{IpAddr, Ipv4Addr};

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Data(Dir, i64, Vec<u8>),
        Gap(Dir, u64),
        End(Dir),
        Closed,
    }

    struct Rig {
        r: Reassembler,
        budget: MemoryBudget,
        stats: ReassemblyStats,
        max_conn_buffer: usize,
        events: Vec<Ev>,
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn seg<'a>(seq: u32, flags: &str, payload: &'a [u8]) -> TcpSegment<'a> {
        TcpSegment {
            src_ip: IP,
            src_port: 1,
            dst_ip: IP,
            dst_port: 2,
            seq,
            ack: 0,
            flags: TcpFlags {
                syn: flags.contains('S'),
                fin: flags.contains('F'),
                rst: flags.contains('R'),
                ack: flags.contains('A'),
            },
            payload,
            missing: 0,
        }
    }

    impl Rig {
        fn new() -> Rig {
            Rig::with_caps(1 << 20, 1 << 30)
        }

        fn with_caps(max_conn_buffer: usize, total: usize) -> Rig {
            Rig {
                r: Reassembler::new(),
                budget: MemoryBudget::new(total),
                stats: ReassemblyStats::default(),
                max_conn_buffer,
                events: Vec::new(),
            }
        }

        fn push(&mut self, dir: Dir, ts: i64, s: &TcpSegment<'_>) {
            let mut cx = Context {
                max_conn_buffer: self.max_conn_buffer,
                budget: &self.budget,
                stats: &mut self.stats,
            };
            let events = &mut self.events;
            self.r.segment(dir, ts, s, &mut cx, &mut |e| events.push(own(e)));
        }

        fn data(&mut self, dir: Dir, seq: u32, payload: &[u8]) {
            self.push(dir, 0, &seg(seq, "A", payload));
        }

        fn flush(&mut self) {
            let mut cx = Context {
                max_conn_buffer: self.max_conn_buffer,
                budget: &self.budget,
                stats: &mut self.stats,
            };
            let events = &mut self.events;
            self.r.flush(&mut cx, &mut |e| events.push(own(e)));
        }

        /// The stream of `dir` as delivered, with gaps shown as `#` bytes.
        fn stream(&self, dir: Dir) -> Vec<u8> {
            let mut out = Vec::new();
            for e in &self.events {
                match e {
                    Ev::Data(d, _, b) if *d == dir => out.extend_from_slice(b),
                    Ev::Gap(d, n) if *d == dir => out.extend(std::iter::repeat_n(b'#', *n as usize)),
                    _ => {}
                }
            }
            out
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                self.flush();
                assert_eq!(self.budget.used(), 0, "budget leaked");
            }
        }
    }

    fn own(e: Event<'_>) -> Ev {
        match e {
            Event::Data { dir, ts_us, bytes, .. } => Ev::Data(dir, ts_us, bytes.to_vec()),
            Event::Gap { dir, len } => Ev::Gap(dir, len),
            Event::End { dir } => Ev::End(dir),
            Event::Closed => Ev::Closed,
        }
    }

    use Dir::{AtoB, BtoA};

    #[test]
    fn in_order_after_handshake_and_client_from_syn() {
        let mut t = Rig::new();
        t.push(BtoA, 1, &seg(100, "S", b""));
        assert_eq!(t.r.client(), Some(BtoA));
        t.push(AtoB, 2, &seg(500, "SA", b""));
        t.push(BtoA, 3, &seg(101, "A", b"hello "));
        t.push(BtoA, 4, &seg(107, "A", b"world"));
        t.push(AtoB, 5, &seg(501, "A", b"ok"));
        assert_eq!(
            t.events,
            vec![
                Ev::Data(BtoA, 3, b"hello ".to_vec()),
                Ev::Data(BtoA, 4, b"world".to_vec()),
                Ev::Data(AtoB, 5, b"ok".to_vec()),
            ]
        );
        assert_eq!(t.stats, ReassemblyStats::default());
    }

    /// The wire sequence number of each delivered piece's first byte, as `(dir, seq, bytes)`.
    fn delivered_seqs(t: &mut Rig, dir: Dir, ts: i64, s: &TcpSegment<'_>) -> Vec<(Dir, u32, Vec<u8>)> {
        let mut cx = Context { max_conn_buffer: t.max_conn_buffer, budget: &t.budget, stats: &mut t.stats };
        let mut got = Vec::new();
        t.r.segment(dir, ts, s, &mut cx, &mut |e| {
            if let Event::Data { dir, seq, bytes, .. } = e {
                got.push((dir, seq, bytes.to_vec()));
            }
        });
        got
    }

    #[test]
    fn data_carries_the_wire_sequence_number_of_its_first_byte() {
        let mut t = Rig::new();
        let isn = u32::MAX - 2;
        delivered_seqs(&mut t, AtoB, 0, &seg(isn, "S", b""));
        // Ahead of a hole, then the hole filled: the held piece keeps its own number, and a
        // retransmission overlapping delivered bytes is numbered from its first new byte.
        assert!(delivered_seqs(&mut t, AtoB, 1, &seg(1, "A", b"def")).is_empty());
        assert_eq!(
            delivered_seqs(&mut t, AtoB, 2, &seg(u32::MAX - 1, "A", b"abc")),
            vec![(AtoB, u32::MAX - 1, b"abc".to_vec()), (AtoB, 1, b"def".to_vec())]
        );
        assert_eq!(delivered_seqs(&mut t, AtoB, 3, &seg(3, "A", b"efgh")), vec![(AtoB, 4, b"fgh".to_vec())]);
        // Joined mid-way: the first number seen is the base.
        assert_eq!(delivered_seqs(&mut t, BtoA, 4, &seg(777, "A", b"xy")), vec![(BtoA, 777, b"xy".to_vec())]);
    }

    #[test]
    fn syn_ack_alone_names_the_client() {
        let mut t = Rig::new();
        t.push(AtoB, 1, &seg(7, "SA", b""));
        assert_eq!(t.r.client(), Some(BtoA));
    }

    #[test]
    fn out_of_order_is_held_then_released_with_its_own_timestamp() {
        let mut t = Rig::new();
        t.push(AtoB, 1, &seg(0, "S", b""));
        t.push(AtoB, 30, &seg(7, "A", b"ccc"));
        t.push(AtoB, 20, &seg(4, "A", b"bbb"));
        assert!(t.events.is_empty());
        assert!(t.r.held_bytes() > 0);
        t.push(AtoB, 10, &seg(1, "A", b"aaa"));
        assert_eq!(
            t.events,
            vec![
                Ev::Data(AtoB, 10, b"aaa".to_vec()),
                Ev::Data(AtoB, 20, b"bbb".to_vec()),
                Ev::Data(AtoB, 30, b"ccc".to_vec()),
            ]
        );
        assert_eq!(t.stats.out_of_order_segments, 2);
        assert_eq!(t.r.held_bytes(), 0);
        assert_eq!(t.budget.used(), 0);
    }

    #[test]
    fn retransmissions_and_overlaps_are_trimmed() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(0, "S", b""));
        t.data(AtoB, 1, b"0123456789");
        t.data(AtoB, 1, b"0123456789"); // exact duplicate
        t.data(AtoB, 6, b"56789ABCDE"); // overlaps 5 delivered bytes
        t.data(AtoB, 22, b"LMN"); // ahead
        t.data(AtoB, 22, b"LM"); // shorter duplicate of a held segment
        t.data(AtoB, 13, b"CDEFGHIJKL"); // overlaps delivered bytes and the held one
        assert_eq!(t.stream(AtoB), b"0123456789ABCDEFGHIJKLMN");
        assert_eq!(t.stats.retransmitted_bytes, 10 + 5 + 2 + 3 + 1);
        assert_eq!(t.stats.gaps, 0);
    }

    #[test]
    fn held_duplicate_keeps_the_longer_copy() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(0, "S", b""));
        t.data(AtoB, 5, b"ef");
        t.data(AtoB, 5, b"efgh");
        t.data(AtoB, 1, b"abcd");
        assert_eq!(t.stream(AtoB), b"abcdefgh");
        assert_eq!(t.stats.retransmitted_bytes, 2);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut t = Rig::new();
        let isn = u32::MAX - 4;
        t.push(AtoB, 0, &seg(isn, "S", b""));
        // isn+1 = MAX-3: 4 bytes up to MAX, then 0..
        t.data(AtoB, 2, b"ghij"); // seq 2..6 (ahead)
        t.data(AtoB, u32::MAX - 3, b"abcdef"); // MAX-3 ..= 1 (wraps)
        t.data(AtoB, u32::MAX - 1, b"cd"); // old
        assert_eq!(t.stream(AtoB), b"abcdefghij");
        assert_eq!(t.stats.retransmitted_bytes, 2);
        t.push(AtoB, 0, &seg(6, "FA", b""));
        assert_eq!(t.events.last(), Some(&Ev::End(AtoB)));
    }

    #[test]
    fn mid_stream_connection_starts_at_first_data() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(5000, "A", b"")); // pure ACK does not start the stream
        t.data(BtoA, 9000, b"HTTP/1.1 200 OK\r\n");
        t.data(AtoB, 7000, b"GET");
        t.data(AtoB, 6990, b"0123456789GET"); // starts before the first seen byte
        assert_eq!(t.stream(AtoB), b"GET");
        assert_eq!(t.stream(BtoA), b"HTTP/1.1 200 OK\r\n");
        assert_eq!(t.r.client(), None);
    }

    #[test]
    fn fin_from_both_sides_closes_even_when_reordered() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(0, "S", b""));
        t.push(BtoA, 0, &seg(0, "SA", b""));
        t.push(AtoB, 0, &seg(4, "FA", b"")); // FIN before the data it follows
        assert!(t.events.is_empty());
        t.data(AtoB, 1, b"abc");
        assert_eq!(t.events, vec![Ev::Data(AtoB, 0, b"abc".to_vec()), Ev::End(AtoB)]);
        t.push(BtoA, 0, &seg(1, "FA", b"xy"));
        assert_eq!(&t.events[2..], &[Ev::Data(BtoA, 0, b"xy".to_vec()), Ev::End(BtoA), Ev::Closed]);
        assert!(t.r.is_closed());
        // Anything later is ignored.
        t.data(AtoB, 1, b"abc");
        assert_eq!(t.events.len(), 5);
    }

    #[test]
    fn rst_flushes_held_data_with_gaps_and_closes() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(0, "S", b""));
        t.data(AtoB, 1, b"ab");
        t.data(AtoB, 5, b"fg");
        t.push(BtoA, 0, &seg(77, "R", b""));
        assert_eq!(
            t.events,
            vec![
                Ev::Data(AtoB, 0, b"ab".to_vec()),
                Ev::Gap(AtoB, 2),
                Ev::Data(AtoB, 0, b"fg".to_vec()),
                Ev::End(AtoB),
                Ev::Closed
            ]
        );
        assert_eq!(t.stats.gaps, 1);
        assert_eq!(t.budget.used(), 0);
    }

    #[test]
    fn lost_segment_is_a_gap_at_close_and_the_rest_recovers() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(0, "S", b""));
        t.data(AtoB, 1, b"aaaa");
        // 5..9 lost
        t.data(AtoB, 9, b"cccc");
        t.push(AtoB, 0, &seg(13, "FA", b"dd"));
        assert_eq!(t.stream(AtoB), b"aaaa");
        t.flush();
        assert_eq!(t.stream(AtoB), b"aaaa####ccccdd");
        assert_eq!(&t.events[t.events.len() - 2..], &[Ev::End(AtoB), Ev::Closed]);
    }

    #[test]
    fn acknowledged_hole_is_given_up_after_the_grace_time() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(0, "S", b""));
        t.push(BtoA, 0, &seg(0, "SA", b""));
        t.push(AtoB, 10, &seg(1, "A", b"aaaa"));
        t.push(AtoB, 20, &seg(9, "A", b"cccc")); // 5..9 never captured
        let mut ack = seg(1, "A", b"");
        ack.ack = 13;
        t.push(BtoA, 30, &ack); // the server has everything up to 13
        t.push(BtoA, 30 + ACKED_HOLE_GRACE_US - 1, &ack);
        assert_eq!(t.stream(AtoB), b"aaaa");
        t.push(BtoA, 30 + ACKED_HOLE_GRACE_US, &ack);
        assert_eq!(t.stream(AtoB), b"aaaa####cccc");
        assert_eq!(t.stats.gaps, 1);
        // The stream goes on in order afterwards.
        t.data(AtoB, 13, b"dd");
        assert_eq!(t.stream(AtoB), b"aaaa####ccccdd");
    }

    #[test]
    fn progress_restarts_the_grace_time() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(0, "S", b""));
        t.push(BtoA, 0, &seg(0, "SA", b""));
        t.push(AtoB, 0, &seg(3, "A", b"cc")); // hole at 1..3
        t.push(AtoB, 0, &seg(7, "A", b"ee")); // hole at 5..7
        let mut ack = seg(1, "A", b"");
        ack.ack = 9;
        t.push(BtoA, 0, &ack);
        t.push(AtoB, ACKED_HOLE_GRACE_US - 10, &seg(1, "A", b"aa")); // first hole filled late
        assert_eq!(t.stream(AtoB), b"aacc");
        t.push(BtoA, ACKED_HOLE_GRACE_US, &ack);
        assert_eq!(t.stream(AtoB), b"aacc", "the second hole waits its own grace time");
        t.push(BtoA, 2 * ACKED_HOLE_GRACE_US, &ack);
        assert_eq!(t.stream(AtoB), b"aacc##ee");
    }

    #[test]
    fn acknowledgement_beyond_anything_seen_is_not_trusted() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(0, "S", b""));
        t.push(AtoB, 0, &seg(1, "A", b"aaaa"));
        let mut ack = seg(1, "A", b"");
        ack.ack = 1_000_000;
        t.push(BtoA, 0, &ack);
        t.push(BtoA, 10 * ACKED_HOLE_GRACE_US, &ack);
        assert_eq!(t.stream(AtoB), b"aaaa");
        assert_eq!(t.stats.gaps, 0);
    }

    #[test]
    fn per_direction_cap_gives_up_the_hole() {
        // Room for one held segment of 10 bytes, not two.
        let mut t = Rig::with_caps(10 + HELD_OVERHEAD, 1 << 20);
        t.push(AtoB, 0, &seg(0, "S", b""));
        t.data(AtoB, 11, b"BBBBBBBBBB");
        assert!(t.events.is_empty());
        t.data(AtoB, 21, b"CCCCCCCCCC");
        assert_eq!(t.stream(AtoB), b"##########BBBBBBBBBBCCCCCCCCCC");
        assert_eq!(t.stats.gaps, 1);
        // The late segment is now old news.
        t.data(AtoB, 1, b"AAAAAAAAAA");
        assert_eq!(t.stats.retransmitted_bytes, 10);
        assert_eq!(t.budget.used(), 0);
    }

    #[test]
    fn total_budget_is_shared() {
        let budget = MemoryBudget::new(100);
        assert!(budget.try_take(60));
        assert!(!budget.try_take(41));
        assert!(budget.try_take(40));
        budget.give_back(100);
        assert_eq!(budget.used(), 0);

        // A connection with a generous own cap but an exhausted global budget skips holes.
        let mut t = Rig::with_caps(1 << 20, 0);
        t.push(AtoB, 0, &seg(0, "S", b""));
        t.data(AtoB, 3, b"cd");
        assert_eq!(t.stream(AtoB), b"##cd");
    }

    #[test]
    fn truncated_segment_delivers_a_gap_for_the_cut_bytes() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(0, "S", b""));
        let mut s = seg(1, "A", b"abc");
        s.missing = 5;
        t.push(AtoB, 0, &s);
        t.data(AtoB, 9, b"z");
        assert_eq!(t.stream(AtoB), b"abc#####z");
        // Out of order with a cut tail: the gap is delivered when released.
        let mut s = seg(12, "A", b"x");
        s.missing = 2;
        t.push(AtoB, 0, &s);
        t.data(AtoB, 10, b"yy");
        assert_eq!(t.stream(AtoB), b"abc#####zyyx##");
        // Retransmission of the whole thing is recognised as old, including the cut part.
        t.data(AtoB, 1, b"abcdefgh");
        assert_eq!(t.stream(AtoB), b"abc#####zyyx##");
    }

    #[test]
    fn syn_payload_and_retransmitted_syn() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(10, "S", b"early"));
        t.push(AtoB, 0, &seg(10, "S", b"early"));
        t.data(AtoB, 16, b"!");
        assert_eq!(t.stream(AtoB), b"early!");
        assert!(!t.r.is_new_connection(AtoB, &seg(10, "S", b"")));
        assert!(t.r.is_new_connection(AtoB, &seg(99, "S", b"")));
        assert!(!t.r.is_new_connection(AtoB, &seg(99, "SA", b"")));
    }

    #[test]
    fn flush_ends_open_directions_once() {
        let mut t = Rig::new();
        t.push(AtoB, 0, &seg(0, "S", b""));
        t.push(AtoB, 0, &seg(1, "FA", b"x"));
        t.data(BtoA, 50, b"y");
        t.flush();
        assert_eq!(
            t.events,
            vec![
                Ev::Data(AtoB, 0, b"x".to_vec()),
                Ev::End(AtoB),
                Ev::Data(BtoA, 0, b"y".to_vec()),
                Ev::End(BtoA),
                Ev::Closed
            ]
        );
        t.flush();
        assert_eq!(t.events.len(), 5);
    }

    proptest::proptest! {
        #[test]
        fn any_arrival_order_gives_the_same_stream(
            cuts in proptest::collection::vec(0usize..200, 0..12),
            order in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..40),
            isn in proptest::prelude::any::<u32>(),
        ) {
            let data: Vec<u8> = (0..200u32).map(|i| (i * 7 % 251) as u8).collect();
            let mut cuts = cuts;
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort();
            cuts.dedup();
            let pieces: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
            // Arrival sequence: every piece once, then duplicates chosen by `order`.
            let mut arrivals: Vec<(usize, usize)> = pieces.clone();
            for (i, o) in order.iter().enumerate() {
                let n = arrivals.len();
                arrivals.swap(i % n, *o as usize % n);
                if o % 3 == 0 {
                    arrivals.push(pieces[*o as usize % pieces.len()]);
                }
            }
            let mut t = Rig::new();
            t.push(AtoB, 0, &seg(isn, "S", b""));
            for (a, b) in arrivals {
                t.data(AtoB, isn.wrapping_add(1 + a as u32), &data[a..b]);
            }
            proptest::prop_assert_eq!(t.stream(AtoB), data);
            proptest::prop_assert_eq!(t.stats.gaps, 0);
        }
    }
}
