//! One upload attempt over HTTP: POST a [`Batch`] to `{server}/upload` and read the answer.
//!
//! The only I/O of the reporter's network side; it decides nothing: the answer goes through
//! [`classify`], and a failure to get one (refused, reset, cut, timed out) is a retry.

use std::time::SystemTime;

use liteobs_model::BATCH_ID_HEADER;

use super::batch::Batch;
use super::client::http_client;
use super::config::ReporterConfig;
use super::retry::{Answer, Outcome, classify};

/// Largest answer body read; the rest is not needed to classify it.
const MAX_ANSWER: usize = 1 << 20;

/// Sends batches to one server.
pub struct Uploader {
    client: awc::Client,
    url: String,
    token: Option<String>,
}

impl Uploader {
    pub fn new(cfg: &ReporterConfig) -> Uploader {
        Uploader { client: http_client(cfg), url: cfg.upload_url(), token: cfg.token.clone() }
    }

    /// The upload endpoint, for logs and errors.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One attempt: the batch's body under its id.
    pub async fn send(&self, batch: &Batch) -> Outcome {
        let mut req = self
            .client
            .post(&self.url)
            .insert_header(("Content-Type", "application/x-ndjson"))
            .insert_header(("Content-Encoding", "gzip"))
            .insert_header((BATCH_ID_HEADER, batch.id.as_str()));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let mut resp = match req.send_body(batch.body.clone()).await {
            Ok(r) => r,
            Err(e) => {
                return super::tls::refusal(&self.url, &e)
                    .map_or_else(|| Outcome::Retry { reason: e.to_string(), after: None }, Outcome::Tls);
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = match resp.body().limit(MAX_ANSWER).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            // Without the whole answer a 2xx is not known to be a commit: retry (the id makes
            // that safe).
            Err(e) if (200..300).contains(&status) => {
                return Outcome::Retry { reason: format!("reading the answer: {e}"), after: None };
            }
            Err(_) => String::new(),
        };
        classify(Answer { status, retry_after: retry_after.as_deref(), body: &text }, SystemTime::now())
    }
}
