//! Records as one Arrow [`RecordBatch`] in `traffic_logs`' column order and types, for
//! DuckDB's columnar append ([`super::duckdb`]): a column at a time instead of a row of bound
//! values at a time, and addresses formatted straight into the column's buffer.
//!
//! Pure conversion, no I/O; follows [`liteobs_model::columns`] like the table itself. Not a
//! general Arrow encoding of records: the types are exactly the table's, which DuckDB's
//! appender requires (BIGINT as Int64, INTEGER as Int32, TEXT as Utf8).

use std::fmt::Write;
use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, Int32Array, Int64Array, StringBuilder};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::error::ArrowError;
use duckdb::arrow::record_batch::RecordBatch;
use liteobs_model::TrafficLog;
use liteobs_model::columns::{self, Column, Kind, Value};

/// The records of `batches`, in order, with `seq` values `first_seq..`, one Arrow column per
/// table column.
pub fn record_batch(first_seq: i64, batches: &[&[TrafficLog]]) -> Result<RecordBatch, ArrowError> {
    let records = || batches.iter().flat_map(|b| b.iter());
    let n = batches.iter().map(|b| b.len()).sum();
    let mut fields = vec![Field::new("seq", DataType::Int64, false)];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values((first_seq..).take(n)))];
    for c in columns::in_order_added() {
        let (data_type, array) = column(c, records(), n)?;
        fields.push(Field::new(c.name, data_type, !c.required));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
}

/// One column of the `n` `records`, in the type the table declares for `c`'s kind (`sql.rs`).
fn column<'a>(
    c: &Column,
    records: impl Iterator<Item = &'a TrafficLog>,
    n: usize,
) -> Result<(DataType, ArrayRef), ArrowError> {
    let values = records.map(|r| c.get(r));
    Ok(match c.kind {
        Kind::U16 => {
            let ints = values.map(|v| v.as_int().and_then(|n| i32::try_from(n).ok()));
            (DataType::Int32, Arc::new(ints.collect::<Int32Array>()))
        }
        Kind::Time | Kind::U32 | Kind::Counter | Kind::I64 => {
            (DataType::Int64, Arc::new(values.map(|v| v.as_int()).collect::<Int64Array>()))
        }
        Kind::Ip | Kind::Text => {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            for v in values {
                match v {
                    Value::Text(s) => b.append_value(s),
                    // The canonical text form (as `IpAddr`'s Display writes it), without a
                    // String per address: the builder is its own buffer.
                    Value::Ip(ip) => {
                        write!(b, "{ip}").map_err(|e| ArrowError::ComputeError(e.to_string()))?;
                        b.append_value("");
                    }
                    _ => b.append_null(),
                }
            }
            (DataType::Utf8, Arc::new(b.finish()))
        }
    })
}

#[cfg(test)]
mod tests {
    use duckdb::arrow::array::{Array, AsArray};
    use duckdb::arrow::datatypes::Int64Type;

    use super::*;
    use crate::store::conformance::corpus;
    use crate::store::sql::column_list;

    #[test]
    fn columns_follow_the_table() {
        let names: Vec<&str> = column_list().split(',').map(str::trim).collect();
        let records = corpus(3);
        let batch = record_batch(7, &[&records[..1], &records[1..]]).expect("batch");
        let schema = batch.schema();
        let got: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(got, names);
        assert_eq!(batch.num_rows(), 3);
        let seq = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(seq.values().to_vec(), vec![7, 8, 9]);
        let at = |name: &str| names.iter().position(|n| *n == name).expect("column");
        let src_ip = batch.column(at("src_ip")).as_string::<i32>();
        assert_eq!(src_ip.value(2), records[2].src_ip.to_string());
        assert!(batch.column(at("host")).is_null(0), "corpus(3)[0] has no host");
    }
}
