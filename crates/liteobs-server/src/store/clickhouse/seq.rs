//! `seq` without a shared counter: several servers write one ClickHouse, so a row's `seq` is
//! made from the writing server's clock. Bits, high to low: milliseconds since 2024-01-01 (41
//! bits, until 2093), a replica number drawn at start (10 bits), the row's place in its
//! millisecond (12 bits). A batch of more than 4 096 rows takes consecutive milliseconds, and
//! one server never gives a millisecond twice (it runs ahead of its clock when it must), so its
//! `seq`s only grow. Two servers' `seq`s order their rows by their clocks (NTP keeps them
//! within milliseconds), and are distinct unless both drew the same replica number and wrote
//! in the same millisecond (1 in 1 024 of the times two servers write in one millisecond;
//! `-clickhouse-replica` sets the number where that matters).

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// 2024-01-01T00:00:00Z in milliseconds since the Unix epoch.
const EPOCH_MS: i64 = 1_704_067_200_000;
const ROW_BITS: u32 = 12;
const REPLICA_BITS: u32 = 10;
const MS_SHIFT: u32 = ROW_BITS + REPLICA_BITS;
pub const ROWS_PER_MS: usize = 1 << ROW_BITS;
pub const REPLICAS: u16 = 1 << REPLICA_BITS;

/// The `seq`s of one upload: row `i`'s is [`Span::seq`]`(i)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    ms: i64,
    replica: i64,
}

impl Span {
    pub fn seq(self, i: usize) -> i64 {
        let i = i64::try_from(i).unwrap_or(i64::MAX);
        ((self.ms + i / ROWS_PER_MS as i64) << MS_SHIFT)
            | (self.replica << ROW_BITS)
            | (i % ROWS_PER_MS as i64)
    }

    /// The upload's `attempt`: its first row's `seq` (also for an empty upload).
    pub fn attempt(self) -> u64 {
        u64::try_from(self.seq(0)).unwrap_or(0)
    }

    /// The last row's `seq` (the first's for an empty upload).
    pub fn last(self, rows: usize) -> i64 {
        self.seq(rows.saturating_sub(1))
    }
}

/// Milliseconds since [`EPOCH_MS`] now, by the wall clock.
pub fn now_ms() -> i64 {
    let ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    (ms - EPOCH_MS).max(0)
}

/// The highest `seq` any server may have given at `ms` (its clock's milliseconds).
pub fn highest_at(ms: i64) -> u64 {
    u64::try_from(((ms.max(0) + 1) << MS_SHIFT) - 1).unwrap_or(0)
}

pub struct SeqClock {
    replica: i64,
    /// The next millisecond this server may give.
    next_ms: Mutex<i64>,
}

impl SeqClock {
    pub fn new(replica: u16) -> SeqClock {
        SeqClock { replica: i64::from(replica % REPLICAS), next_ms: Mutex::new(0) }
    }

    /// A replica number drawn from the process's random hasher seed.
    pub fn random_replica() -> u16 {
        use std::hash::BuildHasher;
        let h = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        (h % u64::from(REPLICAS)) as u16
    }

    /// The `seq`s of an upload of `rows` rows.
    pub fn reserve(&self, rows: usize) -> Span {
        let slots = i64::try_from(rows.div_ceil(ROWS_PER_MS).max(1)).unwrap_or(i64::MAX);
        let mut next = self.next_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let ms = now_ms().max(*next);
        *next = ms.saturating_add(slots);
        Span { ms, replica: self.replica }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_grow_within_and_across_uploads_and_replicas_differ() {
        let clock = SeqClock::new(5);
        let a = clock.reserve(5000);
        let b = clock.reserve(1);
        assert!(a.seq(0) < a.seq(4095) && a.seq(4095) < a.seq(4096) && a.seq(4999) < b.seq(0));
        assert_eq!(a.last(5000), a.seq(4999));
        let other = SeqClock::new(6).reserve(1);
        assert_ne!(other.seq(0) & 0x3f_f000, b.seq(0) & 0x3f_f000);
        assert!(u64::try_from(b.seq(0)).is_ok_and(|s| s <= highest_at(now_ms() + 10)));
    }
}
