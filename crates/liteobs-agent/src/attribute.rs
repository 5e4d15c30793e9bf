//! Attribution: filling in which processes were at either end of an exchange.
//!
//! The pipeline emits records with `src_pid`, `src_comm`, `dst_pid` and `dst_comm` unset; an
//! [`Attributor`] may fill them in before the record is reported. [`crate::pidmap::PidMap`]
//! (eBPF maps, then /proc) is the real one; [`NoAttribution`] leaves records as they are (replays,
//! `-pidmap off`). An attributor must be quick (it runs on the capture thread, once per record)
//! and must never fail a record: what it cannot tell, it leaves unset.

use std::net::SocketAddr;

use liteobs_model::TrafficLog;

pub use crate::pidmap::Origin;

/// Fills in process information on a record, as far as it can.
pub trait Attributor {
    /// Fills in what it knows; [`Origin::Agent`] means the record is the agent's own traffic
    /// (its uploads) and must not be reported.
    fn attribute(&mut self, rec: &mut TrafficLog) -> Origin;

    /// The capture saw a new TCP connection between `a` and `b` (either may be the client).
    /// What was known about an earlier connection on the same 4-tuple must not be reused for
    /// it: once a connection closes, its tuple can be taken by another process (an ephemeral
    /// port reused) or be accepted by another worker.
    fn connection_opened(&mut self, _a: SocketAddr, _b: SocketAddr) {}

    /// Logs the attributor's own counters (called with the agent's periodic counters).
    fn log_stats(&mut self) {}

    /// Periodic work (rescanning what it learns from the system), called on the live
    /// capture's ticks, a few times a second; must return at once when nothing is due.
    fn refresh(&mut self) {}
}

impl Attributor for crate::pidmap::PidMap {
    fn attribute(&mut self, rec: &mut TrafficLog) -> Origin {
        self.fill(rec)
    }

    fn refresh(&mut self) {
        crate::pidmap::PidMap::refresh(self);
    }

    fn connection_opened(&mut self, a: SocketAddr, b: SocketAddr) {
        self.forget(a, b);
    }

    fn log_stats(&mut self) {
        let c = self.counters();
        tracing::info!(
            mode = %self.effective_mode(),
            lookups = c.lookups,
            cache_hits = c.cache_hits,
            ebpf_hits = c.ebpf_hits,
            ebpf_misses = c.ebpf_misses,
            proc_fallbacks = c.proc_fallbacks,
            proc_hits = c.proc_hits,
            listener_hits = c.listener_hits,
            unresolved = c.unresolved,
            own_uploads = c.own_uploads,
            map_entries = c.map_entries.unwrap_or(0),
            listener_scans = c.listener_scans,
            listeners = c.listeners,
            listener_namespaces = c.listener_namespaces,
            listeners_seeded = c.listeners_seeded,
            listener_scan_us = c.listener_scan_us,
            "attribution counters"
        );
    }
}

/// Leaves every record as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAttribution;

impl Attributor for NoAttribution {
    fn attribute(&mut self, _rec: &mut TrafficLog) -> Origin {
        Origin::Observed
    }
}
