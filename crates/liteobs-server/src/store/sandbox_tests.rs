//! `POST /sql`'s sandbox against each engine (tests only): ~50 hostile statements refused with
//! the right kind and the store untouched after them, the same statements refused by the
//! engine alone (no precheck, no subquery), good queries checked against the records stored,
//! the row cap, the time limit and the slots.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use liteobs_model::{Filter, TrafficLog};
use serde_json::{Value as Json, json};

use super::conformance::corpus;
use super::driver::Driver;
use super::sandbox::{self, SqlErrorKind, SqlLimits, SqlQuery};
use super::sql_store::SqlStore;
use super::{Store, StoreOptions};

/// What a hostile statement must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused (400, kind `refused`) by every engine.
    Refused,
    /// Refused by DuckDB's sandbox (external access off, the answer's cap); SQLite has no such
    /// function at all (kind `engine`: "no such table: read_csv") or refuses it.
    DuckdbRefused,
    /// Refused, or unknown to the engine (a function only the other engine has).
    Either,
    /// Stopped by the time limit.
    Timeout,
    /// Stopped by the answer's size cap or by the time limit, whichever comes first (DuckDB
    /// may take longer than the test's 300 ms to build a 100 MB value); SQLite's string limit
    /// refuses it at once.
    Bounded,
}

/// The hostile statements; `{dir}` is the test's directory (a file there must never appear).
const HOSTILE: &[(&str, Expect)] = &[
    ("INSERT INTO traffic_logs (seq) VALUES (1)", Expect::Refused),
    ("INSERT INTO traffic SELECT * FROM traffic", Expect::Refused),
    ("UPDATE traffic_logs SET status = 999", Expect::Refused),
    ("DELETE FROM traffic_logs", Expect::Refused),
    ("DELETE FROM liteobs_batches", Expect::Refused),
    ("REPLACE INTO liteobs_meta VALUES ('schema_version', '99')", Expect::Refused),
    ("DROP TABLE traffic_logs", Expect::Refused),
    ("DROP VIEW traffic", Expect::Refused),
    ("CREATE TABLE pwned (x INTEGER)", Expect::Refused),
    ("CREATE TEMP TABLE pwned AS SELECT * FROM traffic", Expect::Refused),
    ("CREATE VIEW pwned AS SELECT 1", Expect::Refused),
    ("CREATE INDEX pwned ON traffic_logs (status)", Expect::Refused),
    (
        "CREATE TRIGGER pwned AFTER INSERT ON traffic_logs BEGIN DELETE FROM traffic_logs; END",
        Expect::Refused,
    ),
    ("ALTER TABLE traffic_logs ADD COLUMN pwned TEXT", Expect::Refused),
    ("ALTER TABLE traffic_logs RENAME TO pwned", Expect::Refused),
    ("TRUNCATE traffic_logs", Expect::Refused),
    ("ATTACH '{dir}/pwned.db' AS pwned", Expect::Refused),
    ("ATTACH DATABASE ':memory:' AS pwned", Expect::Refused),
    ("DETACH DATABASE main", Expect::Refused),
    ("COPY traffic_logs TO '{dir}/pwned.csv'", Expect::Refused),
    ("COPY (SELECT * FROM traffic) TO '{dir}/pwned.parquet' (FORMAT PARQUET)", Expect::Refused),
    ("COPY traffic_logs FROM '/etc/passwd'", Expect::Refused),
    ("EXPORT DATABASE '{dir}/pwned'", Expect::Refused),
    ("IMPORT DATABASE '{dir}'", Expect::Refused),
    ("SELECT * FROM read_csv('/etc/passwd')", Expect::DuckdbRefused),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", Expect::DuckdbRefused),
    // With external access off DuckDB does not take the string for a file at all: "no table of
    // that name" (an engine error), and nothing is read.
    ("SELECT * FROM '/etc/passwd'", Expect::Either),
    ("SELECT * FROM read_text('/etc/passwd')", Expect::DuckdbRefused),
    ("SELECT * FROM read_blob('/etc/hostname')", Expect::DuckdbRefused),
    ("SELECT * FROM glob('/etc/*')", Expect::DuckdbRefused),
    ("SELECT * FROM read_parquet('{dir}/x.parquet')", Expect::DuckdbRefused),
    ("SELECT * FROM read_json('/etc/os-release')", Expect::DuckdbRefused),
    ("SELECT * FROM sniff_csv('/etc/passwd')", Expect::DuckdbRefused),
    ("SELECT * FROM parquet_metadata('{dir}/x.parquet')", Expect::DuckdbRefused),
    ("INSTALL httpfs", Expect::Refused),
    ("LOAD httpfs", Expect::Refused),
    ("LOAD '/tmp/evil.duckdb_extension'", Expect::Refused),
    ("SELECT load_extension('/tmp/evil.so')", Expect::Either),
    ("PRAGMA writable_schema = 1", Expect::Refused),
    ("PRAGMA query_only = 0", Expect::Refused),
    ("PRAGMA journal_mode = DELETE", Expect::Refused),
    ("SET enable_external_access = true", Expect::Refused),
    ("SET threads = 1", Expect::Refused),
    ("RESET lock_configuration", Expect::Refused),
    ("CALL pragma_version()", Expect::Refused),
    ("BEGIN TRANSACTION", Expect::Refused),
    ("COMMIT", Expect::Refused),
    ("CHECKPOINT", Expect::Refused),
    ("VACUUM", Expect::Refused),
    ("ANALYZE", Expect::Refused),
    ("SELECT 1; DELETE FROM traffic_logs", Expect::Refused),
    ("SELECT 1; -- a comment\nDROP TABLE traffic_logs", Expect::Refused),
    ("SELECT 1 /* an unclosed comment; DROP TABLE traffic_logs", Expect::Refused),
    // SQLite's authorizer refuses these; DuckDB cannot parse them as the subquery it wraps every
    // statement in (a syntax error, kind `engine`): neither runs them.
    ("WITH x AS (SELECT 1) DELETE FROM traffic_logs", Expect::Either),
    ("WITH x AS (SELECT 1) INSERT INTO traffic_logs (seq) SELECT 1 FROM x", Expect::Either),
    // Huge values: the statement itself, a value SQLite may not make, an answer past its cap.
    ("SELECT '{huge}'", Expect::Refused),
    ("SELECT zeroblob(100000000)", Expect::Either),
    ("SELECT repeat('x', 100000000)", Expect::Bounded),
    (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r",
        Expect::Timeout,
    ),
];

