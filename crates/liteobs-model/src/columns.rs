//! The record's columns: the one list of [`TrafficLog`]'s fields that every flat form of a record
//! follows — the stores' schema, inserts, row reading and migrations, the client's CSV, the
//! agent's NDJSON writer and the store benchmark.
//!
//! Each [`Column`] names a field, its [`Kind`] (how it is carried: a time, an address, an
//! unsigned or signed integer, text), whether a record always has it, and the schema version
//! that added it, and holds the two functions that read its [`Value`] from a record and write a
//! stored [`Cell`] back into one. Adding a field to [`TrafficLog`] is one line in [`COLUMNS`]
//! (the tests fail until it is there); the schema version, the migration that adds the column
//! to an older file, and every form above follow from it.
//!
//! [`COLUMNS`] is in the order of the struct, which is the JSON order. The flat forms (CSV,
//! SQL) use [`in_order_added`]: the fields of version 1 first, then each later version's, so a
//! new field is appended and a script reading CSV columns by position keeps working.
//!
//! Not for the JSON form itself (serde's derive on [`TrafficLog`]) or for validation of
//! uploads ([`crate::batch`]).

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::TrafficLog;

/// How a column's values are carried, and so how each form writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A timestamp: microseconds since the Unix epoch when stored, RFC 3339 in text.
    Time,
    /// An IPv4 or IPv6 address, in its canonical text form when stored.
    Ip,
    /// A `u16` (ports, status).
    U16,
    /// A `u32` (PIDs).
    U32,
    /// A `u64` counter, at most [`crate::COUNTER_MAX`] so that a signed 64-bit column holds it.
    Counter,
    /// An `i64`.
    I64,
    /// Text.
    Text,
}

impl Kind {
    /// Whether the stored form is an integer (otherwise text).
    pub fn stored_as_int(self) -> bool {
        !matches!(self, Kind::Ip | Kind::Text)
    }
}

/// One field's value, borrowed from a record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// The field is unknown (an `Option` that is `None`).
    Null,
    Time(DateTime<Utc>),
    Ip(IpAddr),
    UInt(u64),
    Int(i64),
    Text(&'a str),
}

impl<'a> Value<'a> {
    /// The stored integer: a time as microseconds since the epoch, a counter saturated at
    /// `i64::MAX` (decoding never lets a larger one in). `None` for text, addresses and null.
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Value::Time(t) => Some(t.timestamp_micros()),
            Value::UInt(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
            Value::Int(n) => Some(n),
            Value::Null | Value::Ip(_) | Value::Text(_) => None,
        }
    }

    /// The stored text: an address in canonical form. `None` for integers and null.
    pub fn as_text(&self) -> Option<Cow<'a, str>> {
        match *self {
            Value::Ip(ip) => Some(Cow::Owned(ip.to_string())),
            Value::Text(s) => Some(Cow::Borrowed(s)),
            Value::Null | Value::Time(_) | Value::UInt(_) | Value::Int(_) => None,
        }
    }

    /// The value as a store binds it: an integer, text, or NULL.
    pub fn stored(&self) -> Stored<'a> {
        match (self.as_int(), self.as_text()) {
            (Some(n), _) => Stored::Int(n),
            (None, Some(s)) => Stored::Text(s),
            (None, None) => Stored::Null,
        }
    }
}

/// A value in the form a store binds it ([`Value::stored`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
}

/// One field's value as a store keeps it: an integer or text, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// Why a stored cell cannot be a field's value (a file edited by hand, or a bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{column} = {value} {problem}")]
pub struct CellError {
    pub column: &'static str,
    /// The cell as stored (text quoted).
    pub value: String,
    pub problem: &'static str,
}

