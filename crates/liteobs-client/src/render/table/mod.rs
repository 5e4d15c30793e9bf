//! The table people read: a header, one line per exchange, and a summary line.
//!
//! ```text
//! TIME                     CLIENT                     SERVER                  METHOD  PATH                STATUS  LATENCY  SIZE
//! 2026-11-25 14:02:44.123  10.0.0.1:51234 1234/curl   10.0.0.2:8080 88/nginx  GET     /api/v1/items?id=7     200    1.5ms  512B
//! 1 exchange
//! ```
//!
//! * Columns are separated by two spaces; STATUS, LATENCY and SIZE are right-aligned.
//! * CLIENT and SERVER are the side's address, then who it is: `namespace/pod` when the
//!   record names the side's pod, else `pid/comm` (an unknown PID is `-`). The address is
//!   padded so that these line up. The PID of a side with a pod, its container and its node
//!   are in `-o json` and `-o csv` only.
//! * When the client dialled a Service address that was translated to the server's
//!   (`dst_service_ip`), SERVER shows both, dialled first: `10.96.12.7:80→10.244.2.9:8080`.
//! * Every line but the summary fits `width` columns. To get there, the table gives up details
//!   in a fixed order ([`LADDER`], which says why), each step only when the one before it was
//!   not enough: PATH is cut at its end with `…` (its start is what `-path` matches), down to
//!   [`PATH_MIN`] columns; then the Service address goes; then times lose their date
//!   (`14:02:44.123`); then command names go (PIDs stay); then namespaces (pod names stay);
//!   then SIZE; then the client's port; then the gaps narrow to one space; then LATENCY; then
//!   both addresses (pods and PIDs stay); then pod names are cut at their end to [`POD_MAX`]
//!   columns. Apart from PATH and those last cuts, what is shown is never altered: an address
//!   is shown whole or not at all. Only below the last step (53 columns for typical rows of
//!   host processes) are lines cut at `width` with `…`.
//!   The summary line is not cut. `-o json` keeps every field whatever the width.
//! * With `colour`, the header is bold, 4xx statuses yellow, 5xx and "no response" red. Escape
//!   codes wrap only the text, so they never count towards a width.

mod ladder;

use std::borrow::Cow;

use liteobs_model::{QueryResponse, TrafficLog};

pub use self::ladder::{LADDER, Layout, PATH_MIN, POD_MAX};
use super::text::{self, ellipsize, printable};
use super::{cells, summary};

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
    chosen.unwrap_or_else(|| natural(records, ladder::WIDEST))
}

