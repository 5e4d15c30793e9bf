//! A batch as the reporter sends it: an id and the encoded body, the same bytes on every try.
//!
//! The id ([`BatchId`]) is what makes delivery exactly-once: it goes in the
//! [`liteobs_model::BATCH_ID_HEADER`] header, the server commits it with the records and answers a
//! repeat without inserting again. So an id must be (a) unique across agents, restarts and
//! batches: 128 random bits from the OS-seeded generator, and (b) the same every time the same
//! records are offered: it is made once when the batch is cut, kept in the spool file, and a
//! batch that has to be cut again gets an id *derived* from its parent's by a fixed rule
//! ([`BatchId::half`] after a 413, [`BatchId::without`] after a 400 naming one record), so the
//! same parent always yields the same children, before and after a restart.

use std::fmt;
use std::io;

use liteobs_model::TrafficLog;

use super::encoder::{encode_batch, encode_lines, ndjson_lines};

/// The longest id accepted from a spool file: a root of 32 hex digits plus derivations.
pub const MAX_BATCH_ID_LEN: usize = 200;

/// A batch's idempotency key: 32 lowercase hex digits (128 random bits), then, for a derived
/// batch, `.` and one step per derivation: `a`/`b` for the first/second half of a split, `r<I>`
/// for "the rest, without record I" (e.g. `3f…c1.ar7`: first half, then without its record 7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchId(String);

/// Why a string read back from a spool file is not a batch id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a batch id (32 hex digits, then optional .a/.b/.rN steps)")]
pub struct BadBatchId(pub String);

impl BatchId {
    /// A fresh id: 128 bits from `rand`'s thread generator (ChaCha, seeded from the OS).
    pub fn random() -> BatchId {
        BatchId(format!("{:032x}", rand::random::<u128>()))
    }

    /// The id of half `second` (false: the first half) of this batch, split after a 413.
    pub fn half(&self, second: bool) -> BatchId {
        self.derive(if second { "b" } else { "a" })
    }

    /// The id of this batch without record `index`, resent after a 400 that named it.
    pub fn without(&self, index: usize) -> BatchId {
        self.derive(&format!("r{index}"))
    }

    fn derive(&self, step: &str) -> BatchId {
        let sep = if self.0.contains('.') { "" } else { "." };
        BatchId(format!("{}{sep}{step}", self.0))
    }

