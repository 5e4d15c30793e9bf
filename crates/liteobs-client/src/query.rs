//! The one HTTP call: `GET {server}/query` (or `/stats`, `/map`) with the filter as query
//! parameters.
//!
//! Failures are sorted by what the user should do about them: the server could not be reached
//! (start it, fix `-server`), it did not answer in time (raise `-timeout`), TLS failed (fix
//! `-ca-file`, the host name, or the scheme), it refused the token, it rejected the query, or it
//! answered something that is not a LiteObs answer. Each
//! [`QueryError`] displays as one complete sentence fragment, so the binary prints it as is.
//!
//! Records are read one by one: a row this client cannot read (written by a server with other
//! rules, or damaged) is set aside as [`Unreadable`] with its position, and the others are still
//! printed. Only an answer that is not a LiteObs answer at all is an error.

use std::io;
use std::time::Duration;

use actix_http::error::ParseError;
use awc::error::{ConnectError, PayloadError, SendRequestError};
use liteobs_model::{QueryResponse, TrafficLog};
use serde::Deserialize;

use crate::cli::Config;
use crate::render::text;

/// Largest answer accepted: 10 000 records with long paths fit comfortably.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Why no records came back. `server` is the base URL as configured.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("cannot reach server at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("server at {server} did not answer within {}s (raise -timeout?)", timeout.as_secs())]
    Timeout { server: String, timeout: Duration },
    #[error("{0}")]
    Trust(#[from] liteobs_tls::TrustError),
    #[error("server at {server}: {reason}")]
    Tls { server: String, reason: String },
    #[error("lost the connection to server at {server}: {reason}")]
    Transport { server: String, reason: String },
    #[error("server {server} refused the token ({status}): {message}")]
    Unauthorized { server: String, status: u16, message: String },
    #[error("server rejected the query ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("server {server} failed ({status}): {message}")]
    ServerError { server: String, status: u16, message: String },
    #[error("unexpected answer from {server}: {reason}")]
    BadAnswer { server: String, reason: String },
    /// The filter could not be written as a query string (not expected: all values are strings).
    #[error("cannot encode the query: {0}")]
    Encode(String),
}

/// A record of the answer that could not be read: its 0-based position among the records the
/// server sent, and why (printable, shortened: it comes from the network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub index: usize,
    pub reason: String,
}

/// What the server answered: the records that could be read (in the server's order), and the
/// ones that could not.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub response: QueryResponse,
    pub unreadable: Vec<Unreadable>,
}

/// The answer's shape, each record left undecoded so one bad record does not hide the others.
#[derive(Deserialize)]
struct RawAnswer {
    records: Vec<serde_json::Value>,
    limit: usize,
    truncated: bool,
}

/// Reads each record on its own, with the model's decoder (the server's words: field and
/// reason).
fn read_records(raw: Vec<serde_json::Value>) -> (Vec<TrafficLog>, Vec<Unreadable>) {
    let mut records = Vec::with_capacity(raw.len());
    let mut unreadable = Vec::new();
    for (index, value) in raw.into_iter().enumerate() {
        let decoded = serde_json::to_vec(&value)
            .map_err(|e| e.to_string())
            .and_then(|line| liteobs_model::decode_ndjson(&line).map_err(|e| describe(&e)));
        match decoded {
            Ok(mut one) if one.len() == 1 => records.extend(one.pop()),
            Ok(_) => unreadable.push(Unreadable { index, reason: "not a record".to_owned() }),
            Err(reason) => unreadable.push(Unreadable { index, reason: printable(&reason, 300) }),
        }
    }
    (records, unreadable)
}

/// A record's decoding error without the "record 0" the one-line decoder puts in front.
fn describe(e: &liteobs_model::BatchError) -> String {
    match &e.field {
        Some(f) => format!("field `{f}`: {}", e.message),
        None => e.message.clone(),
    }
}

/// Asks the server. Must run inside an actix-rt system. `config.timeout` bounds the whole
/// exchange, connecting and reading the body included.
pub async fn fetch(config: &Config) -> Result<Answer, QueryError> {
    let timeout = || QueryError::Timeout { server: config.server.clone(), timeout: config.timeout };
    match actix_rt::time::timeout(config.timeout, exchange(config)).await {
        Ok(Err(QueryError::Timeout { .. })) | Err(_) => Err(timeout()),
        Ok(result) => result,
    }
}

