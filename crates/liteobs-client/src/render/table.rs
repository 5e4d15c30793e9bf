//! The table people read: a header, one line per exchange, and a summary line.
//!
//! ```text
//! TIME                     CLIENT                     SERVER                  METHOD  PATH                STATUS  LATENCY  SIZE
//! 2026-11-25 14:02:44.123  10.0.0.1:51234 1234/curl   10.0.0.2:8080 88/nginx  GET     /api/v1/items?id=7     200    1.5ms  512B
//! 1 exchange
//! ```
//!
//! * Columns are separated by two spaces; STATUS, LATENCY and SIZE are right-aligned.
//! * CLIENT and SERVER are `ip:port pid/comm`, the address padded so that PIDs line up; an
//!   unknown PID is `-`.
//! * Every line but the summary fits `width` columns. To get there, the table gives up details
//!   in a fixed order ([`LADDER`]), each step only when the one before it was not enough:
//!   PATH is cut at its end with `…` (its start is what `-path` matches), down to [`PATH_MIN`]
//!   columns; then times lose their date (`14:02:44.123`); then command names go (PIDs stay);
//!   then SIZE; then the client's port; then the gaps narrow to one space; then LATENCY; then
//!   both addresses (PIDs stay). What is shown is never altered: an address is shown whole or
//!   not at all. Only below the last step (53 columns for typical rows) are lines cut at `width`
//!   with `…`.
//!   The summary line is not cut. `-o json` keeps every field whatever the width.
//! * With `colour`, the header is bold, 4xx statuses yellow, 5xx and "no response" red. Escape
//!   codes wrap only the text, so they never count towards a width.

use std::borrow::Cow;

use liteobs_model::{QueryResponse, TrafficLog};

use super::text::{self, ellipsize, printable};
use super::{cells, summary};

/// PATH is never cut narrower than this many columns (ellipsis included) before the table
/// starts dropping other details.
pub const PATH_MIN: usize = 12;

/// What one step of the fitting shows; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// TIME has its date (`2026-11-25 14:02:44.123`) rather than the time of day only.
    pub date: bool,
    /// CLIENT and SERVER name the command after the PID (`1234/curl`).
    pub comm: bool,
    pub size: bool,
    /// CLIENT has its port (`10.0.0.1:51234`); meaningful only with `addresses`.
    pub client_port: bool,
    /// Columns are two spaces apart rather than one.
    pub wide_gap: bool,
    pub latency: bool,
    /// CLIENT and SERVER show the address before the PID.
    pub addresses: bool,
}

const FULL: Layout = Layout {
    date: true,
    comm: true,
    size: true,
    client_port: true,
    wide_gap: true,
    latency: true,
    addresses: true,
};

/// The layouts tried in order, from everything to the narrowest; the first that fits wins.
pub const LADDER: [Layout; 8] = [
    FULL,
    Layout { date: false, ..FULL },
    Layout { date: false, comm: false, ..FULL },
    Layout { date: false, comm: false, size: false, ..FULL },
    Layout { date: false, comm: false, size: false, client_port: false, ..FULL },
    Layout { date: false, comm: false, size: false, client_port: false, wide_gap: false, ..FULL },
    Layout {
        date: false,
        comm: false,
        size: false,
        client_port: false,
        wide_gap: false,
        latency: false,
        ..FULL
    },
    Layout {
        date: false,
        comm: false,
        size: false,
        client_port: false,
        wide_gap: false,
        latency: false,
        addresses: false,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Time,
    Client,
    Server,
    Method,
    Path,
    Status,
    Latency,
    Size,
}

impl Column {
    fn header(self) -> &'static str {
        match self {
            Column::Time => "TIME",
            Column::Client => "CLIENT",
            Column::Server => "SERVER",
            Column::Method => "METHOD",
            Column::Path => "PATH",
            Column::Status => "STATUS",
            Column::Latency => "LATENCY",
            Column::Size => "SIZE",
        }
    }

    fn right_aligned(self) -> bool {
        matches!(self, Column::Status | Column::Latency | Column::Size)
    }
}

impl Layout {
    fn columns(&self) -> Vec<Column> {
        use Column::*;
        let mut columns = vec![Time, Client, Server, Method, Path, Status];
        if self.latency {
            columns.push(Latency);
        }
        if self.size {
            columns.push(Size);
        }
        columns
    }

    fn gap(&self) -> &'static str {
        if self.wide_gap { "  " } else { " " }
    }
}

const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// A layout with its cells, and each column's width (PATH's already fitted).
struct Table {
    layout: Layout,
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    widths: Vec<usize>,
}

