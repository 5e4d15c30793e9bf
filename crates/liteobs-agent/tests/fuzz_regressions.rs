//! Inputs the cargo-fuzz targets (integration/fuzz) found failing, minimized, as plain tests
//! of the public API: each names the target and the property it broke.

use liteobs_agent::http::{Exchange, HttpConn, HttpContext, HttpStats};
use liteobs_agent::reassemble::{Dir, Event, MemoryBudget};

/// The exchanges of one connection whose client stream arrives in `pieces`, nothing else
/// (the client not known from a handshake), then the end.
fn exchanges_of(pieces: &[&[u8]]) -> Vec<Exchange> {
    let budget = MemoryBudget::new(1 << 24);
    let mut stats = HttpStats::default();
    let mut out = Vec::new();
    let mut conn = HttpConn::new();
    let mut on = |ev: Event<'_>| {
        let mut cx = HttpContext {
            max_header_bytes: 64 << 10,
            max_conn_buffer: 1 << 20,
            budget: &budget,
            stats: &mut stats,
            out: &mut out,
        };
        conn.on_event(ev, &mut cx);
    };
    let mut seq = 0u32;
    for bytes in pieces {
        on(Event::Data { dir: Dir::AtoB, ts_us: 0, seq, bytes });
        seq = seq.wrapping_add(bytes.len() as u32);
    }
    on(Event::End { dir: Dir::AtoB });
    on(Event::End { dir: Dir::BtoA });
    on(Event::Closed);
    assert_eq!(budget.used(), 0, "budget kept after the close");
    out
}

/// http_stream, "same streams, other segmentation, other exchanges" (minimized from a fuzz
/// input of 73 bytes). When found, a head with control bytes in a header value was dropped one
/// byte at a time when it came in one segment (the parser resynchronised on the `GET /b` inside
/// the value) but whole, with `/b`, when it came in two. The lenient head parser now keeps such
/// a value, so the head is `GET /a` with that Host however it is split; this pins that.
#[test]
fn a_head_with_control_bytes_in_a_value_is_the_same_whole_or_split() {
    let stream: &[u8] = b"GET /a HTTP/1.1\r\nHost: \x01\x00GET /b HTTP/1.1\r\nX: y\r\n\r\n";
    let whole = exchanges_of(&[stream]);
    assert_eq!(whole.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["/a"], "{whole:?}");
    for split in 1..stream.len() {
        let (a, b) = stream.split_at(split);
        assert_eq!(exchanges_of(&[a, b]), whole, "split at {split}");
    }
}
