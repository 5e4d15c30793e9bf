//! Where exchanges are kept: the [`Store`] seam and its two embedded backends.
//!
//! The trait is small on purpose (insert a batch, answer a filter); `query_by_ip` and
//! `query_by_pid` are the original design's names and are thin calls of [`Store::query`].
//! One implementation ([`sql_store`]) holds the logic for both engines: schema and migrations,
//! SQL translation of [`Filter`] ([`sql`]), the batch-id transaction ([`batch_id`]); each engine
//! gives only a few primitives ([`driver`]). One conformance suite ([`conformance`], tests only)
//! runs unchanged against each.
//!
//! Backends are chosen in exactly one place, [`open`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use liteobs_model::map::MapResponse;
use liteobs_model::stats::{StatsQuery, StatsResponse};
use liteobs_model::{Filter, TrafficLog};

pub mod batch_id;
pub mod clickhouse;
#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
pub(crate) mod conformance_follow;
mod dialect;
mod driver;
#[cfg(feature = "duckdb")]
mod duckdb;
#[cfg(feature = "duckdb")]
mod duckdb_columns;
#[cfg(feature = "duckdb")]
mod duckdb_sandbox;
pub mod merge;
pub mod query_plan;
pub mod retention;
mod route_fill;
pub mod sandbox;
#[cfg(test)]
mod sandbox_tests;
mod sql;
mod sql_store;
mod sqlite;
mod sqlite_sandbox;
mod stats_sql;

pub use batch_id::{BatchId, BatchIdError, Retention};
pub use query_plan::{QueryPlan, QueryTuning};
pub use retention::{PassReport, RowRetention};
pub use sandbox::{SqlAnswer, SqlError, SqlErrorKind, SqlLimits, SqlQuery};

/// A storage failure. The message names the database file where it helps.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "{path} holds LiteObs schema version {found}; this server uses version {expected} and \
         migrates only older versions it knows; use a new -db-path"
    )]
    SchemaVersion { path: PathBuf, found: String, expected: u32 },
    #[error("{path} already has a `traffic_logs` table that LiteObs did not create; refusing to use it")]
    ForeignSchema { path: PathBuf },
    /// The file system is full: nothing of the failed call was committed. Uploads are answered
    /// 503 with `Retry-After`; the retention pass and a freed disk end it.
    #[error("the disk holding the database is full; retry later ({0})")]
    DiskFull(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The engine gave up on its instance after a failed write and opening the file again has
    /// not worked yet (it is tried again on the next call).
    #[error("the database is being reopened after a failed write; retry later ({0})")]
    Reopening(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored row is not a valid record: {0}")]
    CorruptRow(String),
    #[error("this server was built without the `{0}` backend")]
    NotBuilt(&'static str),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What [`Store::insert`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Records the batch holds: stored now, or (for a repeat) when its id was first committed.
    pub accepted: usize,
    /// The batch id was already committed: nothing was inserted.
    pub duplicate: bool,
    /// Records that completed a row of the same exchange (another agent's half, or another
    /// capture of it) instead of becoming a row of their own ([`merge`]).
    pub merged: usize,
}

/// Counters of a store's writer since it was opened: with group commit, `batches /
/// transactions` is how many uploads shared a commit on average.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Write transactions committed by inserts.
    pub transactions: u64,
    /// Batches those transactions committed (duplicates included).
    pub batches: u64,
}

/// What a store holds now ([`Store::size`]), cheap to ask on every scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSize {
    /// Rows stored (kept by every commit and deletion, not counted per call).
    pub rows: u64,
    /// Bytes on disk: the database file and its write-ahead log.
    pub bytes: u64,
}

/// `-merge-window`'s default. The halves of an exchange carry the request time each node's
/// clock gave it: they differ by the clocks' skew (milliseconds between NTP-synchronised
/// nodes) and the network's latency. A minute covers a badly synchronised node and still
/// keeps apart two exchanges that share sequence numbers by chance or by replay (a capture
/// replayed again an hour later). How late a half *arrives* does not matter.
pub const DEFAULT_MERGE_WINDOW: chrono::Duration = chrono::Duration::seconds(60);

