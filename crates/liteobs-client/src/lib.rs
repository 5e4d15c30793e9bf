//! The LiteObs command-line client: asks a LiteObs server which HTTP exchanges it stored and
//! prints them as a table, JSON or CSV.
//!
//! The flow is flags → [`Config`] → `GET /query` → [`QueryResponse`] → text (or, for
//! `liteobs-client stats`, `GET /stats` → its figures → text):
//!
//! * [`cli`]: the clap flags (Go-style `-pid 1234` accepted) and their validation into a
//!   [`Config`]. A bad filter is rejected here, before any network traffic, with the same words
//!   the server would use.
//! * [`query`]: the one HTTP call, and a [`QueryError`] that tells "cannot reach the server"
//!   apart from "the server said no".
//! * [`terminal`]: how wide the output may be and whether it may be coloured, decided once from
//!   the environment so that nothing below reads it.
//! * [`render`]: pure functions from records to text; everything a user reads is snapshot-tested
//!   there.
//!
//! This crate is not a library for other programs; the lib target exists so that tests (and the
//! thin `main.rs`) can reach the parts.

pub mod cli;
pub mod query;
pub mod render;
pub mod terminal;

use anyhow::Context;

pub use cli::{Cli, Config, ConfigError};
pub use liteobs_model::QueryResponse;
pub use query::{Answer, QueryError, Unreadable};
pub use render::{Output, OutputFormat};
pub use terminal::Terminal;

/// What one query produced: the rendered records, and the records of the answer that could not
/// be read (reported on stderr; the exit status says some were skipped).
#[derive(Debug)]
pub struct Outcome {
    pub output: Output,
    pub unreadable: Vec<Unreadable>,
    /// Records the server sent, readable or not.
    pub received: usize,
}

/// Runs one query and renders the answer. Must be called inside an actix-rt system (awc's
/// client is not `Send` and needs that runtime).
pub async fn run(config: &Config, term: &Terminal) -> anyhow::Result<Outcome> {
    if config.mode == cli::Mode::Stats {
        let answer = query::fetch_stats(config).await?;
        let output = render::render_stats(config.output, &answer).context("cannot format the answer")?;
        return Ok(Outcome { output, unreadable: Vec::new(), received: answer.groups.len() });
    }
    let Answer { response, unreadable } = query::fetch(config).await?;
    let output = render::render(config.output, &response, term).context("cannot format the answer")?;
    let received = response.records.len() + unreadable.len();
    Ok(Outcome { output, unreadable, received })
}
