//! `GET /stats` and `GET /map`: query parameters → [`StatsQuery`] → the store's grouped
//! figures, or its edges and nodes.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use liteobs_model::stats::StatsQuery;

use super::{ApiError, ApiState};

pub async fn stats(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::BadBody(format!("query string is not URL-encoded: {e}")))?;
    let now = Utc::now();
    let query = StatsQuery::from_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), now)?;
    let store = state.store.clone();
    let mut answer = web::block(move || store.stats(&query, now))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    answer.routes_folded = Some(state.routes.folded());
    Ok(HttpResponse::Ok().json(answer))
}

/// `GET /map`: every `/query` filter (`limit`: edges); `group_by` and `sort` are refused.
pub async fn map(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::BadBody(format!("query string is not URL-encoded: {e}")))?;
    let now = Utc::now();
    let filter =
        liteobs_model::Filter::from_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), now)?;
    let query = StatsQuery { filter, group_by: Vec::new(), sort: liteobs_model::stats::SortKey::Count };
    let store = state.store.clone();
    let answer =
        web::block(move || store.map(&query, now)).await.map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(HttpResponse::Ok().json(answer))
}