/// Statements the engines must refuse with neither the precheck nor DuckDB's subquery in front
/// (each one statement, so that it reaches the engine whole).
const ENGINE_ALONE: &[&str] = &[
    "INSERT INTO traffic_logs (seq) VALUES (1)",
    "UPDATE traffic_logs SET status = 999",
    "DELETE FROM traffic_logs",
    "DROP TABLE traffic_logs",
    "DROP VIEW traffic",
    "CREATE TABLE pwned (x INTEGER)",
    "ALTER TABLE traffic_logs ADD COLUMN pwned TEXT",
    "ATTACH '{dir}/pwned.db' AS pwned",
    "COPY traffic_logs TO '{dir}/pwned.csv'",
    "COPY (SELECT 1) TO '{dir}/pwned.csv'",
    "EXPORT DATABASE '{dir}/pwned'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM '/etc/passwd'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA writable_schema = 1",
    "PRAGMA query_only = 0",
    "SET enable_external_access = true",
    "SET memory_limit = '1TB'",
    "WITH x AS (SELECT 1) DELETE FROM traffic_logs",
    "SELECT 1; DELETE FROM traffic_logs",
];

fn open<D: Driver>(dir: &Path) -> SqlStore<D> {
    let options = StoreOptions {
        sql: SqlLimits { timeout: Duration::from_millis(300), ..SqlLimits::DEFAULT },
        ..StoreOptions::default()
    };
    SqlStore::<D>::open(&dir.join("store"), options).expect("open")
}

fn all(s: &dyn Store) -> Vec<TrafficLog> {
    s.query(&Filter { limit: liteobs_model::filter::MAX_LIMIT, ..Filter::default() }).expect("query")
}

fn fill(dir: &str, sql: &str) -> String {
    sql.replace("{dir}", dir).replace("{huge}", &"x".repeat(sandbox::MAX_SQL_BYTES))
}

/// Everything a hostile statement could have changed: the rows, and the files of the directory.
fn state<D: Driver>(s: &SqlStore<D>, dir: &Path) -> (Vec<TrafficLog>, Vec<String>) {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("store"))
        .collect();
    files.sort();
    (all(s), files)
}

