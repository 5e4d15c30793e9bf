//! The live-follow contract (`GET /query?follow=1`): the parameters that start a stream and the
//! lines it is made of, shared by the server that writes them and the client that reads them.
//!
//! A stream is NDJSON (`application/x-ndjson`), one JSON object a line, of two kinds:
//!
//! * a record: `{"seq": 41, "record": {...}}`, or `{"seq": 57, "update": true, "record": {...}}`
//!   when the row replaces one written earlier (the server merged a later half of the same
//!   exchange into it: same `exchange_id`, more fields known). `seq` is the store's order of
//!   writes; a stream sends records in ascending `seq`, each once.
//! * a cursor: `{"cursor": 57}` after every page of records, and `{"cursor": 57, "heartbeat":
//!   true}` when nothing was sent for a while (liveness for proxies and clients). Everything
//!   up to the cursor has been sent: a client that reconnects with `cursor=57` gets exactly
//!   what came after, without a gap or a repeat.
//!
//! Pure: no I/O; the server's handler and the client's reader are tested on these values.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::filter::{DEFAULT_LIMIT, bad};
use crate::{Filter, FilterError, TrafficLog};

/// The stream's `Content-Type`.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// Longest line a reader needs to accept: a record is a few KiB at most (the server refuses
/// longer uploads' fields long before); a longer line is not a LiteObs stream.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// How a follow request starts, besides its filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowStart {
    /// The rows the stream selects (its `limit` is not a bound on the stream: see `backlog`).
    pub filter: Filter,
    /// `cursor=N`: every matching row written after `N` (a value from an earlier stream's
    /// cursor line), then live ones.
    pub cursor: Option<u64>,
    /// Without a cursor the stream starts at "now"; with `limit` (or `since`) given, the newest
    /// `backlog` matching rows already stored come first, oldest of them first.
    pub backlog: Option<usize>,
}

impl FollowStart {
    /// Reads the parameters of `GET /query?follow=1`: `follow` itself, `cursor`, and every
    /// `/query` filter (`limit` and `since` also ask for a backlog when there is no cursor).
    pub fn from_params<'a, I>(params: I, now: DateTime<Utc>) -> Result<FollowStart, FilterError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut cursor = None;
        let mut backlog_asked = false;
        let mut filter_params = Vec::new();
        for (key, value) in params {
            match key {
                "follow" => {
                    if !is_follow(value) {
                        return Err(bad(key, format!("{value:?}: write follow=1 (or leave it out)")));
                    }
                }
                "cursor" => {
                    let v = value.trim();
                    cursor = Some(
                        v.parse::<u64>()
                            .map_err(|_| bad(key, format!("{v:?} is not a cursor (a whole number)")))?,
                    );
                }
                "limit" | "since" if !value.trim().is_empty() => {
                    backlog_asked = true;
                    filter_params.push((key, value));
                }
                _ => filter_params.push((key, value)),
            }
        }
        let filter = Filter::from_params(filter_params, now)?;
        let backlog = (cursor.is_none() && backlog_asked).then_some(filter.limit);
        Ok(FollowStart { filter, cursor, backlog })
    }
}

/// Whether a `follow` parameter's value asks for a stream (`1`, `true`, `yes`).
pub fn is_follow(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")
}

/// The backlog `limit` gives when only `since` asks for one.
pub const DEFAULT_BACKLOG: usize = DEFAULT_LIMIT;

/// One line of a stream. Lines are made and read one at a time, so the record is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FollowLine {
    Record {
        seq: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        update: bool,
        record: TrafficLog,
    },
    Cursor {
        cursor: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        heartbeat: bool,
    },
}

