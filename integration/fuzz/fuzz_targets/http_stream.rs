//! The HTTP/1 stream parser, both directions, split anywhere.
//!
//! Input: a flags byte, a 4-byte split seed, the request stream's length (2 bytes), then the
//! request stream (A → B) and the response stream (B → A).
//!
//! Property: the exchanges do not depend on how the two streams are cut into segments, nor on
//! how the directions interleave (when the client is known from the handshake): the streams
//! delivered whole give the same exchanges as the same bytes in pieces of 1..=N. Then the same
//! streams again, with gaps and early ends, under small limits: no panic, the budget is never
//! exceeded and is all returned at the close.

#![no_main]

use libfuzzer_sys::fuzz_target;
use liteobs_agent::reassemble::{Dir, Event};
use liteobs_fuzz::{Bytes, Choices, HttpLimits, HttpRig, pieces};

/// Messages that took a path whose result may still depend on segmentation (see KNOWN below).
fn tolerated(s: &liteobs_agent::http::HttpStats) -> u64 {
    s.parse_errors + s.lenient_heads + s.http09_exchanges + s.not_http_messages + s.not_http_connections
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let flags = input.u8();
    let seed = input.u32();
    let req_len = input.u16() as usize;
    let streams = input.rest();
    let (req, resp) = streams.split_at(req_len.min(streams.len()));
    let client = (flags & 1 == 1).then_some(Dir::AtoB);
    let max_piece = [1, 2, 7, 64, 1500][usize::from(flags >> 1) % 5];

    let (whole, whole_errors) = {
        let mut rig = HttpRig::new(HttpLimits::UNREACHED, client);
        rig.data(Dir::AtoB, 0, req);
        rig.data(Dir::BtoA, 0, resp);
        rig.close();
        (rig.out, tolerated(&rig.stats))
    };

    let mut choices = Choices::new(seed);
    let mut a = pieces(req, max_piece, &mut choices).into_iter().peekable();
    let mut b = pieces(resp, max_piece, &mut choices).into_iter().peekable();
    let mut rig = HttpRig::new(HttpLimits::UNREACHED, client);
    loop {
        // Without a handshake the side that speaks first decides who the client is, so the
        // directions interleave only when it is known.
        let a_next = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(_), Some(_)) => client.is_none() || choices.coin(),
        };
        let (dir, piece) = if a_next { (Dir::AtoB, a.next()) } else { (Dir::BtoA, b.next()) };
        rig.data(dir, 0, piece.unwrap_or_default());
    }
    rig.close();
    // KNOWN (crates/liteobs-agent/tests/fuzz_regressions.rs, ignored until fixed): after a
    // malformed head, and on the tolerant paths (heads httparse refuses, HTTP/0.9, bytes that
    // are not HTTP), the parser's recovery still depends on where the segments were cut, so
    // such streams are not compared yet. Drop this condition with the fix.
    if whole_errors == 0 && tolerated(&rig.stats) == 0 {
        assert_eq!(whole, rig.out, "same streams, other segmentation, other exchanges");
    }

    // Damage: gaps, early ends, small limits, moving time. Only the invariants hold here.
    let limits = HttpLimits {
        max_header_bytes: 16 + choices.size(2048),
        max_conn_buffer: choices.size(8192) - 1,
        budget: choices.size(16384) - 1,
    };
    let mut rig = HttpRig::new(limits, client);
    let mut ts = 0i64;
    // The reassembler's contract: nothing follows a direction's End.
    let mut streams = [
        (Dir::AtoB, pieces(req, max_piece, &mut choices).into_iter(), false),
        (Dir::BtoA, pieces(resp, max_piece, &mut choices).into_iter(), false),
    ];
    while streams.iter().any(|(_, _, ended)| !ended) {
        let open: Vec<usize> = (0..2).filter(|&i| !streams[i].2).collect();
        let (dir, rest, ended) = &mut streams[open[choices.number() as usize % open.len()]];
        ts += i64::from(choices.number() % 3000) - 1000;
        match (choices.number() % 16, rest.next()) {
            (0, _) => rig.event(Event::Gap { dir: *dir, len: u64::from(choices.number() % 5000) }),
            (1, _) | (_, None) => {
                *ended = true;
                rig.event(Event::End { dir: *dir });
            }
            (_, Some(piece)) => rig.data(*dir, ts, piece),
        }
    }
    rig.close();
});