pub fn hostile_statements_are_refused<D: Driver>(engine: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open::<D>(dir.path());
    s.insert(&corpus(30), None).expect("insert");
    let before = state(&s, dir.path());
    assert_eq!(before.0.len(), 30);
    let d = dir.path().display().to_string();
    let mut wrong = Vec::new();
    for (raw, expect) in HOSTILE {
        let sql = fill(&d, raw);
        let started = Instant::now();
        let got = s.sql(&SqlQuery { sql: sql.clone(), limit: 10 });
        let shown: String = raw.chars().take(80).collect();
        let e = match got {
            Ok(a) => panic!("{engine}: {shown:?} was answered: {:?}", a.rows),
            Err(e) => e,
        };
        let kinds: &[SqlErrorKind] = match expect {
            Expect::Refused => &[SqlErrorKind::Refused],
            Expect::DuckdbRefused if engine == "duckdb" => &[SqlErrorKind::Refused],
            Expect::DuckdbRefused | Expect::Either => &[SqlErrorKind::Refused, SqlErrorKind::Engine],
            Expect::Timeout => &[SqlErrorKind::Timeout],
            Expect::Bounded => &[SqlErrorKind::Refused, SqlErrorKind::Engine, SqlErrorKind::Timeout],
        };
        if !kinds.contains(&e.kind) {
            wrong.push(format!("{engine}: {shown:?} got {:?}: {}", e.kind, e.message));
        }
        assert!(!e.message.is_empty());
        if *expect == Expect::Timeout {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{engine}: stopped late: {:?}",
                started.elapsed()
            );
        }
        assert_eq!(state(&s, dir.path()), before, "{engine}: {shown:?} changed the store or wrote a file");
    }
    assert!(wrong.is_empty(), "refused, but not as expected:\n{}", wrong.join("\n"));
    good_queries_answer_the_stored_rows(engine, &s);
}

pub fn the_engine_alone_refuses_hostile_statements<D: Driver>(engine: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open::<D>(dir.path());
    s.insert(&corpus(10), None).expect("insert");
    let before = state(&s, dir.path());
    let d = dir.path().display().to_string();
    for raw in ENGINE_ALONE {
        let sql = fill(&d, raw);
        match s.run_sql(&sql, 10, false) {
            Ok(a) => panic!("{engine}: the engine ran {raw:?}: {:?}", a.rows),
            Err(e) => assert!(
                matches!(e.kind, SqlErrorKind::Refused | SqlErrorKind::Engine),
                "{engine}: {raw:?}: {e:?}"
            ),
        }
        assert_eq!(state(&s, dir.path()), before, "{engine}: {raw:?} changed the store or wrote a file");
    }
    // A temporary table: DuckDB's read-only transaction allows one on the sandbox's own
    // connection (in memory, gone with that connection, which lives for one query); SQLite
    // refuses it. Either way no later query sees it, and the store and directory are unchanged.
    let _ = s.run_sql("CREATE TEMP TABLE pwned AS SELECT 1", 10, false);
    assert!(
        s.run_sql("SELECT * FROM pwned", 10, false).is_err(),
        "{engine}: a temporary table outlived its query"
    );
    assert_eq!(
        state(&s, dir.path()),
        before,
        "{engine}: a temporary table changed the store or wrote a file"
    );
    // And a read still works on the sandbox without its outer walls.
    let a = s.run_sql("SELECT count(*) FROM traffic", 10, false).expect("count");
    assert_eq!(a.rows, [[json!(10)]], "{engine}");
}

/// `(route, count)` of the stored rows, as `GROUP BY route ORDER BY route` answers them.
fn routes(rows: &[TrafficLog]) -> Vec<Vec<Json>> {
    let mut by: BTreeMap<Option<String>, i64> = BTreeMap::new();
    for r in rows {
        *by.entry(r.route.clone()).or_default() += 1;
    }
    by.into_iter().map(|(route, n)| vec![route.map_or(Json::Null, Json::from), json!(n)]).collect()
}

