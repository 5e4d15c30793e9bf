//! The server's flags. Go-style single-dash long flags (`-db-type sqlite`) work as well as
//! `--db-type sqlite` (see `liteobs-goflags`). [`Config::validate`] refuses combinations clap
//! cannot see are wrong (an empty token, a memory budget smaller than one upload).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use liteobs_model::route::{Bounds, PatternError, Patterns};

use crate::routes::patterns_in;
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
    /// Database to use: embedded (duckdb, sqlite), or a ClickHouse server (-clickhouse-url).
    #[arg(long, value_enum, default_value_t = Backend::DEFAULT)]
    pub db_type: Backend,
    /// ClickHouse's HTTP interface (-db-type clickhouse); https:// for TLS. With
    /// -clickhouse-cluster, a comma-separated list of every node: the tables are made on each.
    #[arg(
        long,
        env = "LITEOBS_CLICKHOUSE_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: Vec<String>,
    /// ClickHouse database (it must exist).
    #[arg(long, env = "LITEOBS_CLICKHOUSE_DATABASE", default_value = "default")]
    pub clickhouse_database: String,
    #[arg(long, env = "LITEOBS_CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,
    #[arg(long, env = "LITEOBS_CLICKHOUSE_PASSWORD", hide_env_values = true)]
    pub clickhouse_password: Option<String>,
    /// A cluster of ClickHouse's `remote_servers`: the tables are `_local` on every node and
    /// `Distributed` over its shards.
    #[arg(long)]
    pub clickhouse_cluster: Option<String>,
    /// This server's number (0-1023) among the servers sharing one ClickHouse, in each row's
    /// `seq` (random when not given; give each replica its own where two may write in one ms).
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..1024))]
    pub clickhouse_replica: Option<u16>,
    /// Database file (default: liteobs.duckdb or liteobs.sqlite in the working directory).
    #[arg(long)]
    pub db_path: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Serve Prometheus metrics (`GET /metrics`, OpenMetrics text) on this address of its own
    /// (e.g. 0.0.0.0:9470; port 0 picks one). Off when not given. Plain HTTP without the token,
    /// whatever -token and -tls-cert say: bind it where only the scraper reaches it.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
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
    /// A route pattern such as /users/{name}/repos ({x} is any one segment, a last {x*} any
    /// rest): a request whose path matches gets it as its route, before the heuristic. Repeat
    /// the flag for more; the first that matches wins.
    #[arg(long = "route", value_name = "PATTERN", action = clap::ArgAction::Append)]
    pub routes: Vec<String>,
    /// A file of route patterns, one a line (blank lines and lines starting with # skipped),
    /// tried after the -route flags.
    #[arg(long, value_name = "FILE")]
    pub routes_file: Option<PathBuf>,
    /// Distinct routes kept per server (ip:port); new ones past it are folded into a wildcard
    /// (/prefix/*) and counted (routes_folded in /stats).
    #[arg(long, value_name = "N", default_value_t = Bounds::DEFAULT.routes as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_routes: u64,
    /// Distinct values one path segment may take after one prefix, per server (/users/ann,
    /// /users/bob, ...), before new ones are folded into /prefix/*.
    #[arg(long, value_name = "N", default_value_t = Bounds::DEFAULT.segment_values as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_route_segment_values: u64,
    /// Longest a POST /sql query may run (500ms, 10s, 2m); then it is interrupted and answered
    /// 400 with kind "timeout".
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_sql_timeout)]
    pub sql_timeout: Duration,
    /// Most rows a POST /sql answer holds (a query's own limit may only lower it); the answer
    /// says `truncated` when more matched.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub sql_max_rows: u64,
    /// Live streams (`GET /query?follow=1`) served at once; one more gets 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_followers: u64,
    /// How often an idle live stream sends a heartbeat line (with its cursor), so that proxies
    /// keep it open and clients see it alive (250ms, 15s, 1m).
    #[arg(long, value_name = "INTERVAL", default_value = "15s", value_parser = parse_interval)]
    pub follow_heartbeat: Duration,
}

