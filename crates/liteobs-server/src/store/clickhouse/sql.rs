//! `POST /sql` on ClickHouse: the statement (after the shared [`sandbox::precheck`]) runs with
//! `readonly=1`, which refuses writes, DDL, `SET`, a `SETTINGS` clause and every table
//! function (`url`, `file`, `remote`, ...), with the time, row and memory limits set before it
//! for that request only. Users read the `traffic` view ([`view_ddl`]): the visible rows, `ts`
//! as a `DateTime` (seconds: 18.16 has no finer one) and `ts_us` the stored microseconds.

use std::time::Instant;

use liteobs_model::columns;
use serde_json::Value as Json;

use super::super::sandbox::{self, Answer, SqlAnswer, SqlError, SqlErrorKind, SqlQuery};
use super::statements::Tables;
use super::{ChError, ClickhouseStore};

/// `CREATE VIEW traffic`, the columns of [`super::super::sql::create_view`] in the same order.
pub fn view_ddl(t: &Tables) -> String {
    let rest: Vec<&str> = columns::in_order_added().map(|c| c.name).filter(|n| *n != "ts").collect();
    format!(
        "CREATE VIEW IF NOT EXISTS {view} AS SELECT toDateTime(intDiv(ts_us, 1000000)) AS ts, ts_us, {cols} \
         FROM (SELECT ts AS ts_us, {cols} FROM {db}.{rows} WHERE {visible})",
        view = sandbox::VIEW,
        cols = rest.join(", "),
        db = t.database,
        rows = t.rows,
        visible = t.visible(),
    )
}

/// The view's column names, in order.
pub fn view_columns() -> Vec<String> {
    ["ts", "ts_us"]
        .into_iter()
        .chain(columns::in_order_added().map(|c| c.name).filter(|n| *n != "ts"))
        .map(str::to_owned)
        .collect()
}

/// A ClickHouse type's name as the answer's column type: the base type without `Nullable` or
/// `LowCardinality`.
fn type_name(ty: &str) -> &'static str {
    let mut t = ty;
    while let Some(inner) = ["Nullable(", "LowCardinality("]
        .iter()
        .find_map(|w| t.strip_prefix(w).and_then(|r| r.strip_suffix(')')))
    {
        t = inner;
    }
    const KNOWN: &[&str] = &[
        "UInt8", "UInt16", "UInt32", "UInt64", "Int8", "Int16", "Int32", "Int64", "Float32", "Float64",
        "String", "Date", "DateTime", "UUID",
    ];
    KNOWN.iter().find(|k| **k == t).copied().unwrap_or(if t.starts_with("Array") {
        "Array"
    } else if t.starts_with("Decimal") {
        "Decimal"
    } else if t.starts_with("FixedString") {
        "FixedString"
    } else if t.starts_with("Tuple") {
        "Tuple"
    } else {
        "Other"
    })
}

fn engine_error(e: ChError, limit: std::time::Duration) -> SqlError {
    match e {
        ChError::Server { message, .. } if message.starts_with("Code: 159") => SqlError::timeout(limit),
        ChError::Server { message, .. } if message.starts_with("Code: 164") => SqlError::refused(message),
        ChError::Server { message, .. } => SqlError::engine(message),
        other => SqlError { kind: SqlErrorKind::Internal, message: other.to_string() },
    }
}

impl ClickhouseStore {
    pub(super) fn run_sql(&self, query: &SqlQuery) -> Result<SqlAnswer, SqlError> {
        let statement = sandbox::precheck(&query.sql)?;
        let _slot = sandbox::Slot::take(&self.sql_in_use, self.sql.slots)?;
        let started = Instant::now();
        let mut answer = Answer::new(query.limit.clamp(1, self.sql.max_rows.max(1)), started);
        let rows = answer.limit_plus_one().to_string();
        let seconds = self.sql.timeout.as_secs_f64().ceil().max(1.0).to_string();
        let bytes = (2 * sandbox::MAX_ANSWER_BYTES).to_string();
        // `readonly` last: the settings before it are this request's, and it forbids any other.
        let settings = [
            ("max_execution_time", seconds.as_str()),
            ("timeout_overflow_mode", "throw"),
            ("max_result_rows", rows.as_str()),
            ("max_result_bytes", bytes.as_str()),
            ("result_overflow_mode", "break"),
            ("max_memory_usage", "1000000000"),
            ("output_format_json_quote_64bit_integers", "0"),
            ("default_format", "JSONCompact"),
            ("readonly", "1"),
        ];
        let body = self
            .shared
            .http
            .run(self.shared.first_url(), statement, None, &settings)
            .map_err(|e| engine_error(e, self.sql.timeout))?;
        let parsed: Json = serde_json::from_slice(&body)
            .map_err(|_| SqlError::engine("the answer is not JSONCompact (leave out any FORMAT clause)"))?;
        let meta = parsed.get("meta").and_then(Json::as_array).cloned().unwrap_or_default();
        let types: Vec<&'static str> =
            meta.iter().map(|m| type_name(m.get("type").and_then(Json::as_str).unwrap_or(""))).collect();
        answer.set_names(
            meta.iter().map(|m| m.get("name").and_then(Json::as_str).unwrap_or("").to_owned()).collect(),
        );
        let data = match parsed.get("data") {
            Some(Json::Array(rows)) => rows.clone(),
            _ => Vec::new(),
        };
        for row in data {
            if !answer.wants_more() {
                break;
            }
            let Json::Array(cells) = row else { continue };
            answer.push(
                cells
                    .into_iter()
                    .zip(&types)
                    .map(|(v, ty)| {
                        let ty = if v.is_null() { None } else { Some(*ty) };
                        (v, ty)
                    })
                    .collect(),
            )?;
        }
        Ok(answer.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::type_name;

    #[test]
    fn type_names_lose_their_wrappers() {
        assert_eq!(type_name("Nullable(UInt16)"), "UInt16");
        assert_eq!(type_name("LowCardinality(Nullable(String))"), "String");
        assert_eq!(type_name("Array(UInt8)"), "Array");
        assert_eq!(type_name("Nothing"), "Other");
    }
}