/// Renders `resp` for a terminal `width` columns wide; `colour` allows ANSI colour codes.
/// The result ends with a newline. With no records it is just the summary line.
pub fn render(resp: &QueryResponse, width: usize, colour: bool) -> String {
    let mut out = String::new();
    if !resp.records.is_empty() {
        let table = fit(&resp.records, width);
        let headers: Vec<String> = table.columns.iter().map(|c| c.header().to_owned()).collect();
        let header = line(&table, &headers, |_| None);
        let header = clip(header, width);
        if colour {
            out.push_str(BOLD);
            out.push_str(&header);
            out.push_str(RESET);
        } else {
            out.push_str(&header);
        }
        out.push('\n');
        for (row, record) in table.rows.iter().zip(&resp.records) {
            let paint =
                |column| (colour && column == Column::Status).then(|| status_colour(record.status)).flatten();
            let painted = line(&table, row, paint);
            let plain = line(&table, row, |_| None);
            // A cut line loses its colour: cutting between escape codes would break them.
            out.push_str(&if text::width(&plain) > width { clip(plain, width) } else { painted });
            out.push('\n');
        }
    }
    out.push_str(&summary(resp));
    out.push('\n');
    out
}

/// The first layout of [`LADDER`] whose lines fit `width` with PATH at least [`PATH_MIN`]
/// (or whole, when shorter); else the last one.
fn fit(records: &[TrafficLog], width: usize) -> Table {
    let mut chosen = None;
    for layout in LADDER {
        let table = natural(records, layout);
        let path = table.columns.iter().position(|c| *c == Column::Path).unwrap_or(0);
        let others: usize =
            table.widths.iter().enumerate().filter(|(i, _)| *i != path).map(|(_, w)| w).sum::<usize>()
                + layout.gap().len() * (table.widths.len() - 1);
        let room = width.saturating_sub(others);
        let fits = room >= table.widths[path].min(PATH_MIN);
        let mut table = table;
        table.widths[path] = table.widths[path].min(room.max(PATH_MIN));
        if fits {
            return table;
        }
        chosen = Some(table);
    }
    chosen.unwrap_or_else(|| natural(records, FULL))
}

/// `layout`'s cells of every record, uncut and without colour, and each column's natural width.
fn natural(records: &[TrafficLog], layout: Layout) -> Table {
    let side = |ip, port, with_port: bool| {
        if !layout.addresses {
            String::new()
        } else if with_port {
            cells::endpoint(ip, port)
        } else {
            cells::address(ip)
        }
    };
    let clients: Vec<String> =
        records.iter().map(|r| side(r.src_ip, r.src_port, layout.client_port)).collect();
    let servers: Vec<String> = records.iter().map(|r| side(r.dst_ip, r.dst_port, true)).collect();
    let client_w = clients.iter().map(|s| text::width(s)).max().unwrap_or(0);
    let server_w = servers.iter().map(|s| text::width(s)).max().unwrap_or(0);
    let process = |pid, comm: Option<&str>| cells::process(pid, comm.filter(|_| layout.comm));
    let endpoint = |addr: &str, addr_w: usize, process: String| {
        if layout.addresses { format!("{addr:<addr_w$} {process}") } else { process }
    };
    let columns = layout.columns();
    let rows: Vec<Vec<String>> = records
        .iter()
        .zip(clients.iter().zip(&servers))
        .map(|(r, (client, server))| {
            columns
                .iter()
                .map(|column| match column {
                    Column::Time => {
                        if layout.date {
                            cells::time(&r.ts)
                        } else {
                            cells::time_of_day(&r.ts)
                        }
                    }
                    Column::Client => endpoint(client, client_w, process(r.src_pid, r.src_comm.as_deref())),
                    Column::Server => endpoint(server, server_w, process(r.dst_pid, r.dst_comm.as_deref())),
                    Column::Method => printable(&r.method).into_owned(),
                    Column::Path => printable(&r.path).into_owned(),
                    Column::Status => cells::status(r.status),
                    Column::Latency => cells::latency(r.latency_us, r.status),
                    Column::Size => cells::size(r.resp_bytes, r.status),
                })
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| text::width(c.header())).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(text::width(cell));
        }
    }
    Table { layout, columns, rows, widths }
}

fn status_colour(status: u16) -> Option<&'static str> {
    match status {
        0 | 500..=599 => Some(RED),
        400..=499 => Some(YELLOW),
        _ => None,
    }
}

/// `line` cut to `width` columns with `…` when it is wider (only below the narrowest layout);
/// the spaces a cut may leave before the `…` are dropped.
fn clip(line: String, width: usize) -> String {
    if text::width(&line) <= width {
        return line;
    }
    let cut = ellipsize(&line, width).into_owned();
    if let Some(body) = cut.strip_suffix(text::ELLIPSIS) {
        let body = body.trim_end();
        return format!("{body}{}", text::ELLIPSIS);
    }
    cut
}

