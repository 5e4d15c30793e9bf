//! How a filter is answered fast on a large table without changing what it answers: the rows
//! [`liteobs_model::Filter::matches`] selects, newest first (`ts`, then `seq`, descending), at
//! most `limit`. Each plan is an exact rewrite of that one statement ([`super::sql::select`]):
//!
//! * [`QueryPlan::TimeWindows`] (DuckDB, which has no secondary indexes): the `ts` range is cut
//!   into windows from the newest down, each asked newest first for what the earlier ones did
//!   not find. DuckDB skips every row group whose `ts` min/max lies outside a window, and rows
//!   arrive roughly in time order, so the newest matches of a common key cost one or two row
//!   groups instead of a scan of the table. Windows partition the range (ties on `ts` never
//!   straddle two), so their answers, concatenated, are the ordered answer; all run in one read
//!   transaction (one snapshot). The last window is unbounded below (down to `since`), so rows
//!   older than the store believes, or a store whose old rows were deleted, change only how many
//!   windows run, never what comes back.
//! * [`QueryPlan::SideIndexes`] (SQLite): a PID or address filter becomes one index walk per
//!   side ([`super::sql::select_by_side`]); other filters walk the `(ts, seq)` index newest first.
//!
//! Pure: the window arithmetic, no SQL text ([`super::sql`]) and no engine calls
//! ([`super::sql_store`]).

use super::sql::TimeWindow;

/// Which rewrite a store uses for its queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryPlan {
    /// Newest-first time windows that the engine's `ts` zone maps prune (DuckDB's default).
    TimeWindows,
    /// One per-side index walk for PID and address filters (SQLite's default).
    SideIndexes,
}

/// How a store plans its queries: by default each engine's measured best (BENCHMARKS.md,
/// "Queries at 10 M and 100 M rows"). Tests choose the other plan, or tiny windows, to check
/// that every plan answers exactly what the plain statement answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryTuning {
    /// `None`: the engine's default.
    pub plan: Option<QueryPlan>,
    /// Rows the first time window holds on average (the store's row count over its `ts` span):
    /// about two of DuckDB's 122 880-row row groups, which hold 100 matches of any key with at
    /// least a 0.05 % share of the rows.
    pub window_rows: u64,
}

impl QueryTuning {
    pub const DEFAULT_WINDOW_ROWS: u64 = 1 << 18;
}

impl Default for QueryTuning {
    fn default() -> Self {
        QueryTuning { plan: None, window_rows: Self::DEFAULT_WINDOW_ROWS }
    }
}

/// What the store believes of its `ts` column, to size windows. Only a hint: read at open,
/// advanced by each committed batch, not told of deletes or of other writers; a wrong hint costs
/// windows, never rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsHints {
    pub rows: u64,
    /// Oldest and newest `ts` (µs), `None` for an empty table.
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
}

impl TsHints {
    /// Counts a committed batch of `rows` rows whose `ts` lie in `lo..=hi`.
    pub fn saw(&mut self, rows: u64, lo: i64, hi: i64) {
        self.rows = self.rows.saturating_add(rows);
        self.oldest = Some(self.oldest.map_or(lo, |o| o.min(lo)));
        self.newest = Some(self.newest.map_or(hi, |n| n.max(hi)));
    }
}

/// After this many windows the next one reaches down to `since` (or the table's start).
const MAX_WINDOWS: u32 = 8;

/// The windows of one query, newest first. Call [`Windows::next`] with the matches found so far
/// until it answers `None`.
#[derive(Debug)]
pub struct Windows {
    /// `ts >= since` (µs) from the filter, if any: no window reaches below it.
    since: Option<i64>,
    /// Below this the store believes there are no rows.
    oldest: Option<i64>,
    /// Upper edge (exclusive) of the next window; `None` before the first.
    edge: Option<i64>,
    /// The upper edge of the first window (`until`, or unbounded), and its lower edge.
    first: TimeWindow,
    /// Width of the last window asked, and of all windows asked together.
    width: i64,
    covered: i64,
    asked: u32,
    done: bool,
}

impl Windows {
    /// The windows for a filter with bounds `since <= ts < until` (µs) on a table of `hints`,
    /// the first one holding about `window_rows` rows.
    pub fn new(since: Option<i64>, until: Option<i64>, hints: TsHints, window_rows: u64) -> Windows {
        let whole = TimeWindow { lo: since, hi: until };
        let (Some(oldest), Some(newest)) = (hints.oldest, hints.newest) else {
            // Nothing known: one window, the plain statement.
            return Windows {
                since,
                oldest: None,
                edge: None,
                first: whole,
                width: 0,
                covered: 0,
                asked: 0,
                done: false,
            };
        };
        let span = newest.saturating_sub(oldest).saturating_add(1).max(1) as f64;
        let width = (window_rows.max(1) as f64 * span / hints.rows.max(1) as f64).ceil();
        let width = if width >= i64::MAX as f64 { i64::MAX } else { (width as i64).max(1) };
        // The newest row the filter can see; the first window is open above it (rows newer than
        // the hint are in it).
        let anchor = until.map_or(newest.saturating_add(1), |u| u.min(newest.saturating_add(1)));
        let first = TimeWindow { lo: Some(anchor.saturating_sub(width)), hi: until };
        Windows {
            since,
            oldest: Some(oldest),
            edge: None,
            first,
            width,
            covered: width,
            asked: 0,
            done: false,
        }
    }

