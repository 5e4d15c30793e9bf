//! What `GET /healthz` answers: ready once the capture runs, failing when a live capture loop
//! has stopped publishing its counters (stuck), so that a liveness probe restarts it.
//!
//! A live capture publishes on every tick (200 ms) whether or not packets arrive, so a silence
//! of [`STALL_AFTER`] means the loop is not turning. A replay is not held to it: it may wait
//! for a slow server as long as it must (its queue blocks instead of dropping).

use std::time::Duration;

/// A live capture that has not published for this long is reported stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening the capture and loading attribution (eBPF): not ready yet.
    Starting,
    /// Capturing live.
    Live,
    /// Replaying a file.
    Replaying,
    /// The capture ended (a replay done, lingering; or a live run stopping).
    Done,
}

/// `/healthz`'s answer: 200 when `ok`, else 503; `status` is the body's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub status: &'static str,
}

/// The verdict in `phase`, `since` the capture thread last published.
pub fn verdict(phase: Phase, since: Duration) -> Verdict {
    match phase {
        Phase::Starting => Verdict { ok: false, status: "starting" },
        Phase::Live if since > STALL_AFTER => Verdict { ok: false, status: "stalled" },
        Phase::Live | Phase::Replaying => Verdict { ok: true, status: "ok" },
        Phase::Done => Verdict { ok: true, status: "done" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let s = |n| Duration::from_secs(n);
        let table = [
            (Phase::Starting, s(0), false, "starting"),
            (Phase::Starting, s(600), false, "starting"),
            (Phase::Live, s(0), true, "ok"),
            (Phase::Live, STALL_AFTER, true, "ok"),
            (Phase::Live, STALL_AFTER + Duration::from_millis(1), false, "stalled"),
            (Phase::Replaying, s(3600), true, "ok"),
            (Phase::Done, s(3600), true, "done"),
        ];
        for (phase, since, ok, status) in table {
            assert_eq!(verdict(phase, since), Verdict { ok, status }, "{phase:?} after {since:?}");
        }
    }
}
