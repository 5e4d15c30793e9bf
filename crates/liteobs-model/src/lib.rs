//! The data LiteObs moves between its three programs.
//!
//! * [`TrafficLog`]: one HTTP request/response exchange seen on the wire, in the JSON form the agent
//!   uploads, the server stores and the client prints. Field names are a stable wire contract.
//! * [`batch`]: decoding an upload body (JSON array or NDJSON) into records, with errors that name
//!   the record index and the field, so a bad batch is rejected whole and explained.
//! * [`columns`]: the record's fields as columns, the one list every flat form follows (store
//!   schema and rows, CSV, NDJSON).
//! * [`ndjson`]: the agent's fast writer of that JSON form, one record per line.
//! * [`filter`]: the query a client asks and the server answers (`ip`, `pid`, `method`, `status`,
//!   `path`, `since`, `until`, `limit`), its query-string form and its validation.
//! * [`follow`]: the live stream of `GET /query?follow=1`: its parameters (a cursor, a backlog)
//!   and its lines (records with their `seq`, cursors, heartbeats).
//! * [`map`]: who calls whom (`/map`): nodes (pods, processes, addresses) and edges with their
//!   figures, and the brute-force reference.
//! * [`metrics`]: the agent's and the server's Prometheus metrics (name, type, help), the one
//!   list both expose and README.md's tables are written from.
//! * [`merge`]: when two records are captures of one exchange, and the one record they make.
//! * [`route`]: the path template of a request (`/item/{id}`), user route patterns, and the bound
//!   on distinct routes per server.
//! * [`stats`]: the `/stats` question (a filter, a grouping, a sort), its answer, and the
//!   brute-force reference both stores are tested against.
//! * [`server_url`]: the `-server` base URL the agent and the client both take, checked.
//!
//! This crate does no I/O; everything here is a pure function of its input.

pub mod batch;
pub mod columns;
pub mod filter;
pub mod follow;
pub mod map;
pub mod merge;
pub mod metrics;
pub mod ndjson;
mod record;
pub mod route;
pub mod server_url;
pub mod sql;
pub mod stats;

pub use batch::{BatchError, decode_json_array, decode_ndjson};
pub use filter::{Filter, FilterError, QueryResponse, StatusMatch};
pub use ndjson::NdjsonEncoder;
pub use record::{COUNTER_MAX, TS_MAX_MICROS, TS_MIN_MICROS, TrafficLog, format_ts, ts_in_range};
pub use server_url::{Scheme, ServerUrl, ServerUrlError};

/// The request header that names an upload batch: the agent sends one id per batch, the same on
/// every retry (and after a restart, for a spooled batch); the server stores each committed id in
/// the batch's own transaction and answers a repeat without inserting it again (exactly-once).
pub const BATCH_ID_HEADER: &str = "Idempotency-Key";
