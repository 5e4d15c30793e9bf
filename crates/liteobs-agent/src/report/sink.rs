//! The reporter: takes batches from the [`RecordQueue`], optionally through the disk
//! [`Spool`], and delivers each until the server has it, acting on every [`Outcome`]: split on
//! 413, resend without the named record on a 400 with `index`, drop (counted) what is refused
//! for good, stop on 401, and retry everything else with the [`Backoff`] policy.
//!
//! Without a spool, the one batch being delivered is held in memory: at most
//! `capacity + batch_size` records at once. With a spool, two tasks share the runtime thread:
//! the *spooler* moves batches from the queue to disk as fast as they are cut (so an outage
//! fills the disk, not memory), and the *sender* delivers the oldest spool file, deleting it
//! after the 200. The spool's files are written synchronously on this thread: one write and two
//! fsyncs per batch, a few milliseconds at most, while the sender only waits on the network.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::backoff::{Backoff, jitter};
use super::batch::Batch;
use super::config::ReporterConfig;
use super::queue::{Overflow, RecordQueue};
use super::retry::Outcome;
use super::service::Uploader;
use super::stats::{ReportCounters, ReportStats};
use crate::spool::{Spool, file};

/// Why the reporter stopped before its queue was empty.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{url} refused the agent's credentials (401 Unauthorized{detail}); set -token or LITEOBS_TOKEN to the server's token"
    )]
    Unauthorized { url: String, detail: String },
    #[error("{url}: {reason}")]
    Tls { url: String, reason: String },
    #[error("encoding a batch")]
    Encode(#[from] std::io::Error),
}

/// What became of a batch.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    /// Delivered, or refused for good (counted).
    Done,
    /// The shutdown deadline passed first; this many records were not delivered.
    Abandoned(u64),
}

/// Uploads batches from a queue until it is closed and empty, or the shutdown deadline passes.
///
/// Runs on an actix (tokio current-thread) runtime: awc's client is not `Send`.
pub struct Reporter {
    cfg: ReporterConfig,
    uploader: Uploader,
    counters: Arc<ReportCounters>,
    spool: Option<RefCell<Spool>>,
}

impl Reporter {
    pub fn new(cfg: ReporterConfig, counters: Arc<ReportCounters>) -> Reporter {
        let uploader = Uploader::new(&cfg);
        Reporter { cfg, uploader, counters, spool: None }
    }

    /// Delivers through `spool`: batches go to disk first and leave it after the server's 200.
    pub fn with_spool(mut self, spool: Spool) -> Reporter {
        self.counters.records_spooled.store(spool.records(), Relaxed);
        self.spool = Some(RefCell::new(spool));
        self
    }

    /// Delivers every batch. `deadline` starts as None; once a shutdown sets it, work still
    /// pending at that instant is abandoned (counted) and the reporter returns; with a spool,
    /// what is pending stays on disk for the next start instead.
    pub async fn run(
        &self,
        queue: &RecordQueue,
        mut deadline: watch::Receiver<Option<Instant>>,
    ) -> Result<ReportStats, ReportError> {
        match &self.spool {
            None => self.run_in_memory(queue, &mut deadline).await?,
            Some(spool) => self.run_spooled(queue, spool, &mut deadline).await?,
        }
        Ok(self.counters.snapshot(queue))
    }

    async fn run_in_memory(
        &self,
        queue: &RecordQueue,
        deadline: &mut watch::Receiver<Option<Instant>>,
    ) -> Result<(), ReportError> {
        loop {
            let next =
                before_deadline(queue.next_batch(self.cfg.batch_size, self.cfg.flush_interval), deadline);
            let records = match next.await {
                None => {
                    self.abandon(queue.take_all().len() as u64);
                    return Ok(());
                }
                Some(None) => return Ok(()),
                Some(Some(records)) => records,
            };
            if let Delivery::Abandoned(n) = self.deliver(Batch::encode(&records)?, deadline).await? {
                self.abandon(n + queue.take_all().len() as u64);
                return Ok(());
            }
        }
    }

