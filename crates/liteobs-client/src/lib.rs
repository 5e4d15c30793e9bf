//! The LiteObs command-line client: asks a LiteObs server which HTTP exchanges it stored and
//! prints them as a table, JSON or CSV.
//!
//! The flow is flags → [`Config`] → `GET /query` → [`QueryResponse`] → text (or, for
//! `liteobs-client stats` and `map`, `GET /stats` or `/map` → figures or edges → text; for
//! `liteobs-client sql`, `POST /sql` → columns and rows → text):
//!
//! * [`cli`]: the clap flags (Go-style `-pid 1234` accepted) and their validation into a
//!   [`Config`]. A bad filter is rejected here, before any network traffic, with the same words
//!   the server would use.
//! * [`query`]: the one HTTP call, and a [`QueryError`] that tells "cannot reach the server"
//!   apart from "the server said no".
//! * [`follow`]: `-follow`, the live stream (`GET /query?follow=1`) printed as it comes, with
//!   reconnection from the last cursor.
//! * [`terminal`]: how wide the output may be and whether it may be coloured, decided once from
//!   the environment so that nothing below reads it.
//! * [`render`]: pure functions from records to text, given a [`View`] (width, colour, "now"
//!   and the time zone); everything a user reads is snapshot-tested there.
//! * [`shell`]: shell completions and the man page, generated from the same clap definitions.
//!
//! This crate is not a library for other programs; the lib target exists so that tests (and the
//! thin `main.rs`) can reach the parts.

pub mod cli;
pub mod follow;
pub mod query;
pub mod render;
pub mod shell;
pub mod terminal;

use anyhow::Context;

pub use cli::{Cli, Config, ConfigError};
pub use liteobs_model::QueryResponse;
pub use query::{Answer, QueryError, Unreadable};
pub use render::{Clock, Output, OutputFormat, View, Zone};
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

/// Runs one query and renders the answer for `view`. Must be called inside an actix-rt system
/// (awc's client is not `Send` and needs that runtime).
pub async fn run(config: &Config, view: &View) -> anyhow::Result<Outcome> {
    match config.mode {
        cli::Mode::Query => {}
        cli::Mode::Follow => {
            anyhow::bail!("-follow streams until interrupted: run it with follow::run, not run")
        }
        cli::Mode::Stats => {
            let answer = query::fetch_answer(config).await?;
            let output =
                render::render_stats(config.output, &answer, view).context("cannot format the answer")?;
            return Ok(Outcome { output, unreadable: Vec::new(), received: answer.groups.len() });
        }
        cli::Mode::Map => {
            let answer = query::fetch_answer(config).await?;
            let output =
                render::render_map(config.output, &answer, view).context("cannot format the answer")?;
            return Ok(Outcome { output, unreadable: Vec::new(), received: answer.edges.len() });
        }
        cli::Mode::Sql => {
            let answer = query::fetch_sql(config).await?;
            let output =
                render::render_sql(config.output, &answer, view).context("cannot format the answer")?;
            return Ok(Outcome { output, unreadable: Vec::new(), received: answer.rows.len() });
        }
    }
    let Answer { response, unreadable } = query::fetch(config).await?;
    let output = render::render(config.output, &response, view).context("cannot format the answer")?;
    let received = response.records.len() + unreadable.len();
    Ok(Outcome { output, unreadable, received })
}
