//! A fast writer of the records' JSON form, one object per line (NDJSON).
//!
//! The agent writes every exchange it sees as JSON (to standard output on a replay, into the
//! gzip body of an upload otherwise), so this is on its hot path: with serde_json it was a
//! quarter of a replay's time, mostly in string escaping and in formatting each timestamp
//! through chrono. [`NdjsonEncoder`] writes the same bytes as `serde_json::to_writer` on a
//! [`TrafficLog`] (the tests hold it to that, byte for byte, on arbitrary records) while
//! copying strings that need no escaping in one go and formatting the date and time of day
//! only when the second changes.
//!
//! Field order and omission rules follow the `Serialize` derive of [`TrafficLog`] because the
//! writer walks [`columns::visit`], which is in the struct's order (its tests hold it to that).

use std::io::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::TrafficLog;
use crate::columns::{self, Value};

/// Writes records as NDJSON lines, remembering the last timestamp's second between records.
#[derive(Debug, Default)]
pub struct NdjsonEncoder {
    /// The second of the last timestamp written and its text up to the seconds
    /// (`2026-11-25T14:02:44`).
    second: Option<(i64, String)>,
}

impl NdjsonEncoder {
    pub fn new() -> NdjsonEncoder {
        NdjsonEncoder::default()
    }

    /// Appends `r` as one compact JSON object and a newline: every column of [`columns::COLUMNS`] in
    /// order (the struct's, so serde's), an unknown optional one left out as serde's
    /// `skip_serializing_if` does.
    pub fn encode(&mut self, r: &TrafficLog, out: &mut Vec<u8>) {
        let mut first = true;
        columns::visit(
            r,
            #[inline(always)]
            |key, value| {
                if value == Value::Null {
                    return;
                }
                if first {
                    out.push(b'{');
                    out.extend_from_slice(&key.as_bytes()[1..]);
                    first = false;
                } else {
                    out.extend_from_slice(key.as_bytes());
                }
                match value {
                    Value::Null => {}
                    Value::Time(ts) => {
                        out.push(b'"');
                        self.timestamp(&ts, out);
                        out.push(b'"');
                    }
                    Value::Ip(addr) => {
                        out.push(b'"');
                        ip(addr, out);
                        out.push(b'"');
                    }
                    Value::UInt(n) => int(n, out),
                    Value::Int(n) => int(n, out),
                    Value::Text(s) => string(s, out),
                }
            },
        );
        if first {
            out.push(b'{');
        }
        out.extend_from_slice(b"}\n");
    }

    /// [`crate::format_ts`]'s text: the part up to the seconds comes from chrono (once per
    /// second), the microseconds and the `Z` are appended here.
    fn timestamp(&mut self, ts: &DateTime<Utc>, out: &mut Vec<u8>) {
        let second = ts.timestamp();
        let prefix = match &self.second {
            Some((s, text)) if *s == second => text,
            _ => {
                let mut text = ts.to_rfc3339_opts(SecondsFormat::Secs, true);
                text.pop(); // the 'Z'
                &self.second.insert((second, text)).1
            }
        };
        out.extend_from_slice(prefix.as_bytes());
        let micros = ts.timestamp_subsec_micros().min(999_999);
        let mut frac = *b".000000Z";
        let mut n = micros;
        for slot in frac[1..7].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(&frac);
    }
}