    /// Checks an id read back from disk.
    pub fn parse(s: &str) -> Result<BatchId, BadBatchId> {
        let bad = || BadBatchId(s.chars().take(64).collect());
        if s.len() > MAX_BATCH_ID_LEN {
            return Err(bad());
        }
        let (root, steps) = s.split_once('.').unwrap_or((s, ""));
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if root.len() != 32 || !root.chars().all(hex) {
            return Err(bad());
        }
        if s.contains('.') && steps.is_empty() {
            return Err(bad());
        }
        let mut steps = steps.chars().peekable();
        while let Some(c) = steps.next() {
            match c {
                'a' | 'b' => {}
                'r' => {
                    let mut digits = 0;
                    while steps.next_if(char::is_ascii_digit).is_some() {
                        digits += 1;
                    }
                    if digits == 0 {
                        return Err(bad());
                    }
                }
                _ => return Err(bad()),
            }
        }
        Ok(BatchId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One upload: its id, its record count and its gzip NDJSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: BatchId,
    /// Records in the body (NDJSON lines).
    pub records: usize,
    /// What is POSTed, byte for byte the same on every attempt.
    pub body: Vec<u8>,
}

impl Batch {
    /// Encodes freshly cut records under a new id.
    pub fn encode(records: &[TrafficLog]) -> io::Result<Batch> {
        Ok(Batch { id: BatchId::random(), records: records.len(), body: encode_batch(records)? })
    }

    /// The two halves (first half rounded down) after a 413, with their derived ids. None
    /// for a single record.
    pub fn split(&self) -> io::Result<Option<(Batch, Batch)>> {
        let lines = ndjson_lines(&self.body)?;
        if lines.len() < 2 {
            return Ok(None);
        }
        let (first, second) = lines.split_at(lines.len() / 2);
        let part = |id: BatchId, lines: &[Vec<u8>]| -> io::Result<Batch> {
            Ok(Batch { id, records: lines.len(), body: encode_lines(lines.iter().map(Vec::as_slice))? })
        };
        Ok(Some((part(self.id.half(false), first)?, part(self.id.half(true), second)?)))
    }

    /// This batch without record `index` (0-based), with its derived id. None when nothing is
    /// left or `index` is not a record of the body.
    pub fn without(&self, index: usize) -> io::Result<Option<Batch>> {
        let mut lines = ndjson_lines(&self.body)?;
        if index >= lines.len() {
            return Ok(None);
        }
        lines.remove(index);
        if lines.is_empty() {
            return Ok(None);
        }
        let body = encode_lines(lines.iter().map(Vec::as_slice))?;
        Ok(Some(Batch { id: self.id.without(index), records: lines.len(), body }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::rec;

    fn decoded(b: &Batch) -> Vec<TrafficLog> {
        let lines = ndjson_lines(&b.body).unwrap();
        lines.iter().map(|l| serde_json::from_slice(l).unwrap()).collect()
    }

    #[test]
    fn random_ids_are_128_bit_hex_and_differ() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| BatchId::random().as_str().to_owned()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert_eq!(BatchId::parse(id).unwrap().as_str(), id.as_str());
        }
    }

    #[test]
    fn derived_ids_are_a_function_of_the_parent() {
        let root = BatchId::parse("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(root.half(false).as_str(), "0123456789abcdef0123456789abcdef.a");
        assert_eq!(root.half(true).without(7).as_str(), "0123456789abcdef0123456789abcdef.br7");
        assert_eq!(root.without(12).without(3).half(false), root.without(12).without(3).half(false));
        assert_ne!(root.half(false), root.half(true));
        for derived in [root.half(true), root.without(0).half(false), root.without(12).without(3)] {
            assert_eq!(BatchId::parse(derived.as_str()), Ok(derived));
        }
    }

    #[test]
    fn bad_ids_from_disk_are_refused() {
        for s in [
            "",
            "0123",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcdef.",
            "0123456789abcdef0123456789abcdef.x",
            "0123456789abcdef0123456789abcdef.r",
            "0123456789abcdef0123456789abcdef.ra",
            "0123456789abcdef0123456789abcdef.a/../x",
            "g123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef\nHost: x",
        ] {
            assert!(BatchId::parse(s).is_err(), "{s:?}");
        }
        assert!(BatchId::parse(&format!("{}.{}", "0".repeat(32), "a".repeat(300))).is_err());
    }

    #[test]
    fn split_and_without_keep_the_order_and_derive_ids() {
        let b = Batch::encode(&(0..5).map(rec).collect::<Vec<_>>()).unwrap();
        let (x, y) = b.split().unwrap().unwrap();
        assert_eq!((x.records, y.records), (2, 3));
        assert_eq!(decoded(&x), (0..2).map(rec).collect::<Vec<_>>());
        assert_eq!(decoded(&y), (2..5).map(rec).collect::<Vec<_>>());
        assert_eq!((x.id.clone(), y.id.clone()), (b.id.half(false), b.id.half(true)));
        assert_eq!(b.split().unwrap(), Some((x, y)), "the same bytes and ids every time");

        let rest = b.without(1).unwrap().unwrap();
        assert_eq!(rest.id, b.id.without(1));
        assert_eq!(decoded(&rest), [rec(0), rec(2), rec(3), rec(4)]);
        assert!(b.without(5).unwrap().is_none(), "not a record of the batch");
        let one = Batch::encode(&[rec(0)]).unwrap();
        assert!(one.without(0).unwrap().is_none());
        assert!(one.split().unwrap().is_none());
    }
}
