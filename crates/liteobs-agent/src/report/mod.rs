//! Reporting: getting records off the node.
//!
//! Two destinations:
//! * [`NdjsonWriter`]: one JSON record per line on a byte stream (standard output when the
//!   agent has no server), run on a thread of its own by [`stdout::ThreadedWriter`].
//! * [`Reporter`]: batches from a [`RecordQueue`], gzip NDJSON, each under its own
//!   [`BatchId`], POSTed to `{server}/upload` until the server has them; optionally through the
//!   disk spool ([`crate::spool`]) so that an outage or a restart loses nothing spooled.
//!
//! One file per concern, in the order a record goes through them:
//! * `queue`: the bounded in-memory buffer (live: drop oldest, counted; replay: wait);
//! * `encoder`: records → gzip NDJSON body (and back to lines, to cut a batch);
//! * `batch`: a body with its id, and how a batch is cut (413 halves, 400 "rest") with ids
//!   derived from its parent's, stable across retries and restarts;
//! * `config`: the reporter's settings; `client`: the one place the HTTP client is built
//!   (with `tls`: whom an `https://` server must be vouched for by, and telling a refused
//!   handshake apart from a server that is down: a TLS failure is fatal, no retry fixes it);
//! * `service`: one POST and its answer (the only network I/O);
//! * `retry`: *what* is retried: a pure `classify(answer) -> Outcome`, tested as a table;
//! * `backoff`: *when*: exponential with jitter, or the server's `Retry-After`, within
//!   `[initial, -max-backoff]`;
//! * `sink`: the [`Reporter`], acting on outcomes (deliver, split, resend, drop, stop), with or
//!   without the spool; `stats`: its counters.
//!
//! Every record is either acknowledged by the server, or counted in exactly one of
//! `records_dropped` (memory queue full), `records_spool_dropped` (spool full),
//! `records_rejected` (refused by the server for good), `records_abandoned` (shutdown deadline,
//! no spool), or still in the spool (`records_spooled`) for the next start.

mod backoff;
mod batch;
mod client;
mod config;
#[cfg(test)]
mod delivery_tests;
mod encoder;
mod queue;
mod retry;
mod service;
mod sink;
mod stats;
pub mod stdout;
#[cfg(test)]
pub(crate) mod testing;
pub mod tls;

pub use backoff::Backoff;
pub use batch::{BadBatchId, Batch, BatchId};
pub use client::http_client;
pub use config::ReporterConfig;
pub use encoder::{NdjsonWriter, encode_batch, encode_lines, ndjson_lines};
pub use queue::{Overflow, RecordQueue};
pub use retry::{Answer, Outcome, classify, parse_retry_after};
pub use sink::{ReportError, Reporter};
pub use stats::{ReportCounters, ReportStats, UploadLatency};
