//! The server's flags. Go-style single-dash long flags (`-db-type sqlite`) work as well as
//! `--db-type sqlite` (see `liteobs-goflags`). [`Config::validate`] refuses combinations clap
//! cannot see are wrong (an empty token, a memory budget smaller than one upload).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::store::batch_id::{Retention, parse_age};
use crate::store::retention::{parse_retention, parse_size};
use crate::store::{Backend, RowRetention};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "liteobs-server",
    version,
    about = "LiteObs server: stores HTTP exchange records and answers queries"
)]
pub struct Config {
    /// Embedded database to use.
    #[arg(long, value_enum, default_value_t = Backend::DEFAULT)]
    pub db_type: Backend,
    /// Database file (default: liteobs.duckdb or liteobs.sqlite in the working directory).
    #[arg(long)]
    pub db_path: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Require `Authorization: Bearer <token>` on every route but /healthz. An empty one is
    /// refused (unset both the flag and LITEOBS_TOKEN to run without a token).
    #[arg(long, env = "LITEOBS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Largest upload body in bytes (as sent and after gzip decoding); larger ones get 413.
    #[arg(long, default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    pub max_body: u64,
    /// How long a committed upload batch id is remembered, so that a retried batch is not stored
    /// twice (90s, 12h, 7d, 2w).
    #[arg(long, default_value = "7d", value_parser = parse_age)]
    pub batch_id_max_age: chrono::Duration,
    /// How many committed upload batch ids are remembered at most (the oldest are forgotten first).
    #[arg(long, default_value_t = Retention::DEFAULT.max_count, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_id_max_count: u64,
    /// Rows whose time (`ts`) is older than this are deleted, by a pass at start and every
    /// minute (90s, 12h, 7d, 2w; `off` keeps rows whatever their age).
    #[arg(long = "retention", value_name = "AGE", default_value = "7d", value_parser = parse_row_age)]
    pub row_max_age: RowAge,
    /// Largest the database may grow (20GiB, 500MB; `off` for no bound): over it, the same pass
    /// deletes the oldest rows until it is under 90% of this. Counted as the engine's used pages
    /// or blocks plus its write-ahead log, not the file's length (README, "Retention").
    #[arg(long, value_name = "SIZE", default_value = "20GiB", value_parser = parse_db_size)]
    pub max_db_size: DbSize,
    /// Records of one exchange (the same `exchange_id`: its halves from two nodes' agents, or two
    /// captures of it) whose times are at most this far apart are kept as one row, whichever
    /// arrives first and however late the other (90s, 5m; `off` keeps every record as a row).
    #[arg(long, default_value = "60s", value_parser = parse_merge_window)]
    pub merge_window: MergeWindow,
    /// Seconds an upload's whole body may take to arrive after its head; slower ones get 408
    /// and the connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub body_timeout: u64,
    /// Bytes all uploads in flight may hold together (bodies, inflated bodies, decoded records);
    /// an upload that would pass it gets 503 with Retry-After. At least twice -max-body.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 44))]
    pub upload_memory: u64,
    /// Connections served at once; more wait in the kernel's accept queue.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs -tls-key.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of -tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
}

/// Flags that parse but cannot be run with; each displays as one line saying what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("-token (or LITEOBS_TOKEN) is empty; give a token, or unset both to run without one")]
    EmptyToken,
    #[error(
        "-token (or LITEOBS_TOKEN) may hold only visible ASCII characters (no spaces or control \
         characters): a client could not send it in an Authorization header"
    )]
    UnsendableToken,
    #[error("-upload-memory {memory} is less than twice -max-body {max_body}: a full upload could never fit")]
    BudgetBelowOneUpload { memory: u64, max_body: u64 },
}

impl Config {
    /// Parses flags, accepting `-flag` as well as `--flag`.
    pub fn from_args() -> Config {
        liteobs_goflags::parse(std::env::args_os())
    }

    /// `-merge-window` as the store takes it.
    pub fn merge_window(&self) -> Option<chrono::Duration> {
        self.merge_window.0
    }

