//! `liteobs-client -follow`: `GET /query?follow=1` and its NDJSON lines, printed as they come,
//! until the user interrupts (the binary races this against Ctrl-C).
//!
//! When the stream breaks (the server restarts, the network goes, the server ends it at
//! shutdown, or nothing at all arrives for [`IDLE`], not even a heartbeat), the client waits
//! ([`Backoff`]: 250 ms doubling to 10 s, back to 250 ms once a connection delivered a line) and
//! asks again with `cursor=` the last cursor it was sent, so that the server resumes after it:
//! nothing is missed and nothing repeated ([`printer`] keeps that promise on its side too).
//! What cannot get better by retrying ends the command: a refused token, a rejected filter, a
//! TLS trust problem, an answer that is not a LiteObs stream.
//!
//! Relative times (`-since 15m`) are resolved once, at start, so that a reconnection asks for
//! the same exchanges rather than a window that moved on.

pub mod printer;

use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use liteobs_model::follow::{CONTENT_TYPE, FollowLine, MAX_LINE_BYTES, parse_line};

use crate::cli::Config;
use crate::query::{self, QueryError};
use crate::render::View;
use printer::Printer;

/// Longest the client waits for a line (the server's heartbeat comes every 15 s by default)
/// before it takes the connection for dead and opens another.
pub const IDLE: Duration = Duration::from_secs(60);

/// Why following stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("{0}")]
    Query(QueryError),
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    #[error("cannot format a record: {0}")]
    Render(#[from] crate::render::RenderError),
}

/// Why one connection ended (it is opened again).
#[derive(Debug)]
enum Break {
    Lost(QueryError),
    /// The server ended the stream (it is stopping, or a page failed).
    Ended,
    Idle,
    Fatal(FollowError),
}