    async fn run_spooled(
        &self,
        queue: &RecordQueue,
        spool: &RefCell<Spool>,
        deadline: &mut watch::Receiver<Option<Instant>>,
    ) -> Result<(), ReportError> {
        let shared = SpoolRun::default();
        let spooler = self.spool_from(queue, spool, &shared);
        let sender = self.send_spooled(spool, &shared, deadline);
        tokio::pin!(spooler, sender);
        let mut spooled = false;
        loop {
            tokio::select! {
                r = &mut spooler, if !spooled => {
                    spooled = true;
                    shared.spooling_done.set(true);
                    shared.wake.notify_one();
                    r?;
                }
                r = &mut sender => {
                    shared.sending_done.set(true);
                    shared.room.notify_one();
                    r?;
                    break;
                }
            }
        }
        if !spooled {
            // The sender stopped at the deadline: keep moving what the capture still hands over
            // to disk, where the next start finds it.
            spooler.await?;
        }
        // Batches the spool could not take, with no sender left to take them.
        let unsent: u64 = shared.memory.borrow().iter().map(|b| b.records as u64).sum();
        self.abandon(unsent);
        let s = spool.borrow();
        self.counters.records_spooled.store(s.records(), Relaxed);
        if !s.is_empty() {
            tracing::info!(
                records = s.records(),
                bytes = s.bytes(),
                dir = %s.dir().display(),
                "records left in the spool; the next start delivers them"
            );
        }
        Ok(())
    }

