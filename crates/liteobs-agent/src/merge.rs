//! The on-node merge: one record per exchange from one agent, however many times its capture
//! saw the exchange.
//!
//! An agent capturing on several interfaces (`-iface any`) sees a call through a Kubernetes
//! Service twice, as two TCP connections with different 4-tuples: on the client's interface
//! addressed to the Service (before DNAT) and on the server's addressed to its pod (after).
//! The pipeline makes a record of each, with the same [`TrafficLog::exchange_id`]. This stage
//! holds every record that has an `exchange_id` for [`MergeConfig::hold_us`] of capture time,
//! combines those that [`same_exchange`] pairs with [`merge`] (which keeps the pod's address
//! in `dst_ip`/`dst_port` and the Service's in `dst_service_ip`/`dst_service_port`), and lets
//! each exchange leave once, in the order its first capture arrived. Copies of a packet with
//! the *same* 4-tuple (a pod's veth and the bridge behind it) never reach this stage as two
//! records: the pipeline takes the second copy of each segment for a retransmission.
//!
//! Why a hold of about a second: both captures of an exchange are usually complete within
//! microseconds of each other, but an exchange ended by idle expiry (no answer) leaves on the
//! pipeline's expiry sweep, once a second, and its two connections can fall on either side of
//! one sweep. A record arriving at the instant its twin's hold ends still meets it: records
//! are taken in before the due ones leave.
//!
//! Not for: halves seen by other agents (the server merges those, with the same rule);
//! records without an `exchange_id` pass straight through.
//!
//! Pure and clock-free: the caller passes the capture clock (the file's in a replay, a
//! monotonic one live), so a replay's output does not depend on its speed. Memory is bounded
//! by [`MergeConfig::max_held`]: past it the oldest held record leaves at once, unmerged, and
//! is counted in [`MergeStats::merge_overflow`].

use std::collections::{HashMap, VecDeque};
use std::mem;

use foldhash::fast::RandomState;
use liteobs_model::TrafficLog;
use liteobs_model::merge::{merge, same_exchange};

/// How long and how many records the stage holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeConfig {
    /// How long a record waits for another capture of its exchange, in microseconds of the
    /// capture clock; also the largest difference of two captures' `ts` that still merges.
    /// 0 turns the stage off: every record passes straight through.
    pub hold_us: i64,
    /// Most records held at once (at least 1).
    pub max_held: usize,
}

impl Default for MergeConfig {
    fn default() -> MergeConfig {
        // 32 768 records: the replay benchmark (18 000 exchanges a second of capture) held
        // 18 000 for 47 MiB more peak RSS (BENCHMARKS.md), so about 85 MiB at the cap; beyond
        // 32 768 exchanges a second the oldest leave unmerged (counted) and the server merges
        // them.
        MergeConfig { hold_us: 100_000, max_held: 32_768 }
    }
}

/// What the stage did, cumulative.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MergeStats {
    /// Records combined into another capture of their exchange (each one a record fewer).
    pub merged_on_node: u64,
    /// Records that left before their hold was over because [`MergeConfig::max_held`] were
    /// held: a capture of their exchange arriving later is a record of its own.
    pub merge_overflow: u64,
    /// Records held now (a gauge).
    pub merge_held: u64,
}

/// A held record.
struct Held {
    /// When its hold ends (capture clock, µs).
    release_at_us: i64,
    /// `None` only while it is being merged.
    record: Option<TrafficLog>,
    /// Position of the next older held record with the same `exchange_id`: a chain through
    /// the queue, so that holding a record allocates nothing beyond the queue's slot.
    older_same_id: Option<u64>,
}

/// The stage. See the module docs.
pub struct NodeMerge {
    cfg: MergeConfig,
    /// Held records, in the order they arrived (so their holds end in that order too).
    held: VecDeque<Held>,
    /// Position of the newest held record of each `exchange_id`. Positions count every record
    /// ever held, so they stay valid as the queue moves; one below `front` is gone.
    newest: HashMap<i64, u64, RandomState>,
    /// Position of `held[0]`.
    front: u64,
    /// Kept between calls so that [`NodeMerge::push`] reuses its capacity.
    scratch: Vec<TrafficLog>,
    stats: MergeStats,
}

impl NodeMerge {
    pub fn new(cfg: MergeConfig) -> NodeMerge {
        NodeMerge {
            cfg: MergeConfig { max_held: cfg.max_held.max(1), ..cfg },
            held: VecDeque::new(),
            newest: HashMap::with_hasher(RandomState::default()),
            front: 0,
            scratch: Vec::new(),
            stats: MergeStats::default(),
        }
    }

    pub fn stats(&self) -> MergeStats {
        MergeStats { merge_held: self.held.len() as u64, ..self.stats }
    }

