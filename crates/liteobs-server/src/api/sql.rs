//! `POST /sql`: one read-only query over the `traffic` view ([`crate::store::sandbox`]).
//!
//! The body is JSON `{"sql": "...", "limit": N}` (`Content-Type: application/json`) or the
//! statement itself as text (`text/plain`, or no type; `?limit=N` then). Without a limit, or
//! with one above `-sql-max-rows`, the answer holds at most `-sql-max-rows` rows. A refusal is
//! 400 with `{"error": "...", "kind": "refused" | "engine" | "timeout"}`; 503 with
//! `Retry-After` when every SQL slot is taken.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{ApiError, ApiState, body};
use crate::store::{SqlError, SqlQuery};

/// Largest body accepted: a statement of [`crate::store::sandbox::MAX_SQL_BYTES`] with room for
/// JSON escapes.
pub const MAX_SQL_BODY: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBody {
    sql: String,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct LimitParam {
    limit: Option<usize>,
}

pub async fn sql(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let mut reservation = state.budget.reservation();
    let raw = body::read(&req, &mut payload, MAX_SQL_BODY, state.body_timeout, &mut reservation).await?;
    let query = query_of(&req, raw.as_slice())?;
    drop(raw);
    let store = state.store.clone();
    let answer =
        web::block(move || store.sql(&query)).await.map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(HttpResponse::Ok().json(answer))
}

/// The statement and limit of a request, from its JSON or text body.
fn query_of(req: &HttpRequest, body: &[u8]) -> Result<SqlQuery, ApiError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let (sql, limit) = match mime.as_str() {
        "application/json" => {
            let b: JsonBody = serde_json::from_slice(body).map_err(|e| {
                ApiError::BadBody(format!("body is not {{\"sql\": \"...\", \"limit\": N}}: {e}"))
            })?;
            (b.sql, b.limit)
        }
        "" | "text/plain" | "application/sql" => {
            let sql = String::from_utf8(body.to_vec())
                .map_err(|_| ApiError::BadBody("the statement is not UTF-8".into()))?;
            let p: LimitParam = serde_urlencoded::from_str(req.query_string())
                .map_err(|e| ApiError::BadBody(format!("bad query string: {e} (limit is a number)")))?;
            (sql, p.limit)
        }
        _ => {
            return Err(ApiError::UnsupportedType(format!(
                "{ct} (send application/json {{\"sql\": ...}} or text/plain)"
            )));
        }
    };
    if limit == Some(0) {
        return Err(ApiError::Sql(SqlError::refused("limit must be at least 1")));
    }
    Ok(SqlQuery { sql, limit: limit.unwrap_or(usize::MAX) })
}
