//! `-o wide`: every field of the record as a column, in the record's (and JSON's) order, driven
//! by the model's one list of fields ([`liteobs_model::columns::COLUMNS`]), so that a field
//! added to the record appears here by itself.
//!
//! Headers are the field names in capitals (`SRC_POD`); cells are the values exactly, as `-o
//! csv` gives them (times in UTC with microseconds, numbers raw: `latency_us` in µs, bytes),
//! with control characters escaped and `-` for an unknown value. Text columns may be cut (a
//! path or Host at its end, names and IDs in their middle) when that makes the lines fit the
//! width; when it does not, every cell is shown whole and lines are as long as they need to
//! be (like `kubectl -o wide`: page with `less -S`). No column is ever left out.

use liteobs_model::TrafficLog;
use liteobs_model::columns::{COLUMNS, Column, Kind, Value};

use super::PATH_MIN;
use crate::render::cells;
use crate::render::fit::{Cut, Spec};
use crate::render::text::printable;

/// A text column of `-o wide` is not cut below this many columns.
pub const TEXT_MIN: usize = 12;

fn spec(c: &Column) -> Spec {
    let right = !matches!(c.kind, Kind::Text | Kind::Ip | Kind::Time);
    let spec = Spec::fixed(c.name.to_uppercase(), right);
    match (c.kind, c.name) {
        (Kind::Text, "path") => spec.cut(Cut::End, PATH_MIN, 0),
        (Kind::Text, "host") => spec.cut(Cut::End, TEXT_MIN, 1),
        (Kind::Text, _) => spec.cut(Cut::Middle, TEXT_MIN, 1),
        _ => spec,
    }
}

/// One spec per field, in [`COLUMNS`] order.
pub fn specs() -> Vec<Spec> {
    COLUMNS.iter().map(spec).collect()
}

/// `r`'s cells, one per field.
pub fn cells(r: &TrafficLog) -> Vec<String> {
    COLUMNS
        .iter()
        .map(|c| match c.get(r) {
            Value::Null => "-".to_owned(),
            Value::Time(ts) => cells::wire_time(&ts),
            Value::Ip(ip) => ip.to_string(),
            Value::UInt(n) => n.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Text(s) => printable(s).into_owned(),
        })
        .collect()
}

/// Widths a stream assumes before it has seen a row.
pub fn assumed_widths() -> Vec<usize> {
    COLUMNS
        .iter()
        .map(|c| {
            let typical = match c.kind {
                Kind::Time => 27,
                Kind::Ip => 15,
                Kind::U16 => 5,
                Kind::U32 => 7,
                Kind::Counter | Kind::I64 => 10,
                Kind::Text if c.name == "path" => 40,
                Kind::Text => 16,
            };
            typical.max(c.name.len())
        })
        .collect()
}

/// The index of the status column, which is coloured.
pub fn status_index() -> Option<usize> {
    COLUMNS.iter().position(|c| c.name == "status")
}