/// One line: cells padded (PATH cut) to the table's widths; `paint(column)` may give a colour
/// for a cell.
fn line(table: &Table, cells: &[String], paint: impl Fn(Column) -> Option<&'static str>) -> String {
    let mut out = String::new();
    let last = cells.len() - 1;
    for (i, (cell, (&column, &width))) in
        cells.iter().zip(table.columns.iter().zip(&table.widths)).enumerate()
    {
        if i > 0 {
            out.push_str(table.layout.gap());
        }
        let shown =
            if column == Column::Path { ellipsize(cell, width) } else { Cow::Borrowed(cell.as_str()) };
        let pad = " ".repeat(width.saturating_sub(text::width(&shown)));
        if column.right_aligned() {
            out.push_str(&pad);
        }
        match paint(column) {
            Some(code) => {
                out.push_str(code);
                out.push_str(&shown);
                out.push_str(RESET);
            }
            None => out.push_str(&shown),
        }
        if !column.right_aligned() && i != last {
            out.push_str(&pad);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{response, single};

    /// Escape codes made visible, so that snapshots stay readable text.
    fn visible(s: &str) -> String {
        s.replace('\x1b', "\\e")
    }

    fn widest(s: &str) -> usize {
        s.lines().map(text::width).max().unwrap_or(0)
    }

    /// Every line but the summary (the last), stripped of colour.
    fn table_lines(s: &str) -> Vec<String> {
        let stripped = [BOLD, RED, YELLOW, RESET].iter().fold(s.to_owned(), |s, code| s.replace(code, ""));
        let mut lines: Vec<String> = stripped.lines().map(str::to_owned).collect();
        lines.pop();
        lines
    }

    #[test]
    fn wide_terminal_shows_whole_paths() {
        insta::assert_snapshot!(render(&response(), 200, false));
    }

    #[test]
    fn eighty_columns_give_up_details_in_the_documented_order() {
        insta::assert_snapshot!(render(&response(), 80, false));
    }

    #[test]
    fn path_absorbs_the_shrink_between_the_extremes() {
        insta::assert_snapshot!(render(&response(), 150, false));
    }

    #[test]
    fn colour_marks_the_header_and_failed_statuses() {
        insta::assert_snapshot!(visible(&render(&response(), 200, true)));
    }

    #[test]
    fn a_typical_row_fits_eighty_columns() {
        let out = render(&single(), 80, false);
        assert!(widest(&out) <= 80, "{out}");
        insta::assert_snapshot!(out);
    }

    /// One typical row at every width where the layout changes, widest first: the order in
    /// which details go is the one the module docs promise.
    #[test]
    fn each_step_of_the_ladder_on_a_typical_row() {
        let mut all = String::new();
        for width in [120, 110, 100, 90, 85, 80, 75, 60, 50, 30] {
            let out = render(&single(), width, false);
            all.push_str(&format!("--- width {width}\n{out}"));
        }
        insta::assert_snapshot!(all);
    }

    #[test]
    fn typical_rows_fit_common_terminal_widths() {
        for resp in [single(), response()] {
            for width in [60, 80, 120, 200] {
                for colour in [false, true] {
                    let out = render(&resp, width, colour);
                    for l in table_lines(&out) {
                        assert!(
                            text::width(&l) <= width,
                            "width {width}: a line is {} wide\n{out}",
                            text::width(&l)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn no_records_is_just_the_summary() {
        let empty = QueryResponse { records: vec![], limit: 100, truncated: false };
        assert_eq!(render(&empty, 80, true), "0 exchanges\n");
    }

    #[test]
    fn limit_reached_is_said_in_the_last_line() {
        let mut resp = single();
        resp.limit = 1;
        resp.truncated = true;
        let out = render(&resp, 120, false);
        assert_eq!(out.lines().last(), Some("1 exchange (limit 1 reached; more match — raise -limit)"));
    }

    #[test]
    fn every_width_fits_and_colour_never_changes_the_layout() {
        let resp = response();
        let natural = render(&resp, usize::MAX, false);
        let natural_w = widest(&natural);
        for width in 1..=natural_w + 10 {
            let plain = render(&resp, width, false);
            for l in table_lines(&plain) {
                assert!(
                    text::width(&l) <= width,
                    "width {width}: a line is {} wide\n{plain}",
                    text::width(&l)
                );
            }
            if width >= natural_w {
                assert_eq!(plain, natural, "width {width}");
            }
            let coloured = render(&resp, width, true);
            assert_eq!(
                table_lines(&coloured),
                table_lines(&plain),
                "colour must not change the layout (width {width})"
            );
            assert!(plain.lines().all(|l| l == l.trim_end()), "trailing spaces at width {width}");
        }
    }

    #[test]
    fn each_layout_is_no_wider_than_the_one_before() {
        let resp = response();
        let widths: Vec<usize> = LADDER
            .iter()
            .map(|layout| {
                let t = natural(&resp.records, *layout);
                t.widths.iter().sum::<usize>() + layout.gap().len() * (t.widths.len() - 1)
            })
            .collect();
        assert!(widths.windows(2).all(|w| w[1] < w[0]), "{widths:?}");
    }
}