/// The time source of a store (when a batch id was committed, what is old enough to forget).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How a store is opened, besides its file.
#[derive(Clone)]
pub struct StoreOptions {
    /// How many committed batch ids are remembered, and for how long.
    pub retention: Retention,
    /// The wall clock in production; tests pass one they move.
    pub clock: Clock,
    /// Records with one `exchange_id` whose `ts` are at most this far apart are one exchange
    /// and kept as one row (`-merge-window`, by default [`DEFAULT_MERGE_WINDOW`]); `None` (the
    /// default of these options: tests that store one corpus twice mean two rows) keeps every
    /// record as its own row.
    pub merge_window: Option<chrono::Duration>,
    /// How queries are planned ([`query_plan`]); the default is the engine's best.
    pub query: QueryTuning,
    /// Which rows [`Store::enforce_retention`] deletes (`-retention`, `-max-db-size`); off by
    /// default here, so that a test's records of any age stay.
    pub rows: RowRetention,
    /// How each stored record gets its route (`-route`, `-max-routes`, ...): one router per
    /// server, shared with the API, which reports its count of folded routes.
    pub routes: Arc<crate::routes::Router>,
    /// The bounds of `POST /sql` ([`Store::sql`]).
    pub sql: SqlLimits,
    /// Where the ClickHouse backend's server is ([`Backend::Clickhouse`] only).
    pub clickhouse: clickhouse::ClickhouseConfig,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention: Retention::DEFAULT,
            clock: Arc::new(Utc::now),
            merge_window: None,
            query: QueryTuning::default(),
            rows: RowRetention::OFF,
            routes: Arc::default(),
            sql: SqlLimits::DEFAULT,
            clickhouse: clickhouse::ClickhouseConfig::default(),
        }
    }
}

/// Keeps exchange records and answers filters. Implementations are safe to share between
/// request handlers; calls block (run them off the async executor).
pub trait Store: Send + Sync {
    /// Stores a whole batch atomically: when this returns `Ok`, all records are committed; on
    /// error none are. With an `id`, the id is committed in the same transaction, and a batch
    /// whose id is already remembered is not inserted again: the receipt says `duplicate` and
    /// carries the first commit's count. Two calls with one id never both insert.
    fn insert(&self, batch: &[TrafficLog], id: Option<&BatchId>) -> Result<Receipt>;

    /// [`Store::insert`] of a batch the caller gives away: the same contract (answered after
    /// the commit), without a copy where the store hands the batch to whichever thread writes
    /// it (the SQL stores commit concurrent uploads together).
    fn insert_owned(&self, batch: Vec<TrafficLog>, id: Option<BatchId>) -> Result<Receipt> {
        self.insert(&batch, id.as_ref())
    }

    /// What the writer has done since open; zero for a store that does not count.
    fn write_stats(&self) -> WriteStats {
        WriteStats::default()
    }

    /// Rows stored and bytes on disk, without a query (metrics ask on every scrape); zero for
    /// a store that does not keep them.
    fn size(&self) -> StoreSize {
        StoreSize::default()
    }

    /// Records matching `filter`, newest first (`ts` descending, then most recently inserted
    /// first), at most `filter.limit` of them.
    fn query(&self, filter: &Filter) -> Result<Vec<TrafficLog>>;

    /// Runs one pass of row retention now: deletes what [`StoreOptions::rows`] no longer keeps,
    /// oldest first, in short transactions between batches, and gives the space back
    /// ([`retention`]). A store without retention keeps everything.
    fn enforce_retention(&self) -> Result<PassReport> {
        Ok(PassReport::default())
    }

    /// Rate, errors and latency per group of the exchanges `query` selects in its window
    /// (`now` anchors a window the query leaves open), computed by the engine.
    fn stats(&self, query: &StatsQuery, now: DateTime<Utc>) -> Result<StatsResponse>;

    /// Who calls whom among the exchanges `query`'s filter selects in its window: edges
    /// between nodes with their figures, busiest first, at most `query.filter.limit`
    /// (`group_by` and `sort` do not apply).
    fn map(&self, query: &StatsQuery, now: DateTime<Utc>) -> Result<MapResponse>;