/// Why a cell does not fit a field: the cell as text and the problem (see [`CellError`]).
pub type Misfit = (String, &'static str);

/// A field's Rust type and its [`Kind`]; implemented for the types [`TrafficLog`] uses.
pub trait FieldType: Sized {
    const KIND: Kind;
    /// Whether every record has it (not an `Option`).
    const REQUIRED: bool = true;
    fn value(&self) -> Value<'_>;
    /// From a stored cell that is not null. `Err` names the problem.
    fn from_cell(cell: Cell) -> Result<Self, Misfit>;
    /// From a null cell: only an `Option` accepts it.
    fn from_null() -> Option<Self> {
        None
    }
}

fn int_of(cell: Cell) -> Result<i64, Misfit> {
    match cell {
        Cell::Int(n) => Ok(n),
        Cell::Text(s) => Err((format!("{s:?}"), "is text where a number is stored")),
        Cell::Null => Err(("NULL".into(), "is missing")),
    }
}

fn text_of(cell: Cell) -> Result<String, Misfit> {
    match cell {
        Cell::Text(s) => Ok(s),
        Cell::Int(n) => Err((n.to_string(), "is a number where text is stored")),
        Cell::Null => Err(("NULL".into(), "is missing")),
    }
}

macro_rules! integer_field {
    ($ty:ty, $kind:ident, $variant:ident) => {
        impl FieldType for $ty {
            const KIND: Kind = Kind::$kind;
            fn value(&self) -> Value<'_> {
                Value::$variant((*self).into())
            }
            fn from_cell(cell: Cell) -> Result<Self, Misfit> {
                let n = int_of(cell)?;
                <$ty>::try_from(n).map_err(|_| (n.to_string(), "is out of range"))
            }
        }
    };
}

integer_field!(u16, U16, UInt);
integer_field!(u32, U32, UInt);
integer_field!(i64, I64, Int);

impl FieldType for u64 {
    const KIND: Kind = Kind::Counter;
    fn value(&self) -> Value<'_> {
        Value::UInt(*self)
    }
    fn from_cell(cell: Cell) -> Result<Self, Misfit> {
        let n = int_of(cell)?;
        u64::try_from(n).map_err(|_| (n.to_string(), "is out of range"))
    }
}

impl FieldType for DateTime<Utc> {
    const KIND: Kind = Kind::Time;
    fn value(&self) -> Value<'_> {
        Value::Time(*self)
    }
    fn from_cell(cell: Cell) -> Result<Self, Misfit> {
        let n = int_of(cell)?;
        DateTime::from_timestamp_micros(n).ok_or_else(|| (n.to_string(), "is out of range"))
    }
}

impl FieldType for IpAddr {
    const KIND: Kind = Kind::Ip;
    fn value(&self) -> Value<'_> {
        Value::Ip(*self)
    }
    fn from_cell(cell: Cell) -> Result<Self, Misfit> {
        let s = text_of(cell)?;
        s.parse().map_err(|_| (format!("{s:?}"), "is not an address"))
    }
}

impl FieldType for String {
    const KIND: Kind = Kind::Text;
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
    fn from_cell(cell: Cell) -> Result<Self, Misfit> {
        text_of(cell)
    }
}

impl<T: FieldType> FieldType for Option<T> {
    const KIND: Kind = T::KIND;
    const REQUIRED: bool = false;
    fn value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null, T::value)
    }
    fn from_cell(cell: Cell) -> Result<Self, Misfit> {
        T::from_cell(cell).map(Some)
    }
    fn from_null() -> Option<Self> {
        Some(None)
    }
}

/// One field of [`TrafficLog`] as a column.
pub struct Column {
    /// The field's name: the JSON key, the CSV header and the SQL column.
    pub name: &'static str,
    pub kind: Kind,
    /// Whether every record has a value (SQL `NOT NULL`).
    pub required: bool,
    /// The store schema version that added the column (1: the first release's). A store file of
    /// an older version gets it by `ALTER TABLE ... ADD COLUMN`, NULL in its existing rows.
    pub since: u32,
    get: fn(&TrafficLog) -> Value<'_>,
    set: fn(&mut TrafficLog, Cell) -> Result<(), Misfit>,
}

impl Column {
    /// This field's value in `r`.
    pub fn get<'a>(&self, r: &'a TrafficLog) -> Value<'a> {
        (self.get)(r)
    }

    /// Writes a stored cell into `r`'s field, checking that it fits.
    pub fn set(&self, r: &mut TrafficLog, cell: Cell) -> Result<(), CellError> {
        (self.set)(r, cell).map_err(|(value, problem)| CellError { column: self.name, value, problem })
    }
}

impl std::fmt::Debug for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Column")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("required", &self.required)
            .field("since", &self.since)
            .finish()
    }
}

