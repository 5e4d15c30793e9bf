//! Turning a query answer into the text the user reads; pure functions, no I/O.
//!
//! * [`table`]: the human table of exchanges (compact, or every field with `-o wide`), fitted to
//!   a width, optionally coloured; [`table::Table`] also writes rows one at a time.
//! * [`json`]: a pretty JSON array of the records.
//! * [`csv`]: a header row of field names and one row per record.
//! * [`stats`]: the `stats` command's figures per group, in each format.
//! * [`map`]: the `map` command's edges and nodes: table, JSON, CSV, Graphviz, Mermaid.
//! * [`sql`]: the `sql` command's columns and rows: table, JSON, CSV.
//! * [`fit`] and [`grid`]: the rules every table follows to fit a width (which columns, how
//!   wide, what is cut) and the writer of its aligned lines.
//! * [`clock`]: "now" and the viewer's time zone, passed in (times of day when today).
//! * [`cells`] and [`text`]: the human forms of single values and the terminal-safety rules
//!   (escaped control characters, char-counted truncation) the table is built from.
//!
//! [`render`] picks one by [`OutputFormat`]. Machine formats keep stdout pure data, so the
//! "limit reached" warning comes back separately as [`Output::note`] for stderr.

pub mod cells;
pub mod clock;
pub mod csv;
pub mod fit;
pub mod grid;
pub mod json;
pub mod map;
pub mod sql;
pub mod stats;
pub mod table;
pub mod text;

#[cfg(test)]
pub(crate) mod fixtures;

use liteobs_model::QueryResponse;
use liteobs_model::filter::MAX_LIMIT;

pub use self::clock::{Clock, Zone};
use crate::terminal::Terminal;

/// What `-o` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for a person at a terminal.
    Table,
    /// The table with every field (for exchanges) or every figure (`stats`, `map`).
    Wide,
    /// A pretty-printed JSON array of records.
    Json,
    /// CSV with a header row of field names.
    Csv,
    /// Graphviz (`map` only).
    Dot,
    /// A Mermaid flowchart (`map` only).
    Mermaid,
}

/// Rendered text: `stdout` is the result; `note`, when set, is a warning for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub note: Option<String>,
}

/// Why output could not be produced. Serializing in-memory records only fails through a bug.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("CSV: {0}")]
    Csv(#[from] csv::CsvError),
}

impl OutputFormat {
    /// Whether this is a table for people (which says itself when the limit cut the answer).
    pub fn is_table(self) -> bool {
        matches!(self, OutputFormat::Table | OutputFormat::Wide)
    }
}

/// Where the tables go and when they are read: everything a table's look depends on, decided
/// once by the caller (`main`: [`Terminal::detect`] and the system clock), so that rendering
/// reads no environment and no clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Columns available; `None`: no limit (nothing is cut or dropped).
    pub width: Option<usize>,
    /// May ANSI colour codes be written.
    pub colour: bool,
    pub clock: Clock,
}

impl View {
    /// `term`'s width and colour, with times read against `clock`.
    pub fn new(term: &Terminal, clock: Clock) -> View {
        View { width: term.width, colour: term.colour, clock }
    }
}

/// Renders `resp` in `format`; the tables use `view`.
pub fn render(format: OutputFormat, resp: &QueryResponse, view: &View) -> Result<Output, RenderError> {
    let stdout = match format {
        OutputFormat::Wide => table::render(resp, table::Columns::Wide, view),
        OutputFormat::Table | OutputFormat::Dot | OutputFormat::Mermaid => {
            table::render(resp, table::Columns::Default, view)
        }
        OutputFormat::Json => json::render(&resp.records)?,
        OutputFormat::Csv => csv::render(&resp.records)?,
    };
    let note = (!format.is_table() && resp.truncated).then(|| summary(resp));
    Ok(Output { stdout, note })
}