async fn exchange(config: &Config) -> Result<Answer, QueryError> {
    let (status, body) = get(config).await?;
    interpret(&config.server, status, &body)
}

/// Asks the server for `GET /stats` or `GET /map` (the config's mode) and reads its answer as
/// a `T`. Must run inside an actix-rt system; `config.timeout` bounds the whole exchange.
pub async fn fetch_answer<T: serde::de::DeserializeOwned>(config: &Config) -> Result<T, QueryError> {
    let timeout = || QueryError::Timeout { server: config.server.clone(), timeout: config.timeout };
    let asked = async {
        let (status, body) = get(config).await?;
        interpret_answer(&config.server, config.mode.path(), status, &body)
    };
    match actix_rt::time::timeout(config.timeout, asked).await {
        Ok(Err(QueryError::Timeout { .. })) | Err(_) => Err(timeout()),
        Ok(result) => result,
    }
}

/// Asks the server for `POST /sql` with the config's statement and limit, and reads its answer.
/// A refusal says its kind (`refused`, `engine`, `timeout`) before the server's words. Must run
/// inside an actix-rt system; `config.timeout` bounds the whole exchange.
pub async fn fetch_sql(config: &Config) -> Result<liteobs_model::sql::SqlAnswer, QueryError> {
    let timeout = || QueryError::Timeout { server: config.server.clone(), timeout: config.timeout };
    let asked = async {
        let limit =
            config.params.iter().find(|(k, _)| *k == "limit").and_then(|(_, v)| v.parse::<u64>().ok());
        let body = serde_json::json!({ "sql": config.sql.as_deref().unwrap_or_default(), "limit": limit });
        let request = client(config)?.post(format!("{}{}", config.server, config.mode.path()));
        let (status, body) = exchange_with(config, request, Some(body)).await?;
        if status == 400
            && let Ok(r) = serde_json::from_slice::<liteobs_model::sql::SqlRefusal>(&body)
        {
            return Err(QueryError::Rejected {
                status,
                message: printable(&format!("{}: {}", r.kind, r.error), 300),
            });
        }
        interpret_answer(&config.server, config.mode.path(), status, &body)
    };
    match actix_rt::time::timeout(config.timeout, asked).await {
        Ok(Err(QueryError::Timeout { .. })) | Err(_) => Err(timeout()),
        Ok(result) => result,
    }
}

/// The HTTP client for `config`'s server (its CA for https, its timeout).
fn client(config: &Config) -> Result<awc::Client, QueryError> {
    let mut connector = awc::Connector::new().timeout(config.timeout);
    if config.server.starts_with("https://") {
        connector = connector.rustls_0_23(liteobs_tls::client_config(config.ca_file.as_deref())?);
    }
    Ok(awc::Client::builder().connector(connector).timeout(config.timeout).finish())
}

/// `GET {server}{path}` with `params`, the token and (for https) the trust anchors; the
/// `-timeout` bounds connecting and the answer's head (the live stream, `-follow`).
pub(crate) fn request<P: serde::Serialize>(
    config: &Config,
    path: &str,
    params: &P,
) -> Result<awc::ClientRequest, QueryError> {
    let mut request = client(config)?
        .get(format!("{}{path}", config.server))
        .query(params)
        .map_err(|e| QueryError::Encode(e.to_string()))?;
    if let Some(token) = &config.token {
        request = request.bearer_auth(token);
    }
    Ok(request)
}

/// `GET {server}{mode's path}` with the parameters; the status and the body (capped).
async fn get(config: &Config) -> Result<(u16, Vec<u8>), QueryError> {
    let request = client(config)?
        .get(format!("{}{}", config.server, config.mode.path()))
        .query(&config.params)
        .map_err(|e| QueryError::Encode(e.to_string()))?;
    exchange_with(config, request, None).await
}