/// `field: Type = since, ...` → [`COLUMNS`] and [`visit`]; each type is checked against the
/// struct's field.
macro_rules! columns {
    ($($field:ident: $ty:ty = $since:literal),* $(,)?) => {
        /// Every field of [`TrafficLog`], in the struct's (and JSON's) order.
        pub static COLUMNS: [Column; [$(stringify!($field)),*].len()] = [$(Column {
            name: stringify!($field),
            kind: <$ty as FieldType>::KIND,
            required: <$ty as FieldType>::REQUIRED,
            since: $since,
            get: |r| FieldType::value(&r.$field),
            set: |r, cell| {
                r.$field = match cell {
                    Cell::Null => <$ty as FieldType>::from_null().ok_or(("NULL".into(), "is missing"))?,
                    cell => <$ty as FieldType>::from_cell(cell)?,
                };
                Ok(())
            },
        }),*];

        /// Calls `f` with each column's JSON key with a comma before it (`,"name":`) and its
        /// value in `r`, in [`COLUMNS`] order: the same walk as over [`COLUMNS`], expanded in
        /// line for the writer on the agent's hot path (no call through a pointer per field, and
        /// each key a constant).
        #[inline(always)]
        pub fn visit<'a>(r: &'a TrafficLog, mut f: impl FnMut(&'static str, Value<'a>)) {
            $(f(concat!(",\"", stringify!($field), "\":"), FieldType::value(&r.$field));)*
        }
    };
}

columns! {
    ts: DateTime<Utc> = 1,
    src_ip: IpAddr = 1,
    src_port: u16 = 1,
    dst_ip: IpAddr = 1,
    dst_port: u16 = 1,
    method: String = 1,
    path: String = 1,
    host: Option<String> = 1,
    status: u16 = 1,
    latency_us: u64 = 1,
    req_bytes: u64 = 1,
    resp_bytes: u64 = 1,
    src_pid: Option<u32> = 1,
    src_comm: Option<String> = 1,
    src_namespace: Option<String> = 3,
    src_pod: Option<String> = 3,
    src_container: Option<String> = 3,
    src_container_id: Option<String> = 3,
    src_node: Option<String> = 3,
    dst_pid: Option<u32> = 1,
    dst_comm: Option<String> = 1,
    dst_namespace: Option<String> = 3,
    dst_pod: Option<String> = 3,
    dst_container: Option<String> = 3,
    dst_container_id: Option<String> = 3,
    dst_node: Option<String> = 3,
    dst_service_ip: Option<IpAddr> = 3,
    dst_service_port: Option<u16> = 3,
    node: String = 1,
    exchange_id: Option<i64> = 3,
    route: Option<String> = 4,
}

/// The newest schema version a column was added in.
pub const LATEST_SINCE: u32 = {
    let mut max = 0;
    let mut i = 0;
    while i < COLUMNS.len() {
        if COLUMNS[i].since > max {
            max = COLUMNS[i].since;
        }
        i += 1;
    }
    max
};

/// The columns in the order they were added (by [`Column::since`], then struct order): the
/// order of CSV columns and of a store table's columns, old or migrated.
pub fn in_order_added() -> impl Iterator<Item = &'static Column> + Clone {
    (1..=LATEST_SINCE).flat_map(|v| COLUMNS.iter().filter(move |c| c.since == v))
}

/// A record from one stored cell per column (any order; each column once). A required column
/// left out, or a cell that does not fit its field, is an error naming the column.
pub fn record_from<'c>(cells: impl IntoIterator<Item = (&'c Column, Cell)>) -> Result<TrafficLog, CellError> {
    let mut r = blank();
    let mut seen = [false; COLUMNS.len()];
    for (column, cell) in cells {
        if let Some(i) = COLUMNS.iter().position(|c| std::ptr::eq(c, column)) {
            seen[i] = true;
        }
        column.set(&mut r, cell)?;
    }
    if let Some(missing) = COLUMNS.iter().zip(seen).find(|(c, seen)| c.required && !seen) {
        return Err(CellError { column: missing.0.name, value: "(no cell)".into(), problem: "is missing" });
    }
    Ok(r)
}

