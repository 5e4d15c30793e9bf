//! Where exchanges are kept: the [`Store`] seam and its two embedded backends.
//!
//! The trait is small on purpose (insert a batch, answer a filter); `query_by_ip` and
//! `query_by_pid` are the original design's names and are thin calls of [`Store::query`].
//! Both backends share one schema and one SQL translation of [`Filter`] ([`sql`]), and one
//! conformance suite ([`conformance`], tests only) runs unchanged against each.
//!
//! Backends are chosen in exactly one place, [`open`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use liteobs_model::{Filter, TrafficLog};

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(feature = "duckdb")]
mod duckdb;
mod sql;
mod sqlite;

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
        "{path} holds LiteObs schema version {found}, this server needs version {expected}; \
         use a new -db-path or migrate the file"
    )]
    SchemaVersion { path: PathBuf, found: String, expected: u32 },
    #[error("{path} already has a `traffic_logs` table that LiteObs did not create; refusing to use it")]
    ForeignSchema { path: PathBuf },
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored row is not a valid record: {0}")]
    CorruptRow(String),
    #[error("this server was built without the `{0}` backend")]
    NotBuilt(&'static str),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Keeps exchange records and answers filters. Implementations are safe to share between
/// request handlers; calls block (run them off the async executor).
pub trait Store: Send + Sync {
    /// Stores a whole batch atomically: when this returns `Ok(n)`, all `n` records are committed;
    /// on error none are.
    fn insert(&self, batch: &[TrafficLog]) -> Result<usize>;

    /// Records matching `filter`, newest first (`ts` descending, then most recently inserted
    /// first), at most `filter.limit` of them.
    fn query(&self, filter: &Filter) -> Result<Vec<TrafficLog>>;

    /// Exchanges where either side has address `ip`.
    fn query_by_ip(&self, ip: IpAddr, limit: usize) -> Result<Vec<TrafficLog>> {
        self.query(&Filter { ip: Some(ip), limit, ..Filter::default() })
    }

    /// Exchanges where either side is process `pid`.
    fn query_by_pid(&self, pid: u32, limit: usize) -> Result<Vec<TrafficLog>> {
        self.query(&Filter { pid: Some(pid), limit, ..Filter::default() })
    }
}

/// The embedded databases a server can use (`-db-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Duckdb,
    Sqlite,
}

impl Backend {
    /// DuckDB when this binary was built with it, else SQLite.
    pub const DEFAULT: Backend = if cfg!(feature = "duckdb") { Backend::Duckdb } else { Backend::Sqlite };

    /// The file used when `-db-path` is not given.
    pub fn default_path(self) -> &'static str {
        match self {
            Backend::Duckdb => "liteobs.duckdb",
            Backend::Sqlite => "liteobs.sqlite",
        }
    }
}

/// Opens (creating if needed) the store of kind `backend` at `path`.
pub fn open(backend: Backend, path: &Path) -> Result<Box<dyn Store>> {
    match backend {
        Backend::Sqlite => Ok(Box::new(sqlite::SqliteStore::open(path)?)),
        #[cfg(feature = "duckdb")]
        Backend::Duckdb => Ok(Box::new(duckdb::DuckdbStore::open(path)?)),
        #[cfg(not(feature = "duckdb"))]
        Backend::Duckdb => Err(StoreError::NotBuilt("duckdb")),
    }
}
