//! `GET /stats`: query parameters → [`StatsQuery`] → the store's grouped figures.

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
    let answer = web::block(move || store.stats(&query, now))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(HttpResponse::Ok().json(answer))
}
