//! Decoding an upload body into records.
//!
//! The server accepts a JSON array of [`TrafficLog`] or NDJSON (one record per line). A batch
//! is all-or-nothing: the first bad record rejects it, and the error says which record (0-based
//! index; for NDJSON the index counts non-empty lines) and which field.
//!
//! A body is one of those two forms and nothing else: anything but JSON whitespace after the
//! array's `]`, or after a line's record, rejects the batch (a truncated or concatenated upload
//! must not be half stored). What a record may hold is [`TrafficLog`]'s to say.

use crate::TrafficLog;

/// Why an upload body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct BatchError {
    /// Index of the offending record in the batch, when the body got that far.
    pub index: Option<usize>,
    /// Name of the offending field, when one can be named.
    pub field: Option<String>,
    /// What is wrong, in serde's words.
    pub message: String,
}

impl BatchError {
    fn describe(&self) -> String {
        match (self.index, &self.field) {
            (Some(i), Some(f)) => format!("record {i}, field `{f}`: {}", self.message),
            (Some(i), None) => format!("record {i}: {}", self.message),
            (None, _) => self.message.clone(),
        }
    }

    fn from_path(index: Option<usize>, path: &serde_path_to_error::Path, err: &serde_json::Error) -> Self {
        let mut field = None;
        let mut idx = index;
        for seg in path.iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index } if idx.is_none() => idx = Some(*index),
                serde_path_to_error::Segment::Map { key } => field = Some(key.clone()),
                _ => {}
            }
        }
        let message = strip_position(&err.to_string());
        // serde reports a missing or repeated field on the enclosing object; pull its name out of
        // the message.
        if field.is_none() {
            field = ["missing field `", "duplicate field `"]
                .iter()
                .find_map(|prefix| message.strip_prefix(prefix))
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned);
        }
        BatchError { index: idx, field, message }
    }
}

/// serde_json appends " at line L column C"; for NDJSON the line is the record, so drop it
/// where the record index already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(p) => msg[..p].to_owned(),
        None => msg.to_owned(),
    }
}

/// Decodes a JSON array of records.
pub fn decode_json_array(body: &[u8]) -> Result<Vec<TrafficLog>, BatchError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let records: Vec<TrafficLog> = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let inner = e.inner();
        let mut err = BatchError::from_path(None, e.path(), inner);
        if inner.is_syntax() || inner.is_eof() {
            err.message = format!("malformed JSON: {inner}");
        }
        err
    })?;
    de.end().map_err(|e| BatchError {
        index: None,
        field: None,
        message: format!("malformed JSON: data after the array's closing `]`: {e}"),
    })?;
    Ok(records)
}

/// Decodes NDJSON: one record per line; blank lines are skipped.
pub fn decode_ndjson(body: &[u8]) -> Result<Vec<TrafficLog>, BatchError> {
    let mut out = Vec::new();
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let index = out.len();
        let de = &mut serde_json::Deserializer::from_slice(line);
        let rec = TrafficLog::deserialize_path(&mut *de)
            .map_err(|e| BatchError::from_path(Some(index), e.path(), e.inner()))?;
        de.end().map_err(|e| BatchError {
            index: Some(index),
            field: None,
            message: format!(
                "malformed JSON: data after the record on its line: {}",
                strip_position(&e.to_string())
            ),
        })?;
        out.push(rec);
    }
    Ok(out)
}

impl TrafficLog {
    fn deserialize_path<'de, D: serde::Deserializer<'de>>(
        de: D,
    ) -> Result<Self, serde_path_to_error::Error<D::Error>> {
        serde_path_to_error::deserialize(de)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"ts":"2026-11-25T14:02:44.123456Z","src_ip":"127.0.0.1","src_port":40000,"dst_ip":"127.0.0.1","dst_port":8080,"method":"GET","path":"/","status":200,"latency_us":10,"req_bytes":0,"resp_bytes":5,"node":"n"}"#;

