//! Upload batch ids and how long the store remembers them: the pure half of exactly-once
//! delivery (validation and the retention rule). The transaction that records an id with its
//! batch is in [`super::sql_store`].
//!
//! An agent names every batch with an id that stays the same on every retry; the store keeps the
//! ids it has committed, so a batch whose acknowledgement was lost is recognised when it comes
//! again and is not stored twice. Ids are remembered for a bounded time and count
//! ([`Retention`]); a retry that arrives after its id was forgotten is stored again.

use chrono::Duration;

/// The longest id accepted, in bytes. A UUID is 36, a SHA-256 in hex 64.
pub const MAX_LEN: usize = 128;

/// A validated batch id: 1..=[`MAX_LEN`] bytes of ASCII letters, digits and `-_.:`.
///
/// The charset keeps ids printable in logs and the same text in both engines; the length bound
/// keeps the table of remembered ids small.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchId(String);

/// Why a batch id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchIdError {
    #[error("batch id is empty")]
    Empty,
    #[error("batch id is {0} bytes long; the most is {MAX_LEN}")]
    TooLong(usize),
    #[error("batch id has byte {byte:#04x} at offset {offset}; use ASCII letters, digits and -_.:")]
    BadByte { offset: usize, byte: u8 },
}

impl BatchId {
    /// Checks `raw` (a header value's bytes, untrusted) against the rules above.
    pub fn parse(raw: &[u8]) -> Result<BatchId, BatchIdError> {
        if raw.is_empty() {
            return Err(BatchIdError::Empty);
        }
        if raw.len() > MAX_LEN {
            return Err(BatchIdError::TooLong(raw.len()));
        }
        if let Some((offset, &byte)) =
            raw.iter().enumerate().find(|&(_, &b)| !(b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
        {
            return Err(BatchIdError::BadByte { offset, byte });
        }
        // Every byte is ASCII, so this cannot fail; map rather than unwrap all the same.
        String::from_utf8(raw.to_vec())
            .map(BatchId)
            .map_err(|e| BatchIdError::BadByte { offset: e.utf8_error().valid_up_to(), byte: 0 })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many committed batch ids the store remembers, and for how long. Both bounds hold after
/// every write transaction: ids older than `max_age`, and all but the newest `max_count`, are
/// deleted in the same transaction that commits a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_count: u64,
}

impl Retention {
    /// A week and 100 000 ids: an agent's retries of one batch span seconds to hours (a
    /// spooled batch is retried after the agent restarts); 100 000 rows of at most 128 + 24 bytes
    /// is 15 MB of data at worst (about 6 MB with UUIDs), before the engine's own overhead.
    pub const DEFAULT: Retention = Retention { max_age: Duration::days(7), max_count: 100_000 };
}

impl Default for Retention {
    fn default() -> Self {
        Retention::DEFAULT
    }
}

/// Parses an age flag: a whole number and a unit, `s`, `m`, `h`, `d` or `w` (`90s`, `12h`, `7d`),
/// the words `since` uses.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: i64 = n.parse().map_err(|_| format!("{s:?} is not an age like 90s, 12h or 7d"))?;
    let age = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        _ => None,
    };
    match age {
        Some(a) if a > Duration::zero() && a <= Duration::days(100 * 366) => Ok(a),
        _ => Err(format!("{s:?}: give a positive number and a unit s, m, h, d or w (at most 100 years)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_in_length_and_charset() {
        for ok in
            ["a", "0f8c2d3e-6a1b-4c9d-8e7f-001122334455", "agent-1:17:42", "x.y_z", &"a".repeat(MAX_LEN)]
        {
            assert_eq!(BatchId::parse(ok.as_bytes()).map(|i| i.to_string()), Ok(ok.to_string()));
        }
        assert_eq!(BatchId::parse(b""), Err(BatchIdError::Empty));
        assert_eq!(
            BatchId::parse("a".repeat(MAX_LEN + 1).as_bytes()),
            Err(BatchIdError::TooLong(MAX_LEN + 1))
        );
        for (bad, offset, byte) in [
            (&b"a b"[..], 1, b' '),
            (b"a\0", 1, 0),
            (b"%00", 0, b'%'),
            ("é".as_bytes(), 0, 0xc3),
            (b"\xff", 0, 0xff),
            (b"a/b", 1, b'/'),
            (b"a'b", 1, b'\''),
        ] {
            assert_eq!(BatchId::parse(bad), Err(BatchIdError::BadByte { offset, byte }), "{bad:?}");
        }
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse_age("7d"), Ok(Duration::days(7)));
        assert_eq!(parse_age("2w"), Ok(Duration::weeks(2)));
        for bad in ["", "0s", "7", "d", "-1d", "1y", "99999999999999w", "1.5h"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
