//! Why a request failed: one status code and one JSON body `{"error": "..."}` per cause.

use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use liteobs_model::{BATCH_ID_HEADER, BatchError, FilterError};
use serde_json::json;

use super::budget::Exhausted;
use crate::store::{BatchIdError, SqlError, SqlErrorKind, StoreError};

/// Seconds a client is told to wait (`Retry-After`) when the upload budget is spent, or the disk
/// is full: about the time a full batch takes to be read, decoded and committed. (A full disk
/// lasts longer: the agent asks again every so often, holding its batches meanwhile.)
pub const RETRY_AFTER_SECS: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRecord(#[from] BatchError),
    #[error("{0}")]
    BadParam(#[from] FilterError),
    #[error("{0}")]
    BadBody(String),
    #[error("bad {BATCH_ID_HEADER} header: {0}")]
    BadBatchId(#[from] BatchIdError),
    #[error(
        "{BATCH_ID_HEADER} {id:?} was committed with {committed} records and is sent again with {sent}; \
         give every distinct batch its own id"
    )]
    BatchIdReused { id: String, committed: usize, sent: usize },
    #[error("body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the body did not arrive within {}s (-body-timeout)", .0.as_secs_f64())]
    BodyTimeout(Duration),
    #[error("{0}")]
    Busy(#[from] Exhausted),
    #[error("{0} live streams are open, the most -max-followers allows; retry later")]
    TooManyFollowers(usize),
    #[error("unsupported Content-Encoding {0:?} (send identity or gzip)")]
    UnsupportedEncoding(String),
    #[error("unsupported Content-Type {0:?} (send application/json or application/x-ndjson)")]
    UnsupportedType(String),
    #[error("missing or wrong token (send `Authorization: Bearer <token>`)")]
    Unauthorized,
    #[error("no such route: {0}")]
    NotFound(String),
    /// `POST /sql` refused or could not run the statement (`{"error", "kind"}`).
    #[error("{0}")]
    Sql(#[from] SqlError),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// This failure's `outcome` label in `liteobs_server_uploads_total` ([`crate::metrics`]).
    pub fn outcome(&self) -> &'static str {
        match self {
            ApiError::BadRecord(_)
            | ApiError::BadParam(_)
            | ApiError::BadBody(_)
            | ApiError::BadBatchId(_) => "bad_request",
            ApiError::BatchIdReused { .. } => "conflict",
            ApiError::TooLarge(_) => "too_large",
            ApiError::BodyTimeout(_) => "timeout",
            ApiError::Busy(_)
            | ApiError::TooManyFollowers(_)
            | ApiError::Store(StoreError::DiskFull(_) | StoreError::Reopening(_)) => "busy",
            ApiError::UnsupportedEncoding(_) | ApiError::UnsupportedType(_) => "unsupported",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) | ApiError::Sql(_) | ApiError::Store(_) | ApiError::Internal(_) => "error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRecord(_)
            | ApiError::BadParam(_)
            | ApiError::BadBody(_)
            | ApiError::BadBatchId(_) => StatusCode::BAD_REQUEST,
            ApiError::BatchIdReused { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Busy(_)
            | ApiError::TooManyFollowers(_)
            | ApiError::Store(StoreError::DiskFull(_) | StoreError::Reopening(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::UnsupportedEncoding(_) | ApiError::UnsupportedType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Sql(e) => match e.kind {
                SqlErrorKind::Refused | SqlErrorKind::Engine | SqlErrorKind::Timeout => {
                    StatusCode::BAD_REQUEST
                }
                SqlErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
                SqlErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
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
            ApiError::Sql(e) => body["kind"] = json!(e.kind),
            _ => {}
        }
        let mut resp = HttpResponse::build(self.status_code());
        match self {
            ApiError::Busy(_)
            | ApiError::Sql(SqlError { kind: SqlErrorKind::Busy, .. })
            | ApiError::TooManyFollowers(_)
            | ApiError::Store(StoreError::DiskFull(_) | StoreError::Reopening(_)) => {
                tracing::warn!(error = %self, "request refused for now");
                resp.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
            }
            // The rest of a late body may still be on its way: do not read it.
            ApiError::BodyTimeout(_) => {
                tracing::warn!(error = %self, "upload refused");
                resp.insert_header((header::CONNECTION, "close"));
            }
            _ if self.status_code().is_server_error() => tracing::error!(error = %self, "request failed"),
            _ => {}
        }
        resp.json(body)
    }
}
