//! The table people read: a header, one line per exchange, and a summary line.
//!
//! ```text
//! TIME                     CLIENT                    SERVER                  METHOD  PATH          STATUS  LATENCY  SIZE
//! 2026-11-25 14:02:44.123  10.0.0.1:51234 1234/curl  10.0.0.2:8080 88/nginx  GET     /api/v1/ite…     200    1.5ms  512B
//! 1 exchange
//! ```
//!
//! * Columns are separated by two spaces; STATUS, LATENCY and SIZE are right-aligned.
//! * CLIENT and SERVER are `ip:port pid/comm`, the address padded so that PIDs line up; an
//!   unknown PID is `-`.
//! * Only PATH shrinks to fit `width`, cut at the end with `…` (its start is what `-path`
//!   matches), and never below [`PATH_MIN`] columns. Times, addresses and PIDs are never cut: a cut
//!   address is a wrong address. So when the other columns alone are wider than the terminal,
//!   lines are longer than `width` and the terminal wraps them.
//! * With `colour`, the header is bold, 4xx statuses yellow, 5xx and "no response" red. Escape
//!   codes wrap only the text, so they never count towards a width.

use std::borrow::Cow;

use liteobs_model::{QueryResponse, TrafficLog};

use super::text::{self, ellipsize, printable};
use super::{cells, summary};

/// Column titles, in order.
pub const HEADERS: [&str; 8] = ["TIME", "CLIENT", "SERVER", "METHOD", "PATH", "STATUS", "LATENCY", "SIZE"];
/// PATH is never cut narrower than this many columns (ellipsis included).
pub const PATH_MIN: usize = 12;

const PATH: usize = 4;
const STATUS: usize = 5;
const RIGHT_ALIGNED: [bool; 8] = [false, false, false, false, false, true, true, true];
const GAP: &str = "  ";

const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

type Row = [String; 8];

/// Renders `resp` for a terminal `width` columns wide; `colour` allows ANSI colour codes.
/// The result ends with a newline. With no records it is just the summary line.
pub fn render(resp: &QueryResponse, width: usize, colour: bool) -> String {
    let mut out = String::new();
    if !resp.records.is_empty() {
        let rows = rows(&resp.records);
        let widths = column_widths(&rows, width);
        let header = line(&HEADERS.map(String::from), &widths, |_| None);
        if colour {
            out.push_str(BOLD);
            out.push_str(&header);
            out.push_str(RESET);
        } else {
            out.push_str(&header);
        }
        out.push('\n');
        for (row, record) in rows.iter().zip(&resp.records) {
            let paint = |column| (colour && column == STATUS).then(|| status_colour(record.status)).flatten();
            out.push_str(&line(row, &widths, paint));
            out.push('\n');
        }
    }
    out.push_str(&summary(resp));
    out.push('\n');
    out
}

fn status_colour(status: u16) -> Option<&'static str> {
    match status {
        0 | 500..=599 => Some(RED),
        400..=499 => Some(YELLOW),
        _ => None,
    }
}

/// The cells of every record, uncut and without colour.
fn rows(records: &[TrafficLog]) -> Vec<Row> {
    let clients: Vec<String> = records.iter().map(|r| cells::endpoint(r.src_ip, r.src_port)).collect();
    let servers: Vec<String> = records.iter().map(|r| cells::endpoint(r.dst_ip, r.dst_port)).collect();
    let client_w = clients.iter().map(|s| text::width(s)).max().unwrap_or(0);
    let server_w = servers.iter().map(|s| text::width(s)).max().unwrap_or(0);
    records
        .iter()
        .zip(clients.iter().zip(&servers))
        .map(|(r, (client, server))| {
            [
                cells::time(&r.ts),
                format!("{client:<client_w$} {}", cells::process(r.src_pid, r.src_comm.as_deref())),
                format!("{server:<server_w$} {}", cells::process(r.dst_pid, r.dst_comm.as_deref())),
                printable(&r.method).into_owned(),
                printable(&r.path).into_owned(),
                cells::status(r.status),
                cells::latency(r.latency_us, r.status),
                cells::size(r.resp_bytes, r.status),
            ]
        })
        .collect()
}

/// Each column as wide as its widest cell, except PATH, which gets what is left of `width`.
fn column_widths(rows: &[Row], width: usize) -> [usize; 8] {
    let mut widths = HEADERS.map(text::width);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(text::width(cell));
        }
    }
    let others: usize = widths.iter().enumerate().filter(|(i, _)| *i != PATH).map(|(_, w)| w).sum::<usize>()
        + GAP.len() * (widths.len() - 1);
    let room = width.saturating_sub(others);
    widths[PATH] = widths[PATH].min(room.max(PATH_MIN));
    widths
}

/// One line: cells padded (PATH cut) to `widths`; `paint(column)` may give a colour for a cell.
fn line(cells: &Row, widths: &[usize; 8], paint: impl Fn(usize) -> Option<&'static str>) -> String {
    let mut out = String::new();
    let last = cells.len() - 1;
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push_str(GAP);
        }
        let shown = if i == PATH { ellipsize(cell, widths[i]) } else { Cow::Borrowed(cell.as_str()) };
        let pad = " ".repeat(widths[i].saturating_sub(text::width(&shown)));
        if RIGHT_ALIGNED[i] {
            out.push_str(&pad);
        }
        match paint(i) {
            Some(code) => {
                out.push_str(code);
                out.push_str(&shown);
                out.push_str(RESET);
            }
            None => out.push_str(&shown),
        }
        if !RIGHT_ALIGNED[i] && i != last {
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

    #[test]
    fn wide_terminal_shows_whole_paths() {
        insta::assert_snapshot!(render(&response(), 200, false));
    }

    #[test]
    fn eighty_columns_cut_the_path_to_its_minimum() {
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
    fn a_typical_row_still_overflows_eighty_columns() {
        insta::assert_snapshot!(render(&single(), 80, false));
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
    fn lines_fit_whenever_the_fixed_columns_do() {
        let resp = response();
        let natural = render(&resp, usize::MAX, false);
        let natural_w = natural.lines().map(text::width).max().unwrap();
        let path_natural = resp.records.iter().map(|r| text::width(&printable(&r.path))).max().unwrap();
        let floor = natural_w - path_natural + PATH_MIN;
        for width in 40..=natural_w + 10 {
            let plain = render(&resp, width, false);
            let widest = plain.lines().map(text::width).max().unwrap();
            assert!(widest <= width.max(floor), "width {width}: a line is {widest} wide\n{plain}");
            if width >= natural_w {
                assert_eq!(plain, natural, "width {width}");
            }
            let coloured = render(&resp, width, true);
            let stripped = [BOLD, RED, YELLOW, RESET].iter().fold(coloured, |s, code| s.replace(code, ""));
            assert_eq!(stripped, plain, "colour must not change the layout (width {width})");
            assert!(plain.lines().all(|l| l == l.trim_end()), "trailing spaces at width {width}");
        }
    }
}
