//! *What* can be retried: a pure reading of the server's answer into an [`Outcome`].
//!
//! [`classify`] takes the status, the `Retry-After` header and the body, and does no I/O, so
//! the whole policy is one table (the tests below, and README.md's "retry policy"). *When* to
//! retry is the backoff's job ([`super::backoff`]); *how* the outcome is acted on (split,
//! resend, drop, stop) is the sink's ([`super::sink`]).
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | delivered (`{"accepted": N}`; `"duplicate": true` when the id was already committed) |
//! | 400 with a JSON `index` | that one record is bad: drop it (counted), resend the rest |
//! | 400 without `index`, 409 (the id was committed for another batch), other 4xx not below | the batch is bad: drop it (counted), once |
//! | 401 | fatal: no retry fixes a token |
//! | 413 | split the batch in two |
//! | 408, 425, 429, 5xx, 3xx | retry the same bytes under the same id; `Retry-After` honoured |
//! | no answer (refused, reset, cut, timeout) | retry the same bytes under the same id |

use std::time::{Duration, SystemTime};

/// What the reporter does with a batch after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed. `accepted` as the server counted it; `duplicate`: it had committed this id
    /// before (an earlier attempt got through, its answer did not).
    Delivered { accepted: Option<u64>, duplicate: bool },
    /// 413: the body is over the server's limit.
    TooLarge,
    /// 400 naming one record (0-based index in the batch as sent) as bad.
    BadRecord { index: usize, reason: String },
    /// The batch is refused as a whole and no retry will change that.
    Rejected { status: u16, reason: String },
    /// 401: the token is wrong; nothing more can be delivered.
    Unauthorized(String),
    /// The TLS handshake was refused (untrusted or misnamed certificate, a server that does not
    /// speak TLS, or one that does when asked for http://): configuration, fatal like a 401.
    Tls(String),
    /// Try the same batch again, after `after` when the server said so (`Retry-After`).
    Retry { reason: String, after: Option<Duration> },
}

/// One answer from the server, as read off the wire.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    /// The `Retry-After` header, when present.
    pub retry_after: Option<&'a str>,
    /// The body (the first MiB at most), lossily decoded.
    pub body: &'a str,
}

/// Reads an answer into an outcome; `now` dates a `Retry-After` given as an HTTP date.
#[allow(
    clippy::match_overlapping_arm,
    reason = "the specific codes come first and win; the ranges catch the rest, as in the table"
)]
pub fn classify(answer: Answer<'_>, now: SystemTime) -> Outcome {
    let Answer { status, retry_after, body } = answer;
    let json = serde_json::from_str::<serde_json::Value>(body).ok();
    let message = || {
        json.as_ref()
            .and_then(|v| v.get("error"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| excerpt(body))
    };
    match status {
        200..=299 => {
            let field = |name: &str| json.as_ref().and_then(|v| v.get(name));
            Outcome::Delivered {
                accepted: field("accepted").and_then(serde_json::Value::as_u64),
                duplicate: field("duplicate").and_then(serde_json::Value::as_bool).unwrap_or(false),
            }
        }
        401 => Outcome::Unauthorized(if body.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", excerpt(body))
        }),
        413 => Outcome::TooLarge,
        408 | 425 | 429 | 300..=399 | 500..=599 => Outcome::Retry {
            reason: format!("HTTP {status}: {}", excerpt(body)).trim_end_matches([' ', ':']).to_owned(),
            after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        400 => {
            let index = json
                .as_ref()
                .and_then(|v| v.get("index"))
                .and_then(serde_json::Value::as_u64)
                .and_then(|i| usize::try_from(i).ok());
            match index {
                Some(index) => Outcome::BadRecord { index, reason: message() },
                None => Outcome::Rejected { status, reason: message() },
            }
        }
        400..=499 => Outcome::Rejected { status, reason: message() },
        // 1xx as a final answer, or a status outside HTTP's range: the server is confused;
        // try again rather than lose the batch.
        _ => Outcome::Retry { reason: format!("unexpected HTTP status {status}"), after: None },
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date. A date in the past is no
/// wait at all; anything unreadable is ignored (the backoff decides).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(at.timestamp()).ok()?))?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The start of a body, for logs: at most 300 characters, one line.
fn excerpt(body: &str) -> String {
    body.chars().take(300).map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn retry(reason: &str, after: Option<u64>) -> Outcome {
        Outcome::Retry { reason: reason.into(), after: after.map(Duration::from_secs) }
    }

    #[test]
    fn every_answer_has_one_outcome() {
        let cases: Vec<(u16, Option<&str>, &str, Outcome)> = vec![
            (200, None, r#"{"accepted": 7}"#, Outcome::Delivered { accepted: Some(7), duplicate: false }),
            (
                200,
                None,
                r#"{"accepted": 7, "duplicate": true}"#,
                Outcome::Delivered { accepted: Some(7), duplicate: true },
            ),
            (200, None, "", Outcome::Delivered { accepted: None, duplicate: false }),
            (204, None, "", Outcome::Delivered { accepted: None, duplicate: false }),
            (
                400,
                None,
                r#"{"error": "record 3, field `status`: invalid value", "index": 3, "field": "status"}"#,
                Outcome::BadRecord { index: 3, reason: "record 3, field `status`: invalid value".into() },
            ),
            (
                400,
                None,
                r#"{"error": "malformed gzip", "index": null, "field": null}"#,
                Outcome::Rejected { status: 400, reason: "malformed gzip".into() },
            ),
            (400, None, "plain text", Outcome::Rejected { status: 400, reason: "plain text".into() }),
            (
                400,
                None,
                r#"{"error": "x", "index": -1}"#,
                Outcome::Rejected { status: 400, reason: "x".into() },
            ),
            (401, None, "bad token", Outcome::Unauthorized(": bad token".into())),
            (401, None, "", Outcome::Unauthorized(String::new())),
            (
                403,
                None,
                r#"{"error": "forbidden"}"#,
                Outcome::Rejected { status: 403, reason: "forbidden".into() },
            ),
            (404, None, "", Outcome::Rejected { status: 404, reason: String::new() }),
            (415, None, "", Outcome::Rejected { status: 415, reason: String::new() }),
            (413, None, "too big", Outcome::TooLarge),
            (408, None, "", retry("HTTP 408", None)),
            // The server's word for "this id was committed for a different batch": no retry
            // under the same id can succeed.
            (
                409,
                None,
                r#"{"error": "batch id reused"}"#,
                Outcome::Rejected { status: 409, reason: "batch id reused".into() },
            ),
            (429, None, "", retry("HTTP 429", None)),
            (429, Some("7"), "slow down", retry("HTTP 429: slow down", Some(7))),
            (
                503,
                Some("120"),
                r#"{"error":"memory budget full"}"#,
                retry(r#"HTTP 503: {"error":"memory budget full"}"#, Some(120)),
            ),
            (503, None, "", retry("HTTP 503", None)),
            (503, Some("soon"), "", retry("HTTP 503", None)),
            (500, None, "oops", retry("HTTP 500: oops", None)),
            (502, None, "", retry("HTTP 502", None)),
            (307, None, "", retry("HTTP 307", None)),
            (101, None, "", retry("unexpected HTTP status 101", None)),
        ];
        for (status, retry_after, body, want) in cases {
            assert_eq!(
                classify(Answer { status, retry_after, body }, NOW),
                want,
                "{status} {retry_after:?} {body}"
            );
        }
    }

    #[test]
    fn retry_after_seconds_or_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        for bad in ["", "-5", "1.5", "tomorrow", "99999999999999999999999"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