/// Waits between connections: 250 ms, doubled after each failure up to 10 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Backoff {
        Backoff { next: Backoff::FIRST }
    }

    /// The wait before the next attempt.
    pub fn wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        wait
    }

    /// A connection worked: the next failure waits the first interval again.
    pub fn reset(&mut self) {
        self.next = Backoff::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Follows until a fatal error (or forever: the caller races it against Ctrl-C). Writes
/// records to `out` as they come and notes about reconnections to `notes`.
pub async fn run(
    config: &Config,
    view: &View,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<(), FollowError> {
    let params = absolute_times(&config.params, view.clock.now);
    let mut printer = Printer::new(config.output, view);
    let mut backoff = Backoff::new();
    loop {
        let mut delivered = false;
        let why = connection(config, &params, &mut printer, out, notes, &mut delivered).await;
        if delivered {
            backoff.reset();
        }
        let reason = match why {
            Break::Fatal(e) => return Err(e),
            Break::Lost(e) if is_fatal(&e) => return Err(FollowError::Query(e)),
            Break::Lost(e) => e.to_string(),
            Break::Ended => "the server ended the stream".to_owned(),
            Break::Idle => format!("nothing from the server for {}s", IDLE.as_secs()),
        };
        let wait = backoff.wait();
        // A note for the person watching; a closed stderr is no reason to stop.
        let _ = writeln!(notes, "liteobs-client: {reason}; reconnecting in {}ms", wait.as_millis());
        actix_rt::time::sleep(wait).await;
    }
}

/// Errors no retry can mend.
fn is_fatal(e: &QueryError) -> bool {
    match e {
        QueryError::Unauthorized { .. }
        | QueryError::Rejected { .. }
        | QueryError::Trust(_)
        | QueryError::Tls { .. }
        | QueryError::BadAnswer { .. }
        | QueryError::Encode(_) => true,
        QueryError::Unreachable { .. }
        | QueryError::Timeout { .. }
        | QueryError::Transport { .. }
        | QueryError::ServerError { .. } => false,
    }
}

/// `since` and `until` as RFC 3339 instants (as the server would read them now), the other
/// parameters as they are.
fn absolute_times(
    params: &[(&'static str, String)],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(&'static str, String)> {
    params
        .iter()
        .map(|(k, v)| match *k {
            "since" | "until" => match liteobs_model::filter::parse_time(v.trim(), now) {
                Ok(t) => (*k, t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                Err(_) => (*k, v.clone()),
            },
            _ => (*k, v.clone()),
        })
        .collect()
}

/// One connection: asks from the printer's cursor, prints what comes until it breaks.
async fn connection(
    config: &Config,
    params: &[(&'static str, String)],
    printer: &mut Printer,
    out: &mut dyn Write,
    notes: &mut dyn Write,
    delivered: &mut bool,
) -> Break {
    let mut asked: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, v.clone())).collect();
    asked.push(("follow", "1".to_owned()));
    if let Some(cursor) = printer.cursor() {
        asked.push(("cursor", cursor.to_string()));
    }
    let request = match query::request(config, config.mode.path(), &asked) {
        Ok(r) => r,
        Err(e) => return Break::Lost(e),
    };
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Break::Lost(query::send_error(config, e)),
    };
    let status = response.status().as_u16();
    if !(200..=299).contains(&status) {
        let body = response.body().limit(64 * 1024).await.map(|b| b.to_vec()).unwrap_or_default();
        return Break::Lost(query::refusal(&config.server, status, &body));
    }
    let content_type = response
        .headers()
        .get(awc::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !content_type.starts_with(CONTENT_TYPE) {
        return Break::Lost(QueryError::BadAnswer {
            server: config.server.clone(),
            reason: format!(
                "{status} with Content-Type {content_type:?}, not a live stream ({CONTENT_TYPE}); \
                 does this server support -follow?"
            ),
        });
    }
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = match actix_rt::time::timeout(IDLE, response.next()).await {
            Err(_) => return Break::Idle,
            Ok(None) => return Break::Ended,
            Ok(Some(Err(e))) => {
                return Break::Lost(QueryError::Transport {
                    server: config.server.clone(),
                    reason: e.to_string(),
                });
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        pending.extend_from_slice(&chunk);
        let mut text = String::new();
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + end];
            start += end + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if !*delivered {
                *delivered = true;
                match printer.start() {
                    Ok(header) => text.push_str(&header),
                    Err(e) => return Break::Fatal(e.into()),
                }
            }
            match parse_line(line) {
                Ok(FollowLine::Cursor { cursor, .. }) => printer.passed(cursor),
                Ok(FollowLine::Record { seq, record, .. }) => match printer.record(seq, &record) {
                    Ok(t) => text.push_str(&t),
                    Err(e) => return Break::Fatal(e.into()),
                },
                Err(e) => match e.seq {
                    Some(seq) => {
                        printer.skipped(seq);
                        let reason = query::printable(&e.reason, 300);
                        let _ = writeln!(
                            notes,
                            "liteobs-client: record seq {seq} of the stream is unreadable, skipped: {reason}"
                        );
                    }
                    None => {
                        return Break::Fatal(FollowError::Query(QueryError::BadAnswer {
                            server: config.server.clone(),
                            reason: format!(
                                "a line of the stream is not LiteObs's: {}",
                                query::printable(&e.reason, 200)
                            ),
                        }));
                    }
                },
            }
        }
        pending.drain(..start);
        if pending.len() > MAX_LINE_BYTES {
            return Break::Fatal(FollowError::Query(QueryError::BadAnswer {
                server: config.server.clone(),
                reason: format!("a line of the stream is longer than {} KiB", MAX_LINE_BYTES >> 10),
            }));
        }
        if !text.is_empty()
            && let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        {
            return Break::Fatal(FollowError::Output(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_250ms_to_10s_and_starts_again_after_a_success() {
        let mut b = Backoff::new();
        let waits: Vec<u128> = (0..8).map(|_| b.wait().as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        b.reset();
        assert_eq!(b.wait(), Duration::from_millis(250));
    }

    #[test]
    fn relative_times_are_resolved_once() {
        let now =
            chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let params = vec![
            ("since", "15m".to_owned()),
            ("pid", "7".to_owned()),
            ("until", "2026-11-25T13:00:00+01:00".to_owned()),
        ];
        assert_eq!(
            absolute_times(&params, now),
            [
                ("since", "2026-11-25T11:45:00.000000Z".to_owned()),
                ("pid", "7".to_owned()),
                ("until", "2026-11-25T12:00:00.000000Z".to_owned())
            ]
        );
    }

    #[test]
    fn what_retrying_cannot_mend_ends_the_command() {
        let s = "http://h".to_owned();
        assert!(is_fatal(&QueryError::Rejected { status: 400, message: String::new() }));
        assert!(is_fatal(&QueryError::Unauthorized {
            server: s.clone(),
            status: 401,
            message: String::new()
        }));
        assert!(!is_fatal(&QueryError::ServerError {
            server: s.clone(),
            status: 503,
            message: String::new()
        }));
        assert!(!is_fatal(&QueryError::Unreachable { server: s, reason: String::new() }));
    }
}
