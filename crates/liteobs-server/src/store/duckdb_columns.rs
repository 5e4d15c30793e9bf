//! Records as one Arrow [`RecordBatch`] in `traffic_logs`' column order and types, for
//! DuckDB's columnar append ([`super::duckdb`]): a column at a time instead of a row of 31
//! bound values at a time, and addresses formatted straight into the column's buffer.
//!
//! Pure conversion, no I/O; not a general Arrow encoding of records (the types are exactly the
//! table's, which DuckDB's appender requires: BIGINT as Int64, INTEGER as Int32, TEXT as Utf8).

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, Int32Array, Int64Array, StringBuilder};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::error::ArrowError;
use duckdb::arrow::record_batch::RecordBatch;
use liteobs_model::TrafficLog;

use super::sql::i64_of;

/// How a column is filled from a record.
enum Fill {
    Int64(fn(&TrafficLog) -> Option<i64>),
    Int32(fn(&TrafficLog) -> Option<i32>),
    Text(fn(&TrafficLog) -> Option<&str>),
    Ip(fn(&TrafficLog) -> Option<IpAddr>),
}

/// `(name, nullable, fill)` for every column but `seq`, in [`super::sql::COLUMNS`] order.
const FILLS: [(&str, bool, Fill); 30] = [
    ("ts", false, Fill::Int64(|r| Some(r.ts_micros()))),
    ("src_ip", false, Fill::Ip(|r| Some(r.src_ip))),
    ("src_port", false, Fill::Int32(|r| Some(r.src_port.into()))),
    ("dst_ip", false, Fill::Ip(|r| Some(r.dst_ip))),
    ("dst_port", false, Fill::Int32(|r| Some(r.dst_port.into()))),
    ("method", false, Fill::Text(|r| Some(&r.method))),
    ("path", false, Fill::Text(|r| Some(&r.path))),
    ("host", true, Fill::Text(|r| r.host.as_deref())),
    ("status", false, Fill::Int32(|r| Some(r.status.into()))),
    ("latency_us", false, Fill::Int64(|r| Some(i64_of(r.latency_us)))),
    ("req_bytes", false, Fill::Int64(|r| Some(i64_of(r.req_bytes)))),
    ("resp_bytes", false, Fill::Int64(|r| Some(i64_of(r.resp_bytes)))),
    ("src_pid", true, Fill::Int64(|r| r.src_pid.map(i64::from))),
    ("src_comm", true, Fill::Text(|r| r.src_comm.as_deref())),
    ("dst_pid", true, Fill::Int64(|r| r.dst_pid.map(i64::from))),
    ("dst_comm", true, Fill::Text(|r| r.dst_comm.as_deref())),
    ("node", false, Fill::Text(|r| Some(&r.node))),
    ("src_namespace", true, Fill::Text(|r| r.src_namespace.as_deref())),
    ("src_pod", true, Fill::Text(|r| r.src_pod.as_deref())),
    ("src_container", true, Fill::Text(|r| r.src_container.as_deref())),
    ("src_container_id", true, Fill::Text(|r| r.src_container_id.as_deref())),
    ("src_node", true, Fill::Text(|r| r.src_node.as_deref())),
    ("dst_namespace", true, Fill::Text(|r| r.dst_namespace.as_deref())),
    ("dst_pod", true, Fill::Text(|r| r.dst_pod.as_deref())),
    ("dst_container", true, Fill::Text(|r| r.dst_container.as_deref())),
    ("dst_container_id", true, Fill::Text(|r| r.dst_container_id.as_deref())),
    ("dst_node", true, Fill::Text(|r| r.dst_node.as_deref())),
    ("dst_service_ip", true, Fill::Ip(|r| r.dst_service_ip)),
    ("dst_service_port", true, Fill::Int32(|r| r.dst_service_port.map(i32::from))),
    ("exchange_id", true, Fill::Int64(|r| r.exchange_id)),
];

/// `records` with `seq` values `first_seq..`, one Arrow column per table column.
pub fn record_batch(first_seq: i64, records: &[TrafficLog]) -> Result<RecordBatch, ArrowError> {
    let n = records.len();
    let mut fields = Vec::with_capacity(FILLS.len() + 1);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(FILLS.len() + 1);
    fields.push(Field::new("seq", DataType::Int64, false));
    columns.push(Arc::new(Int64Array::from_iter_values((first_seq..).take(n))));
    for (name, nullable, fill) in &FILLS {
        let (data_type, column): (DataType, ArrayRef) = match fill {
            Fill::Int64(get) => (DataType::Int64, Arc::new(records.iter().map(get).collect::<Int64Array>())),
            Fill::Int32(get) => (DataType::Int32, Arc::new(records.iter().map(get).collect::<Int32Array>())),
            Fill::Text(get) => {
                let bytes = records.iter().map(|r| get(r).map_or(0, str::len)).sum();
                let mut b = StringBuilder::with_capacity(n, bytes);
                records.iter().for_each(|r| b.append_option(get(r)));
                (DataType::Utf8, Arc::new(b.finish()))
            }
            Fill::Ip(get) => {
                // The canonical text form (as `IpAddr`'s Display writes it), without a String
                // per address: the builder is its own buffer.
                let mut b = StringBuilder::with_capacity(n, n * 16);
                for r in records {
                    match get(r) {
                        Some(ip) => {
                            write!(b, "{ip}").map_err(|e| ArrowError::ComputeError(e.to_string()))?;
                            b.append_value("");
                        }
                        None => b.append_null(),
                    }
                }
                (DataType::Utf8, Arc::new(b.finish()))
            }
        };
        fields.push(Field::new(*name, data_type, *nullable));
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use duckdb::arrow::array::{Array, AsArray};
    use duckdb::arrow::datatypes::Int64Type;

    use super::*;
    use crate::store::conformance::corpus;
    use crate::store::sql::COLUMNS;

    #[test]
    fn columns_follow_the_table() {
        let names: Vec<&str> = COLUMNS.split(',').map(str::trim).collect();
        let batch = record_batch(7, &corpus(3)).expect("batch");
        let schema = batch.schema();
        let got: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(got, names);
        assert_eq!(batch.num_rows(), 3);
        let seq = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(seq.values().to_vec(), vec![7, 8, 9]);
        let src_ip = batch.column(2).as_string::<i32>();
        assert_eq!(src_ip.value(2), corpus(3)[2].src_ip.to_string());
        assert!(batch.column(8).is_null(0), "corpus(3)[0] has no host");
    }
}