/// Renders a `/stats` answer in `format`.
pub fn render_stats(
    format: OutputFormat,
    resp: &liteobs_model::stats::StatsResponse,
    view: &View,
) -> Result<Output, RenderError> {
    let stdout = match format {
        OutputFormat::Wide => stats::table(resp, true, view),
        OutputFormat::Table | OutputFormat::Dot | OutputFormat::Mermaid => stats::table(resp, false, view),
        OutputFormat::Json => stats::json(resp)?,
        OutputFormat::Csv => stats::csv(resp)?,
    };
    let note = (!format.is_table() && resp.truncated)
        .then(|| format!("{} groups (more match — raise -limit)", resp.groups.len()));
    Ok(Output { stdout, note })
}

/// Renders a `/map` answer in `format`.
pub fn render_map(
    format: OutputFormat,
    resp: &liteobs_model::map::MapResponse,
    view: &View,
) -> Result<Output, RenderError> {
    let stdout = match format {
        OutputFormat::Table => map::table(resp, false, view),
        OutputFormat::Wide => map::table(resp, true, view),
        OutputFormat::Json => map::json(resp)?,
        OutputFormat::Csv => map::csv(resp)?,
        OutputFormat::Dot => map::dot(resp),
        OutputFormat::Mermaid => map::mermaid(resp),
    };
    let note = (!format.is_table() && resp.truncated)
        .then(|| format!("{} edges (more match — raise -limit)", resp.edges.len()));
    Ok(Output { stdout, note })
}

/// Renders a `POST /sql` answer in `format`.
pub fn render_sql(
    format: OutputFormat,
    resp: &liteobs_model::sql::SqlAnswer,
    view: &View,
) -> Result<Output, RenderError> {
    let stdout = match format {
        OutputFormat::Wide => sql::table(resp, true, view),
        OutputFormat::Table | OutputFormat::Dot | OutputFormat::Mermaid => sql::table(resp, false, view),
        OutputFormat::Json => sql::json(resp)?,
        OutputFormat::Csv => sql::csv(resp)?,
    };
    let note = (!format.is_table() && resp.truncated).then(|| sql::summary(resp));
    Ok(Output { stdout, note })
}

/// `3 exchanges`, `1 exchange`, or when the server held more back:
/// `100 exchanges (limit 100 reached; more match — raise -limit)`.
pub fn summary(resp: &QueryResponse) -> String {
    let n = resp.records.len();
    let noun = if n == 1 { "exchange" } else { "exchanges" };
    if !resp.truncated {
        return format!("{n} {noun}");
    }
    let advice = if resp.limit >= MAX_LIMIT { "narrow the filter" } else { "raise -limit" };
    format!("{n} {noun} (limit {} reached; more match — {advice})", resp.limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixtures::response;

    fn answer(n: usize, limit: usize, truncated: bool) -> QueryResponse {
        let mut records = response().records;
        records.truncate(n);
        QueryResponse { records, limit, truncated }
    }

    #[test]
    fn summaries() {
        assert_eq!(summary(&answer(0, 100, false)), "0 exchanges");
        assert_eq!(summary(&answer(1, 100, false)), "1 exchange");
        assert_eq!(summary(&answer(3, 100, false)), "3 exchanges");
        assert_eq!(summary(&answer(3, 3, true)), "3 exchanges (limit 3 reached; more match — raise -limit)");
        assert_eq!(
            summary(&answer(3, MAX_LIMIT, true)),
            "3 exchanges (limit 10000 reached; more match — narrow the filter)"
        );
    }

    #[test]
    fn machine_formats_warn_on_stderr_only_when_cut() {
        let view = View { width: Some(80), colour: true, clock: fixtures::clock() };
        for format in [OutputFormat::Json, OutputFormat::Csv] {
            let out = render(format, &answer(2, 2, true), &view).unwrap();
            assert_eq!(out.note.as_deref(), Some("2 exchanges (limit 2 reached; more match — raise -limit)"));
            assert!(!out.stdout.contains("limit"), "{format:?}: {}", out.stdout);
            assert!(!out.stdout.contains('\x1b'));
            assert_eq!(render(format, &answer(2, 100, false), &view).unwrap().note, None);
        }
        for format in [OutputFormat::Table, OutputFormat::Wide] {
            let table = render(format, &answer(2, 2, true), &view).unwrap();
            assert_eq!(table.note, None, "the table says it in its last line");
        }
    }
}