impl FollowLine {
    /// The line's JSON and its newline.
    pub fn to_line(&self) -> Vec<u8> {
        // A record and two integers serialize infallibly; an empty line would be skipped.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// Why a line of a stream could not be read; `seq` when the line was a record with a readable
/// `seq` (its record is what failed: the reader skips it and still moves past it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct LineError {
    pub seq: Option<u64>,
    pub reason: String,
}

/// Reads one line (without its newline). A record's fields are checked by the same decoder as
/// an upload's, so the reason names the field.
pub fn parse_line(line: &[u8]) -> Result<FollowLine, LineError> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| LineError { seq: None, reason: format!("not JSON: {e}") })?;
    let object =
        value.as_object().ok_or_else(|| LineError { seq: None, reason: "not a JSON object".to_owned() })?;
    if let Some(cursor) = object.get("cursor") {
        let cursor = cursor
            .as_u64()
            .ok_or_else(|| LineError { seq: None, reason: "`cursor` is not a whole number".to_owned() })?;
        let heartbeat = object.get("heartbeat").and_then(serde_json::Value::as_bool).unwrap_or(false);
        return Ok(FollowLine::Cursor { cursor, heartbeat });
    }
    let seq = object.get("seq").and_then(serde_json::Value::as_u64).ok_or_else(|| LineError {
        seq: None,
        reason: "neither a cursor nor a record with a `seq`".to_owned(),
    })?;
    let update = object.get("update").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let record = object
        .get("record")
        .ok_or_else(|| LineError { seq: Some(seq), reason: "a `seq` without a `record`".to_owned() })?;
    let bytes =
        serde_json::to_vec(record).map_err(|e| LineError { seq: Some(seq), reason: e.to_string() })?;
    let mut decoded = crate::decode_ndjson(&bytes).map_err(|e| LineError {
        seq: Some(seq),
        reason: match &e.field {
            Some(f) => format!("field `{f}`: {}", e.message),
            None => e.message.clone(),
        },
    })?;
    match (decoded.pop(), decoded.is_empty()) {
        (Some(record), true) => Ok(FollowLine::Record { seq, update, record }),
        _ => Err(LineError { seq: Some(seq), reason: "not one record".to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn start(params: &[(&str, &str)]) -> Result<FollowStart, FilterError> {
        FollowStart::from_params(params.iter().copied(), now())
    }

    #[test]
    fn a_cursor_resumes_and_limit_or_since_ask_for_a_backlog_only_without_one() {
        let s = start(&[("follow", "1"), ("pid", "7")]).unwrap();
        assert_eq!((s.cursor, s.backlog, s.filter.pid), (None, None, Some(7)));
        let s = start(&[("follow", "true"), ("limit", "20")]).unwrap();
        assert_eq!((s.cursor, s.backlog), (None, Some(20)));
        let s = start(&[("follow", "1"), ("since", "5m")]).unwrap();
        assert_eq!(s.backlog, Some(DEFAULT_BACKLOG));
        assert_eq!(s.filter.since, Some(now() - chrono::Duration::minutes(5)));
        let s = start(&[("follow", "1"), ("cursor", "41"), ("limit", "20")]).unwrap();
        assert_eq!((s.cursor, s.backlog), (Some(41), None), "a cursor resumes: no backlog");
    }

    #[test]
    fn bad_follow_parameters_are_named() {
        for (k, v) in [("follow", "0"), ("cursor", "-1"), ("cursor", "x"), ("limit", "0"), ("pdi", "1")] {
            assert_eq!(start(&[("follow", "1"), (k, v)]).unwrap_err().param, k, "{k}={v}");
        }
    }

    #[test]
    fn lines_round_trip_and_hostile_lines_are_errors() {
        let record = crate::record::tests::sample();
        for line in [
            FollowLine::Record { seq: 3, update: false, record: record.clone() },
            FollowLine::Record { seq: 4, update: true, record: record.clone() },
            FollowLine::Cursor { cursor: 4, heartbeat: false },
            FollowLine::Cursor { cursor: 9, heartbeat: true },
        ] {
            let bytes = line.to_line();
            assert_eq!(bytes.last(), Some(&b'\n'));
            assert_eq!(parse_line(&bytes[..bytes.len() - 1]).unwrap(), line);
        }
        let text = String::from_utf8(FollowLine::Cursor { cursor: 4, heartbeat: false }.to_line()).unwrap();
        assert_eq!(text, "{\"cursor\":4}\n");
        for bad in [&b"[]"[..], b"{", b"{\"cursor\":-1}", b"{\"x\":1}", b"{\"seq\":1}"] {
            assert!(parse_line(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let e = parse_line(br#"{"seq":5,"record":{"ts":"x"}}"#).unwrap_err();
        assert_eq!(e.seq, Some(5), "a bad record still says its seq: {e}");
    }
}
