//! The pieces of SQL text that differ between engines inside the statements the backends
//! share ([`super::sql`]): a byte-exact prefix test, a readable timestamp, and the two
//! functions a node id is made with. Everything else in those statements is SQL all three
//! engines (SQLite, DuckDB, ClickHouse) read alike.

use super::sql::Param;

pub trait Dialect {
    /// The condition "text column `column` starts with `prefix`", pushing its parameters. Must
    /// compare bytes exactly as `str::starts_with` does (the reference): no case folding, no
    /// wildcards, and NUL is an ordinary byte. `prefix` is not empty.
    fn starts_with(column: &str, prefix: &str, params: &mut Vec<Param>) -> String;

    /// The engine's timestamp of `micros`, a column of microseconds since the Unix epoch (UTC):
    /// the `traffic` view's readable `ts` ([`super::sql::create_view`]).
    fn timestamp(micros: &str) -> String;

    /// The 1-based position of the string literal `needle` in the text `expr`, 0 when absent.
    fn position(expr: &str, needle: &str) -> String {
        format!("instr({expr}, {needle})")
    }

    /// The integer `expr` as decimal text.
    fn to_text(expr: &str) -> String {
        format!("CAST({expr} AS TEXT)")
    }
}