fn good_queries_answer_the_stored_rows<D: Driver>(engine: &str, s: &SqlStore<D>) {
    let stored = all(s);
    let q = |sql: &str, limit: usize| {
        s.sql(&SqlQuery { sql: sql.to_owned(), limit }).unwrap_or_else(|e| panic!("{engine}: {sql}: {e:?}"))
    };
    let a = q("SELECT route, count(*) AS n FROM traffic GROUP BY 1 ORDER BY 1", 100);
    assert_eq!(a.rows, routes(&stored), "{engine}");
    let names: Vec<&str> = a.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["route", "n"]);
    assert!(!a.truncated);

    let a = q("SELECT * FROM traffic LIMIT 1", 10);
    let names: Vec<&str> = a.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, super::sql::view_columns(), "{engine}: the view's columns");

    // ts readable and exact, ts_us raw, NULL as null, text as text; in a stated order.
    let a = q("SELECT ts, ts_us, path, host, src_pid, status FROM traffic ORDER BY ts_us, src_port", 100);
    let mut want = stored.clone();
    want.sort_by_key(|r| (r.ts, r.src_port));
    let want: Vec<Vec<Json>> = want
        .iter()
        .map(|r| {
            vec![
                json!(r.ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                json!(r.ts.timestamp_micros()),
                json!(r.path),
                r.host.as_ref().map_or(Json::Null, |h| json!(h)),
                r.src_pid.map_or(Json::Null, |p| json!(p)),
                json!(r.status),
            ]
        })
        .collect();
    assert_eq!(a.rows, want, "{engine}");
    let ty = |name: &str| a.columns.iter().find(|c| c.name == name).map(|c| c.ty.clone()).unwrap_or_default();
    assert_eq!(ty("ts_us"), if engine == "sqlite" { "INTEGER" } else { "BIGINT" });

    // The row cap: the first rows, and `truncated` only when more matched.
    let a = q("SELECT seq_like FROM (SELECT ts_us AS seq_like FROM traffic) ORDER BY 1", 7);
    assert_eq!((a.rows.len(), a.limit, a.truncated), (7, 7, true), "{engine}");
    let a = q("SELECT status FROM traffic", 30);
    assert_eq!((a.rows.len(), a.truncated), (30, false), "{engine}: exactly the limit is not truncated");
    let a = q("SELECT 1 AS one, 2.5 AS half, NULL AS nul, 'ü' AS text;", 5);
    assert_eq!(a.rows, [[json!(1), json!(2.5), Json::Null, json!("ü")]], "{engine}");
    assert_eq!(q("SELECT status FROM traffic", usize::MAX).limit, SqlLimits::DEFAULT.max_rows);

    // An engine error is kind `engine`, with the engine's words.
    let e = s.sql(&SqlQuery { sql: "SELECT no_such_column FROM traffic".into(), limit: 1 }).unwrap_err();
    assert_eq!(e.kind, SqlErrorKind::Engine, "{engine}: {e:?}");
    assert!(e.message.contains("no_such_column"), "{engine}: {}", e.message);
}

pub fn busy_slots_refuse_and_come_back<D: Driver>(engine: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(open::<D>(dir.path()));
    let q = SqlQuery { sql: "SELECT count(*) FROM traffic".into(), limit: 1 };
    {
        let _held: Vec<_> = (0..SqlLimits::DEFAULT.slots).map(|_| s.take_sql_slot().expect("slot")).collect();
        let e = s.sql(&q).unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::Busy, "{engine}: {e:?}");
    }
    assert_eq!(s.sql(&q).expect("free again").rows, [[json!(0)]], "{engine}");
    // Two queries at once both run (the slots are two), while neither blocks the writer.
    std::thread::scope(|t| {
        let slow = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r";
        let runs: Vec<_> = (0..2)
            .map(|_| t.spawn(|| s.sql(&SqlQuery { sql: slow.into(), limit: 1 }).map_err(|e| e.kind)))
            .collect();
        s.insert(&corpus(3), None).expect("insert while SQL runs");
        for r in runs {
            assert_eq!(r.join().expect("join"), Err(SqlErrorKind::Timeout), "{engine}");
        }
    });
    assert_eq!(s.sql(&q).expect("count").rows, [[json!(3)]], "{engine}");
}

pub fn the_view_follows_a_reopen_and_new_rows<D: Driver>(engine: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open::<D>(dir.path());
        s.insert(&corpus(4), None).expect("insert");
    }
    let s = open::<D>(dir.path());
    s.insert(&corpus(2), None).expect("insert");
    let a = s.sql(&SqlQuery { sql: "SELECT count(*) FROM traffic".into(), limit: 1 }).expect("count");
    assert_eq!(a.rows, [[json!(6)]], "{engine}");
}

/// One `#[test]` per check above for an engine: `sandbox_tests!(Driver type, "name")`.
macro_rules! sandbox_tests {
    ($engine:ty, $name:literal) => {
        mod sandbox {
            use crate::store::sandbox_tests as t;
            #[test]
            fn sql_hostile_statements_are_refused() {
                t::hostile_statements_are_refused::<$engine>($name)
            }
            #[test]
            fn sql_the_engine_alone_refuses_hostile_statements() {
                t::the_engine_alone_refuses_hostile_statements::<$engine>($name)
            }
            #[test]
            fn sql_busy_slots_refuse_and_come_back() {
                t::busy_slots_refuse_and_come_back::<$engine>($name)
            }
            #[test]
            fn sql_the_view_follows_a_reopen_and_new_rows() {
                t::the_view_follows_a_reopen_and_new_rows::<$engine>($name)
            }
        }
    };
}
pub(crate) use sandbox_tests;
