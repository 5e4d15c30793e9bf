//! `-o csv`: a header row of [`TrafficLog`] field names, then one row per record.
//!
//! Columns are always all of the record's ([`liteobs_model::columns`]) in the order they were added, whatever the records hold; an unknown
//! value (no PID, no Host header, a host process's pod) is an empty cell. Times are RFC 3339 UTC
//! with microseconds, numbers are raw (`latency_us`, bytes, `exchange_id`), so a spreadsheet or
//! `xsv` can compute on them. Rows end with `\n`; fields are quoted only when they need it.
//!
//! The order is stable: the first 17 columns are those of every earlier release, `ts` to
//! `node`; the fields added since follow, in the order they were added (the Kubernetes and
//! merge fields of issue 11: each side's `namespace`, `pod`, `container`, `container_id`,
//! `node`, then `dst_service_ip`, `dst_service_port`, `exchange_id`). A script that reads
//! columns by position keeps working; a new field is only ever appended.
//!
//! Values are written exactly as captured, control characters included (quoted as CSV requires),
//! because this output is for programs; the table is the form that escapes them for terminals.

use liteobs_model::TrafficLog;
use liteobs_model::columns::{self, Column, Value};

/// The columns in their documented order: the record's, in the order they were added.
pub fn columns() -> impl Iterator<Item = &'static Column> + Clone {
    columns::in_order_added()
}

/// `column`'s cell for `r`: the value as JSON gives it (a time in the wire form), empty when
/// unknown.
pub fn cell(column: &Column, r: &TrafficLog) -> String {
    match column.get(r) {
        Value::Null => String::new(),
        Value::Time(ts) => liteobs_model::format_ts(&ts),
        Value::Ip(ip) => ip.to_string(),
        Value::UInt(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Text(s) => s.to_owned(),
    }
}

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
    lines(records, true)
}

/// The rows of `records`, after the header when `header` (a stream writes it once, then rows
/// as they come).
pub fn lines(records: &[TrafficLog], header: bool) -> Result<String, CsvError> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    if header {
        w.write_record(columns().map(|c| c.name))?;
    }
    for r in records {
        w.write_record(columns().map(|c| cell(c, r)))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{across_nodes, pods, response};

    #[test]
    fn header_then_one_row_per_record() {
        // The fixture's path carries a raw ESC; show it as `\e` so the snapshot stays text.
        insta::assert_snapshot!(render(&response().records).unwrap().replace('\x1b', "\\e"));
    }

    #[test]
    fn pods_on_both_sides_one_side_and_none() {
        insta::assert_snapshot!(render(&pods().records).unwrap().replace('\x1b', "\\e"));
    }

    /// Scripts read columns by position: the columns of earlier releases keep theirs.
    #[test]
    fn the_first_columns_are_those_of_earlier_releases() {
        let before_issue_11 = "ts,src_ip,src_port,dst_ip,dst_port,method,path,host,status,latency_us,\
                               req_bytes,resp_bytes,src_pid,src_comm,dst_pid,dst_comm,node";
        let header = render(&[]).unwrap();
        assert!(header.starts_with(&format!("{before_issue_11},")), "{header}");
    }

    /// Every field of a record with all of them set is a column and nothing else is, and each
    /// cell holds the value JSON gives that field.
    #[test]
    fn columns_are_the_json_fields_with_their_values() {
        let full = TrafficLog { host: Some("h".into()), ..across_nodes() };
        let json = serde_json::to_value(&full).unwrap();
        let json = json.as_object().unwrap();
        let mut names: Vec<&str> = columns().map(|c| c.name).collect();
        let mut fields: Vec<&str> = json.keys().map(String::as_str).collect();
        names.sort_unstable();
        fields.sort_unstable();
        assert_eq!(names, fields, "every field is a column and nothing else");
        for column in columns() {
            let want = match &json[column.name] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(cell(column, &full), want, "{}", column.name);
        }
    }

    #[test]
    fn no_records_is_just_the_header() {
        assert_eq!(render(&[]).unwrap().lines().count(), 1);
    }
}
