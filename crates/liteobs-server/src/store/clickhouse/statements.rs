//! The store's statements in ClickHouse's SQL: the filter's conditions are the shared ones
//! ([`super::super::sql::filter_where`] with ClickHouse's [`Dialect`]), every read adds the
//! visibility rule ([`Tables::visible`]), and every answered column is cast for the one
//! `RowBinary` reader ([`rowbinary::cast`]).

use liteobs_model::Filter;
use liteobs_model::columns::{self, Cell};
use liteobs_model::stats::SortKey;

use super::super::dialect::Dialect;
use super::super::sql::{self, Param, RawRow};
use super::super::stats_sql::{self, Key};
use super::super::{SeqPage, StoreError};
use super::{ChError, rowbinary};

/// ClickHouse's pieces of the shared statements.
pub struct ClickHouse;

impl Dialect for ClickHouse {
    /// `startsWith` compares bytes.
    fn starts_with(column: &str, prefix: &str, params: &mut Vec<Param>) -> String {
        params.push(Param::Text(prefix.to_owned()));
        format!("startsWith({column}, ?)")
    }

    /// Seconds: 18.16 has no sub-second `DateTime`.
    fn timestamp(micros: &str) -> String {
        format!("toDateTime(intDiv({micros}, 1000000))")
    }

    fn position(expr: &str, needle: &str) -> String {
        format!("position({expr}, {needle})")
    }

    fn to_text(expr: &str) -> String {
        format!("toString({expr})")
    }
}

/// The tables a store reads and writes: one node's own tables, or (with a cluster) the
/// `Distributed` tables over each shard's `_local` ones.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Where rows are inserted and read: `traffic_logs`.
    pub rows: &'static str,
    /// The MergeTree table of rows on each node (the same as `rows` without a cluster).
    pub rows_local: &'static str,
    /// The claims of uploads: `liteobs_batches`.
    pub claims: &'static str,
    pub claims_local: &'static str,
    /// The database, to name the local claims in [`Tables::visible`] (a shard runs the
    /// subquery in its default database otherwise).
    pub database: String,
}

impl Tables {
    /// `database` is a plain name ([`valid_database`]).
    pub fn new(cluster: bool, database: &str) -> Tables {
        let (rows_local, claims_local) = if cluster {
            ("traffic_logs_local", "liteobs_batches_local")
        } else {
            ("traffic_logs", "liteobs_batches")
        };
        Tables {
            rows: "traffic_logs",
            rows_local,
            claims: "liteobs_batches",
            claims_local,
            database: database.to_owned(),
        }
    }

    /// The visibility rule: a row is stored once its upload's claim is, and of the claims of
    /// one batch id only the first (lowest `attempt`) counts. Rows of an upload that failed
    /// before its claim, or that lost to another replica's copy of the same batch, stay
    /// invisible until retention drops their day. The subquery reads the *local* claims: on a
    /// cluster each shard evaluates it over its own, which hold the claims of every batch whose
    /// rows it holds (both tables are sharded by `batch`).
    pub fn visible(&self) -> String {
        format!("attempt IN (SELECT min(attempt) FROM {}.{} GROUP BY id)", self.database, self.claims_local)
    }

    fn where_visible(&self, filter: &Filter, params: &mut Vec<Param>) -> String {
        let conds = sql::filter_where::<ClickHouse>(filter, params);
        match conds.strip_prefix(" WHERE ") {
            Some(rest) => format!(" WHERE {} AND {rest}", self.visible()),
            None => format!(" WHERE {}", self.visible()),
        }
    }
}

