//! The tables in ClickHouse, made and upgraded on open. Column by column from [`columns`]: a
//! newer server adds the columns an older one did not know (`ALTER TABLE ... ADD COLUMN`,
//! existing rows read NULL), which is the migration; an older server keeps writing a newer
//! table (its inserts name their columns), so replicas can be upgraded one at a time.
//!
//! `traffic_logs`: MergeTree, a partition per day of `ts` (retention drops whole days), sorted by
//! `(ts, seq)`: a time range reads only its granules, and "newest first" reads the newest
//! parts. `liteobs_batches`: one claim per upload ([`super::statements::Tables::visible`]).
//! With a cluster, both are `_local` tables on every node and `Distributed` tables over them,
//! sharded by the batch, so that a batch's rows and its claim are on one shard. The DDL is run
//! on each node the server is given, not `ON CLUSTER` (which needs ZooKeeper or Keeper).

use liteobs_model::columns;

use super::ChError;
use super::http::{Http, literal};
use super::rowbinary::column_type;
use super::statements::Tables;

/// Columns of `traffic_logs` besides the record's: which upload wrote the row.
const UPLOAD_COLUMNS: [(&str, &str); 2] = [("batch", "UInt64"), ("attempt", "UInt64")];

fn create_rows(table: &str) -> String {
    let cols: Vec<String> = std::iter::once("seq Int64".to_owned())
        .chain(columns::in_order_added().map(|c| format!("{} {}", c.name, column_type(c))))
        .chain(UPLOAD_COLUMNS.iter().map(|(n, t)| format!("{n} {t}")))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} ({}) ENGINE = MergeTree \
         PARTITION BY toDate(intDiv(ts, 1000000)) ORDER BY (ts, seq)",
        cols.join(", ")
    )
}

fn create_claims(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (id String, batch UInt64, attempt UInt64, last_seq Int64, \
         accepted UInt64, committed_at Int64) ENGINE = MergeTree \
         PARTITION BY toDate(intDiv(committed_at, 1000000)) ORDER BY (batch, attempt)"
    )
}

/// The columns of an insert into `traffic_logs`, in [`super::rowbinary::row`]'s order.
pub fn insert_columns() -> String {
    std::iter::once("seq")
        .chain(columns::in_order_added().map(|c| c.name))
        .chain(UPLOAD_COLUMNS.iter().map(|(n, _)| *n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns `table` has on the node at `url`, in order; empty if there is no such table.
fn columns_of(http: &Http, url: &str, table: &str) -> Result<Vec<(String, String)>, ChError> {
    let text = http.text(
        url,
        &format!(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {} FORMAT TabSeparated",
            literal(table.as_bytes())
        ),
    )?;
    Ok(text.lines().filter_map(|l| l.split_once('\t')).map(|(n, t)| (n.to_owned(), t.to_owned())).collect())
}

/// What opening found and did on one node.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Upgrade {
    /// Columns this server added to an older table.
    pub added: Vec<&'static str>,
    /// Columns the table has that this server does not know (a newer server's): kept, and
    /// left NULL by this server's inserts.
    pub unknown: Vec<String>,
}

/// Creates or upgrades the tables on every node of `urls`. A `traffic_logs` without `seq`,
/// `batch` and `attempt` is not LiteObs': refused.
pub fn prepare(
    http: &Http,
    urls: &[String],
    tables: &Tables,
    cluster: Option<&str>,
) -> Result<Upgrade, ChError> {
    let mut report = Upgrade::default();
    for url in urls {
        let existing = columns_of(http, url, tables.rows_local)?;
        if existing.is_empty() {
            http.run(url, &create_rows(tables.rows_local), None, &[])?;
        } else {
            let has = |name: &str| existing.iter().any(|(n, _)| n == name);
            if !(has("seq") && UPLOAD_COLUMNS.iter().all(|(n, _)| has(n))) {
                return Err(ChError::Foreign(format!("{url}: {}", tables.rows_local)));
            }
            for c in columns::in_order_added().filter(|c| !has(c.name)) {
                http.run(
                    url,
                    &format!("ALTER TABLE {} ADD COLUMN {} {}", tables.rows_local, c.name, column_type(c)),
                    None,
                    &[],
                )?;
                if !report.added.contains(&c.name) {
                    report.added.push(c.name);
                }
            }
            for (name, _) in &existing {
                let known = name == "seq"
                    || UPLOAD_COLUMNS.iter().any(|(n, _)| n == name)
                    || columns::COLUMNS.iter().any(|c| c.name == name);
                if !known && !report.unknown.contains(name) {
                    report.unknown.push(name.clone());
                }
            }
        }
        http.run(url, &create_claims(tables.claims_local), None, &[])?;
        if let Some(cluster) = cluster {
            distributed(http, url, tables.rows, tables.rows_local, cluster)?;
            distributed(http, url, tables.claims, tables.claims_local, cluster)?;
        }
        view(http, url, tables)?;
    }
    Ok(report)
}

/// The `traffic` view of `POST /sql`, made again when its columns are not this server's.
fn view(http: &Http, url: &str, tables: &Tables) -> Result<(), ChError> {
    let view = super::super::sandbox::VIEW;
    let have: Vec<String> = columns_of(http, url, view)?.into_iter().map(|(n, _)| n).collect();
    if have == super::sql::view_columns() {
        return Ok(());
    }
    if !have.is_empty() {
        http.run(url, &format!("DROP TABLE IF EXISTS {view}"), None, &[])?;
    }
    http.run(url, &super::sql::view_ddl(tables), None, &[]).map(drop)
}

/// `table` as a `Distributed` table over every shard's `local`, made again when its columns
/// are not the local table's (after an upgrade added some).
fn distributed(http: &Http, url: &str, table: &str, local: &str, cluster: &str) -> Result<(), ChError> {
    let want = columns_of(http, url, local)?;
    let have = columns_of(http, url, table)?;
    if have == want {
        return Ok(());
    }
    if !have.is_empty() {
        http.run(url, &format!("DROP TABLE IF EXISTS {table}"), None, &[])?;
    }
    http.run(
        url,
        &format!(
            "CREATE TABLE IF NOT EXISTS {table} AS {local} ENGINE = Distributed({}, currentDatabase(), {local}, batch)",
            literal(cluster.as_bytes())
        ),
        None,
        &[],
    )?;
    Ok(())
}
