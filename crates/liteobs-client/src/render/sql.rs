//! `liteobs-client sql`: the columns and rows of a `POST /sql` answer as a table, JSON or CSV;
//! pure, no I/O.
//!
//! The table has one column per result column, headed by its name: numbers to the right, text
//! to the left (escaped: it comes from the network), NULL as `NULL`. It fits the width by the
//! rules of [`super::fit`]: text columns are cut at their end, widest first, down to
//! [`TEXT_MIN`] columns, and nothing is dropped (a query's columns are what the user asked for;
//! a line still too wide is cut at the width). `-o wide` cuts nothing. The last line counts the
//! rows and says when the row cap held some back. JSON is the server's answer as it came; CSV
//! has a header of the column names and one row per row, NULL as an empty cell, text as is.

use liteobs_model::sql::SqlAnswer;
use serde_json::Value;

use super::View;
use super::fit::{Cut, Spec};
use super::grid::Grid;
use super::stats::how;
use super::table::footer;
use super::text::printable;

/// A text column is not cut below this many columns.
pub const TEXT_MIN: usize = 12;

/// A cell as the table shows it.
fn shown(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_owned(),
        Value::String(s) => printable(s).into_owned(),
        other => printable(&other.to_string()).into_owned(),
    }
}

/// A cell as CSV writes it.
fn raw(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `3 rows`, `1 row`, or when the cap held rows back: `100 rows (limit 100 reached; more
/// match — raise -limit)`.
pub fn summary(resp: &SqlAnswer) -> String {
    let n = resp.rows.len();
    let noun = if n == 1 { "row" } else { "rows" };
    let mut s = format!("{n} {noun} in {} ms", resp.elapsed_ms);
    if resp.truncated {
        s.push_str(&format!(" (limit {} reached; more match — raise -limit or add a LIMIT)", resp.limit));
    }
    s
}

pub fn table(resp: &SqlAnswer, wide: bool, view: &View) -> String {
    let rows: Vec<Vec<String>> = resp.rows.iter().map(|r| r.iter().map(shown).collect()).collect();
    let specs: Vec<Spec> = resp
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let numeric = !resp.rows.is_empty()
                && resp.rows.iter().all(|r| matches!(r.get(i), Some(Value::Number(_) | Value::Null)));
            let header = printable(&c.name).into_owned();
            match (numeric, wide) {
                (true, _) => Spec::fixed(header, true),
                (false, true) => Spec::fixed(header, false),
                (false, false) => Spec::fixed(header, false).cut(Cut::End, TEXT_MIN, 0),
            }
        })
        .collect();
    let mut out = String::new();
    if !specs.is_empty() {
        out = Grid::measured(specs, &rows, view.width, how(wide), view.colour).lines(&rows);
    }
    for line in footer(&summary(resp), view.width) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The answer as the server gave it, pretty.
pub fn json(resp: &SqlAnswer) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(resp).map(|s| s + "\n")
}

/// A header of the column names, one row per row.
pub fn csv(resp: &SqlAnswer) -> Result<String, super::csv::CsvError> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record(resp.columns.iter().map(|c| c.name.as_str()))?;
    for row in &resp.rows {
        w.write_record(row.iter().map(raw))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes)?)
}

#[cfg(test)]
mod tests {
    use liteobs_model::sql::SqlColumn;
    use serde_json::json;

    use super::*;
    use crate::render::fixtures;

    fn answer() -> SqlAnswer {
        let col = |name: &str, ty: &str| SqlColumn { name: name.into(), ty: ty.into() };
        SqlAnswer {
            columns: vec![col("route", "VARCHAR"), col("count_star()", "BIGINT"), col("p95", "DOUBLE")],
            rows: vec![
                vec![json!("/api/v1/items/{id}"), json!(1200), json!(4200.5)],
                vec![json!("/static/app.js"), json!(7), Value::Null],
                vec![json!("/very/long/route/that/goes/on/{id}/and/on/{name}/and/on"), json!(3), json!(12)],
                vec![json!("/a\u{1b}[2Jb"), json!(1), json!(1)],
            ],
            limit: 4,
            truncated: true,
            elapsed_ms: 12,
        }
    }

    fn view(width: Option<usize>) -> View {
        View { width, colour: false, clock: fixtures::clock() }
    }

    #[test]
    fn the_table_fits_the_width_cutting_text_and_escaping_it() {
        insta::assert_snapshot!("sql_table_80", table(&answer(), false, &view(Some(80))));
        insta::assert_snapshot!("sql_table_40", table(&answer(), false, &view(Some(40))));
        let wide = table(&answer(), true, &view(Some(40)));
        assert!(wide.contains("/very/long/route/that/goes/on/{id}/and/on/{name}/and/on"), "{wide}");
        for out in [table(&answer(), false, &view(Some(40))), wide] {
            assert!(!out.contains('\u{1b}'), "escaped for the terminal: {out}");
        }
    }

    #[test]
    fn an_empty_answer_still_has_its_header_and_count() {
        let mut a = answer();
        a.rows.clear();
        a.truncated = false;
        let out = table(&a, false, &view(Some(80)));
        assert_eq!(out, "route  count_star()  p95\n0 rows in 12 ms\n");
    }

    #[test]
    fn csv_and_json_carry_the_values_as_they_came() {
        let out = csv(&answer()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "route,count_star(),p95");
        assert_eq!(lines[2], "/static/app.js,7,");
        let back: SqlAnswer = serde_json::from_str(&json(&answer()).unwrap()).unwrap();
        assert_eq!(back, answer());
        assert_eq!(
            summary(&answer()),
            "4 rows in 12 ms (limit 4 reached; more match — raise -limit or add a LIMIT)"
        );
    }
}