/// The answered columns of a row read: `seq`, then the record's columns.
/// Whether `name` can be written into statements as it is: ASCII letters, digits and `_`, not
/// starting with a digit.
pub fn valid_database(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn row_columns() -> String {
    std::iter::once(rowbinary::cast("seq", true))
        .chain(columns::in_order_added().map(|c| rowbinary::cast(c.name, c.kind.stored_as_int())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether each answered column of a row read is an integer.
pub fn row_ints() -> Vec<bool> {
    std::iter::once(true).chain(columns::in_order_added().map(|c| c.kind.stored_as_int())).collect()
}

/// Rows of [`row_columns`] as [`RawRow`]s.
pub fn raw_rows(cells: Vec<Vec<Cell>>) -> Result<Vec<RawRow>, StoreError> {
    cells
        .into_iter()
        .map(|row| {
            let mut cells = row.into_iter();
            match cells.next() {
                Some(Cell::Int(seq)) => Ok(RawRow { seq, cells: cells.collect() }),
                _ => Err(StoreError::CorruptRow("a row without its seq".into())),
            }
        })
        .collect()
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The newest `filter.limit` visible rows `filter` selects.
pub fn select(t: &Tables, filter: &Filter) -> Result<String, ChError> {
    let mut params = Vec::new();
    let where_clause = t.where_visible(filter, &mut params);
    params.push(Param::Int(limit(filter.limit)));
    super::http::bind(
        &format!(
            "SELECT {} FROM {}{where_clause} ORDER BY ts DESC, seq DESC LIMIT ? FORMAT RowBinary",
            row_columns(),
            t.rows
        ),
        &params,
    )
}

/// The visible rows of `filter` in `page`'s range of `seq` ([`super::super::Store::rows_after`]).
pub fn select_seq(t: &Tables, filter: &Filter, page: SeqPage) -> Result<String, ChError> {
    let mut params = Vec::new();
    let where_clause = t.where_visible(filter, &mut params);
    let bound = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    params.push(Param::Int(limit(page.limit)));
    let order = if page.newest { "DESC" } else { "ASC" };
    super::http::bind(
        &format!(
            "SELECT {} FROM {}{where_clause} AND seq > {} AND seq <= {} ORDER BY seq {order} LIMIT ? FORMAT RowBinary",
            row_columns(),
            t.rows,
            bound(page.after),
            bound(page.upto),
        ),
        &params,
    )
}

/// `/stats` and `/map`'s grouped statement: the figures of [`stats_sql::groups`] in its order,
/// computed by ClickHouse. Percentiles are the nearest-rank element of each group's sorted
/// answered latencies (`⌈p·n/100⌉`-th, as the reference), since 18.16's `quantileExact` picks
/// another rank.
pub fn stats(t: &Tables, keys: &[Key], sort: SortKey, filter: &Filter) -> Result<String, ChError> {
    let mut params = Vec::new();
    let where_clause = t.where_visible(filter, &mut params);
    let aliases: Vec<String> = (0..keys.len()).map(|i| format!("k{i}")).collect();
    let group_by = if keys.is_empty() { String::new() } else { format!(" GROUP BY {}", aliases.join(", ")) };
    let key_exprs: String = keys.iter().zip(&aliases).map(|(k, a)| format!("{} AS {a}, ", k.expr)).collect();
    let key_list: String = aliases.iter().map(|a| format!("{a}, ")).collect();
    let key_casts: String =
        keys.iter().zip(&aliases).map(|(k, a)| format!("{}, ", rowbinary::cast(a, k.int))).collect();
    let pct = |p: u32| format!("if(answered = 0, NULL, toInt64(lat[intDiv({p} * answered + 99, 100)]))");
    let figures: String =
        stats_sql::FIGURES.iter().map(|f| rowbinary::cast(f, true)).collect::<Vec<_>>().join(", ");
    params.push(Param::Int(limit(filter.limit).saturating_add(1)));
    let text = format!(
        "SELECT {key_casts}{figures} FROM (\
         SELECT {key_list}toInt64(count()) AS count, \
         toInt64(countIf(s_status >= 500 AND s_status <= 599)) AS errors, \
         toInt64(countIf(s_status = 0)) AS no_response, \
         arraySort(groupArrayIf(s_latency, s_status != 0)) AS lat, length(lat) AS answered, \
         {} AS p50_us, {} AS p95_us, {} AS p99_us, \
         if(answered = 0, NULL, toInt64(lat[answered])) AS max_us, \
         toInt64(sum(s_req)) AS req_bytes, toInt64(sum(s_resp)) AS resp_bytes, \
         if(count = 0, NULL, min(s_ts)) AS first_ts, if(count = 0, NULL, max(s_ts)) AS last_ts \
         FROM (SELECT {key_exprs}status AS s_status, latency_us AS s_latency, req_bytes AS s_req, \
         resp_bytes AS s_resp, ts AS s_ts FROM {}{where_clause}){group_by}) \
         ORDER BY {} LIMIT ? FORMAT RowBinary",
        pct(50),
        pct(95),
        pct(99),
        t.rows,
        stats_sql::order_by(sort, &aliases),
    );
    super::http::bind(&text, &params)
}

/// Whether each answered column of [`stats`] is an integer.
pub fn stats_ints(keys: &[Key]) -> Vec<bool> {
    stats_sql::int_columns(keys)
}
