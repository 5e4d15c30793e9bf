//! Command-line flags and their validation into a [`Config`].
//!
//! The filter flags are kept as the strings the user typed: they are checked here with
//! [`Filter::from_params`] (so a typo fails fast, naming the flag) and then sent to the server
//! unchanged, so that relative times such as `-since 15m` are resolved by the same code on both
//! sides. Parse the arguments with [`Cli::parse_args`] so that Go-style `-pid 1234` works as
//! well as `--pid 1234`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use awc::http::header::HeaderValue;
use chrono::{DateTime, Utc};
use clap::Parser;
use liteobs_model::stats::StatsQuery;
use liteobs_model::{Filter, ServerUrl};

use crate::render::OutputFormat;

/// Where the client looks when neither `-server` nor `LITEOBS_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Query a LiteObs server and print the HTTP exchanges it stored, newest first (or, with
/// `stats`, the figures per server, route and more).
#[derive(Debug, Parser)]
#[command(
    name = "liteobs-client",
    version,
    after_help = "Every long flag may also be written with one dash, Go-style: -pid 1234.",
    // As with Go's flag package, a repeated flag is not an error: the last one wins.
    args_override_self = true
)]
pub struct Cli {
    /// Exchanges where either side has this IPv4 or IPv6 address.
    #[arg(long, value_name = "ADDR", global = true)]
    pub ip: Option<String>,
    /// Exchanges where either side's process has this PID.
    #[arg(long, global = true)]
    pub pid: Option<String>,
    /// Request method, e.g. GET (any case).
    #[arg(long, global = true)]
    pub method: Option<String>,
    /// Status code (404) or class (5xx); 0 selects exchanges that got no response.
    #[arg(long, global = true)]
    pub status: Option<String>,
    /// Request-target prefix, e.g. /api/v1.
    #[arg(long, value_name = "PREFIX", global = true)]
    pub path: Option<String>,
    /// Exchanges where either side's pod is in this Kubernetes namespace (exact).
    #[arg(long, value_name = "NS", global = true)]
    pub namespace: Option<String>,
    /// Exchanges where either side's pod name starts with this, e.g. checkout- (with
    /// -namespace, both hold for the same side).
    #[arg(long, value_name = "PREFIX", global = true)]
    pub pod: Option<String>,
    /// Exchanges whose route (the path template the server stored, as `stats -group-by route`
    /// shows it) is exactly this, e.g. '/orders/{id}'.
    #[arg(long, value_name = "ROUTE", global = true)]
    pub route: Option<String>,
    /// Only exchanges at or after this time: RFC 3339 or an age like 15m, 2h, 7d.
    #[arg(long, value_name = "TIME", global = true)]
    pub since: Option<String>,
    /// Only exchanges before this time: RFC 3339 or an age like 15m, 2h, 7d.
    #[arg(long, value_name = "TIME", global = true)]
    pub until: Option<String>,
    /// At most this many rows (with `stats`: groups), 1 to 10000 (the server's default is 100).
    #[arg(long, value_name = "N", global = true)]
    pub limit: Option<String>,
    /// Base URL of the LiteObs server (http:// or https://).
    #[arg(long, value_name = "URL", env = "LITEOBS_SERVER", default_value = DEFAULT_SERVER, global = true)]
    pub server: String,
    /// Bearer token the server expects.
    #[arg(long, env = "LITEOBS_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// PEM file of the CA(s) that sign the server's certificate, trusted instead of the system
    /// store for an https:// server.
    #[arg(long, value_name = "FILE", env = "LITEOBS_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Output format: table for people (fitted to the terminal), wide (the table with every
    /// field, or with `stats` and `map` every figure), json (a pretty JSON array of records;
    /// with `stats` and `map`, the server's answer) or csv for programs; dot (Graphviz) or
    /// mermaid for a picture of the map.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
    /// Keep printing new exchanges as the server stores them, until Ctrl-C (table rows, -o json
    /// as NDJSON, -o csv); with -limit or -since, the newest matching ones already stored come
    /// first. Reconnects by itself, missing and repeating nothing.
    #[arg(long)]
    pub follow: bool,
    /// Give up on the server after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, global = true,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Without a command: the exchanges themselves, newest first.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to ask the server, besides the exchanges themselves.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Rate, errors and latency (p50/p95/p99, max) per server, client, method, route, status or node,
    /// over the exchanges the filters select in the window (-since, -until; by default the
    /// last 15 minutes).
    Stats(StatsArgs),
    /// Who calls whom: edges between pods, processes and addresses, busiest first, with
    /// their calls, errors and p95 (-o dot or -o mermaid draws them).
    Map,
    /// Run one read-only SQL query over the server's `traffic` view, e.g.
    /// `liteobs-client sql "SELECT route, count(*) FROM traffic GROUP BY 1"` (-limit caps the
    /// rows; the filter flags do not apply: write a WHERE clause).
    Sql(SqlArgs),
    /// Print a completion script for bash, zsh or fish (one-dash flags complete too), e.g.
    /// `liteobs-client completions bash > /etc/bash_completion.d/liteobs-client`.
    Completions {
        #[arg(value_enum)]
        shell: crate::shell::Shell,
    },
    /// Print the manual page (roff), e.g. `liteobs-client man | man -l -`.
    Man,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// Group by these, a comma list of server, client, method, route (the path template, e.g.
    /// /item/{id}), status, node.
    #[arg(long = "group-by", value_name = "LIST", default_value = "server")]
    pub group_by: String,
    /// Largest first by: count (or rate), errors, no_response, p50_us, p95_us, p99_us,
    /// max_us, req_bytes, resp_bytes.
    #[arg(long, value_name = "KEY", default_value = "count")]
    pub sort: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SqlArgs {
    /// The query: one SELECT (or WITH, VALUES, FROM) statement over the `traffic` view.
    #[arg(value_name = "QUERY")]
    pub query: String,
}

/// Which answer a [`Config`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `GET /query`: exchanges.
    Query,
    /// `GET /stats`: figures per group.
    Stats,
    /// `GET /map`: edges and nodes.
    Map,
    /// `POST /sql`: columns and rows.
    Sql,
    /// `GET /query?follow=1`: exchanges as they are stored, until interrupted.
    Follow,
}

