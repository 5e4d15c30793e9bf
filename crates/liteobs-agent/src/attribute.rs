//! Attribution: filling in which processes were at either end of an exchange.
//!
//! The pipeline emits records with `src_pid`, `src_comm`, `dst_pid` and `dst_comm` unset; an
//! [`Attributor`] may fill them in before the record is reported. [`crate::pidmap::PidMap`]
//! (eBPF maps, then /proc) is the real one; [`NoAttribution`] leaves records as they are (replays,
//! `-pidmap off`). An attributor must be quick (it runs on the capture thread, once per record)
//! and must never fail a record: what it cannot tell, it leaves unset.

use std::net::SocketAddr;

use liteobs_model::TrafficLog;

/// Fills in process information on a record, as far as it can.
pub trait Attributor {
    fn attribute(&mut self, rec: &mut TrafficLog);

    /// The capture saw a new TCP connection between `a` and `b` (either may be the client).
    /// What was known about an earlier connection on the same 4-tuple must not be reused for
    /// it: once a connection closes, its tuple can be taken by another process (an ephemeral
    /// port reused) or be accepted by another worker.
    fn connection_opened(&mut self, _a: SocketAddr, _b: SocketAddr) {}

    /// Logs the attributor's own counters (called with the agent's periodic counters).
    fn log_stats(&mut self) {}
}

impl Attributor for crate::pidmap::PidMap {
    fn attribute(&mut self, rec: &mut TrafficLog) {
        self.fill(rec);
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
            unresolved = c.unresolved,
            map_entries = c.map_entries.unwrap_or(0),
            "attribution counters"
        );
    }
}

/// Leaves every record as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAttribution;

impl Attributor for NoAttribution {
    fn attribute(&mut self, _rec: &mut TrafficLog) {}
}