    /// The next window, given `found` matches so far out of `limit`; `None` when the answer is
    /// complete (`limit` found, or the last window asked).
    pub fn next(&mut self, found: usize, limit: usize) -> Option<TimeWindow> {
        if self.done || found >= limit {
            return None;
        }
        let window = if self.asked == 0 {
            self.first
        } else {
            // Widen to where `limit` matches should be at the density seen so far: at least
            // twice (few windows for a rare key), at most 16 times (no runaway on one lucky hit).
            let grow = if found == 0 {
                8.0
            } else {
                (self.covered as f64 * (limit - found) as f64 / found as f64 * 1.25 / self.width as f64)
                    .clamp(2.0, 16.0)
            };
            let width = self.width as f64 * grow;
            self.width = if width >= i64::MAX as f64 { i64::MAX } else { width as i64 };
            self.covered = self.covered.saturating_add(self.width);
            let hi = self.edge?;
            TimeWindow { lo: Some(hi.saturating_sub(self.width)), hi: Some(hi) }
        };
        self.asked += 1;
        let floor = match (self.since, self.oldest) {
            (Some(s), Some(o)) => Some(s.max(o)),
            (s, o) => s.or(o),
        };
        let last = match (window.lo, floor) {
            (None, _) | (_, None) => true,
            (Some(lo), Some(floor)) => lo <= floor || self.asked >= MAX_WINDOWS,
        };
        if last {
            self.done = true;
            return Some(TimeWindow { lo: self.since, hi: window.hi });
        }
        self.edge = window.lo;
        Some(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(rows: u64, oldest: i64, newest: i64) -> TsHints {
        TsHints { rows, oldest: Some(oldest), newest: Some(newest) }
    }

    /// Every window of a run, feeding `found` from a fixed count per window.
    fn run(mut w: Windows, per_window: usize, limit: usize) -> Vec<TimeWindow> {
        let mut out = Vec::new();
        let mut found = 0;
        while let Some(win) = w.next(found, limit) {
            out.push(win);
            found += per_window;
            assert!(out.len() <= MAX_WINDOWS as usize, "bounded: {out:?}");
        }
        out
    }

    /// The windows tile `since..until` from the top down without gaps or overlaps, the first open
    /// above (no until) and the last open below (no since).
    fn assert_tiles(ws: &[TimeWindow], since: Option<i64>, until: Option<i64>) {
        assert_eq!(ws[0].hi, until, "{ws:?}");
        assert_eq!(ws[ws.len() - 1].lo, since, "{ws:?}");
        for pair in ws.windows(2) {
            assert_eq!(pair[0].lo, pair[1].hi, "adjacent: {ws:?}");
            assert!(pair[1].lo.is_none_or(|lo| Some(lo) < pair[1].hi), "not empty: {ws:?}");
        }
    }

    #[test]
    fn nothing_known_is_one_plain_window() {
        let ws = run(Windows::new(None, None, TsHints::default(), 10), 0, 100);
        assert_eq!(ws, [TimeWindow::ALL]);
        let ws = run(Windows::new(Some(5), Some(9), TsHints::default(), 10), 0, 100);
        assert_eq!(ws, [TimeWindow { lo: Some(5), hi: Some(9) }]);
    }

    #[test]
    fn first_window_holds_about_window_rows() {
        // 1000 rows over 0..=999 µs: 10 rows are 10 µs.
        let mut w = Windows::new(None, None, hints(1000, 0, 999), 10);
        assert_eq!(w.next(0, 100), Some(TimeWindow { lo: Some(990), hi: None }));
        // Enough found: stop.
        assert_eq!(w.next(100, 100), None);
    }

    #[test]
    fn windows_tile_the_range_and_end_unbounded_below() {
        for per_window in [0, 1, 5] {
            for (since, until) in [(None, None), (Some(100), None), (None, Some(500)), (Some(-7), Some(2000))]
            {
                let ws = run(Windows::new(since, until, hints(1000, 0, 999), 10), per_window, 100);
                assert_tiles(&ws, since, until);
            }
        }
    }

    #[test]
    fn a_rare_key_widens_fast() {
        // 1 M rows; nothing found: 8 times wider each window, the table's start reached soon.
        let ws = run(Windows::new(None, None, hints(1_000_000, 0, 999_999), 100), 0, 100);
        assert!(ws.len() <= 6, "{ws:?}");
        assert_tiles(&ws, None, None);
    }

    #[test]
    fn wrong_hints_still_end_unbounded() {
        // Rows newer and older than the hints: the first window is open above, the last below.
        let ws = run(Windows::new(None, None, hints(10, 500, 510), 1), 0, 100);
        assert_tiles(&ws, None, None);
        // A filter entirely above or below what the store believes it holds: one window.
        let ws = run(Windows::new(Some(10_000), Some(20_000), hints(10, 500, 510), 1), 0, 100);
        assert_eq!(ws, [TimeWindow { lo: Some(10_000), hi: Some(20_000) }]);
        let ws = run(Windows::new(None, Some(100), hints(10, 500, 510), 1), 0, 100);
        assert_tiles(&ws, None, Some(100));
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let ws = run(Windows::new(None, None, hints(3, i64::MIN, i64::MAX), 1), 0, 100);
        assert_tiles(&ws, None, None);
        let ws = run(Windows::new(None, None, hints(u64::MAX, i64::MAX - 1, i64::MAX), u64::MAX), 1, 100);
        assert_tiles(&ws, None, None);
    }

    #[test]
    fn limit_zero_asks_nothing() {
        assert!(run(Windows::new(None, None, hints(10, 0, 9), 1), 0, 0).is_empty());
    }
}