    #[test]
    fn array_and_ndjson_decode_the_same_records() {
        let arr = format!("[{GOOD},{GOOD}]");
        let nd = format!("{GOOD}\n\r\n{GOOD}\r\n");
        let a = decode_json_array(arr.as_bytes()).unwrap();
        let b = decode_ndjson(nd.as_bytes()).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a, b);
        assert!(decode_json_array(b"[]").unwrap().is_empty());
        assert!(decode_ndjson(b"").unwrap().is_empty());
    }

    #[test]
    fn wrong_type_names_index_and_field() {
        let bad = GOOD.replace(r#""status":200"#, r#""status":"ok""#);
        let e = decode_json_array(format!("[{GOOD},{bad}]").as_bytes()).unwrap_err();
        assert_eq!((e.index, e.field.as_deref()), (Some(1), Some("status")));
        let e = decode_ndjson(format!("{GOOD}\n{GOOD}\n{bad}\n").as_bytes()).unwrap_err();
        assert_eq!((e.index, e.field.as_deref()), (Some(2), Some("status")));
        assert!(e.to_string().starts_with("record 2, field `status`: invalid type"), "{e}");
    }

    #[test]
    fn missing_field_names_index_and_field() {
        let bad = GOOD.replace(r#""method":"GET","#, "");
        let e = decode_json_array(format!("[{bad}]").as_bytes()).unwrap_err();
        assert_eq!((e.index, e.field.as_deref()), (Some(0), Some("method")));
        let e = decode_ndjson(bad.as_bytes()).unwrap_err();
        assert_eq!((e.index, e.field.as_deref()), (Some(0), Some("method")));
    }

    #[test]
    fn garbage_is_a_clear_error_not_a_panic() {
        for body in [&b"not json"[..], b"{\"a\":1}", b"[1,2", b"\xff\xfe", b"[null]"] {
            let e = decode_json_array(body).unwrap_err();
            assert!(!e.message.is_empty());
        }
        assert!(decode_ndjson(b"{\"ts\":").is_err());
        assert!(decode_ndjson(b"[1]").is_err());
    }

    /// Both forms, so every hostile-input case is checked the way the server would see it.
    fn decode_both(record: &str) -> [Result<Vec<TrafficLog>, BatchError>; 2] {
        [
            decode_json_array(format!("[{GOOD},{record}]").as_bytes()),
            decode_ndjson(format!("{GOOD}\n{record}\n").as_bytes()),
        ]
    }

    #[test]
    fn data_after_the_body_rejects_it_whole() {
        for body in [
            "[]]".to_owned(),
            "[] x".to_owned(),
            format!("[{GOOD}] {{garbage"),
            format!("[{GOOD}][{GOOD}]"),
            format!("[{GOOD}],"),
            format!("[{GOOD}]\0"),
        ] {
            let e = decode_json_array(body.as_bytes()).unwrap_err();
            assert_eq!(e.index, None, "{body}");
            assert!(e.message.starts_with("malformed JSON: data after the array"), "{body}: {e}");
        }
        for line in [format!("{GOOD} }}{{"), format!("{GOOD}{GOOD}"), format!("{GOOD},"), format!("{GOOD} x")]
        {
            let e = decode_ndjson(format!("{GOOD}\n{line}\n{GOOD}\n").as_bytes()).unwrap_err();
            assert_eq!((e.index, e.field.as_deref()), (Some(1), None), "{line}");
            assert!(e.to_string().starts_with("record 1: malformed JSON: data after the record"), "{e}");
        }
        // JSON whitespace after the body is not data.
        assert_eq!(decode_json_array(format!(" [{GOOD}] \r\n\t").as_bytes()).unwrap().len(), 1);
        assert_eq!(decode_ndjson(format!("{GOOD} \t\r\n").as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn integers_that_a_column_cannot_hold_exactly_are_rejected_with_index_and_field() {
        let cases: &[(&str, &str)] = &[
            ("latency_us", "18446744073709551615"),
            ("latency_us", "9223372036854775808"),
            ("req_bytes", "9223372036854775808"),
            ("resp_bytes", "99999999999999999999"),
            ("latency_us", "-1"),
            ("latency_us", "1.5"),
            ("resp_bytes", "1e3"),
            ("status", "200.0"),
            ("status", "2e2"),
            ("status", "-200"),
            ("status", "65536"),
            ("src_port", "65536"),
            ("dst_port", "-1"),
            ("src_pid", "4294967296"),
            ("dst_pid", "-1"),
            ("dst_pid", "1.0"),
            ("status", "\"200\""),
            ("status", "true"),
            ("status", "null"),
        ];
        for (field, value) in cases {
            let bad = GOOD.replacen(&format!(r#""{field}":"#), &format!(r#""{field}":{value},"x":"#), 1);
            let bad =
                if bad == GOOD { GOOD.replacen('}', &format!(r#","{field}":{value}}}"#), 1) } else { bad };
            for e in decode_both(&bad).map(Result::unwrap_err) {
                assert_eq!((e.index, e.field.as_deref()), (Some(1), Some(*field)), "{field}={value}: {e}");
            }
        }
        let max = GOOD.replace(r#""latency_us":10"#, r#""latency_us":9223372036854775807"#);
        let max = max
            .replace(r#""status":200"#, r#""status":65535"#)
            .replace(r#""src_port":40000"#, r#""src_port":65535"#);
        for ok in decode_both(&max) {
            let r = ok.unwrap();
            assert_eq!((r[1].latency_us, r[1].status, r[1].src_port), (i64::MAX as u64, 65535, 65535));
        }
        let pid = GOOD.replacen('}', r#","src_pid":4294967295,"dst_pid":0}"#, 1);
        assert_eq!(decode_ndjson(pid.as_bytes()).unwrap()[0].src_pid, Some(u32::MAX));
        // serde_json reads `-0` as the float -0.0: refused like every other float (no LiteObs
        // program writes it).
        let zero = GOOD.replace(r#""req_bytes":0"#, r#""req_bytes":-0"#);
        assert_eq!(decode_ndjson(zero.as_bytes()).unwrap_err().field.as_deref(), Some("req_bytes"));
    }

    #[test]
    fn a_field_given_twice_is_rejected_not_last_wins() {
        let twice = GOOD.replacen('}', r#","status":500}"#, 1);
        for e in decode_both(&twice).map(Result::unwrap_err) {
            assert_eq!((e.index, e.field.as_deref()), (Some(1), Some("status")), "{e}");
            assert!(e.message.contains("duplicate field `status`"), "{e}");
        }
        let optional_twice = GOOD.replacen('}', r#","host":"a","host":"b"}"#, 1);
        for e in decode_both(&optional_twice).map(Result::unwrap_err) {
            assert!(e.message.contains("duplicate field `host`"), "{e}");
        }
    }

    #[test]
    fn strings_must_be_valid_unicode() {
        for path in [r#""\ud800""#, r#""a\udc00b""#, r#""\ud800\u0041""#] {
            let bad = GOOD.replace(r#""path":"/""#, &format!(r#""path":{path}"#));
            for e in decode_both(&bad).map(Result::unwrap_err) {
                assert_eq!((e.index, e.field.as_deref()), (Some(1), Some("path")), "{path}: {e}");
            }
        }
        let raw = format!("[{}]", GOOD.replace(r#""path":"/""#, "\"path\":\"/\u{0}\""));
        let mut bytes = raw.into_bytes();
        let at = bytes.iter().position(|b| *b == 0).unwrap();
        bytes[at] = 0xff;
        assert!(decode_json_array(&bytes).is_err(), "invalid UTF-8");
        // A pair is one character, a NUL escape is a character too: both are kept exactly.
        let pair = GOOD.replace(r#""path":"/""#, r#""path":"/\ud83d\ude00\u0000""#);
        assert_eq!(decode_ndjson(pair.as_bytes()).unwrap()[0].path, "/\u{1f600}\0");
    }

    #[test]
    fn timestamps_outside_what_every_program_carries_name_the_field() {
        for ts in [
            "9999-12-31T23:59:59-23:59",
            "10000-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00+00:01",
            "2026-06-30T23:59:60Z",
            "2026-11-25T14:02:44.1234567Z",
            "2026-11-25",
            "",
        ] {
            let bad = GOOD.replace("2026-11-25T14:02:44.123456Z", ts);
            for e in decode_both(&bad).map(Result::unwrap_err) {
                assert_eq!((e.index, e.field.as_deref()), (Some(1), Some("ts")), "{ts}: {e}");
            }
        }
        for ts in [
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "9999-12-31T23:59:59.9999990Z",
            "1970-01-01T01:00:00+01:00",
        ] {
            let ok = GOOD.replace("2026-11-25T14:02:44.123456Z", ts);
            assert!(decode_ndjson(ok.as_bytes()).is_ok(), "{ts}");
        }
    }
}
