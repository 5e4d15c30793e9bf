//! The memory budget shared by every upload in flight.
//!
//! Each upload reserves the bytes of the buffers it holds (the body as received, its inflated
//! form, the decoded records) before holding them, and gives them back when it is answered. A
//! reservation that would take the total past the limit fails, and the upload is answered 503
//! with `Retry-After`: many slow uploads at once then cost at most the budget, not
//! `connections × -max-body`. This module only counts; the buffers are the caller's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes all in-flight uploads may hold together.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

/// The budget is spent: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is holding its limit of {limit} bytes of uploads; retry later")]
pub struct Exhausted {
    pub limit: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget { limit, used: AtomicUsize::new(0) })
    }

    /// An empty reservation for one upload; it grows as the upload's buffers do.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation { budget: self.clone(), bytes: 0 }
    }

    /// Bytes reserved right now, by every upload together.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// One upload's share of the budget; given back on drop, so every way out of a handler
/// (answer, error, dropped connection) returns it.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Reservation {
    /// Reserves `n` more bytes, or fails without reserving any.
    pub fn grow(&mut self, n: usize) -> Result<(), Exhausted> {
        let limit = self.budget.limit;
        self.budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= limit)
            })
            .map_err(|_| Exhausted { limit })?;
        self.bytes += n;
        Ok(())
    }

    /// Gives back `n` bytes (at most what this reservation holds) once a buffer is freed.
    pub fn release(&mut self, n: usize) {
        let n = n.min(self.bytes);
        self.budget.used.fetch_sub(n, Ordering::AcqRel);
        self.bytes -= n;
    }

    /// Bytes this reservation holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_one_limit_and_give_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        a.grow(60).unwrap();
        assert_eq!(b.grow(41), Err(Exhausted { limit: 100 }));
        assert_eq!(b.bytes(), 0, "a failed growth reserves nothing");
        b.grow(40).unwrap();
        assert_eq!(budget.in_use(), 100, "exactly the limit is allowed");
        assert!(a.grow(1).is_err());
        a.release(10);
        a.grow(10).unwrap();
        a.release(1000);
        assert_eq!((a.bytes(), budget.in_use()), (0, 40), "release is capped at what is held");
        drop(b);
        assert_eq!(budget.in_use(), 0);
        assert!(a.grow(usize::MAX).is_err(), "no overflow");
    }
}
