//! The LiteObs command-line client: asks a LiteObs server which HTTP exchanges it stored and
//! prints them as a table, JSON or CSV.
//!
//! The flow is flags → [`Config`] → `GET /query` → [`QueryResponse`] → text:
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
pub use query::QueryError;
pub use render::{Output, OutputFormat};
pub use terminal::Terminal;

/// Runs one query and renders the answer. Must be called inside an actix-rt system (awc's
/// client is not `Send` and needs that runtime).
pub async fn run(config: &Config, term: &Terminal) -> anyhow::Result<Output> {
    let response = query::fetch(config).await?;
    render::render(config.output, &response, term).context("cannot format the answer")
}
