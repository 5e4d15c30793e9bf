//! The LiteObs node agent, as a library so that tests and benchmarks drive the same pipeline as
//! the binary.
//!
//! Data flows through one module per stage:
//! capture → decode → reassemble → http → attribute → merge → report (`container` tells
//! `attribute` which pod a process is in; `merge` makes one record of an exchange the capture
//! saw twice, before and after a Service's DNAT).
//! `pipeline` glues decode, reassemble and http into a pure, synchronous step from
//! (timestamp, link type, frame bytes) to [`liteobs_model::TrafficLog`] records.
//! `run` wires the stages onto threads the way the binary runs them; `config` holds the flags;
//! `metrics` serves their counters to Prometheus and the agent's health (`-metrics-listen`).

pub mod attribute;
pub mod capture;
pub mod config;
pub mod container;
pub mod decode;
pub mod http;
pub mod merge;
pub mod metrics;
pub mod pidmap;
pub mod pipeline;
pub mod reassemble;
pub mod report;
pub mod run;
pub mod spool;
#[cfg(test)]
mod testing;