impl Mode {
    /// The server's path for it.
    pub fn path(self) -> &'static str {
        match self {
            Mode::Query | Mode::Follow => "/query",
            Mode::Stats => "/stats",
            Mode::Map => "/map",
            Mode::Sql => "/sql",
        }
    }
}

/// Everything [`crate::run`] needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Server base URL, normalized by [`ServerUrl`] (scheme in lower case, no trailing `/`);
    /// errors quote it.
    pub server: String,
    pub token: Option<String>,
    /// Trust anchors for https (None: the system store); read when the query is sent.
    pub ca_file: Option<PathBuf>,
    pub mode: Mode,
    /// Query parameters exactly as typed, in a fixed order; only flags that were given.
    pub params: Vec<(&'static str, String)>,
    /// The statement of `sql` (its row cap is `limit` in `params`).
    pub sql: Option<String>,
    pub output: OutputFormat,
    pub timeout: Duration,
}

/// A flag whose value cannot be used; `flag` is its Go-style spelling (`-pid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct ConfigError {
    pub flag: String,
    pub reason: String,
}

fn bad(flag: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { flag: flag.to_owned(), reason: reason.into() }
}

impl Cli {
    /// Parses `args` (program name first), accepting `-name` for every `--name`. On a bad or
    /// unknown flag, or `--help`, clap prints its message and exits (code 2 for errors).
    pub fn parse_args<I, T>(args: I) -> Cli
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        liteobs_goflags::parse(args)
    }

    /// Like [`Cli::parse_args`], but returns clap's error instead of exiting.
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        liteobs_goflags::try_parse(args)
    }

    /// What to print without asking a server (`completions`, `man`), if that is the command.
    pub fn generated(&self) -> Option<crate::shell::Generated> {
        match self.command {
            Some(Command::Completions { shell }) => Some(crate::shell::Generated::Completions(shell)),
            Some(Command::Man) => Some(crate::shell::Generated::Man),
            _ => None,
        }
    }

    /// Validates the flags. `now` anchors relative times, only for the local check: the server
    /// resolves `15m` against its own clock. (`completions` and `man` ask no server: see
    /// [`Cli::generated`]; here they are an error.)
    pub fn into_config(self, now: DateTime<Utc>) -> Result<Config, ConfigError> {
        let mut params: Vec<(&'static str, String)> = [
            ("ip", self.ip),
            ("pid", self.pid),
            ("method", self.method),
            ("status", self.status),
            ("path", self.path),
            ("namespace", self.namespace),
            ("pod", self.pod),
            ("route", self.route),
            ("since", self.since),
            ("until", self.until),
            ("limit", self.limit),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect();
        let mut sql = None;
        if self.follow && self.command.is_some() {
            return Err(bad("-follow", "follows exchanges: use it without stats, map or sql"));
        }
        let mode = match self.command {
            None if self.follow => {
                let asked = params.iter().map(|(k, v)| (*k, v.as_str())).chain([("follow", "1")]);
                liteobs_model::follow::FollowStart::from_params(asked, now)
                    .map_err(|e| bad(&format!("-{}", e.param), e.reason))?;
                Mode::Follow
            }
            None => {
                Filter::from_params(params.iter().map(|(k, v)| (*k, v.as_str())), now)
                    .map_err(|e| bad(&format!("-{}", e.param), e.reason))?;
                Mode::Query
            }
            Some(Command::Stats(args)) => {
                params.push(("group_by", args.group_by));
                params.push(("sort", args.sort));
                StatsQuery::from_params(params.iter().map(|(k, v)| (*k, v.as_str())), now).map_err(|e| {
                    let flag = if e.param == "group_by" { "group-by" } else { e.param.as_str() };
                    bad(&format!("-{flag}"), e.reason.clone())
                })?;
                Mode::Stats
            }
            Some(Command::Map) => {
                Filter::from_params(params.iter().map(|(k, v)| (*k, v.as_str())), now)
                    .map_err(|e| bad(&format!("-{}", e.param), e.reason))?;
                Mode::Map
            }
            Some(Command::Sql(args)) => {
                if let Some((name, _)) = params.iter().find(|(name, _)| *name != "limit") {
                    return Err(bad(
                        &format!("-{name}"),
                        "filters do not apply to sql: write a WHERE clause",
                    ));
                }
                if let Some((_, limit)) = params.first() {
                    match limit.parse::<u64>() {
                        Ok(n) if n >= 1 => {}
                        _ => {
                            return Err(bad(
                                "-limit",
                                format!("{limit:?} is not a number of rows (1 or more)"),
                            ));
                        }
                    }
                }
                if args.query.trim().is_empty() {
                    return Err(bad("sql", "the query is empty"));
                }
                sql = Some(args.query);
                Mode::Sql
            }
            Some(Command::Completions { .. } | Command::Man) => {
                return Err(bad("completions", "prints a script and asks no server: see Cli::generated"));
            }
        };
        if mode != Mode::Map && matches!(self.output, OutputFormat::Dot | OutputFormat::Mermaid) {
            return Err(bad("-o", "dot and mermaid draw the map: use them with `liteobs-client map`"));
        }

        let server = check_server(&self.server)?;
        if let Some(token) = &self.token
            && HeaderValue::from_str(&format!("Bearer {token}")).is_err()
        {
            return Err(bad("-token", "may only contain printable ASCII characters"));
        }
        Ok(Config {
            server,
            token: self.token,
            ca_file: self.ca_file,
            mode,
            params,
            sql,
            output: self.output,
            timeout: Duration::from_secs(self.timeout),
        })
    }
}