/// Sends `request` (with the token, and `json` as its body when given); the status and the
/// body (capped).
async fn exchange_with(
    config: &Config,
    mut request: awc::ClientRequest,
    json: Option<serde_json::Value>,
) -> Result<(u16, Vec<u8>), QueryError> {
    let server = &config.server;
    if let Some(token) = &config.token {
        request = request.bearer_auth(token);
    }
    let sent = match json {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    let mut response = sent.map_err(|e| send_error(config, e))?;
    let status = response.status();
    let body = response.body().limit(MAX_BODY_BYTES).await.map_err(|e| match e {
        PayloadError::Overflow => QueryError::BadAnswer {
            server: server.clone(),
            reason: format!("the answer is larger than {} MiB; lower -limit", MAX_BODY_BYTES >> 20),
        },
        other => QueryError::Transport { server: server.clone(), reason: other.to_string() },
    })?;
    Ok((status.as_u16(), body.to_vec()))
}

/// The answer of `path` (`/stats`, `/map`), or the matching error (as [`interpret`]).
pub fn interpret_answer<T: serde::de::DeserializeOwned>(
    server: &str,
    path: &str,
    status: u16,
    body: &[u8],
) -> Result<T, QueryError> {
    if !(200..=299).contains(&status) {
        return Err(refusal(server, status, body));
    }
    serde_json::from_slice(body).map_err(|e| QueryError::BadAnswer {
        server: server.to_owned(),
        reason: format!("{status} but not an answer of {path}: {e}"),
    })
}

/// Turns a status and body into records or the matching error; pure, so it is tested on bytes.
pub fn interpret(server: &str, status: u16, body: &[u8]) -> Result<Answer, QueryError> {
    if !(200..=299).contains(&status) {
        return Err(refusal(server, status, body));
    }
    let raw: RawAnswer = serde_json::from_slice(body).map_err(|e| QueryError::BadAnswer {
        server: server.to_owned(),
        reason: format!("{status} but not a query result: {e}"),
    })?;
    let (records, unreadable) = read_records(raw.records);
    Ok(Answer { response: QueryResponse { records, limit: raw.limit, truncated: raw.truncated }, unreadable })
}

/// The error an answer that is not a success stands for.
pub(crate) fn refusal(server: &str, status: u16, body: &[u8]) -> QueryError {
    match status {
        401 | 403 => QueryError::Unauthorized {
            server: server.to_owned(),
            status,
            message: error_message(status, body),
        },
        400..=499 => QueryError::Rejected { status, message: error_message(status, body) },
        500..=599 => QueryError::ServerError {
            server: server.to_owned(),
            status,
            message: error_message(status, body),
        },
        _ => QueryError::BadAnswer {
            server: server.to_owned(),
            reason: format!("status {status}: {}", error_message(status, body)),
        },
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// The server's `{"error": "..."}` text; failing that (a proxy's page, say) the body's first
/// line, shortened; failing that the status's standard reason.
pub fn error_message(status: u16, body: &[u8]) -> String {
    if let Ok(ErrorBody { error }) = serde_json::from_slice(body) {
        return printable(&error, 300);
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    if !line.is_empty() {
        return printable(line, 200);
    }
    awc::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("no reason given")
        .to_owned()
}

/// At most `max` chars, control characters escaped: this text comes from the network and goes
/// to a terminal.
pub(crate) fn printable(s: &str, max: usize) -> String {
    text::ellipsize(&text::printable(s), max).into_owned()
}

pub(crate) fn send_error(config: &Config, e: SendRequestError) -> QueryError {
    let server = config.server.clone();
    if let SendRequestError::Connect(ConnectError::Io(io)) | SendRequestError::Send(io) = &e
        && let Some(reason) = liteobs_tls::certificate_problem(io)
    {
        return QueryError::Tls { server, reason };
    }
    if let SendRequestError::Response(ParseError::Version) = &e
        && let Some(host) = server.strip_prefix("http://")
    {
        // A TLS server answers a plain request with a TLS alert, which is no HTTP status line.
        let reason = format!("the answer is not HTTP ({e}); if it serves HTTPS, use -server https://{host}");
        return QueryError::Transport { server, reason };
    }
    match e {
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            QueryError::Timeout { server, timeout: config.timeout }
        }
        SendRequestError::Connect(ConnectError::Io(io)) => {
            QueryError::Unreachable { server, reason: io_reason(&io) }
        }
        SendRequestError::Connect(ConnectError::Resolver(e)) => {
            QueryError::Unreachable { server, reason: format!("cannot resolve the host name: {e}") }
        }
        SendRequestError::Connect(other) => QueryError::Unreachable { server, reason: other.to_string() },
        SendRequestError::Send(io) => QueryError::Transport { server, reason: io_reason(&io) },
        other => QueryError::Transport { server, reason: other.to_string() },
    }
}

/// `Connection refused (os error 111)` → `Connection refused`: the number helps nobody here.
fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(p) if s.ends_with(')') => s[..p].to_owned(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "http://127.0.0.1:8080";

    #[test]
    fn statuses_map_to_the_right_error() {
        let ok = interpret(S, 200, br#"{"records":[],"limit":100,"truncated":false}"#).unwrap();
        assert!(ok.response.records.is_empty() && !ok.response.truncated && ok.unreadable.is_empty());
        let msg = |status, body: &[u8]| interpret(S, status, body).unwrap_err().to_string();
        assert_eq!(
            msg(401, br#"{"error":"bad token"}"#),
            "server http://127.0.0.1:8080 refused the token (401): bad token"
        );
        assert_eq!(msg(403, b""), "server http://127.0.0.1:8080 refused the token (403): Forbidden");
        assert_eq!(
            msg(400, br#"{"error":"bad query parameter `pid`"}"#),
            "server rejected the query (400): bad query parameter `pid`"
        );
        assert_eq!(
            msg(502, b"<html>\n<h1>Bad Gateway</h1>"),
            "server http://127.0.0.1:8080 failed (502): <html>"
        );
        assert!(
            msg(200, b"[]")
                .starts_with("unexpected answer from http://127.0.0.1:8080: 200 but not a query result")
        );
        assert!(msg(302, b"").starts_with("unexpected answer"));
    }

    #[test]
    fn error_text_from_the_network_is_made_printable_and_short() {
        assert_eq!(error_message(400, b"{\"error\":\"a\\u001b[2Jb\"}"), r"a\u{1b}[2Jb");
        let long = "x".repeat(500);
        assert_eq!(error_message(500, long.as_bytes()).chars().count(), 200);
        assert_eq!(error_message(500, b"\xff\xfe oops"), "\u{fffd}\u{fffd} oops");
        assert_eq!(error_message(599, b"  \n "), "no reason given");
    }

    #[test]
    fn os_error_numbers_are_dropped() {
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(io_reason(&e), e.to_string().split(" (os error").next().unwrap());
        assert_eq!(io_reason(&io::Error::other("plain")), "plain");
    }

    const GOOD: &str = r#"{"ts":"2026-11-25T14:02:44.123456Z","src_ip":"10.0.0.1","src_port":1,"dst_ip":"::1","dst_port":80,"method":"GET","path":"/","status":200,"latency_us":1,"req_bytes":0,"resp_bytes":0,"node":"n"}"#;

    #[test]
    fn one_unreadable_record_does_not_hide_the_others() {
        // What main's server stored for `9999-12-31T23:59:59-23:59`, and other rows a client
        // cannot carry: each is set aside with its position, the rest are kept in order.
        let year_10000 = GOOD.replace("2026-11-25T14:02:44.123456Z", "+10000-01-01T23:58:59Z");
        let huge = GOOD.replace(r#""latency_us":1"#, r#""latency_us":18446744073709551615"#);
        let second = GOOD.replace(r#""path":"/""#, r#""path":"/2""#);
        let body = format!(
            r#"{{"records":[{year_10000},{GOOD},7,{huge},{second},{{"ts":"\u001b[2J"}}],"limit":100,"truncated":true}}"#
        );
        let answer = interpret(S, 200, body.as_bytes()).unwrap();
        let paths: Vec<&str> = answer.response.records.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/", "/2"]);
        assert_eq!((answer.response.limit, answer.response.truncated), (100, true));
        let indexes: Vec<usize> = answer.unreadable.iter().map(|u| u.index).collect();
        assert_eq!(indexes, [0, 2, 3, 5]);
        let reasons: Vec<&str> = answer.unreadable.iter().map(|u| u.reason.as_str()).collect();
        assert!(reasons[0].starts_with("field `ts`: not an RFC 3339 timestamp"), "{reasons:?}");
        assert!(
            reasons[2].starts_with("field `latency_us`: 18446744073709551615 does not fit"),
            "{reasons:?}"
        );
        assert!(!reasons[3].contains('\x1b'), "escaped for the terminal: {reasons:?}");
    }
}
