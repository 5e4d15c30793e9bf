//! The REST API: `POST /upload`, `GET /query`, `GET /healthz`.
//!
//! Handlers decode and validate on the executor, then run store calls on actix's blocking pool
//! (`web::block`), so a slow disk never stalls other connections. An upload is answered only
//! after its batch is committed; a bad batch is rejected whole, with the record index and field.
//! Every error is JSON `{"error": "..."}`.

use std::io::Read;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::Utc;
use futures_util::StreamExt;
use liteobs_model::{BatchError, Filter, FilterError, QueryResponse, decode_json_array, decode_ndjson};
use serde_json::json;

use crate::store::{Store, StoreError};

/// What every handler shares.
pub struct ApiState {
    pub store: Arc<dyn Store>,
    /// When set, every route but `/healthz` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Largest upload body accepted, in bytes, both as sent and after gzip decoding.
    pub max_body: usize,
}

/// Why a request failed; each maps to one status code and a JSON body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRecord(#[from] BatchError),
    #[error("{0}")]
    BadParam(#[from] FilterError),
    #[error("{0}")]
    BadBody(String),
    #[error("body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("unsupported Content-Encoding {0:?} (send identity or gzip)")]
    UnsupportedEncoding(String),
    #[error("unsupported Content-Type {0:?} (send application/json or application/x-ndjson)")]
    UnsupportedType(String),
    #[error("missing or wrong token (send `Authorization: Bearer <token>`)")]
    Unauthorized,
    #[error("no such route: {0}")]
    NotFound(String),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRecord(_) | ApiError::BadParam(_) | ApiError::BadBody(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedEncoding(_) | ApiError::UnsupportedType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({ "error": self.to_string() });
        match self {
            ApiError::BadRecord(e) => {
                body["index"] = json!(e.index);
                body["field"] = json!(e.field);
            }
            ApiError::BadParam(e) => body["param"] = json!(e.param),
            _ => {}
        }
        if self.status_code().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        HttpResponse::build(self.status_code()).json(body)
    }
}

/// Mounts the API on an actix `App`.
pub fn configure(state: web::Data<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state).service(
            web::scope("")
                .wrap(from_fn(require_token))
                .route("/healthz", web::get().to(healthz))
                .route("/upload", web::post().to(upload))
                .route("/query", web::get().to(query))
                .default_service(web::to(not_found)),
        );
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same_token(given: &[u8], want: &[u8]) -> bool {
    given.len() == want.len() && given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let token = req.app_data::<web::Data<ApiState>>().and_then(|s| s.token.clone());
    if let Some(want) = token
        && req.path() != "/healthz"
    {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_token(given.trim().as_bytes(), want.as_bytes()) {
            let resp = ApiError::Unauthorized.error_response();
            return Ok(req.into_response(resp).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("{} {}", req.method(), req.path())))
}

/// Body format of an upload, from Content-Type (or sniffed when absent).
enum Format {
    JsonArray,
    Ndjson,
}

fn format_of(req: &HttpRequest, body: &[u8]) -> Result<Format, ApiError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Format::JsonArray),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(Format::Ndjson),
        "" => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Ok(Format::Ndjson),
            _ => Ok(Format::JsonArray),
        },
        _ => Err(ApiError::UnsupportedType(ct.to_owned())),
    }
}

/// Reads the body, refusing more than `limit` bytes before reading them all.
async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadBody(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Undoes Content-Encoding; the decoded size is capped too (a small gzip can inflate hugely).
fn decode_encoding(req: &HttpRequest, body: Vec<u8>, limit: usize) -> Result<Vec<u8>, ApiError> {
    let enc = req.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    match enc.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(body),
        "gzip" | "x-gzip" => inflate_gzip(&body, limit),
        other => Err(ApiError::UnsupportedEncoding(other.to_owned())),
    }
}

/// Inflates a gzip body (several members allowed); stops and refuses it as soon as the output
/// passes `limit` bytes. Public for the fuzz target (integration/fuzz), not part of the API.
#[doc(hidden)]
pub fn inflate_gzip(body: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(body.len() * 4);
    let mut dec = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    dec.read_to_end(&mut out).map_err(|e| ApiError::BadBody(format!("body is not valid gzip: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::TooLarge(limit));
    }
    Ok(out)
}

async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let raw = read_body(&req, payload, state.max_body).await?;
    let body = decode_encoding(&req, raw, state.max_body)?;
    let records = match format_of(&req, &body)? {
        Format::JsonArray => decode_json_array(&body)?,
        Format::Ndjson => decode_ndjson(&body)?,
    };
    let store = state.store.clone();
    let accepted =
        web::block(move || store.insert(&records)).await.map_err(|e| ApiError::Internal(e.to_string()))??;
    tracing::debug!(accepted, "batch committed");
    Ok(HttpResponse::Ok().json(json!({ "accepted": accepted })))
}

async fn query(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::BadBody(format!("query string is not URL-encoded: {e}")))?;
    let filter = Filter::from_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), Utc::now())?;
    let limit = filter.limit;
    // Ask for one more row than the limit: its presence is what says the limit cut the answer.
    let probe = Filter { limit: limit + 1, ..filter };
    let store = state.store.clone();
    let mut records =
        web::block(move || store.query(&probe)).await.map_err(|e| ApiError::Internal(e.to_string()))??;
    let truncated = records.len() > limit;
    records.truncate(limit);
    Ok(HttpResponse::Ok().json(QueryResponse { records, limit, truncated }))
}

#[cfg(test)]
mod tests;
