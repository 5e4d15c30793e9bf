//! `-o csv`: a header row of [`TrafficLog`] field names, then one row per record.
//!
//! Columns are always all of [`COLUMNS`] in that order, whatever the records hold; an unknown
//! value (no PID, no Host header) is an empty cell. Times are RFC 3339 UTC with microseconds,
//! numbers are raw (`latency_us`, bytes), so a spreadsheet or `xsv` can compute on them. Rows end
//! with `\n`; fields are quoted only when they need it.
//!
//! Values are written exactly as captured, control characters included (quoted as CSV requires),
//! because this output is for programs; the table is the form that escapes them for terminals.

use chrono::SecondsFormat;
use liteobs_model::TrafficLog;

/// The header row: the JSON field names of [`TrafficLog`], in declaration order.
pub const COLUMNS: [&str; 17] = [
    "ts",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "method",
    "path",
    "host",
    "status",
    "latency_us",
    "req_bytes",
    "resp_bytes",
    "src_pid",
    "src_comm",
    "dst_pid",
    "dst_comm",
    "node",
];

/// Why CSV output could not be produced (only a bug could cause either).
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error(transparent)]
    Csv(#[from] ::csv::Error),
    #[error("cannot finish CSV output: {0}")]
    Flush(#[from] std::io::Error),
    #[error("CSV output is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// The CSV text, header included even when there are no records.
pub fn render(records: &[TrafficLog]) -> Result<String, CsvError> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    for r in records {
        w.write_record(row(r))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes)?)
}

fn row(r: &TrafficLog) -> [String; 17] {
    let opt = |v: Option<String>| v.unwrap_or_default();
    [
        // The wire form (liteobs-model's `format_ts`, which the crate does not export).
        r.ts.to_rfc3339_opts(SecondsFormat::Micros, true),
        r.src_ip.to_string(),
        r.src_port.to_string(),
        r.dst_ip.to_string(),
        r.dst_port.to_string(),
        r.method.clone(),
        r.path.clone(),
        opt(r.host.clone()),
        r.status.to_string(),
        r.latency_us.to_string(),
        r.req_bytes.to_string(),
        r.resp_bytes.to_string(),
        opt(r.src_pid.map(|p| p.to_string())),
        opt(r.src_comm.clone()),
        opt(r.dst_pid.map(|p| p.to_string())),
        opt(r.dst_comm.clone()),
        r.node.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{plain, response};

    #[test]
    fn header_then_one_row_per_record() {
        // The fixture's path carries a raw ESC; show it as `\e` so the snapshot stays text.
        insta::assert_snapshot!(render(&response().records).unwrap().replace('\x1b', "\\e"));
    }

    #[test]
    fn columns_are_the_json_field_names_in_order() {
        let full = TrafficLog { dst_pid: Some(1), dst_comm: Some("x".into()), ..plain() };
        let json = serde_json::to_value(&full).unwrap();
        let names: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted_columns = COLUMNS;
        sorted_columns.sort_unstable();
        let mut sorted_names = names.clone();
        sorted_names.sort_unstable();
        assert_eq!(sorted_names, sorted_columns, "every field is a column and nothing else");
    }

    #[test]
    fn no_records_is_just_the_header() {
        assert_eq!(render(&[]).unwrap().lines().count(), 1);
    }
}
