//! How the reporter talks to the server: the settings the flags fill in, with the reporter's
//! defaults. Plain data; nothing here does I/O.

use std::time::Duration;

/// How the reporter talks to the server.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// The server's base URL (`http://host:port`); records go to `{server}/upload`.
    pub server: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Whom to trust for an `https://` server (None for `http://`).
    pub tls: Option<std::sync::Arc<liteobs_tls::ClientConfig>>,
    /// Records per upload, at most.
    pub batch_size: usize,
    /// The longest a record waits for its batch to fill.
    pub flush_interval: Duration,
    /// First retry delay; doubles per failure up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest pause between two attempts, a server's `Retry-After` included.
    pub max_backoff: Duration,
    /// Per request, connection included.
    pub request_timeout: Duration,
    /// Most times one batch is sent again without a record the server named as bad (400 with
    /// an `index`); past it the rest of the batch is dropped and counted, so a server that
    /// rejects every record cannot keep the reporter on one batch.
    pub max_resends: u32,
}

impl ReporterConfig {
    /// Defaults for everything but the server.
    pub fn new(server: impl Into<String>) -> ReporterConfig {
        ReporterConfig {
            server: server.into(),
            token: None,
            tls: None,
            batch_size: 1000,
            flush_interval: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_resends: 16,
        }
    }

    /// The upload endpoint.
    pub fn upload_url(&self) -> String {
        format!("{}/upload", self.server.trim_end_matches('/'))
    }
}
