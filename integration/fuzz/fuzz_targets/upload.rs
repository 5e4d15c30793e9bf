//! The server's upload decoding: gzip with the cap on the inflated size, then a JSON array or
//! NDJSON batch.
//!
//! Input: a mode byte (bit 0: gzip; bit 1: NDJSON; bits 2..: the inflated-size cap), then the
//! body.
//!
//! Properties: no panic; inflating never gives more than the cap; a batch that decodes
//! survives the trip the agent makes (its NDJSON encoder, byte for byte the same as serde_json)
//! and back: the same records, timestamps cut to the microsecond the JSON form carries.

#![no_main]

use chrono::SubsecRound;
use libfuzzer_sys::fuzz_target;
use liteobs_fuzz::Bytes;
use liteobs_model::{NdjsonEncoder, TrafficLog, decode_json_array, decode_ndjson};

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let mode = input.u8();
    let raw = input.rest();
    let inflated;
    let body = if mode & 1 == 1 {
        let limit = usize::from(mode >> 2) * 1024;
        inflated = match liteobs_server::api::inflate_gzip(raw, limit) {
            Ok(body) => body,
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        };
        assert!(inflated.len() <= limit, "inflated {} bytes past the cap of {limit}", inflated.len());
        &inflated[..]
    } else {
        raw
    };
    let decoded = if mode & 2 == 2 { decode_ndjson(body) } else { decode_json_array(body) };
    let records = match decoded {
        Ok(records) => records,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };

    let mut encoder = NdjsonEncoder::new();
    let mut ndjson = Vec::new();
    for r in &records {
        let start = ndjson.len();
        encoder.encode(r, &mut ndjson);
        let mut reference = serde_json::to_vec(r).expect("a record always serializes");
        reference.push(b'\n');
        assert_eq!(
            String::from_utf8_lossy(&ndjson[start..]),
            String::from_utf8_lossy(&reference),
            "the NDJSON encoder and serde_json disagree"
        );
    }
    let micros: Vec<TrafficLog> =
        records.iter().map(|r| TrafficLog { ts: r.ts.trunc_subsecs(6), ..r.clone() }).collect();
    assert_eq!(decode_ndjson(&ndjson).as_ref(), Ok(&micros), "NDJSON round trip");
    let array = serde_json::to_vec(&records).expect("records always serialize");
    assert_eq!(decode_json_array(&array).as_ref(), Ok(&micros), "JSON array round trip");
});
