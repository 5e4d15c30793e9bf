//! The exchange table people read: a header, one line per exchange, and a summary line.
//!
//! The default columns (80 columns, the viewer's zone, today):
//!
//! ```text
//! TIME      CLIENT     SERVER    METHOD  STATUS  LATENCY  SIZE  PATH
//! 14:02:44  curl/1234  nginx/88  GET        200    1.5ms  512B  /api/v1/items?id=7
//! 1 exchange
//! ```
//!
//! * TIME is the time of day when the exchange is from today in the viewer's zone, else a short
//!   date ([`Clock::short`]); `-o wide` has the full UTC time.
//! * CLIENT and SERVER say who each side is: `namespace/pod` when the record names its pod, else
//!   `comm/pid`, else (CLIENT) its IP address, or (SERVER) the request's `Host`, else its
//!   address. ADDRESS is the server's `ip:port`.
//! * STATUS is the code, or `none` when nothing was answered (then LATENCY and SIZE are `-`).
//!   LATENCY is human (`850µs`, `12ms`, `1.3s`), SIZE the response body (`512B`, `47K`).
//! * PATH comes last and takes the width the others leave; it is cut at its end with `…` (its
//!   start is what `-path` matches), and only when the line would not fit otherwise.
//! * Every line fits the width ([`super::fit`] has the rules). When PATH is down to [`PATH_MIN`]
//!   columns, CLIENT and SERVER are cut in their middle (`shop/chec…x2kqz`, keeping the pod's
//!   distinguishing end and the PID) down to [`WHO_MIN`]; then whole columns go, in this order:
//!   ADDRESS, SIZE, TIME, LATENCY, SERVER, CLIENT ([`DROP_ORDER`]). Only below that (about 36
//!   columns) are lines cut at the width. Without a width (not a terminal, no `$COLUMNS`),
//!   nothing is cut or dropped.
//! * `-o wide` ([`wide`]) shows every field of the record, one column each.
//! * With colour, the header is bold, 4xx statuses yellow, 5xx and `none` red.
//!
//! [`Table`] is the row writer: made once, from the records it will print or, for a stream
//! whose rows are not known yet, from widths decided up front ([`Table::streaming`]); it then
//! writes the header and each row on its own, always in the same columns.

pub mod wide;

use liteobs_model::{QueryResponse, TrafficLog};

use super::clock::Clock;
use super::fit::{Cut, Fit, Spec};
use super::grid::{Grid, RED, YELLOW};
use super::text::{self, printable};
use super::{View, cells, summary};

/// PATH is not cut below this many columns (or its whole length, when shorter) before other
/// columns are cut or dropped.
pub const PATH_MIN: usize = 20;

/// CLIENT and SERVER are not cut below this many columns before columns are dropped.
pub const WHO_MIN: usize = 12;

/// Which columns a table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// The compact default.
    Default,
    /// Every field of the record (`-o wide`).
    Wide,
}

/// The default columns, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Time,
    Client,
    Server,
    Address,
    Method,
    Status,
    Latency,
    Size,
    Path,
}

const DEFAULT: [Col; 9] = [
    Col::Time,
    Col::Client,
    Col::Server,
    Col::Address,
    Col::Method,
    Col::Status,
    Col::Latency,
    Col::Size,
    Col::Path,
];

/// The order in which the default columns are dropped when cutting PATH, CLIENT and SERVER is
/// not enough: the server's address first (SERVER names it already, by pod or process), then the
/// body size, the time (rows are newest first anyway), the latency, and last who served and who
/// asked. METHOD, STATUS and PATH always stay.
pub const DROP_ORDER: [&str; 6] = ["ADDRESS", "SIZE", "TIME", "LATENCY", "SERVER", "CLIENT"];

impl Col {
    fn header(self) -> &'static str {
        match self {
            Col::Time => "TIME",
            Col::Client => "CLIENT",
            Col::Server => "SERVER",
            Col::Address => "ADDRESS",
            Col::Method => "METHOD",
            Col::Status => "STATUS",
            Col::Latency => "LATENCY",
            Col::Size => "SIZE",
            Col::Path => "PATH",
        }
    }

    fn spec(self) -> Spec {
        let right = matches!(self, Col::Status | Col::Latency | Col::Size);
        let spec = Spec::fixed(self.header(), right);
        let spec = match self {
            Col::Path => spec.cut(Cut::End, PATH_MIN, 0),
            Col::Client | Col::Server => spec.cut(Cut::Middle, WHO_MIN, 1),
            _ => spec,
        };
        match DROP_ORDER.iter().position(|h| *h == self.header()) {
            Some(rank) => spec.dropped(u8::try_from(rank).unwrap_or(u8::MAX)),
            None => spec,
        }
    }

    /// The width a stream assumes before it has seen a row: room for typical values.
    fn assumed_width(self) -> usize {
        match self {
            Col::Time => 8,
            Col::Client | Col::Server => 16,
            Col::Address => 21, // 255.255.255.255:65535
            Col::Method => 6,
            Col::Status => 6,
            Col::Latency => 7,
            Col::Size => 5,
            Col::Path => 200,
        }
    }

    fn cell(self, r: &TrafficLog, clock: &Clock) -> String {
        let answered = answered(r);
        match self {
            Col::Time => clock.short(&r.ts),
            Col::Client => {
                who(r.src_pid, r.src_comm.as_deref(), r.src_namespace.as_deref(), r.src_pod.as_deref())
                    .unwrap_or_else(|| cells::address(r.src_ip))
            }
            Col::Server => {
                who(r.dst_pid, r.dst_comm.as_deref(), r.dst_namespace.as_deref(), r.dst_pod.as_deref())
                    .or_else(|| {
                        r.host.as_deref().filter(|h| !h.is_empty()).map(|h| printable(h).into_owned())
                    })
                    .unwrap_or_else(|| cells::endpoint(r.dst_ip, r.dst_port))
            }
            Col::Address => cells::endpoint(r.dst_ip, r.dst_port),
            Col::Method => printable(&r.method).into_owned(),
            Col::Status => cells::status(r.status, answered),
            Col::Latency if answered => cells::latency(r.latency_us),
            Col::Size if answered => cells::size(r.resp_bytes),
            Col::Latency | Col::Size => "-".to_owned(),
            Col::Path => printable(&r.path).into_owned(),
        }
    }
}

