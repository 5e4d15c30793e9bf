//! ClickHouse's `RowBinary` format, both ways, for the record's columns as [`columns`] lists them:
//! the rows of an insert (each column in its compact type, [`column_type`]), and the answers of
//! the store's selects, whose every column is cast to `Nullable(Int64)` or `Nullable(String)`
//! so that one reader takes any of them ([`cells`]).

use liteobs_model::TrafficLog;
use liteobs_model::columns::{self, Cell, Column, Kind, Value};

use super::ChError;

/// The ClickHouse type of a record column: the narrowest integer that holds it, `Int64` for
/// times (µs since the epoch: 18.16 has no `DateTime64`), text for addresses (their canonical
/// form, as the embedded stores keep them, so filters and node ids read alike), `Nullable` for
/// what a record may lack.
pub fn column_type(c: &Column) -> String {
    let ty = match c.kind {
        Kind::Time | Kind::I64 => "Int64",
        Kind::U16 => "UInt16",
        Kind::U32 => "UInt32",
        Kind::Counter => "UInt64",
        Kind::Ip | Kind::Text => "String",
    };
    if c.required { ty.to_owned() } else { format!("Nullable({ty})") }
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// One record column's value in its [`column_type`].
fn value(out: &mut Vec<u8>, c: &Column, v: Value<'_>) {
    if !c.required {
        if v == Value::Null {
            out.push(1);
            return;
        }
        out.push(0);
    }
    match (c.kind, v) {
        (Kind::Time, Value::Time(t)) => out.extend_from_slice(&t.timestamp_micros().to_le_bytes()),
        (Kind::I64, Value::Int(n)) => out.extend_from_slice(&n.to_le_bytes()),
        (Kind::U16, Value::UInt(n)) => {
            out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes())
        }
        (Kind::U32, Value::UInt(n)) => {
            out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes())
        }
        (Kind::Counter, Value::UInt(n)) => out.extend_from_slice(&n.to_le_bytes()),
        (Kind::Ip, Value::Ip(ip)) => string(out, ip.to_string().as_bytes()),
        (Kind::Text, Value::Text(s)) => string(out, s.as_bytes()),
        // A column's getter gives its own kind's value (columns.rs's tests hold it); a required
        // column is never null. Anything else is written as the type's zero so the row stays
        // well-formed.
        (Kind::Time | Kind::I64 | Kind::Counter, _) => out.extend_from_slice(&0u64.to_le_bytes()),
        (Kind::U16, _) => out.extend_from_slice(&0u16.to_le_bytes()),
        (Kind::U32, _) => out.extend_from_slice(&0u32.to_le_bytes()),
        (Kind::Ip | Kind::Text, _) => string(out, b""),
    }
}

/// Appends one row of `traffic_logs`: `seq`, the record's columns in [`columns::in_order_added`]
/// order, then `batch` and `attempt` (which upload wrote it, [`super`]'s visibility rule).
pub fn row(out: &mut Vec<u8>, seq: i64, r: &TrafficLog, batch: u64, attempt: u64) {
    out.extend_from_slice(&seq.to_le_bytes());
    for c in columns::in_order_added() {
        value(out, c, c.get(r));
    }
    out.extend_from_slice(&batch.to_le_bytes());
    out.extend_from_slice(&attempt.to_le_bytes());
}

/// Appends one row of `liteobs_batches`.
pub fn claim(
    out: &mut Vec<u8>,
    id: &str,
    batch: u64,
    attempt: u64,
    last_seq: i64,
    accepted: u64,
    committed_at: i64,
) {
    string(out, id.as_bytes());
    out.extend_from_slice(&batch.to_le_bytes());
    out.extend_from_slice(&attempt.to_le_bytes());
    out.extend_from_slice(&last_seq.to_le_bytes());
    out.extend_from_slice(&accepted.to_le_bytes());
    out.extend_from_slice(&committed_at.to_le_bytes());
}

/// The SQL that reads `expr` as the column kind [`cells`] expects: `Nullable(Int64)` when `int`,
/// else `Nullable(String)`.
pub fn cast(expr: &str, int: bool) -> String {
    if int { format!("CAST({expr} AS Nullable(Int64))") } else { format!("CAST({expr} AS Nullable(String))") }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ChError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| ChError::Answer("the answer ends inside a row".into()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, ChError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(ChError::Answer("a length in the answer is too long".into()))
    }
}

/// The rows of a `RowBinary` answer whose columns are `Nullable(Int64)` (`ints[i]`) or
/// `Nullable(String)`.
pub fn cells(bytes: &[u8], ints: &[bool]) -> Result<Vec<Vec<Cell>>, ChError> {
    let mut r = Reader { bytes, at: 0 };
    let mut rows = Vec::new();
    while r.at < bytes.len() {
        let mut row = Vec::with_capacity(ints.len());
        for &int in ints {
            if r.take(1)?[0] != 0 {
                row.push(Cell::Null);
            } else if int {
                let raw: [u8; 8] =
                    r.take(8)?.try_into().map_err(|_| ChError::Answer("short integer".into()))?;
                row.push(Cell::Int(i64::from_le_bytes(raw)));
            } else {
                let len =
                    usize::try_from(r.varint()?).map_err(|_| ChError::Answer("string too long".into()))?;
                let text = String::from_utf8(r.take(len)?.to_vec())
                    .map_err(|e| ChError::Answer(format!("stored text is not UTF-8: {e}")))?;
                row.push(Cell::Text(text));
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_leb128() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut r = Reader { bytes: &out, at: 0 };
        assert_eq!(r.varint().ok(), Some(300));
    }

    #[test]
    fn answers_are_read_and_truncation_is_an_error() {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&(-5i64).to_le_bytes());
        bytes.push(1);
        bytes.push(0);
        string(&mut bytes, b"pod");
        let rows = cells(&bytes, &[true, true, false]).ok();
        assert_eq!(rows, Some(vec![vec![Cell::Int(-5), Cell::Null, Cell::Text("pod".into())]]));
        assert!(cells(&bytes[..bytes.len() - 1], &[true, true, false]).is_err());
        assert!(cells(&[0, 0xff], &[false]).is_err());
    }
}