/// A short interval: a number and `ms`, `s` or `m`, from 10 ms to an hour.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not an interval like 250ms, 15s or 1m"))?;
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => n.checked_mul(1_000).map(Duration::from_millis),
        "m" => n.checked_mul(60_000).map(Duration::from_millis),
        _ => None,
    };
    match d {
        Some(d) if d >= Duration::from_millis(10) && d <= Duration::from_secs(3600) => Ok(d),
        _ => Err(format!("{s:?}: give a number and a unit ms, s or m, from 10ms to 60m")),
    }
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
    #[error("-route: {0}")]
    Route(PatternError),
    #[error("-routes-file {path}: {reason}")]
    RoutesFile { path: String, reason: String },
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

    /// The `-clickhouse-*` flags as the store takes them.
    pub fn clickhouse(&self) -> crate::store::clickhouse::ClickhouseConfig {
        crate::store::clickhouse::ClickhouseConfig {
            urls: self.clickhouse_url.clone(),
            database: self.clickhouse_database.clone(),
            user: self.clickhouse_user.clone(),
            password: self.clickhouse_password.clone(),
            cluster: self.clickhouse_cluster.clone(),
            replica: self.clickhouse_replica,
            ..Default::default()
        }
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

    /// The `-route` patterns, then those of `-routes-file` (read now), checked.
    pub fn route_patterns(&self) -> Result<Patterns, ConfigError> {
        let file = match &self.routes_file {
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::RoutesFile { path: shown.clone(), reason: e.to_string() })?;
                Patterns::parse(patterns_in(&text))
                    .map_err(|e| ConfigError::RoutesFile { path: shown, reason: e.to_string() })?;
                text
            }
            None => String::new(),
        };
        Patterns::parse(self.routes.iter().map(String::as_str).chain(patterns_in(&file)))
            .map_err(ConfigError::Route)
    }

    /// `-max-routes` and `-max-route-segment-values` as the router takes them.
    pub fn route_bounds(&self) -> Bounds {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Bounds {
            routes: size(self.max_routes),
            segment_values: size(self.max_route_segment_values),
            ..Bounds::DEFAULT
        }
    }

    /// `-sql-timeout` and `-sql-max-rows` as the store takes them.
    pub fn sql_limits(&self) -> crate::store::SqlLimits {
        crate::store::SqlLimits {
            timeout: self.sql_timeout,
            max_rows: usize::try_from(self.sql_max_rows).unwrap_or(usize::MAX),
            ..crate::store::SqlLimits::DEFAULT
        }
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout)
    }
}

/// `-sql-timeout`: a number and `ms`, `s` or `m`, from 1ms to 1h.
fn parse_sql_timeout(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let bad = || format!("{s:?} is not a duration like 500ms, 10s or 2m (1ms to 1h)");
    let n: u64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(bad()),
    };
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err(bad());
    }
    Ok(d)
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
    fn route_flags_repeat_read_a_file_and_name_a_bad_pattern() {
        let dir = std::env::temp_dir().join(format!("liteobs-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("routes.txt");
        std::fs::write(&file, "# comment\n/static/{path*}\n").unwrap();
        let c = parse(&[
            "--route",
            "/users/{name}/repos",
            "--route",
            "/a/{b}",
            "--routes-file",
            file.to_str().unwrap(),
        ]);
        let p = c.route_patterns().unwrap();
        assert_eq!(p.matching("/static/css/x.css").as_deref(), Some("/static/{path*}"));
        assert_eq!(p.matching("/a/1").as_deref(), Some("/a/{b}"));
        assert_eq!(c.route_bounds(), Bounds::DEFAULT);
        let bad = parse(&["--route", "users"]).route_patterns().unwrap_err();
        assert_eq!(bad.to_string(), "-route: route pattern \"users\" must start with '/'");
        std::fs::write(&file, "/ok\n/a/{x\n").unwrap();
        let bad = parse(&["--routes-file", file.to_str().unwrap()]).route_patterns().unwrap_err();
        assert!(bad.to_string().contains("unclosed"), "{bad}");
        let missing = parse(&["--routes-file", "/nonexistent/routes"]).route_patterns().unwrap_err();
        assert!(missing.to_string().starts_with("-routes-file /nonexistent/routes: "), "{missing}");
        let b = parse(&["--max-routes", "5", "--max-route-segment-values", "2"]).route_bounds();
        assert_eq!((b.routes, b.segment_values), (5, 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sql_flags_take_a_duration_and_a_row_cap() {
        assert_eq!(parse(&[]).sql_limits(), crate::store::SqlLimits::DEFAULT);
        let l = parse(&["--sql-timeout", "500ms", "--sql-max-rows", "20"]).sql_limits();
        assert_eq!((l.timeout, l.max_rows), (Duration::from_millis(500), 20));
        assert_eq!(parse(&["--sql-timeout", "2m"]).sql_timeout, Duration::from_secs(120));
        for bad in [
            &["--sql-timeout", "0s"][..],
            &["--sql-timeout", "10"],
            &["--sql-timeout", "2h"],
            &["--sql-max-rows", "0"],
        ] {
            let args = std::iter::once("liteobs-server").chain(bad.iter().copied());
            assert!(Config::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn follow_flags_have_defaults_and_refuse_nonsense() {
        let c = parse(&[]);
        assert_eq!((c.max_followers, c.follow_heartbeat), (64, Duration::from_secs(15)));
        let c = parse(&["--max-followers", "2", "--follow-heartbeat", "250ms"]);
        assert_eq!((c.max_followers, c.follow_heartbeat), (2, Duration::from_millis(250)));
        assert_eq!(parse(&["--follow-heartbeat", "1m"]).follow_heartbeat, Duration::from_secs(60));
        for bad in [
            &["--max-followers", "0"][..],
            &["--follow-heartbeat", "0s"],
            &["--follow-heartbeat", "5ms"],
            &["--follow-heartbeat", "2h"],
            &["--follow-heartbeat", "soon"],
            &["--follow-heartbeat", "99999999999999999999m"],
        ] {
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
