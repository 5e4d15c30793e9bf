//! `-o csv`: a header row of [`TrafficLog`] field names, then one row per record.
//!
//! Columns are always all of [`COLUMNS`] in that order, whatever the records hold; an unknown
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

use chrono::SecondsFormat;
use liteobs_model::TrafficLog;

/// One column: its header (the record's JSON field name) and how a record's value is written.
pub struct Column {
    pub name: &'static str,
    cell: fn(&TrafficLog) -> String,
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn number<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Every column, in the documented order: the one definition of both the header and the rows.
pub const COLUMNS: [Column; 30] = [
    // The wire form (liteobs-model's `format_ts`).
    Column { name: "ts", cell: |r| r.ts.to_rfc3339_opts(SecondsFormat::Micros, true) },
    Column { name: "src_ip", cell: |r| r.src_ip.to_string() },
    Column { name: "src_port", cell: |r| r.src_port.to_string() },
    Column { name: "dst_ip", cell: |r| r.dst_ip.to_string() },
    Column { name: "dst_port", cell: |r| r.dst_port.to_string() },
    Column { name: "method", cell: |r| r.method.clone() },
    Column { name: "path", cell: |r| r.path.clone() },
    Column { name: "host", cell: |r| text(&r.host) },
    Column { name: "status", cell: |r| r.status.to_string() },
    Column { name: "latency_us", cell: |r| r.latency_us.to_string() },
    Column { name: "req_bytes", cell: |r| r.req_bytes.to_string() },
    Column { name: "resp_bytes", cell: |r| r.resp_bytes.to_string() },
    Column { name: "src_pid", cell: |r| number(r.src_pid) },
    Column { name: "src_comm", cell: |r| text(&r.src_comm) },
    Column { name: "dst_pid", cell: |r| number(r.dst_pid) },
    Column { name: "dst_comm", cell: |r| text(&r.dst_comm) },
    Column { name: "node", cell: |r| r.node.clone() },
    // Added by issue 11 (pods, containers, nodes, Services, one record per exchange).
    Column { name: "src_namespace", cell: |r| text(&r.src_namespace) },
    Column { name: "src_pod", cell: |r| text(&r.src_pod) },
    Column { name: "src_container", cell: |r| text(&r.src_container) },
    Column { name: "src_container_id", cell: |r| text(&r.src_container_id) },
    Column { name: "src_node", cell: |r| text(&r.src_node) },
    Column { name: "dst_namespace", cell: |r| text(&r.dst_namespace) },
    Column { name: "dst_pod", cell: |r| text(&r.dst_pod) },
    Column { name: "dst_container", cell: |r| text(&r.dst_container) },
    Column { name: "dst_container_id", cell: |r| text(&r.dst_container_id) },
    Column { name: "dst_node", cell: |r| text(&r.dst_node) },
    Column { name: "dst_service_ip", cell: |r| number(r.dst_service_ip) },
    Column { name: "dst_service_port", cell: |r| number(r.dst_service_port) },
    Column { name: "exchange_id", cell: |r| number(r.exchange_id) },
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
    w.write_record(COLUMNS.iter().map(|c| c.name))?;
    for r in records {
        w.write_record(COLUMNS.iter().map(|c| (c.cell)(r)))?;
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
        let mut names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        let mut fields: Vec<&str> = json.keys().map(String::as_str).collect();
        names.sort_unstable();
        fields.sort_unstable();
        assert_eq!(names, fields, "every field is a column and nothing else");
        for column in &COLUMNS {
            let want = match &json[column.name] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!((column.cell)(&full), want, "{}", column.name);
        }
    }

    #[test]
    fn no_records_is_just_the_header() {
        assert_eq!(render(&[]).unwrap().lines().count(), 1);
    }
}