/// `layout`'s cells of every record, uncut and without colour, and each column's natural width.
fn natural(records: &[TrafficLog], layout: Layout) -> Table {
    let clients: Vec<String> = records.iter().map(|r| client_address(r, layout)).collect();
    let servers: Vec<String> = records.iter().map(|r| server_address(r, layout)).collect();
    let client_w = clients.iter().map(|s| text::width(s)).max().unwrap_or(0);
    let server_w = servers.iter().map(|s| text::width(s)).max().unwrap_or(0);
    let endpoint = |addr: &str, addr_w: usize, who: String| {
        if layout.addresses { format!("{addr:<addr_w$} {who}") } else { who }
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
                    Column::Client => endpoint(client, client_w, who(Side::client(r), layout)),
                    Column::Server => endpoint(server, server_w, who(Side::server(r), layout)),
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

/// What the table knows of who one side of an exchange is.
struct Side<'a> {
    pid: Option<u32>,
    comm: Option<&'a str>,
    namespace: Option<&'a str>,
    pod: Option<&'a str>,
}

impl<'a> Side<'a> {
    fn client(r: &'a TrafficLog) -> Self {
        Side {
            pid: r.src_pid,
            comm: r.src_comm.as_deref(),
            namespace: r.src_namespace.as_deref(),
            pod: r.src_pod.as_deref(),
        }
    }

    fn server(r: &'a TrafficLog) -> Self {
        Side {
            pid: r.dst_pid,
            comm: r.dst_comm.as_deref(),
            namespace: r.dst_namespace.as_deref(),
            pod: r.dst_pod.as_deref(),
        }
    }
}

/// `shop/checkout-7d9f8b6c4-x2kqz` when the side's pod is known, else `1234/curl`, each as
/// much of it as `layout` shows.
fn who(side: Side<'_>, layout: Layout) -> String {
    match side.pod.filter(|p| !p.is_empty()) {
        Some(pod) => cells::pod(
            side.namespace.filter(|_| layout.namespace),
            pod,
            (!layout.whole_pods).then_some(POD_MAX),
        ),
        None => cells::process(side.pid, side.comm.filter(|_| layout.comm)),
    }
}

/// The client's part of CLIENT before who it is: `10.0.0.1:51234`, `10.0.0.1`, or nothing.
fn client_address(r: &TrafficLog, layout: Layout) -> String {
    if !layout.addresses {
        String::new()
    } else if layout.client_port {
        cells::endpoint(r.src_ip, r.src_port)
    } else {
        cells::address(r.src_ip)
    }
}

/// The server's part of SERVER before who it is: `10.0.0.2:8080`, with the dialled Service
/// address in front when `layout` shows it and it differs, or nothing.
fn server_address(r: &TrafficLog, layout: Layout) -> String {
    if !layout.addresses {
        return String::new();
    }
    let server = cells::endpoint(r.dst_ip, r.dst_port);
    match r.dst_service_ip {
        Some(ip)
            if layout.service && (ip, r.dst_service_port.unwrap_or(r.dst_port)) != (r.dst_ip, r.dst_port) =>
        {
            cells::dialled(ip, r.dst_service_port, &server)
        }
        _ => server,
    }
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
    use crate::render::fixtures::{across_nodes, plain, pods, response, single};

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

    /// A pod's row at every width where the layout changes, widest first; a host process's
    /// row under it shows that the two kinds of side share the ladder.
    #[test]
    fn pods_at_each_step_of_the_ladder() {
        let two = QueryResponse { records: vec![across_nodes(), plain()], limit: 100, truncated: false };
        let mut all = String::new();
        for width in [200, 170, 150, 140, 130, 120, 110, 100, 90, 80, 70, 60] {
            let out = render(&two, width, false);
            all.push_str(&format!("--- width {width}\n{out}"));
        }
        insta::assert_snapshot!(all);
    }

    /// Pods on both sides, on one side (either), none, and hostile names, at a wide terminal
    /// and at 80 columns.
    #[test]
    fn every_kind_of_side_wide_and_at_eighty() {
        insta::assert_snapshot!(format!("{}{}", render(&pods(), 220, false), render(&pods(), 80, false)));
    }

    #[test]
    fn a_known_pod_takes_the_place_of_the_pid() {
        let out = render(&pods(), 250, false);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains("shop/checkout-7d9f8b6c4-x2kqz") && !lines[1].contains("40211"), "{out}");
        assert!(lines[1].contains("shop/payments-5c8d7f9b4-q7wzt") && !lines[1].contains("7781"), "{out}");
        assert!(lines[1].contains("10.96.12.7:80→10.244.2.9:8080"), "{out}");
        assert!(lines[2].contains("monitoring/prometheus-k8s-0") && lines[2].contains("812/node_exporter"));
        assert!(lines[3].contains("1234/curl") && lines[3].contains("shop/payments-5c8d7f9b4-q7wzt"));
        assert!(lines[5].contains(r"evil\u{1b}[2J/pod\nname") && !out.contains('\x1b'), "{out}");
    }

    #[test]
    fn a_service_address_equal_to_the_servers_is_not_repeated() {
        let mut r = across_nodes();
        r.dst_service_ip = Some(r.dst_ip);
        r.dst_service_port = Some(r.dst_port);
        let resp = QueryResponse { records: vec![r], limit: 100, truncated: false };
        assert!(!render(&resp, 250, false).contains('→'));
    }

    #[test]
    fn typical_rows_fit_common_terminal_widths() {
        for resp in [single(), response(), pods()] {
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
        for resp in [response(), pods()] {
            every_width_fits(&resp);
        }
    }

    fn every_width_fits(resp: &QueryResponse) {
        let resp = resp.clone();
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
    fn no_layout_is_wider_than_the_one_before_and_each_narrows_some_table() {
        let natural_width = |records: &[TrafficLog], layout: &Layout| {
            let t = natural(records, *layout);
            t.widths.iter().sum::<usize>() + layout.gap().len() * (t.widths.len() - 1)
        };
        let tables = [response().records, pods().records, single().records];
        let mut narrowed = vec![false; LADDER.len() - 1];
        for records in &tables {
            let widths: Vec<usize> = LADDER.iter().map(|l| natural_width(records, l)).collect();
            for (step, w) in widths.windows(2).enumerate() {
                assert!(w[1] <= w[0], "step {} widens the table: {widths:?}", step + 1);
                narrowed[step] |= w[1] < w[0];
            }
        }
        // A step may save nothing on one table (command names, when pod names are wider), but
        // every step is there because it saves columns on some table.
        assert!(narrowed.iter().all(|n| *n), "{narrowed:?}");
    }
}
