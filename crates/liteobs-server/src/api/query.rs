//! `GET /query`: query parameters → [`Filter`] → the store → newest-first records; with
//! `follow=1`, a live stream instead ([`super::follow`]).

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use liteobs_model::{Filter, QueryResponse};

use super::{ApiError, ApiState};

pub async fn query(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::BadBody(format!("query string is not URL-encoded: {e}")))?;
    if pairs.iter().any(|(k, _)| k == "follow") {
        return super::follow::follow(state, &pairs).await;
    }
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