/// Whether anything came back: a status, or (HTTP/0.9, status 0) a latency or body.
fn answered(r: &TrafficLog) -> bool {
    r.status != 0 || r.latency_us != 0 || r.resp_bytes != 0
}

/// `shop/checkout-7d9f8b6c4-x2kqz` when the side's pod is known, else `curl/1234`.
fn who(pid: Option<u32>, comm: Option<&str>, namespace: Option<&str>, pod: Option<&str>) -> Option<String> {
    match pod.filter(|p| !p.is_empty()) {
        Some(pod) => Some(cells::pod(namespace, pod)),
        None => cells::process(pid, comm),
    }
}

/// The colour of a status cell: 4xx yellow, 5xx and no answer red.
pub fn status_colour(status: u16) -> Option<&'static str> {
    match status {
        0 | 500..=599 => Some(RED),
        400..=499 => Some(YELLOW),
        _ => None,
    }
}

/// Writes the header and rows of one table, in columns fixed when it was made.
#[derive(Debug, Clone)]
pub struct Table {
    grid: Grid,
    columns: Columns,
    clock: Clock,
}

impl Table {
    /// The table for `records`, each column as wide as its widest cell, fitted to `view`.
    pub fn fitted(records: &[TrafficLog], columns: Columns, view: &View) -> Table {
        let rows: Vec<Vec<String>> = records.iter().map(|r| cells_of(columns, r, &view.clock)).collect();
        Table {
            grid: Grid::measured(specs(columns), &rows, view.width, how(columns), view.colour),
            columns,
            clock: view.clock,
        }
    }

    /// A table for rows that are not known yet (a stream): columns as wide as typical values,
    /// fitted to `view`; a longer cell is cut to its column (without a width, never cut: it
    /// pushes the rest of its row to the right).
    pub fn streaming(columns: Columns, view: &View) -> Table {
        let natural: Vec<usize> = match columns {
            Columns::Default => DEFAULT.iter().map(|c| c.assumed_width()).collect(),
            Columns::Wide => wide::assumed_widths(),
        };
        Table {
            grid: Grid::new(specs(columns), &natural, view.width, how(columns), view.colour),
            columns,
            clock: view.clock,
        }
    }

    /// The header line, without a newline.
    pub fn header(&self) -> String {
        self.grid.header()
    }

    /// `r`'s line, without a newline.
    pub fn row(&self, r: &TrafficLog) -> String {
        let cells = cells_of(self.columns, r, &self.clock);
        let status = match self.columns {
            Columns::Default => DEFAULT.iter().position(|c| *c == Col::Status),
            Columns::Wide => wide::status_index(),
        };
        self.grid.row(&cells, |i| if Some(i) == status { status_colour(r.status) } else { None })
    }

    /// The headers of the columns shown, in order.
    pub fn headers(&self) -> Vec<&str> {
        self.grid.shown_headers()
    }
}

fn specs(columns: Columns) -> Vec<Spec> {
    match columns {
        Columns::Default => DEFAULT.iter().map(|c| c.spec()).collect(),
        Columns::Wide => wide::specs(),
    }
}

fn how(columns: Columns) -> Fit {
    match columns {
        Columns::Default => Fit::Width,
        Columns::Wide => Fit::Whole,
    }
}

fn cells_of(columns: Columns, r: &TrafficLog, clock: &Clock) -> Vec<String> {
    match columns {
        Columns::Default => DEFAULT.iter().map(|c| c.cell(r, clock)).collect(),
        Columns::Wide => wide::cells(r),
    }
}

/// The whole table for `resp`: header, rows, and the summary line (wrapped at the width, never
/// cut). With no records it is just the summary. Ends with a newline.
pub fn render(resp: &QueryResponse, columns: Columns, view: &View) -> String {
    let mut out = String::new();
    if !resp.records.is_empty() {
        let table = Table::fitted(&resp.records, columns, view);
        out.push_str(&table.header());
        out.push('\n');
        for r in &resp.records {
            out.push_str(&table.row(r));
            out.push('\n');
        }
    }
    for line in footer(&summary(resp), view.width) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A footer line, wrapped at `width` when it has one.
pub(crate) fn footer(line: &str, width: Option<usize>) -> Vec<String> {
    match width {
        Some(w) => text::wrap(line, w),
        None => vec![line.to_owned()],
    }
}

#[cfg(test)]
mod tests;