/// Checks that `raw` is an `http[s]://host[:port][/prefix]` URL ([`ServerUrl`] says what is
/// refused) and returns it normalized, without a trailing `/`.
fn check_server(raw: &str) -> Result<String, ConfigError> {
    let url = ServerUrl::parse(raw).map_err(|e| bad("-server", format!("{raw:?}: {e}")))?;
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let mut all = vec!["liteobs-client", "-server", "http://127.0.0.1:8080"];
        all.extend_from_slice(args);
        Cli::try_parse_args(all).unwrap().into_config(now())
    }

    #[test]
    fn go_style_and_gnu_style_flags_mean_the_same() {
        let go = config(&["-pid", "1234", "-status=5xx", "-o", "json", "-timeout", "3"]).unwrap();
        let gnu = config(&["--pid", "1234", "--status", "5xx", "--output", "json", "--timeout=3"]).unwrap();
        assert_eq!(go, gnu);
        assert_eq!(go.params, [("pid", "1234".to_owned()), ("status", "5xx".to_owned())]);
        assert_eq!(go.output, OutputFormat::Json);
        assert_eq!(go.timeout, Duration::from_secs(3));
    }

    #[test]
    fn every_filter_is_passed_on_raw_in_a_fixed_order() {
        let c = config(&[
            "-limit",
            "5",
            "-until",
            "1h",
            "-since",
            "2h",
            "-pod",
            "web-",
            "-route",
            "/item/{id}",
            "-namespace",
            "shop",
            "-path",
            "/a b&c",
            "-status",
            "404",
            "-method",
            "post",
            "-pid",
            "1",
            "-ip",
            "::1",
        ])
        .unwrap();
        let names: Vec<&str> = c.params.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            ["ip", "pid", "method", "status", "path", "namespace", "pod", "route", "since", "until", "limit"]
        );
        assert!(c.params.contains(&("route", "/item/{id}".to_owned())));
        assert!(c.params.contains(&("method", "post".to_owned())));
        assert!(c.params.contains(&("path", "/a b&c".to_owned())));
        assert!(c.params.contains(&("namespace", "shop".to_owned())));
        assert!(c.params.contains(&("pod", "web-".to_owned())));
    }

    #[test]
    fn bad_filters_name_the_flag() {
        for (args, flag) in [
            (&["-pid", "abc"][..], "-pid"),
            (&["-ip", "1.2.3"], "-ip"),
            (&["-status", "5x"], "-status"),
            (&["-limit", "0"], "-limit"),
            (&["-since", "yesterday"], "-since"),
            (&["-since", "1m", "-until", "2m"], "-since"),
            (&["-server", "ftp://x"], "-server"),
            (&["-server", "127.0.0.1:8080"], "-server"),
            (&["-server", "http://"], "-server"),
            (&["-token", "a\nb"], "-token"),
        ] {
            let e = config(args).unwrap_err();
            assert_eq!(e.flag, flag, "{args:?}: {e}");
        }
        let e = config(&["-pid", "abc"]).unwrap_err();
        assert_eq!(e.to_string(), r#"-pid: "abc" is not a process ID"#);
    }

    #[test]
    fn server_mistakes_say_what_is_wrong_and_what_to_write() {
        for (url, want) in [
            ("http://", r#"-server: "http://": no host; write http://HOST[:PORT]"#),
            ("localhost:8080", r#"-server: "localhost:8080": no scheme; write http://localhost:8080"#),
            ("ftp://h", r#"-server: "ftp://h": unsupported scheme "ftp"; use http:// or https://"#),
            (
                "http://u:p@h",
                r#"-server: "http://u:p@h": user info (USER@HOST) is not supported; give the token with -token"#,
            ),
            (
                "http://h/x?y",
                r#"-server: "http://h/x?y": a query string or fragment (? or #) is not allowed; the base URL ends at its path"#,
            ),
            ("http://h:99999", r#"-server: "http://h:99999": port "99999" is not a number from 1 to 65535"#),
            ("http://::1", r#"-server: "http://::1": an IPv6 address goes in brackets: http://[::1]:8080"#),
        ] {
            assert_eq!(config(&["-server", url]).unwrap_err().to_string(), want, "{url}");
        }
    }

    #[test]
    fn a_value_may_start_with_a_dash_as_in_go() {
        let e = config(&["-until", "-5"]).unwrap_err();
        assert_eq!(e.flag, "-until", "{e}");
        assert_eq!(config(&["-path", "-x"]).unwrap().params, [("path", "-x".to_owned())]);
        assert_eq!(config(&["-pid=12"]).unwrap().params, [("pid", "12".to_owned())]);
    }

    #[test]
    fn server_url_loses_its_trailing_slash() {
        assert_eq!(config(&["-server", "http://h:1/"]).unwrap().server, "http://h:1");
        assert_eq!(config(&["-server", "http://h/liteobs/"]).unwrap().server, "http://h/liteobs");
        assert_eq!(config(&["-server", "http://[::1]:8080"]).unwrap().server, "http://[::1]:8080");
        assert_eq!(config(&["-server", "https://h:8443/"]).unwrap().server, "https://h:8443");
    }

    #[test]
    fn stats_takes_the_filters_before_or_after_it_and_checks_its_own() {
        let after =
            config(&["stats", "-group-by", "server,method", "-status", "5xx", "-sort", "p95_us"]).unwrap();
        let before = config(&["-status", "5xx", "stats", "-group-by=server,method", "-sort=p95_us"]).unwrap();
        assert_eq!(after, before);
        assert_eq!(after.mode, Mode::Stats);
        assert_eq!(
            after.params,
            [
                ("status", "5xx".to_owned()),
                ("group_by", "server,method".to_owned()),
                ("sort", "p95_us".to_owned())
            ]
        );
        let routes = config(&["stats", "-group-by", "server,route"]).unwrap();
        assert_eq!(routes.params[0], ("group_by", "server,route".to_owned()));
        let plain = config(&["stats"]).unwrap();
        assert_eq!(plain.params, [("group_by", "server".to_owned()), ("sort", "count".to_owned())]);
        assert_eq!(config(&["-pid", "7"]).unwrap().mode, Mode::Query, "no command: a query, as before");
        for (args, flag) in [
            (&["stats", "-group-by", "pod"][..], "-group-by"),
            (&["stats", "-sort", "fastest"], "-sort"),
            (&["stats", "-status", "5x"], "-status"),
        ] {
            assert_eq!(config(args).unwrap_err().flag, flag, "{args:?}");
        }
        assert!(Cli::try_parse_args(["c", "-group-by", "server"]).is_err(), "-group-by belongs to stats");
        assert_eq!(config(&["map", "-o", "dot", "-namespace", "shop"]).unwrap().mode, Mode::Map);
        assert_eq!(config(&["-o", "mermaid"]).unwrap_err().flag, "-o", "pictures are of the map");
        assert_eq!(config(&["map", "-pid", "x"]).unwrap_err().flag, "-pid");
    }

    #[test]
    fn sql_takes_its_query_and_a_limit_but_no_filter() {
        let c = config(&["sql", "SELECT route, count(*) FROM traffic GROUP BY 1", "-limit", "5"]).unwrap();
        assert_eq!(c.mode, Mode::Sql);
        assert_eq!(c.sql.as_deref(), Some("SELECT route, count(*) FROM traffic GROUP BY 1"));
        assert_eq!(c.params, [("limit", "5".to_owned())]);
        assert_eq!(config(&["-o", "csv", "sql", "SELECT 1"]).unwrap().output, OutputFormat::Csv);
        assert_eq!(config(&["sql", "SELECT 1", "-pid", "7"]).unwrap_err().flag, "-pid");
        assert_eq!(config(&["sql", "SELECT 1", "-limit", "0"]).unwrap_err().flag, "-limit");
        assert_eq!(config(&["sql", " "]).unwrap_err().flag, "sql");
        assert_eq!(config(&["sql", "SELECT 1", "-o", "dot"]).unwrap_err().flag, "-o");
        assert!(Cli::try_parse_args(["c", "sql"]).is_err(), "the query is required");
    }

    #[test]
    fn follow_takes_the_filters_and_refuses_commands() {
        let c = config(&["-follow", "-pid", "7", "-o", "json"]).unwrap();
        assert_eq!((c.mode, c.params.clone()), (Mode::Follow, vec![("pid", "7".to_owned())]));
        assert_eq!(c.mode.path(), "/query");
        assert_eq!(config(&["--follow", "-limit", "5"]).unwrap().mode, Mode::Follow);
        assert_eq!(config(&["-follow", "-pid", "x"]).unwrap_err().flag, "-pid");
        assert_eq!(config(&["-follow", "stats"]).unwrap_err().flag, "-follow");
        assert!(Cli::try_parse_args(["c", "map", "-follow"]).is_err(), "-follow is not map's");
        assert_eq!(config(&["-follow", "-o", "dot"]).unwrap_err().flag, "-o");
    }

    #[test]
    fn unknown_flags_and_formats_are_clap_errors() {
        let e = Cli::try_parse_args(["c", "-pdi", "1"]).unwrap_err();
        assert!(e.to_string().starts_with("error: unexpected argument '-pdi' found"), "{e}");
        assert!(Cli::try_parse_args(["c", "-o", "yaml"]).is_err());
        assert!(Cli::try_parse_args(["c", "-timeout", "0"]).is_err());
    }
}
