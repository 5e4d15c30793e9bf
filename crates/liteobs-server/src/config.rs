//! The server's flags. Go-style single-dash long flags (`-db-type sqlite`) work as well as
//! `--db-type sqlite` (see `liteobs-goflags`).

use std::path::PathBuf;

use clap::Parser;

use crate::store::Backend;

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
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs -tls-key.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of -tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
}

impl Config {
    /// Parses flags, accepting `-flag` as well as `--flag`.
    pub fn from_args() -> Config {
        use clap::CommandFactory;
        Config::parse_from(liteobs_goflags::normalize(&Config::command(), std::env::args_os()))
    }

    pub fn db_path(&self) -> PathBuf {
        self.db_path.clone().unwrap_or_else(|| PathBuf::from(self.db_type.default_path()))
    }
}
