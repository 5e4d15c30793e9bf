//! The TCP reassembler: segments of one connection with chosen sequence numbers, flags,
//! order, duplicates, overlaps, snap-length cuts and timestamps.
//!
//! Input: limits and both directions' initial sequence numbers, then one 12-byte descriptor
//! per segment (direction, flags, where in the direction's stream it starts, its length, how
//! much of it the capture cut, time step, acknowledgment), then the bytes both streams are
//! cut from.
//!
//! Properties: every byte delivered is the byte that was sent at that place of the stream
//! (segments are cut from one true stream per direction, so overlaps agree); nothing follows a
//! direction's `End` and nothing follows `Closed`, which comes once; held bytes stay within
//! the per-direction cap and the shared budget, and the budget is all returned at the end.
//! The events also drive an `HttpConn`, as in the pipeline.

#![no_main]

use libfuzzer_sys::fuzz_target;
use liteobs_agent::decode::{TcpFlags, TcpSegment};
use liteobs_agent::http::{Exchange, HttpConn, HttpContext, HttpStats};
use liteobs_agent::reassemble::{Context, Dir, Event, MemoryBudget, Reassembler, ReassemblyStats};
use liteobs_fuzz::Bytes;

const DESCRIPTOR: usize = 12;
const IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// What the harness knows of one direction, to check the events against.
#[derive(Default)]
struct Truth {
    isn: u32,
    /// Stream position (wrapping; 0 = the byte after an SYN sent with `isn`) of the next byte
    /// the reassembler delivers, once the direction has started.
    next: Option<u32>,
    ended: bool,
}

/// Checks each event against the true streams, then hands it to the HTTP stage.
struct Checker<'a> {
    stream: &'a [u8],
    truth: [Truth; 2],
    closed: bool,
    http: HttpConn,
    http_stats: HttpStats,
    out: Vec<Exchange>,
    max_conn_buffer: usize,
}

impl Checker<'_> {
    fn on(&mut self, ev: Event<'_>, budget: &MemoryBudget) {
        assert!(!self.closed, "event after Closed: {ev:?}");
        match &ev {
            Event::Data { dir, bytes, .. } => {
                let t = &mut self.truth[dir.index()];
                assert!(!t.ended, "data after End");
                let next = t.next.expect("data before the direction started");
                for (i, b) in bytes.iter().enumerate() {
                    let pos = next.wrapping_add(i as u32);
                    assert_eq!(*b, byte_at(self.stream, pos), "wrong byte at stream position {pos}");
                }
                t.next = Some(next.wrapping_add(bytes.len() as u32));
            }
            Event::Gap { dir, len } => {
                let t = &mut self.truth[dir.index()];
                assert!(!t.ended, "gap after End");
                t.next = t.next.map(|n| n.wrapping_add(*len as u32));
            }
            Event::End { dir } => {
                let t = &mut self.truth[dir.index()];
                assert!(!t.ended, "End twice");
                t.ended = true;
            }
            Event::Closed => self.closed = true,
        }
        let mut cx = HttpContext {
            max_header_bytes: 1024,
            max_conn_buffer: self.max_conn_buffer,
            budget,
            stats: &mut self.http_stats,
            out: &mut self.out,
        };
        self.http.on_event(ev, &mut cx);
    }
}

/// The byte sent at a position of a direction's stream: both directions are cut from the
/// same bytes, repeated.
fn byte_at(stream: &[u8], pos: u32) -> u8 {
    stream[pos as usize % stream.len()]
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let max_conn_buffer = usize::from(input.u16());
    let budget_limit = usize::from(input.u16()) * 4;
    let isn = [input.u32(), input.u32()];
    let count = usize::from(input.u8() % 64);
    let descriptors = input.take(count * DESCRIPTOR);
    let stream = input.rest();
    if stream.is_empty() {
        return;
    }

    let budget = MemoryBudget::new(budget_limit);
    let mut stats = ReassemblyStats::default();
    let mut r = Reassembler::new();
    let mut c = Checker {
        stream,
        truth: [Truth { isn: isn[0], ..Truth::default() }, Truth { isn: isn[1], ..Truth::default() }],
        closed: false,
        http: HttpConn::new(),
        http_stats: HttpStats::default(),
        out: Vec::new(),
        max_conn_buffer,
    };
    let mut ts = 0i64;

    for d in descriptors.chunks_exact(DESCRIPTOR) {
        let mut d = Bytes::new(d);
        let dir = if d.u8() & 1 == 0 { Dir::AtoB } else { Dir::BtoA };
        let f = d.u8();
        let flags =
            TcpFlags { syn: f & 1 != 0, fin: f & 2 != 0, rst: f & 4 != 0 && f & 8 != 0, ack: f & 16 != 0 };
        // Where the segment's data starts in the direction's stream; near 2^32 too, so that
        // sequence numbers and positions wrap.
        let pos = u32::from(d.u16()).wrapping_sub(u32::from(f >> 5) << 8);
        let len = usize::from(d.u16() % 2048);
        let missing = u32::from(d.u8() % 4).pow(3).min(len as u32);
        ts += i64::from(d.u16()) - 0x4000;
        let ack_delta = d.u32();
        let captured = len - missing as usize;
        let payload: Vec<u8> = (0..captured).map(|i| byte_at(stream, pos.wrapping_add(i as u32))).collect();
        let seg = TcpSegment {
            src_ip: IP,
            src_port: 1,
            dst_ip: IP,
            dst_port: 2,
            // A SYN takes one sequence number before the data.
            seq: c.truth[dir.index()]
                .isn
                .wrapping_add(1)
                .wrapping_add(pos)
                .wrapping_sub(u32::from(flags.syn)),
            ack: c.truth[dir.reverse().index()].isn.wrapping_add(ack_delta),
            flags,
            payload: &payload,
            missing,
        };
        // The reassembler starts a direction at its SYN or its first segment with data or FIN.
        let t = &mut c.truth[dir.index()];
        if t.next.is_none() && (flags.syn || len > 0 || flags.fin) && !flags.rst && !c.closed {
            t.next = Some(pos);
        }
        let mut cx = Context { max_conn_buffer, budget: &budget, stats: &mut stats };
        r.segment(dir, ts, &seg, &mut cx, &mut |ev| c.on(ev, &budget));
        assert!(r.held_bytes() <= 2 * max_conn_buffer, "held {} over the cap", r.held_bytes());
        assert!(budget.used() <= budget_limit, "budget exceeded");
    }
    let mut cx = Context { max_conn_buffer, budget: &budget, stats: &mut stats };
    r.flush(&mut cx, &mut |ev| c.on(ev, &budget));
    assert!(c.closed, "flush did not close");
    assert_eq!(budget.used(), 0, "budget kept after the connection closed");
});
