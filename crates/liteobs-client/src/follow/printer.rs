//! What `-follow` prints for each line of the stream: pure, so every format and the rules
//! that keep an exchange from being printed twice are tested on values.
//!
//! * A record at or before the last `seq` already printed is skipped (a stream resumed from a
//!   cursor never repeats one; this holds even against a server that would).
//! * A record of an exchange already printed (the same `exchange_id`, method, path and status,
//!   times within [`SAME_EXCHANGE`]) replaces it: the server merged a later half into the row,
//!   and says so with `"update": true`, which this rule does not need (a server that restarted
//!   forgets which rows it merged). `-o json` prints the new version with `"update": true` so a
//!   program can replace the old one; a table or CSV cannot take a line back and prints nothing.
//! * Tables have fixed columns for the whole stream ([`Table::streaming`]), fitted to the
//!   terminal as the query table is, the header once; CSV has its header once; JSON is NDJSON,
//!   one record a line.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::{DateTime, Duration, Utc};
use liteobs_model::TrafficLog;

use crate::render::table::{Columns, Table};
use crate::render::{OutputFormat, RenderError, View, csv};

/// How far apart two records of one exchange may be in time and still be one (more than any
/// server's `-merge-window` is likely to be).
pub const SAME_EXCHANGE: Duration = Duration::minutes(5);

/// Exchanges remembered for that rule; the oldest are forgotten first.
pub const REMEMBERED: usize = 100_000;

/// Turns stream lines into output text.
pub struct Printer {
    format: OutputFormat,
    table: Option<Table>,
    header_done: bool,
    /// The last `seq` printed or passed (by a cursor line).
    last: Option<u64>,
    seen: Seen,
}

impl Printer {
    pub fn new(format: OutputFormat, view: &View) -> Printer {
        let table = match format {
            OutputFormat::Wide => Some(Table::streaming(Columns::Wide, view)),
            OutputFormat::Table | OutputFormat::Dot | OutputFormat::Mermaid => {
                Some(Table::streaming(Columns::Default, view))
            }
            OutputFormat::Json | OutputFormat::Csv => None,
        };
        Printer { format, table, header_done: false, last: None, seen: Seen::default() }
    }

    /// Where a new connection resumes: after the last `seq` printed or passed.
    pub fn cursor(&self) -> Option<u64> {
        self.last
    }

    /// The header, the first time the stream is connected (a table's or CSV's; empty for JSON
    /// and afterwards).
    pub fn start(&mut self) -> Result<String, RenderError> {
        if self.header_done {
            return Ok(String::new());
        }
        self.header_done = true;
        Ok(match (&self.table, self.format) {
            (Some(table), _) => table.header() + "\n",
            (None, OutputFormat::Csv) => csv::lines(&[], true)?,
            (None, _) => String::new(),
        })
    }

    /// A cursor line: everything up to `cursor` has been sent.
    pub fn passed(&mut self, cursor: u64) {
        self.last = Some(self.last.map_or(cursor, |l| l.max(cursor)));
    }

    /// A record line whose record could not be read: skipped, but passed.
    pub fn skipped(&mut self, seq: u64) {
        self.passed(seq);
    }

    /// The text for a record line (empty when it is not to be printed).
    pub fn record(&mut self, seq: u64, record: &TrafficLog) -> Result<String, RenderError> {
        if self.last.is_some_and(|l| seq <= l) {
            return Ok(String::new());
        }
        self.passed(seq);
        let replaces = self.seen.saw(record);
        Ok(match (&self.table, self.format) {
            (Some(_), _) | (None, OutputFormat::Csv) if replaces => String::new(),
            (Some(table), _) => table.row(record) + "\n",
            (None, OutputFormat::Csv) => csv::lines(std::slice::from_ref(record), false)?,
            (None, _) => {
                let mut line = if replaces {
                    let mut value = serde_json::to_value(record)?;
                    if let Some(object) = value.as_object_mut() {
                        object.insert("update".to_owned(), serde_json::Value::Bool(true));
                    }
                    serde_json::to_string(&value)?
                } else {
                    serde_json::to_string(record)?
                };
                line.push('\n');
                line
            }
        })
    }
}

