//! The bounded queue between the capture thread (producer, synchronous) and the reporter
//! (consumer, async): the agent's one in-memory buffer of records, bounded in records.
//!
//! Live capture must never wait on the network, so a full queue drops its oldest records and
//! counts them ([`Overflow::DropOldest`]); a replay can wait instead ([`Overflow::Wait`]) so that
//! a slow server loses nothing. The queue cuts batches (by size or by age); it knows nothing of
//! encoding, the network or the spool.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use liteobs_model::TrafficLog;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a full [`RecordQueue`] does with more records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Make room by dropping the oldest records (counted): for live capture.
    DropOldest,
    /// Block the producer until there is room: for replays.
    Wait,
}

/// The bounded queue between the capture thread (producer, synchronous) and the reporter
/// (consumer, async).
pub struct RecordQueue {
    state: Mutex<QueueState>,
    capacity: usize,
    /// Producers waiting for room.
    space: Condvar,
    /// The consumer waiting for records.
    ready: Notify,
}

pub(crate) struct QueueState {
    pub(crate) records: VecDeque<TrafficLog>,
    overflow: Overflow,
    closed: bool,
    pub(crate) dropped: u64,
    queued: u64,
    /// When the oldest record of the batch being gathered arrived.
    first_at: Option<Instant>,
}

impl RecordQueue {
    /// A queue of at most `capacity` records (at least 1).
    pub fn new(capacity: usize, overflow: Overflow) -> RecordQueue {
        RecordQueue {
            state: Mutex::new(QueueState {
                records: VecDeque::with_capacity(capacity.clamp(1, 1 << 16)),
                overflow,
                closed: false,
                dropped: 0,
                queued: 0,
                first_at: None,
            }),
            capacity: capacity.max(1),
            space: Condvar::new(),
            ready: Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves every record out of `batch` into the queue, dropping the oldest queued ones when
    /// full ([`Overflow::DropOldest`]) or waiting for room ([`Overflow::Wait`]).
    pub fn push(&self, batch: &mut Vec<TrafficLog>) {
        if batch.is_empty() {
            return;
        }
        let mut st = self.lock();
        for rec in batch.drain(..) {
            while st.records.len() >= self.capacity {
                if st.overflow == Overflow::Wait && !st.closed {
                    self.ready.notify_one();
                    st = self.space.wait(st).unwrap_or_else(|e| e.into_inner());
                } else {
                    st.records.pop_front();
                    st.dropped += 1;
                }
            }
            st.records.push_back(rec);
            st.queued += 1;
        }
        if st.first_at.is_none() {
            st.first_at = Some(Instant::now());
        }
        drop(st);
        self.ready.notify_one();
    }

    /// Stop waiting for room: a full queue drops its oldest from now on (a shutdown must not
    /// hang on a server that is down).
    pub fn stop_waiting(&self) {
        self.lock().overflow = Overflow::DropOldest;
        self.space.notify_all();
    }

    /// No more records will come; the consumer takes what is left and then sees the end.
    pub fn close(&self) {
        self.lock().closed = true;
        self.space.notify_all();
        self.ready.notify_one();
    }

    /// What a full queue does now ([`RecordQueue::stop_waiting`] changes it).
    pub fn overflow(&self) -> Overflow {
        self.lock().overflow
    }

    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records dropped to make room, so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Records ever pushed.
    pub fn queued(&self) -> u64 {
        self.lock().queued
    }

    fn take(&self, st: &mut QueueState, max: usize) -> Vec<TrafficLog> {
        let n = st.records.len().min(max);
        let batch: Vec<TrafficLog> = st.records.drain(..n).collect();
        st.first_at = if st.records.is_empty() { None } else { Some(Instant::now()) };
        self.space.notify_all();
        batch
    }

    /// Takes every record left (at shutdown, to count what is abandoned).
    pub fn take_all(&self) -> Vec<TrafficLog> {
        let mut st = self.lock();
        self.take(&mut st, usize::MAX)
    }

    /// The next batch: as soon as `max` records are there, or when the oldest waiting record
    /// has waited `linger`, or whatever is left once the queue is closed. None once closed and
    /// empty.
    pub async fn next_batch(&self, max: usize, linger: Duration) -> Option<Vec<TrafficLog>> {
        let max = max.max(1);
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                let mut st = self.lock();
                let n = st.records.len();
                if n >= max || (st.closed && n > 0) {
                    return Some(self.take(&mut st, max));
                }
                if st.closed {
                    return None;
                }
                match st.first_at {
                    Some(first) if n > 0 => {
                        if first.elapsed() >= linger {
                            return Some(self.take(&mut st, max));
                        }
                        Some(first + linger)
                    }
                    _ => None,
                }
            };
            match wake_at {
                Some(t) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(t) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use super::*;
    use crate::report::testing::{paths, rec};

    #[test]
    fn full_queue_drops_the_oldest_and_counts_them() {
        let q = RecordQueue::new(3, Overflow::DropOldest);
        q.push(&mut (0..5).map(rec).collect());
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.queued(), 5);
        assert_eq!(paths(&q.take_all()), ["/2", "/3", "/4"]);
    }

    #[test]
    fn waiting_queue_blocks_the_producer_until_there_is_room() {
        let q = Arc::new(RecordQueue::new(2, Overflow::Wait));
        let producer = {
            let q = q.clone();
            thread::spawn(move || q.push(&mut (0..6).map(rec).collect()))
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut got = Vec::new();
        while got.len() < 6 {
            let b = rt.block_on(q.next_batch(2, Duration::from_millis(5))).unwrap();
            got.extend(b);
        }
        producer.join().unwrap();
        assert_eq!(paths(&got), ["/0", "/1", "/2", "/3", "/4", "/5"]);
        assert_eq!(q.dropped(), 0);
        q.close();
        assert!(rt.block_on(q.next_batch(2, Duration::from_millis(5))).is_none());
    }

    #[test]
    fn batches_by_size_then_by_time_then_at_close() {
        let q = RecordQueue::new(100, Overflow::DropOldest);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        q.push(&mut (0..5).map(rec).collect());
        let b = rt.block_on(q.next_batch(2, Duration::from_secs(3600))).unwrap();
        assert_eq!(b.len(), 2, "a full batch goes at once");
        let t0 = std::time::Instant::now();
        let b = rt.block_on(q.next_batch(10, Duration::from_millis(50))).unwrap();
        assert_eq!(b.len(), 3, "a partial batch goes after the linger");
        assert!(t0.elapsed() >= Duration::from_millis(20));
        q.push(&mut vec![rec(9)]);
        q.close();
        let b = rt.block_on(q.next_batch(10, Duration::from_secs(3600))).unwrap();
        assert_eq!(paths(&b), ["/9"], "a closed queue hands out what is left at once");
        assert!(rt.block_on(q.next_batch(10, Duration::from_secs(3600))).is_none());
    }
}