/// A record whose every field is empty, zero or unknown: what [`record_from`] fills in.
fn blank() -> TrafficLog {
    TrafficLog {
        ts: DateTime::UNIX_EPOCH,
        src_ip: IpAddr::from([0, 0, 0, 0]),
        src_port: 0,
        dst_ip: IpAddr::from([0, 0, 0, 0]),
        dst_port: 0,
        method: String::new(),
        path: String::new(),
        host: None,
        status: 0,
        latency_us: 0,
        req_bytes: 0,
        resp_bytes: 0,
        src_pid: None,
        src_comm: None,
        src_namespace: None,
        src_pod: None,
        src_container: None,
        src_container_id: None,
        src_node: None,
        dst_pid: None,
        dst_comm: None,
        dst_namespace: None,
        dst_pod: None,
        dst_container: None,
        dst_container_id: None,
        dst_node: None,
        dst_service_ip: None,
        dst_service_port: None,
        node: String::new(),
        exchange_id: None,
        route: None,
    }
}

/// A cell as a store keeps `value` (the inverse of [`Column::set`]).
pub fn cell_of(value: Value<'_>) -> Cell {
    match value.stored() {
        Stored::Null => Cell::Null,
        Stored::Int(n) => Cell::Int(n),
        Stored::Text(s) => Cell::Text(s.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names serde knows for [`TrafficLog`], in order: a deserializer that only asks
    /// the derive which fields the struct has.
    fn serde_field_names() -> Vec<&'static str> {
        struct Names(Vec<&'static str>);
        #[derive(Debug)]
        struct Done;
        impl std::fmt::Display for Done {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("done")
            }
        }
        impl std::error::Error for Done {}
        impl serde::de::Error for Done {
            fn custom<T: std::fmt::Display>(_: T) -> Self {
                Done
            }
        }
        impl<'de> serde::Deserializer<'de> for &mut Names {
            type Error = Done;
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Done> {
                Err(Done)
            }
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Done> {
                self.0.extend_from_slice(fields);
                Err(Done)
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
                option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
                ignored_any
            }
        }
        let mut names = Names(Vec::new());
        let _ = <TrafficLog as serde::Deserialize>::deserialize(&mut names);
        names.0
    }

    #[test]
    fn every_field_is_a_column_in_struct_order() {
        let columns: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(columns, serde_field_names());
    }

    #[test]
    fn a_record_survives_its_cells() {
        let mut r = crate::record::tests::sample();
        r.src_namespace = Some("shop".into());
        r.dst_service_ip = Some("10.96.0.10".parse().unwrap());
        r.dst_service_port = Some(80);
        r.exchange_id = Some(-5);
        r.route = Some("/api/v1/items".into());
        r.latency_us = crate::COUNTER_MAX;
        let cells = in_order_added().map(|c| (c, cell_of(c.get(&r))));
        assert_eq!(record_from(cells).unwrap(), r);
    }

    #[test]
    fn cells_that_do_not_fit_name_their_column() {
        let port = COLUMNS.iter().find(|c| c.name == "src_port").unwrap();
        let mut r = blank();
        let err = port.set(&mut r, Cell::Int(70_000)).unwrap_err();
        assert_eq!(err.to_string(), "src_port = 70000 is out of range");
        let ip = COLUMNS.iter().find(|c| c.name == "dst_service_ip").unwrap();
        assert_eq!(
            ip.set(&mut r, Cell::Text("x".into())).unwrap_err().to_string(),
            "dst_service_ip = \"x\" is not an address"
        );
        assert!(ip.set(&mut r, Cell::Null).is_ok(), "an optional column takes NULL");
        let node = COLUMNS.iter().find(|c| c.name == "node").unwrap();
        assert_eq!(node.set(&mut r, Cell::Null).unwrap_err().to_string(), "node = NULL is missing");
        let only_ts = [(&COLUMNS[0], Cell::Int(0))];
        assert_eq!(record_from(only_ts).unwrap_err().column, "src_ip");
    }

    #[test]
    fn columns_in_order_added_are_the_first_releases_then_the_later_ones() {
        let names: Vec<&str> = in_order_added().map(|c| c.name).collect();
        assert_eq!(
            &names[..17],
            [
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
                "node"
            ]
        );
        assert_eq!(names.len(), COLUMNS.len());
        assert_eq!(LATEST_SINCE, 4);
    }
}