    /// Runs one read-only query of the user's over the `traffic` view ([`sandbox`]), at most
    /// `query.limit` rows of it (and never more than the store's [`SqlLimits::max_rows`]),
    /// within the store's time limit. A store without SQL refuses every query.
    fn sql(&self, query: &SqlQuery) -> std::result::Result<SqlAnswer, SqlError> {
        let _ = query;
        Err(SqlError::refused("this store does not answer SQL"))
    }
    /// The rows matching `filter` (its `limit` does not apply) in `page`'s range of `seq`, in
    /// ascending `seq`: a follower's next page after its cursor, or (`newest`) the backlog
    /// before it. Every row committed with a `seq` up to a value [`Store::committed`] announced
    /// is visible here.
    fn rows_after(&self, filter: &Filter, page: SeqPage) -> Result<Vec<SeqRecord>>;

    /// The `seq` of the last row committed, announced after every commit that wrote rows (a
    /// follower waits on it instead of asking the database; nothing moves while nothing is
    /// committed). 0 for an empty store.
    fn committed(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Exchanges where either side has address `ip`.
    fn query_by_ip(&self, ip: IpAddr, limit: usize) -> Result<Vec<TrafficLog>> {
        self.query(&Filter { ip: Some(ip), limit, ..Filter::default() })
    }

    /// Exchanges where either side is process `pid`.
    fn query_by_pid(&self, pid: u32, limit: usize) -> Result<Vec<TrafficLog>> {
        self.query(&Filter { pid: Some(pid), limit, ..Filter::default() })
    }
}

/// One stored row as a follower reads it ([`Store::rows_after`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SeqRecord {
    /// The row's place in the store's order of writes: every commit's rows get higher values
    /// than every earlier commit's, and a value is never given twice, across restarts too.
    pub seq: u64,
    pub record: TrafficLog,
    /// The row replaces one written earlier: a later half of the same exchange was merged into
    /// it ([`merge`]), which writes the row again under a new `seq`. Known for the rows merged
    /// since the store was opened (at least the last [`REWRITES_KEPT`] commits that merged);
    /// a reader that must never show an exchange twice also compares `exchange_id`s.
    pub update: bool,
}

/// Commits that merged whose rewritten rows a store remembers, to mark them as updates.
pub const REWRITES_KEPT: usize = 65_536;

/// Which rows [`Store::rows_after`] reads: `after < seq <= upto`, at most `limit` of them,
/// the oldest (`newest: false`) or the newest ones, always answered in ascending `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqPage {
    pub after: u64,
    pub upto: u64,
    pub limit: usize,
    pub newest: bool,
}

/// The databases a server can use (`-db-type`): two embedded ones, and ClickHouse, a server
/// of its own that several LiteObs servers can share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Duckdb,
    Sqlite,
    Clickhouse,
}

impl Backend {
    /// DuckDB when this binary was built with it, else SQLite.
    pub const DEFAULT: Backend = if cfg!(feature = "duckdb") { Backend::Duckdb } else { Backend::Sqlite };

    /// The file used when `-db-path` is not given.
    pub fn default_path(self) -> &'static str {
        match self {
            Backend::Duckdb => "liteobs.duckdb",
            Backend::Sqlite => "liteobs.sqlite",
            Backend::Clickhouse => "",
        }
    }
}

/// Opens (creating if needed, migrating an older schema) the store of kind `backend` at `path`
/// (ClickHouse: at [`StoreOptions::clickhouse`]; `path` is not used).
pub fn open(backend: Backend, path: &Path, options: StoreOptions) -> Result<Box<dyn Store>> {
    match backend {
        Backend::Clickhouse => {
            let config = options.clickhouse.clone();
            Ok(Box::new(clickhouse::ClickhouseStore::open(&config, options)?))
        }
        Backend::Sqlite => Ok(Box::new(sql_store::SqlStore::<sqlite::Sqlite>::open(path, options)?)),
        #[cfg(feature = "duckdb")]
        Backend::Duckdb => Ok(Box::new(sql_store::SqlStore::<duckdb::Duckdb>::open(path, options)?)),
        #[cfg(not(feature = "duckdb"))]
        Backend::Duckdb => Err(StoreError::NotBuilt("duckdb")),
    }
}