fn int(n: impl itoa::Integer, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn ip(addr: IpAddr, out: &mut Vec<u8>) {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            int(a, out);
            out.push(b'.');
            int(b, out);
            out.push(b'.');
            int(c, out);
            out.push(b'.');
            int(d, out);
        }
        // Writing to a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Bytes serde_json escapes in strings: `"`, `\` and the control characters below 0x20.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// A JSON string, escaped exactly as serde_json does (short escapes for \b \t \n \f \r, lower-case
/// `\u00XX` for the other control characters, everything else, non-ASCII included, as is).
fn string(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.push(b'"');
    // Almost no string needs escaping: check them whole first (a loop without early exit, which
    // the compiler vectorises), then copy them in one go.
    if !bytes.iter().fold(false, |any, &b| any | needs_escape(b)) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn serde_line(r: &TrafficLog) -> Vec<u8> {
        let mut v = serde_json::to_vec(r).unwrap();
        v.push(b'\n');
        v
    }

    fn fast_line(enc: &mut NdjsonEncoder, r: &TrafficLog) -> Vec<u8> {
        let mut v = Vec::new();
        enc.encode(r, &mut v);
        v
    }

    /// The model's sample record with its time and free-text fields replaced.
    fn record(ts_us: i64, text: &str) -> TrafficLog {
        TrafficLog {
            ts: DateTime::from_timestamp_micros(ts_us).unwrap(),
            path: text.into(),
            host: Some(text.into()),
            ..crate::record::tests::sample()
        }
    }

    #[test]
    fn same_bytes_as_serde_json_on_edge_cases() {
        let mut enc = NdjsonEncoder::new();
        let texts =
            ["", "/a\"b\\c", "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}", "é/日本/🙂", "/ok?q=1&r=/x"];
        let times = [
            0,
            -1,
            1_764_079_364_123_456,
            1_764_079_364_999_999,
            1_764_079_365_000_000,
            -62_135_596_800_000_000, // year 1
            253_402_300_799_999_999, // 9999-12-31T23:59:59.999999
            253_402_300_800_000_000, // year 10000: chrono writes "+10000"
            DateTime::<Utc>::MIN_UTC.timestamp_micros(),
            DateTime::<Utc>::MAX_UTC.timestamp_micros(),
        ];
        for &ts in &times {
            for text in texts {
                let r = record(ts, text);
                assert_eq!(
                    String::from_utf8(fast_line(&mut enc, &r)).unwrap(),
                    String::from_utf8(serde_line(&r)).unwrap()
                );
            }
        }
    }

    #[test]
    fn lines_parse_back_to_the_record() {
        let mut enc = NdjsonEncoder::new();
        let r = record(1_764_079_364_123_456, "/x\ny");
        let back: TrafficLog = serde_json::from_slice(&fast_line(&mut enc, &r)).unwrap();
        assert_eq!(back, r);
    }

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
            // v4-mapped and compressible forms, which Display writes specially.
            any::<[u8; 4]>().prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
            (any::<u16>(), any::<u16>()).prop_map(|(a, b)| IpAddr::V6(Ipv6Addr::new(a, 0, 0, 0, 0, 0, 0, b))),
        ]
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[ -~]{0,40}", "[\\x00-\\x1f\"\\\\a]{0,10}"]
    }

    /// The fields of one side that are not in the original record: namespace, pod, container,
    /// container id, node.
    fn arb_side() -> impl Strategy<Value = [Option<String>; 5]> {
        proptest::array::uniform5(proptest::option::of(arb_text()))
    }

    prop_compose! {
        fn arb_record()(
            ts in DateTime::<Utc>::MIN_UTC.timestamp_micros()..=DateTime::<Utc>::MAX_UTC.timestamp_micros(),
            src_ip in arb_ip(), dst_ip in arb_ip(), src_port: u16, dst_port: u16,
            method in arb_text(), path in arb_text(), host in proptest::option::of(arb_text()),
            status: u16, latency_us: u64, req_bytes: u64, resp_bytes: u64,
            src_pid: Option<u32>, src_comm in proptest::option::of(arb_text()), src in arb_side(),
            dst_pid: Option<u32>, dst_comm in proptest::option::of(arb_text()), dst in arb_side(),
            dst_service_ip in proptest::option::of(arb_ip()), dst_service_port: Option<u16>,
            node in arb_text(), exchange_id: Option<i64>, route in proptest::option::of(arb_text()),
        ) -> TrafficLog {
            let [src_namespace, src_pod, src_container, src_container_id, src_node] = src;
            let [dst_namespace, dst_pod, dst_container, dst_container_id, dst_node] = dst;
            TrafficLog {
                ts: DateTime::from_timestamp_micros(ts).unwrap(),
                src_ip, src_port, dst_ip, dst_port, method, path, host, status, latency_us,
                req_bytes, resp_bytes, src_pid, src_comm, src_namespace, src_pod, src_container,
                src_container_id, src_node, dst_pid, dst_comm, dst_namespace, dst_pod,
                dst_container, dst_container_id, dst_node, dst_service_ip, dst_service_port, node,
                exchange_id, route,
            }
        }
    }

    proptest! {
        #[test]
        fn same_bytes_as_serde_json(records in proptest::collection::vec(arb_record(), 1..8)) {
            // One encoder across records, so the cached second is exercised and invalidated.
            let mut enc = NdjsonEncoder::new();
            for r in &records {
                prop_assert_eq!(fast_line(&mut enc, r), serde_line(r));
                // The same second again, from the cache.
                prop_assert_eq!(fast_line(&mut enc, r), serde_line(r));
            }
        }
    }
}
