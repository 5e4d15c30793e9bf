//! The REST API: `POST /upload`, `GET /query` (and its live stream, `GET /query?follow=1`),
//! `GET /stats`, `GET /map`, `POST /sql`, `GET /healthz`; and the web page over it (`GET /`,
//! [`crate::web`]).
//!
//! Handlers decode and validate on the executor, then run store calls on actix's blocking pool
//! (`web::block`), so a slow disk never stalls other connections. An upload is answered only
//! after its batch is committed; a bad batch is rejected whole, with the record index and field.
//! Every error is JSON `{"error": "..."}`. One module per concern:
//!
//! * [`upload`], [`query`], [`stats`] (`/stats` and `/map`) and [`sql`]: the handlers; [`follow`]: the
//!   live stream (`follow=1`), its bounds and its end at shutdown;
//! * [`body`]: reading an upload's bytes (size cap, deadline, gzip) and [`budget`]: the memory
//!   all uploads in flight may hold together;
//! * [`auth`]: the bearer token; [`error`]: the status code and body of every failure.
//!
//! Transport limits (request-head deadline, keep-alive, connection cap) are the HTTP server's,
//! set in `lib.rs::run`.

mod auth;
mod body;
pub mod budget;
mod error;
pub mod follow;
mod query;
mod sql;
mod stats;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

pub use budget::MemoryBudget;
pub use error::{ApiError, RETRY_AFTER_SECS};
pub use follow::FollowSettings;

use crate::store::Store;

/// What every handler shares.
pub struct ApiState {
    pub store: Arc<dyn Store>,
    /// The store's router, for the count of folded routes `/stats` answers.
    pub routes: Arc<crate::routes::Router>,
    /// When set, every route but `/healthz` and the page ([`crate::page::is_public`]) needs
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Largest upload body accepted, in bytes, both as sent and after gzip decoding.
    pub max_body: usize,
    /// Longest an upload's body may take to arrive, from the end of its head to its last byte.
    pub body_timeout: Duration,
    /// Bytes all uploads in flight may hold together; beyond it, 503 with `Retry-After`.
    pub budget: Arc<MemoryBudget>,
    /// What the API counts for `-metrics-listen` (counted whether or not it is served).
    pub metrics: Arc<crate::metrics::ServerMetrics>,
    /// The live streams' bounds and stop signal.
    pub follow: FollowSettings,
}

/// Mounts the API on an actix `App`.
pub fn configure(state: web::Data<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state).service(
            web::scope("")
                .wrap(from_fn(auth::require_token))
                // Outermost: times every request, a refused token included.
                .wrap(from_fn(crate::metrics::observe))
                .route("/healthz", web::get().to(healthz))
                .route("/upload", web::post().to(upload::upload))
                .route("/query", web::get().to(query::query))
                .route("/stats", web::get().to(stats::stats))
                .route("/map", web::get().to(stats::map))
                .route("/sql", web::post().to(sql::sql))
                .configure(crate::page::configure)
                .default_service(web::to(not_found)),
        );
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("{} {}", req.method(), req.path())))
}

/// Inflates a gzip upload body exactly as `POST /upload` does (the cap on the inflated size
/// included), outside any memory budget. Public for the fuzz target (integration/fuzz), not
/// part of the API.
#[doc(hidden)]
pub fn inflate_gzip(body: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let budget = MemoryBudget::new(usize::MAX);
    let mut reservation = budget.reservation();
    body::inflate(body, limit, &mut reservation).map(|b| b.as_slice().to_vec())
}

#[cfg(test)]
mod follow_tests;
#[cfg(test)]
mod tests;
