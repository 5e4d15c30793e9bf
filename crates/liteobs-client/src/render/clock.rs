//! When "now" is and in which time zone the viewer reads times: given to rendering as a value,
//! so that output never depends on when or where a test runs.
//!
//! The tables show times in the viewer's zone (`TZ`, else the system's: what `date` prints),
//! because "today" and "14:02" mean the viewer's day and clock; `-o json`, `-o csv` and
//! `-o wide` keep UTC with microseconds, for programs and for pasting into bug reports.
//! `TZ=UTC liteobs-client ...` shows UTC in the tables too.

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDateTime, Utc};

/// A time zone the tables may show times in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The viewer's own (`TZ`, else the system's), as chrono's `Local` reads it.
    Local,
    /// A fixed offset from UTC (tests; `Zone::Fixed(FixedOffset::east(0))` is UTC).
    Fixed(FixedOffset),
}

impl Zone {
    pub fn utc() -> Zone {
        Zone::Fixed(FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!("0 is a valid offset")))
    }

    fn civil(self, ts: &DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Local => ts.with_timezone(&Local).naive_local(),
            Zone::Fixed(offset) => ts.with_timezone(&offset).naive_local(),
        }
    }
}

/// "Now" and the viewer's zone, fixed for one rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: DateTime<Utc>,
    pub zone: Zone,
}

impl Clock {
    /// `14:02:44` when `ts` falls on today's date in the zone (or a later time today: a clock
    /// ahead of the viewer's); `Nov 25` on another day of this year; `2025-11-25` in another
    /// year. At most 10 columns; 8 for today.
    pub fn short(&self, ts: &DateTime<Utc>) -> String {
        let (now, then) = (self.zone.civil(&self.now), self.zone.civil(ts));
        if then.date() == now.date() {
            then.format("%H:%M:%S").to_string()
        } else if then.year() == now.year() {
            then.format("%b %d").to_string()
        } else {
            then.format("%Y-%m-%d").to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn today_is_the_time_of_day_else_a_short_date() {
        let utc = Clock { now: at("2026-11-25T15:00:00Z"), zone: Zone::utc() };
        assert_eq!(utc.short(&at("2026-11-25T14:02:44.999Z")), "14:02:44");
        assert_eq!(utc.short(&at("2026-11-25T00:00:00Z")), "00:00:00");
        assert_eq!(utc.short(&at("2026-11-25T23:59:59Z")), "23:59:59", "later today: a clock ahead");
        assert_eq!(utc.short(&at("2026-11-24T23:59:59Z")), "Nov 24");
        assert_eq!(utc.short(&at("2026-01-01T00:00:00Z")), "Jan 01");
        assert_eq!(utc.short(&at("2025-11-25T14:00:00Z")), "2025-11-25");
    }

    #[test]
    fn today_is_the_viewers_day() {
        // 23:30 UTC is already tomorrow in UTC+02:00, and 01:30 there is still today.
        let east = Clock {
            now: at("2026-11-25T23:30:00Z"),
            zone: Zone::Fixed(FixedOffset::east_opt(7200).unwrap()),
        };
        assert_eq!(east.short(&at("2026-11-25T23:00:00Z")), "01:00:00");
        assert_eq!(east.short(&at("2026-11-25T21:00:00Z")), "Nov 25");
        let west = Clock {
            now: at("2026-11-26T01:00:00Z"),
            zone: Zone::Fixed(FixedOffset::west_opt(5 * 3600).unwrap()),
        };
        assert_eq!(west.short(&at("2026-11-25T14:00:00Z")), "09:00:00");
    }
}