    /// Takes the records of `records` in at `now_us`, then lets out the ones whose hold is over.
    /// On return `records` holds what leaves now: records without an `exchange_id`, records
    /// pushed out by the cap, and held ones whose hold ended at or before `now_us`.
    pub fn push(&mut self, now_us: i64, records: &mut Vec<TrafficLog>) {
        if self.cfg.hold_us <= 0 || (records.is_empty() && !self.is_due(now_us)) {
            return;
        }
        mem::swap(records, &mut self.scratch);
        let mut incoming = mem::take(&mut self.scratch);
        for r in incoming.drain(..) {
            match r.exchange_id {
                Some(id) => self.hold(now_us, id, r, records),
                None => records.push(r),
            }
        }
        self.scratch = incoming;
        self.release(now_us, records);
    }

    /// Whether a held record's hold is over at `now_us`.
    pub fn is_due(&self, now_us: i64) -> bool {
        self.held.front().is_some_and(|h| h.release_at_us <= now_us)
    }

    /// Appends to `out`, oldest first, every held record whose hold ended at or before `now_us`.
    pub fn release(&mut self, now_us: i64, out: &mut Vec<TrafficLog>) {
        while self.is_due(now_us) {
            self.pop_front(out);
        }
    }

    /// Appends every held record to `out`, oldest first: the capture ended.
    pub fn finish(&mut self, out: &mut Vec<TrafficLog>) {
        while !self.held.is_empty() {
            self.pop_front(out);
        }
    }

    fn hold(&mut self, now_us: i64, id: i64, r: TrafficLog, out: &mut Vec<TrafficLog>) {
        let window = chrono::Duration::microseconds(self.cfg.hold_us);
        let mut at = self.newest.get(&id).copied();
        while let Some(pos) = at.filter(|p| *p >= self.front) {
            let Some(h) = usize::try_from(pos - self.front).ok().and_then(|i| self.held.get_mut(i)) else {
                break;
            };
            if let Some(held) = h.record.take() {
                if same_exchange(&held, &r, window) {
                    // The capture nearer the client first: with nothing else to tell the halves
                    // apart, `merge` takes the first for the client's view and its address for
                    // the one dialled. The capture before a DNAT has the earlier request and,
                    // in the same microsecond, the longer latency (its answer comes later).
                    let nearer_client = |x: &TrafficLog| (x.ts, std::cmp::Reverse(x.latency_us));
                    h.record = Some(if nearer_client(&r) < nearer_client(&held) {
                        merge(r, held)
                    } else {
                        merge(held, r)
                    });
                    self.stats.merged_on_node += 1;
                    return;
                }
                h.record = Some(held);
            }
            at = h.older_same_id;
        }
        if self.held.len() >= self.cfg.max_held {
            self.pop_front(out);
            self.stats.merge_overflow += 1;
        }
        let pos = self.front + self.held.len() as u64;
        let older_same_id = self.newest.insert(id, pos);
        self.held.push_back(Held {
            release_at_us: now_us.saturating_add(self.cfg.hold_us),
            record: Some(r),
            older_same_id,
        });
    }

