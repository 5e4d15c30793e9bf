//! The reporter's counters: atomics the reporter bumps, snapshots whoever logs them reads (the
//! capture thread's periodic log, the replay's summary, the metrics), and the upload latency
//! histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use serde::Serialize;

use super::queue::RecordQueue;

/// The reporter's counters, shared with whoever logs them.
#[derive(Debug, Default)]
pub struct ReportCounters {
    pub(crate) records_acked: AtomicU64,
    pub(crate) batches_acked: AtomicU64,
    pub(crate) batches_duplicate: AtomicU64,
    pub(crate) records_rejected: AtomicU64,
    pub(crate) batches_rejected: AtomicU64,
    pub(crate) batches_resent: AtomicU64,
    pub(crate) upload_failures: AtomicU64,
    pub(crate) records_abandoned: AtomicU64,
    pub(crate) records_spooled: AtomicU64,
    pub(crate) records_spool_dropped: AtomicU64,
    pub(crate) spool_files_set_aside: AtomicU64,
    pub(crate) spool_write_errors: AtomicU64,
    /// One observation per upload attempt that got an answer or a failure.
    pub upload_latency: UploadLatency,
}

/// How long upload attempts took (`liteobs_agent_upload_duration_seconds`): buckets from 1 ms
/// to about 33 s, doubling (a retry's timeout and a slow commit both fit).
#[derive(Debug, Clone)]
pub struct UploadLatency(Histogram);

impl Default for UploadLatency {
    fn default() -> Self {
        UploadLatency(Histogram::new(exponential_buckets(0.001, 2.0, 16)))
    }
}

impl UploadLatency {
    pub fn observe(&self, took: Duration) {
        self.0.observe(took.as_secs_f64());
    }

    /// The histogram, to register for scrapes.
    pub fn histogram(&self) -> &Histogram {
        &self.0
    }
}

/// A snapshot of [`ReportCounters`] plus the queue's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReportStats {
    /// Records the server acknowledged (duplicates included: they are committed too).
    pub records_acked: u64,
    pub batches_acked: u64,
    /// Batches the server had already committed under the same id (a retry after a lost
    /// answer, or a spooled batch sent again after a crash); not inserted twice.
    pub batches_duplicate: u64,
    /// Records the server refused as bad and that were dropped: one per 400 naming a record,
    /// all of a batch refused as a whole (400 without index, other 4xx, 413 of one record).
    pub records_rejected: u64,
    pub batches_rejected: u64,
    /// Batches sent again without the one record a 400 named.
    pub batches_resent: u64,
    /// Upload attempts that failed and were retried (5xx, 408, 429, connection errors, timeouts).
    pub upload_failures: u64,
    /// Records dropped because the in-memory queue was full.
    pub records_dropped: u64,
    /// Records still held in memory when the shutdown deadline passed (without a spool).
    pub records_abandoned: u64,
    /// Records waiting in the in-memory queue.
    pub queued: u64,
    /// Records in the spool directory now (delivered after a restart if not before).
    pub records_spooled: u64,
    /// Records dropped with the oldest spool files because the spool was full.
    pub records_spool_dropped: u64,
    /// Spool files found torn or corrupt and moved to the spool's `corrupt/` directory.
    pub spool_files_set_aside: u64,
    /// Batches that could not be written to the spool and were sent from memory instead.
    pub spool_write_errors: u64,
}

impl ReportCounters {
    pub fn snapshot(&self, queue: &RecordQueue) -> ReportStats {
        let (dropped, queued) = {
            let st = queue.lock();
            (st.dropped, st.records.len() as u64)
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ReportStats {
            records_acked: get(&self.records_acked),
            batches_acked: get(&self.batches_acked),
            batches_duplicate: get(&self.batches_duplicate),
            records_rejected: get(&self.records_rejected),
            batches_rejected: get(&self.batches_rejected),
            batches_resent: get(&self.batches_resent),
            upload_failures: get(&self.upload_failures),
            records_dropped: dropped,
            records_abandoned: get(&self.records_abandoned),
            queued,
            records_spooled: get(&self.records_spooled),
            records_spool_dropped: get(&self.records_spool_dropped),
            spool_files_set_aside: get(&self.spool_files_set_aside),
            spool_write_errors: get(&self.spool_write_errors),
        }
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}
