//! The server's flags. Go-style single-dash long flags (`-db-type sqlite`) work as well as
//! `--db-type sqlite` (see `liteobs-goflags`).

use std::path::PathBuf;

use clap::Parser;

use crate::store::Backend;
use crate::store::batch_id::{Retention, parse_age};

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
    /// Require `Authorization: Bearer <token>` on every route but /healthz.
    #[arg(long, env = "LITEOBS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Largest upload body in bytes (as sent and after gzip decoding); larger ones get 413.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body: usize,
    /// How long a committed upload batch id is remembered, so that a retried batch is not stored
    /// twice (90s, 12h, 7d, 2w).
    #[arg(long, default_value = "7d", value_parser = parse_age)]
    pub batch_id_max_age: chrono::Duration,
    /// How many committed upload batch ids are remembered at most (the oldest are forgotten first).
    #[arg(long, default_value_t = Retention::DEFAULT.max_count, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_id_max_count: u64,
}

impl Config {
    /// Parses flags, accepting `-flag` as well as `--flag`.
    pub fn from_args() -> Config {
        liteobs_goflags::parse(std::env::args_os())
    }

    /// The batch-id bounds the flags give.
    pub fn retention(&self) -> Retention {
        Retention { max_age: self.batch_id_max_age, max_count: self.batch_id_max_count }
    }

    pub fn db_path(&self) -> PathBuf {
        self.db_path.clone().unwrap_or_else(|| PathBuf::from(self.db_type.default_path()))
    }
}