    fn pop_front(&mut self, out: &mut Vec<TrafficLog>) {
        let Some(h) = self.held.pop_front() else { return };
        let pos = self.front;
        self.front += 1;
        if let Some(r) = h.record {
            if let Some(id) = r.exchange_id
                && self.newest.get(&id) == Some(&pos)
            {
                self.newest.remove(&id);
            }
            out.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    const CLIENT: &str = "10.77.1.2:40000";
    const SERVICE: &str = "10.96.0.10:80";
    const POD: &str = "10.77.2.2:18084";
    const T0: i64 = 1_767_225_600_000_000;
    const HOLD: i64 = 1_000_000;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A capture of `GET path` to `dst` with request time `ts_us` and exchange id `id`.
    fn capture(dst: &str, path: &str, ts_us: i64, id: i64) -> TrafficLog {
        TrafficLog {
            ts: chrono::DateTime::from_timestamp_micros(ts_us).unwrap(),
            path: path.into(),
            exchange_id: Some(id),
            route: None,
            ..crate::testing::record(addr(CLIENT), addr(dst))
        }
    }

    fn stage() -> NodeMerge {
        NodeMerge::new(MergeConfig { hold_us: HOLD, max_held: 100 })
    }

    fn push(m: &mut NodeMerge, now: i64, records: Vec<TrafficLog>) -> Vec<TrafficLog> {
        let mut v = records;
        m.push(now, &mut v);
        v
    }

    fn dst(r: &TrafficLog) -> (SocketAddr, Option<SocketAddr>) {
        let service = r.dst_service_ip.zip(r.dst_service_port).map(SocketAddr::from);
        (SocketAddr::new(r.dst_ip, r.dst_port), service)
    }

    /// A DNAT'd pair as `-iface any` sees it: the request before DNAT first (client's veth),
    /// the response after DNAT first (server's veth), so the record to the pod is made first.
    #[test]
    fn the_two_captures_of_a_dnat_d_exchange_leave_as_one_record_after_the_hold() {
        let mut m = stage();
        let after = capture(POD, "/", T0 + 8, 7);
        let before = capture(SERVICE, "/", T0, 7);
        assert!(push(&mut m, T0 + 100, vec![after]).is_empty(), "held");
        assert!(push(&mut m, T0 + 110, vec![before]).is_empty(), "merged and still held");
        let mut out = Vec::new();
        m.release(T0 + 100 + HOLD - 1, &mut out);
        assert!(out.is_empty(), "released before its hold ended");
        m.release(T0 + 100 + HOLD, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(dst(&out[0]), (addr(POD), Some(addr(SERVICE))), "the pod's address, the Service's kept");
        assert_eq!(out[0].ts.timestamp_micros(), T0, "the client's view: the capture before DNAT");
        assert_eq!(m.stats(), MergeStats { merged_on_node: 1, merge_overflow: 0, merge_held: 0 });
    }

    /// On a fast path both requests fall in one microsecond; the answer reaches the client's
    /// veth last, so the capture there has the longer latency.
    #[test]
    fn in_the_same_microsecond_the_longer_latency_is_the_clients_side() {
        let mut after = capture(POD, "/", T0, 7);
        after.latency_us = 40;
        let mut before = capture(SERVICE, "/", T0, 7);
        before.latency_us = 55;
        for pair in [[after.clone(), before.clone()], [before.clone(), after.clone()]] {
            let mut m = stage();
            assert!(push(&mut m, T0, pair.to_vec()).is_empty());
            let mut out = Vec::new();
            m.finish(&mut out);
            assert_eq!(dst(&out[0]), (addr(POD), Some(addr(SERVICE))));
            assert_eq!(out[0].latency_us, 55, "the client's view");
        }
    }

    #[test]
    fn the_merged_record_does_not_depend_on_which_capture_arrives_first() {
        let (after, before) = (capture(POD, "/", T0 + 8, 7), capture(SERVICE, "/", T0, 7));
        let mut outs = Vec::new();
        for pair in [[after.clone(), before.clone()], [before, after]] {
            let mut m = stage();
            for r in pair {
                assert!(push(&mut m, T0 + 100, vec![r]).is_empty());
            }
            let mut out = Vec::new();
            m.finish(&mut out);
            outs.push(out);
        }
        assert_eq!(outs[0], outs[1]);
        assert_eq!(outs[0].len(), 1);
    }

    #[test]
    fn the_same_id_with_another_request_line_or_far_in_time_is_another_exchange() {
        let mut m = stage();
        let records = vec![
            capture(POD, "/a", T0, 7),
            capture(SERVICE, "/b", T0 + 1, 7),
            capture(SERVICE, "/a", T0 + HOLD + 1, 7),
        ];
        assert!(push(&mut m, T0 + 10, records).is_empty());
        let mut out = Vec::new();
        m.finish(&mut out);
        let got: Vec<(&str, i64)> =
            out.iter().map(|r| (r.path.as_str(), r.ts.timestamp_micros() - T0)).collect();
        assert_eq!(got, [("/a", 0), ("/b", 1), ("/a", HOLD + 1)]);
        assert_eq!(m.stats().merged_on_node, 0);
    }

    #[test]
    fn a_capture_arriving_after_its_twin_left_is_a_record_of_its_own() {
        let mut m = stage();
        assert!(push(&mut m, T0, vec![capture(POD, "/", T0, 7)]).is_empty());
        let left = push(&mut m, T0 + HOLD, Vec::new());
        assert_eq!(left.len(), 1, "the hold ended");
        assert!(push(&mut m, T0 + HOLD + 1, vec![capture(SERVICE, "/", T0, 7)]).is_empty());
        let mut out = Vec::new();
        m.finish(&mut out);
        assert_eq!(dst(&out[0]), (addr(SERVICE), None), "unmerged");
        assert_eq!(m.stats().merged_on_node, 0);
    }

    /// Idle expiry runs once a second: the two connections of an unanswered exchange can
    /// expire a sweep apart, the second exactly when the first's hold ends.
    #[test]
    fn a_capture_arriving_as_its_twins_hold_ends_still_merges() {
        let mut m = stage();
        assert!(push(&mut m, T0, vec![capture(POD, "/", T0 + 8, 7)]).is_empty());
        let out = push(&mut m, T0 + HOLD, vec![capture(SERVICE, "/", T0, 7)]);
        assert_eq!(out.len(), 1);
        assert_eq!(dst(&out[0]), (addr(POD), Some(addr(SERVICE))));
    }

    #[test]
    fn records_without_an_exchange_id_pass_straight_through() {
        let mut m = stage();
        let mut r = capture(POD, "/", T0, 7);
        r.exchange_id = None;
        let out = push(&mut m, T0, vec![r.clone(), r.clone()]);
        assert_eq!(out, [r.clone(), r]);
        assert_eq!(m.stats().merge_held, 0);
    }

    #[test]
    fn past_the_cap_the_oldest_leaves_unmerged_and_is_counted() {
        let mut m = NodeMerge::new(MergeConfig { hold_us: HOLD, max_held: 2 });
        assert!(push(&mut m, T0, vec![capture(POD, "/1", T0, 1), capture(POD, "/2", T0, 2)]).is_empty());
        let out = push(&mut m, T0 + 1, vec![capture(POD, "/3", T0, 3)]);
        let paths: Vec<&str> = out.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/1"], "the oldest, at once");
        assert_eq!(m.stats(), MergeStats { merged_on_node: 0, merge_overflow: 1, merge_held: 2 });
        // The others' twins still merge, without taking a slot.
        assert!(push(&mut m, T0 + 2, vec![capture(SERVICE, "/2", T0 - 1, 2)]).is_empty());
        // The pushed-out one's twin has nothing to meet, and takes the slot of the oldest.
        let out = push(&mut m, T0 + 3, vec![capture(SERVICE, "/1", T0 - 1, 1)]);
        let got: Vec<(&str, Option<SocketAddr>)> = out.iter().map(|r| (r.path.as_str(), dst(r).1)).collect();
        assert_eq!(got, [("/2", Some(addr(SERVICE)))], "merged, then pushed out by the cap");
        let mut rest = Vec::new();
        m.finish(&mut rest);
        let got: Vec<(&str, SocketAddr, Option<SocketAddr>)> =
            rest.iter().map(|r| (r.path.as_str(), dst(r).0, dst(r).1)).collect();
        assert_eq!(got, [("/3", addr(POD), None), ("/1", addr(SERVICE), None)]);
        assert_eq!(m.stats(), MergeStats { merged_on_node: 1, merge_overflow: 2, merge_held: 0 });
    }

    #[test]
    fn finish_lets_everything_out_in_arrival_order() {
        let mut m = stage();
        let records: Vec<TrafficLog> = (0..5).map(|i| capture(POD, &format!("/{i}"), T0 + i, i)).collect();
        assert!(push(&mut m, T0, records.clone()).is_empty());
        let mut out = Vec::new();
        m.finish(&mut out);
        assert_eq!(out, records);
        assert_eq!(m.stats().merge_held, 0);
        m.finish(&mut out);
        assert_eq!(out.len(), 5, "nothing twice");
    }

    #[test]
    fn three_captures_of_one_exchange_make_one_record() {
        // Behind a Service and an SNAT on the way out: three 4-tuples, one exchange.
        let mut m = stage();
        let snat = capture("10.0.0.9:18084", "/", T0 + 20, 7);
        let records = vec![capture(POD, "/", T0 + 8, 7), capture(SERVICE, "/", T0, 7), snat];
        assert!(push(&mut m, T0, records).is_empty());
        let mut out = Vec::new();
        m.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(m.stats().merged_on_node, 2);
    }

    #[test]
    fn a_hold_of_zero_turns_the_stage_off() {
        let mut m = NodeMerge::new(MergeConfig { hold_us: 0, max_held: 10 });
        let records = vec![capture(POD, "/", T0, 7), capture(SERVICE, "/", T0, 7)];
        assert_eq!(push(&mut m, T0, records.clone()), records);
    }

    #[test]
    fn positions_stay_right_as_the_queue_moves() {
        // Many exchanges sharing one id (a generator with fixed sequence numbers), released
        // and held again: each later capture finds only its own twin.
        let mut m = stage();
        let mut left = Vec::new();
        for i in 0..50 {
            let t = T0 + i * HOLD / 2;
            left.extend(push(&mut m, t, vec![capture(POD, &format!("/{i}"), t, 7)]));
            left.extend(push(&mut m, t + 1, vec![capture(SERVICE, &format!("/{i}"), t - 1, 7)]));
        }
        m.finish(&mut left);
        assert_eq!(left.len(), 50);
        assert!(left.iter().all(|r| dst(r) == (addr(POD), Some(addr(SERVICE)))), "{left:?}");
        let paths: Vec<String> = left.iter().map(|r| r.path.clone()).collect();
        let want: Vec<String> = (0..50).map(|i| format!("/{i}")).collect();
        assert_eq!(paths, want);
    }
}
