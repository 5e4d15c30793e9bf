//! Turning a query answer into the text the user reads; pure functions, no I/O.
//!
//! * [`table`]: the human table, fitted to a width, optionally coloured.
//! * [`json`]: a pretty JSON array of the records.
//! * [`csv`]: a header row of field names and one row per record.
//! * [`stats`]: the `stats` command's figures per group, in each format.
//! * [`map`]: the `map` command's edges and nodes: table, JSON, CSV, Graphviz, Mermaid.
//! * [`grid`]: the aligned columns of the `stats` and `map` tables.
//! * [`cells`] and [`text`]: the human forms of single values and the terminal-safety rules
//!   (escaped control characters, char-counted truncation) the table is built from.
//!
//! [`render`] picks one by [`OutputFormat`]. Machine formats keep stdout pure data, so the
//! "limit reached" warning comes back separately as [`Output::note`] for stderr.

pub mod cells;
pub mod csv;
pub mod grid;
pub mod json;
pub mod map;
pub mod stats;
pub mod table;
pub mod text;

#[cfg(test)]
pub(crate) mod fixtures;

use liteobs_model::QueryResponse;
use liteobs_model::filter::MAX_LIMIT;

use crate::terminal::Terminal;

/// What `-o` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for a person at a terminal.
    Table,
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

/// Renders `resp` in `format`; the table uses `term`'s width and colour permission.
pub fn render(format: OutputFormat, resp: &QueryResponse, term: &Terminal) -> Result<Output, RenderError> {
    let stdout = match format {
        OutputFormat::Table | OutputFormat::Dot | OutputFormat::Mermaid => {
            table::render(resp, term.width, term.colour)
        }
        OutputFormat::Json => json::render(&resp.records)?,
        OutputFormat::Csv => csv::render(&resp.records)?,
    };
    let note = (format != OutputFormat::Table && resp.truncated).then(|| summary(resp));
    Ok(Output { stdout, note })
}

/// Renders a `/stats` answer in `format`.
pub fn render_stats(
    format: OutputFormat,
    resp: &liteobs_model::stats::StatsResponse,
) -> Result<Output, RenderError> {
    let stdout = match format {
        OutputFormat::Table | OutputFormat::Dot | OutputFormat::Mermaid => stats::table(resp),
        OutputFormat::Json => stats::json(resp)?,
        OutputFormat::Csv => stats::csv(resp)?,
    };
    let note = (format != OutputFormat::Table && resp.truncated)
        .then(|| format!("{} groups (more match — raise -limit)", resp.groups.len()));
    Ok(Output { stdout, note })
}

/// Renders a `/map` answer in `format`.
pub fn render_map(
    format: OutputFormat,
    resp: &liteobs_model::map::MapResponse,
) -> Result<Output, RenderError> {
    let stdout = match format {
        OutputFormat::Table => map::table(resp),
        OutputFormat::Json => map::json(resp)?,
        OutputFormat::Csv => map::csv(resp)?,
        OutputFormat::Dot => map::dot(resp),
        OutputFormat::Mermaid => map::mermaid(resp),
    };
    let note = (format != OutputFormat::Table && resp.truncated)
        .then(|| format!("{} edges (more match — raise -limit)", resp.edges.len()));
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
        let term = Terminal { width: 80, colour: true };
        for format in [OutputFormat::Json, OutputFormat::Csv] {
            let out = render(format, &answer(2, 2, true), &term).unwrap();
            assert_eq!(out.note.as_deref(), Some("2 exchanges (limit 2 reached; more match — raise -limit)"));
            assert!(!out.stdout.contains("limit"), "{format:?}: {}", out.stdout);
            assert!(!out.stdout.contains('\x1b'));
            assert_eq!(render(format, &answer(2, 100, false), &term).unwrap().note, None);
        }
        let table = render(OutputFormat::Table, &answer(2, 2, true), &term).unwrap();
        assert_eq!(table.note, None, "the table says it in its last line");
    }
}