    pub fn batch_id_retention(&self) -> Retention {
        Retention { max_age: self.batch_id_max_age, max_count: self.batch_id_max_count }
    }

    /// `-retention` and `-max-db-size` as the store takes them.
    pub fn row_retention(&self) -> RowRetention {
        RowRetention { max_age: self.row_max_age.0, max_bytes: self.max_db_size.0 }
    }

    pub fn db_path(&self) -> PathBuf {
        self.db_path.clone().unwrap_or_else(|| PathBuf::from(self.db_type.default_path()))
    }

    /// The checks clap cannot make. A token that is empty or only whitespace is refused rather
    /// than taken as "no token": whoever set it meant to require one (an empty Kubernetes
    /// Secret, say), and running open would be silent.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = &self.token {
            if token.trim().is_empty() {
                return Err(ConfigError::EmptyToken);
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::UnsendableToken);
            }
        }
        if self.upload_memory / 2 < self.max_body {
            return Err(ConfigError::BudgetBelowOneUpload {
                memory: self.upload_memory,
                max_body: self.max_body,
            });
        }
        Ok(())
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout)
    }
}

/// `-merge-window`: an age, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeWindow(pub Option<chrono::Duration>);

fn parse_merge_window(s: &str) -> Result<MergeWindow, String> {
    if s == "off" {
        return Ok(MergeWindow(None));
    }
    parse_age(s).map(|w| MergeWindow(Some(w))).map_err(|e| format!("{e}, or off"))
}

/// `-retention`: an age, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowAge(pub Option<chrono::Duration>);

fn parse_row_age(s: &str) -> Result<RowAge, String> {
    parse_retention(s).map(RowAge)
}

/// `-max-db-size`: bytes, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbSize(pub Option<u64>);

fn parse_db_size(s: &str) -> Result<DbSize, String> {
    parse_size(s).map(DbSize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("liteobs-server").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn an_empty_or_unsendable_token_is_refused_not_ignored() {
        for t in ["", " ", "\t \n"] {
            assert_eq!(parse(&["--token", t]).validate(), Err(ConfigError::EmptyToken), "{t:?}");
        }
        for t in ["a b", " abc", "abc\n", "tök"] {
            assert_eq!(parse(&["--token", t]).validate(), Err(ConfigError::UnsendableToken), "{t:?}");
        }
        assert_eq!(parse(&["--token", "s3cr3t-~+/="]).validate(), Ok(()));
        assert_eq!(parse(&[]).validate(), Ok(()));
    }

    #[test]
    fn retention_flags_take_ages_sizes_and_off() {
        let defaults = parse(&[]).row_retention();
        assert_eq!(
            defaults,
            RowRetention {
                max_age: Some(RowRetention::DEFAULT_MAX_AGE),
                max_bytes: Some(RowRetention::DEFAULT_MAX_BYTES)
            }
        );
        let set = parse(&["--retention", "12h", "--max-db-size", "500MiB"]).row_retention();
        assert_eq!(
            set,
            RowRetention { max_age: Some(chrono::Duration::hours(12)), max_bytes: Some(500 << 20) }
        );
        assert!(parse(&["--retention", "off", "--max-db-size", "off"]).row_retention().is_off());
        for bad in [&["--retention", "forever"][..], &["--max-db-size", "0"], &["--max-db-size", "lots"]] {
            let args = std::iter::once("liteobs-server").chain(bad.iter().copied());
            assert!(Config::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_upload_budget_holds_at_least_one_full_upload() {
        assert_eq!(parse(&["--max-body", "100", "--upload-memory", "200"]).validate(), Ok(()));
        assert_eq!(
            parse(&["--max-body", "100", "--upload-memory", "199"]).validate(),
            Err(ConfigError::BudgetBelowOneUpload { memory: 199, max_body: 100 })
        );
        assert_eq!(parse(&[]).validate(), Ok(()), "the defaults");
        for bad in [&["--max-body", "0"][..], &["--body-timeout", "0"], &["--max-connections", "0"]] {
            let args = std::iter::once("liteobs-server").chain(bad.iter().copied());
            assert!(Config::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}