/// The exchanges printed, by `exchange_id`: when, and a hash of the request line and status.
#[derive(Default)]
struct Seen {
    by_id: HashMap<i64, (DateTime<Utc>, u64)>,
    order: VecDeque<i64>,
}

impl Seen {
    /// Remembers `r`; whether an exchange it is another version of was printed.
    fn saw(&mut self, r: &TrafficLog) -> bool {
        let Some(id) = r.exchange_id else { return false };
        let mut h = DefaultHasher::new();
        (&r.method, &r.path, r.status).hash(&mut h);
        let key = h.finish();
        if let Some((ts, k)) = self.by_id.get(&id) {
            let same = *k == key && (*ts - r.ts).abs() <= SAME_EXCHANGE;
            if !same {
                self.by_id.insert(id, (r.ts, key));
            }
            return same;
        }
        self.by_id.insert(id, (r.ts, key));
        self.order.push_back(id);
        if self.order.len() > REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.by_id.remove(&old);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{plain, pods, view};

    fn with_id(mut r: TrafficLog, id: i64) -> TrafficLog {
        r.exchange_id = Some(id);
        r
    }

    #[test]
    fn nothing_is_printed_twice_and_a_merged_exchange_replaces_in_json_only() {
        let first = with_id(plain(), 7);
        let mut merged = first.clone();
        merged.dst_pid = Some(4242);
        let other = with_id(pods().records[0].clone(), 8);
        for format in [OutputFormat::Json, OutputFormat::Csv, OutputFormat::Table] {
            let mut p = Printer::new(format, &view(Some(200)));
            let header = p.start().unwrap();
            assert_eq!(p.start().unwrap(), "", "{format:?}: the header once");
            assert_eq!(header.is_empty(), format == OutputFormat::Json, "{format:?}");
            assert_eq!(p.cursor(), None);
            assert_eq!(p.record(3, &first).unwrap().lines().count(), 1, "{format:?}");
            assert_eq!(p.record(3, &first).unwrap(), "", "{format:?}: the same seq again");
            assert_eq!(p.record(2, &other).unwrap(), "", "{format:?}: a seq already passed");
            p.passed(10);
            assert_eq!(p.cursor(), Some(10));
            assert_eq!(p.record(9, &other).unwrap(), "", "{format:?}: before the cursor");
            let again = p.record(11, &merged).unwrap();
            if format == OutputFormat::Json {
                let v: serde_json::Value = serde_json::from_str(&again).unwrap();
                assert_eq!((v["update"].as_bool(), v["dst_pid"].as_u64()), (Some(true), Some(4242)));
            } else {
                assert_eq!(again, "", "{format:?}: a table cannot take a row back");
            }
            assert_eq!(p.record(12, &other).unwrap().lines().count(), 1, "{format:?}: a new exchange");
            assert_eq!(p.cursor(), Some(12));
        }
    }

    #[test]
    fn a_shared_id_of_another_exchange_is_printed() {
        let mut p = Printer::new(OutputFormat::Json, &view(Some(80)));
        let a = with_id(plain(), 7);
        let mut b = a.clone();
        b.path = "/another".into();
        let mut later = a.clone();
        later.ts += Duration::hours(1);
        assert!(!p.record(1, &a).unwrap().contains("update"));
        assert!(!p.record(2, &b).unwrap().contains("update"), "another request line");
        assert!(!p.record(3, &later).unwrap().contains("update"), "an hour later");
    }

    #[test]
    fn json_lines_are_the_records_wire_form() {
        let mut p = Printer::new(OutputFormat::Json, &view(Some(80)));
        let line = p.record(1, &plain()).unwrap();
        assert_eq!(line, serde_json::to_string(&plain()).unwrap() + "\n");
        assert_eq!(liteobs_model::decode_ndjson(line.as_bytes()).unwrap(), [plain()]);
    }

    #[test]
    fn a_stream_table_at_80_columns() {
        let mut p = Printer::new(OutputFormat::Table, &view(Some(80)));
        let mut out = p.start().unwrap();
        for (i, r) in pods().records.iter().enumerate() {
            out.push_str(&p.record(i as u64 + 1, r).unwrap());
        }
        assert!(out.lines().all(|l| crate::render::text::width(l) <= 80), "{out}");
        insta::assert_snapshot!(out);
    }
}
