//! `-metrics-listen`: the agent's Prometheus metrics (`GET /metrics`) and its health
//! (`GET /healthz`), on a listener of their own.
//!
//! The counters belong to the capture thread (the pipeline's are plain integers, advanced per
//! packet without atomics). That thread *publishes* a copy of them ([`Published`]) on each live
//! tick (every 200 ms), every few thousand packets of a replay, and at the end; a scrape encodes
//! the latest copy ([`exposition`]), so it never takes a lock the capture loop waits on and a
//! value is at most a tick old. The attributor's counters are published with the periodic log
//! (`-stats-interval`) and at the end, since counting them walks a kernel map. The upload
//! latency histogram is the one metric observed where it happens (the reporter).
//!
//! * [`exposition`]: the published counters → OpenMetrics text, named as
//!   [`liteobs_model::metrics::agent`] lists them;
//! * [`health`]: what `/healthz` answers, a pure function of the phase and the time since the
//!   last publication;
//! * [`http`]: the small HTTP/1.1 server (std threads and httparse: the agent has no web
//!   framework, and two GET routes need none).
//!
//! Not for logging: the periodic log line stays where it is (`run.rs`).

pub mod exposition;
pub mod health;
pub mod http;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

pub use health::{Phase, Verdict};

use crate::attribute::AttributionCounters;
use crate::report::UploadLatency;
use crate::run::Snapshot;

/// The latest counters the capture thread published, and the run's phase.
pub struct Published {
    inner: Mutex<Inner>,
}

struct Inner {
    snapshot: Snapshot,
    attribution: AttributionCounters,
    phase: Phase,
    /// When the capture thread last published (or the phase changed).
    beat: Instant,
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published").field("phase", &self.lock().phase).finish_non_exhaustive()
    }
}

impl Default for Published {
    fn default() -> Self {
        Published {
            inner: Mutex::new(Inner {
                snapshot: Snapshot::default(),
                attribution: AttributionCounters::default(),
                phase: Phase::Starting,
                beat: Instant::now(),
            }),
        }
    }
}

impl Published {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock left plain data behind: still worth showing.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The capture thread's counters now.
    pub fn publish(&self, snapshot: Snapshot) {
        let mut i = self.lock();
        i.snapshot = snapshot;
        i.beat = Instant::now();
    }

    /// The attributor's counters now.
    pub fn publish_attribution(&self, counters: AttributionCounters) {
        self.lock().attribution = counters;
    }

    pub fn set_phase(&self, phase: Phase) {
        let mut i = self.lock();
        i.phase = phase;
        i.beat = Instant::now();
    }

    /// A copy of what was published last.
    pub fn read(&self) -> (Snapshot, AttributionCounters) {
        let i = self.lock();
        (i.snapshot.clone(), i.attribution)
    }

    /// What `/healthz` says at `now`.
    pub fn health(&self, now: Instant) -> Verdict {
        let i = self.lock();
        health::verdict(i.phase, now.saturating_duration_since(i.beat))
    }
}

/// Everything a scrape reads: the registry (the published counters' collector and the upload
/// histogram) and the health.
pub struct AgentMetrics {
    registry: Registry,
    published: Arc<Published>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl AgentMetrics {
    pub fn new(published: Arc<Published>, upload: &UploadLatency) -> AgentMetrics {
        let mut registry = Registry::default();
        exposition::register(&mut registry, published.clone(), upload);
        AgentMetrics { registry, published }
    }

    /// The OpenMetrics text of every metric now.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; an encoder error would be a bug in a metric.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding the metrics");
        }
        out
    }

    pub fn health(&self) -> Verdict {
        self.published.health(Instant::now())
    }
}

/// A running `-metrics-listen` server.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
}

/// Binds `addr` now (a bad or taken address is an error before anything is captured) and
/// serves on a thread of its own for the rest of the process.
pub fn serve(addr: &str, metrics: AgentMetrics) -> std::io::Result<Endpoint> {
    let bound = http::serve(addr, Arc::new(metrics))?;
    tracing::info!(addr = %bound, "serving /metrics and /healthz");
    Ok(Endpoint { addr: bound })
}

impl Endpoint {
    /// After a replay: keeps serving for `linger`, or until SIGINT/SIGTERM.
    pub fn linger(&self, linger: Duration) {
        if linger.is_zero() {
            return;
        }
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(error = %e, "cannot wait for signals; not lingering");
                return;
            }
        };
        tracing::info!(
            addr = %self.addr,
            linger_s = linger.as_secs_f64(),
            "replay done; /metrics stays up until -metrics-linger passes or a signal"
        );
        rt.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(linger) => {}
                _ = crate::run::wait_for_signal() => {}
            }
        });
    }
}