    /// Queue → disk, until the queue is closed and empty.
    async fn spool_from(
        &self,
        queue: &RecordQueue,
        spool: &RefCell<Spool>,
        shared: &SpoolRun,
    ) -> Result<(), ReportError> {
        while let Some(records) = queue.next_batch(self.cfg.batch_size, self.cfg.flush_interval).await {
            let batch = Batch::encode(&records)?;
            drop(records);
            // A replay waits for the sender to make room (it can: nothing is lost by waiting);
            // live capture drops the oldest files. A batch that could not be written waits in
            // memory, one at a time, so memory stays bounded either way.
            // Once the sender has stopped (deadline), nothing frees room: stop waiting.
            while !shared.sending_done.get()
                && ((queue.overflow() == Overflow::Wait
                    && !spool.borrow().has_room(file::encoded_len(&batch)))
                    || !shared.memory.borrow().is_empty())
            {
                tokio::select! {
                    _ = shared.room.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            let pushed = spool.borrow_mut().push(&batch);
            match pushed {
                Ok(dropped) => {
                    let n: u64 = dropped.iter().map(|e| e.records).sum();
                    if n > 0 {
                        let before = self.counters.records_spool_dropped.fetch_add(n, Relaxed);
                        if before == 0 || before / 10_000 != (before + n) / 10_000 {
                            tracing::warn!(
                                records = n,
                                total = before + n,
                                "spool full: oldest batches dropped"
                            );
                        }
                    }
                }
                Err(e) => {
                    let before = self.counters.spool_write_errors.fetch_add(1, Relaxed);
                    if before.is_multiple_of(100) {
                        tracing::error!(error = %e, errors = before + 1, "cannot write to the spool; sending the batch from memory");
                    }
                    shared.memory.borrow_mut().push_back(batch);
                }
            }
            self.counters.records_spooled.store(spool.borrow().records(), Relaxed);
            shared.wake.notify_one();
        }
        Ok(())
    }

    /// Disk → server, oldest first, until the spooler is done and the spool empty, or the
    /// deadline passes.
    async fn send_spooled(
        &self,
        spool: &RefCell<Spool>,
        shared: &SpoolRun,
        deadline: &mut watch::Receiver<Option<Instant>>,
    ) -> Result<(), ReportError> {
        loop {
            let next = spool.borrow_mut().checkout();
            if let Some(entry) = next {
                let loaded = spool.borrow_mut().load(&entry);
                let batch = match loaded {
                    Ok(b) => b,
                    Err(_) => {
                        ReportCounters::add(&self.counters.spool_files_set_aside, 1);
                        continue;
                    }
                };
                match self.deliver(batch, deadline).await? {
                    Delivery::Done => {
                        let removed = spool.borrow_mut().remove(&entry);
                        if let Err(e) = removed {
                            // Sent again at the next start, and deduplicated by its id.
                            tracing::error!(error = %e, "cannot delete a delivered spool file");
                        }
                        self.counters.records_spooled.store(spool.borrow().records(), Relaxed);
                        shared.room.notify_one();
                    }
                    Delivery::Abandoned(_) => {
                        spool.borrow_mut().release();
                        return Ok(());
                    }
                }
                continue;
            }
            let from_memory = shared.memory.borrow_mut().pop_front();
            if let Some(batch) = from_memory {
                shared.room.notify_one();
                if let Delivery::Abandoned(n) = self.deliver(batch, deadline).await? {
                    self.abandon(n);
                    return Ok(());
                }
                continue;
            }
            if shared.spooling_done.get() {
                return Ok(());
            }
            shared.wake.notified().await;
        }
    }

    fn abandon(&self, n: u64) {
        if n > 0 {
            tracing::warn!(records = n, "shutdown deadline passed: records not delivered");
            ReportCounters::add(&self.counters.records_abandoned, n);
        }
    }

    fn reject(&self, records: u64) {
        ReportCounters::add(&self.counters.records_rejected, records);
        ReportCounters::add(&self.counters.batches_rejected, 1);
    }

    /// Delivers one batch and whatever it is cut into, each piece under its own stable id.
    async fn deliver(
        &self,
        batch: Batch,
        deadline: &mut watch::Receiver<Option<Instant>>,
    ) -> Result<Delivery, ReportError> {
        let url = self.uploader.url();
        // Pieces still to send (a 413's halves, first half on top).
        let mut work = vec![batch];
        let mut resends: u32 = 0;
        while let Some(batch) = work.pop() {
            let n = batch.records as u64;
            let held = |work: &[Batch]| n + work.iter().map(|b| b.records as u64).sum::<u64>();
            let mut backoff = Backoff::new(self.cfg.initial_backoff, self.cfg.max_backoff);
            let mut failures: u32 = 0;
            loop {
                let attempt = Instant::now();
                let Some(outcome) = before_deadline(self.uploader.send(&batch), deadline).await else {
                    return Ok(Delivery::Abandoned(held(&work[..])));
                };
                self.counters.upload_latency.observe(attempt.elapsed());
                match outcome {
                    Outcome::Delivered { accepted, duplicate } => {
                        if failures > 0 {
                            tracing::info!(records = n, attempts = failures + 1, id = %batch.id, "upload succeeded after retries");
                        }
                        if duplicate {
                            ReportCounters::add(&self.counters.batches_duplicate, 1);
                            tracing::info!(id = %batch.id, records = n, "server had this batch already; not inserted twice");
                        } else if let Some(a) = accepted.filter(|a| *a != n) {
                            tracing::warn!(
                                sent = n,
                                accepted = a,
                                "server accepted a different number of records"
                            );
                        }
                        ReportCounters::add(&self.counters.records_acked, n);
                        ReportCounters::add(&self.counters.batches_acked, 1);
                        break;
                    }
                    Outcome::TooLarge => {
                        match batch.split() {
                            Ok(Some((first, second))) => {
                                tracing::warn!(records = n, id = %batch.id, "server said the batch is too large (413); splitting it");
                                work.push(second);
                                work.push(first);
                            }
                            Ok(None) => {
                                tracing::error!(%url, id = %batch.id, "server refused a single record as too large (413); dropped");
                                self.reject(n);
                            }
                            Err(e) => {
                                tracing::error!(%url, id = %batch.id, error = %e, records = n, "cannot split a batch the server refused as too large; dropped");
                                self.reject(n);
                            }
                        }
                        break;
                    }
                    Outcome::BadRecord { index, reason } if resends < self.cfg.max_resends => {
                        let rest = batch.without(index);
                        let before = self.counters.records_rejected.load(Relaxed);
                        match rest {
                            Ok(rest) if index < batch.records => {
                                resends += 1;
                                ReportCounters::add(&self.counters.records_rejected, 1);
                                if before.is_multiple_of(100) {
                                    tracing::warn!(%url, id = %batch.id, index, %reason, rejected_so_far = before + 1, "server rejected one record; dropped it, resending the rest");
                                }
                                if let Some(rest) = rest {
                                    ReportCounters::add(&self.counters.batches_resent, 1);
                                    work.push(rest);
                                }
                            }
                            Ok(_) => {
                                tracing::error!(%url, id = %batch.id, index, records = n, %reason, "server rejected a record the batch does not have; batch dropped");
                                self.reject(n);
                            }
                            Err(e) => {
                                tracing::error!(%url, id = %batch.id, error = %e, records = n, %reason, "cannot cut the bad record out of the batch; batch dropped");
                                self.reject(n);
                            }
                        }
                        break;
                    }
                    Outcome::BadRecord { index, reason } => {
                        tracing::error!(%url, id = %batch.id, index, records = n, resends, %reason, "server rejected another record of a batch already resent too often; rest of the batch dropped");
                        self.reject(n);
                        break;
                    }
                    Outcome::Rejected { status, reason } => {
                        tracing::error!(%url, status, id = %batch.id, records = n, %reason, "server rejected a batch; dropped");
                        self.reject(n);
                        break;
                    }
                    Outcome::Unauthorized(detail) => {
                        return Err(ReportError::Unauthorized { url: url.to_owned(), detail });
                    }
                    Outcome::Tls(reason) => return Err(ReportError::Tls { url: url.to_owned(), reason }),
                    Outcome::Retry { reason, after } => {
                        failures += 1;
                        ReportCounters::add(&self.counters.upload_failures, 1);
                        let wait = backoff.pause(after, jitter());
                        // The first failure and then every tenth: a down server should not flood the log.
                        if failures == 1 || failures.is_multiple_of(10) {
                            tracing::warn!(%url, records = n, id = %batch.id, failures, retry_in_ms = wait.as_millis() as u64, %reason, "upload failed; retrying");
                        }
                        if before_deadline(tokio::time::sleep(wait), deadline).await.is_none() {
                            return Ok(Delivery::Abandoned(held(&work[..])));
                        }
                    }
                }
            }
        }
        Ok(Delivery::Done)
    }
}

/// What the spooler and the sender share (one thread: plain cells).
#[derive(Default)]
struct SpoolRun {
    /// The sender has work (a new file), or the spooler finished.
    wake: Notify,
    /// The sender freed room (a file deleted, a memory batch taken).
    room: Notify,
    /// Batches the spool could not take, sent from memory (at most one waits).
    memory: RefCell<VecDeque<Batch>>,
    spooling_done: Cell<bool>,
    /// The sender returned (all sent, or the deadline passed).
    sending_done: Cell<bool>,
}

/// Runs `fut` unless the deadline (None until a shutdown sets it) passes first.
async fn before_deadline<F: std::future::Future>(
    fut: F,
    deadline: &mut watch::Receiver<Option<Instant>>,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        let current = *deadline.borrow_and_update();
        if let Some(t) = current {
            return tokio::select! {
                out = &mut fut => Some(out),
                _ = tokio::time::sleep_until(t) => None,
            };
        }
        tokio::select! {
            out = &mut fut => return Some(out),
            changed = deadline.changed() => {
                if changed.is_err() {
                    // No one can set a deadline any more.
                    return Some(fut.await);
                }
            }
        }
    }
}
