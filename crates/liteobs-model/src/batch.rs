//! Decoding an upload body into records.
//!
//! The server accepts a JSON array of [`TrafficLog`] or NDJSON (one record per line). A batch
//! is all-or-nothing: the first bad record rejects it, and the error says which record (0-based
//! index; for NDJSON the index counts non-empty lines) and which field.

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
        // serde reports a missing field on the enclosing object; pull its name out of the message.
        if field.is_none() {
            field = message
                .strip_prefix("missing field `")
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
    let records: Vec<TrafficLog> = serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        let mut err = BatchError::from_path(None, e.path(), inner);
        if inner.is_syntax() || inner.is_eof() {
            err.message = format!("malformed JSON: {inner}");
        }
        err
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
        let rec = TrafficLog::deserialize_path(de)
            .map_err(|e| BatchError::from_path(Some(index), e.path(), e.inner()))?;
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
}
