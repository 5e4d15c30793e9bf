//! `POST /upload`: body (capped, on a deadline, paid for from the memory budget) → gzip undone →
//! records decoded whole (all-or-nothing) → one store insert (committed together with the
//! uploads in flight beside it) → `{"accepted": N}` after commit.

use std::time::Instant;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use liteobs_model::{BATCH_ID_HEADER, TrafficLog, decode_json_array, decode_ndjson};
use serde_json::json;

use super::budget::Reservation;
use super::{ApiError, ApiState, body};
use crate::store::{BatchId, Receipt};

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

/// Heap bytes the decoded records hold (the vector and every string), so they are paid for
/// from the budget like the body they came from.
fn footprint(records: &Vec<TrafficLog>) -> usize {
    let strings: usize = records
        .iter()
        .map(|r| {
            let optional = [&r.host, &r.src_comm, &r.dst_comm];
            r.method.capacity()
                + r.path.capacity()
                + r.node.capacity()
                + optional.iter().map(|s| s.as_ref().map_or(0, String::capacity)).sum::<usize>()
        })
        .sum();
    records.capacity() * size_of::<TrafficLog>() + strings
}

/// Everything before the store: the records of a valid body, paid for in `reservation`, and
/// the body's length as received.
async fn records_of(
    req: &HttpRequest,
    payload: &mut web::Payload,
    state: &ApiState,
    reservation: &mut Reservation,
) -> Result<(Vec<TrafficLog>, usize), ApiError> {
    let raw = body::read(req, payload, state.max_body, state.body_timeout, reservation).await?;
    let received = raw.as_slice().len();
    let body = body::decode(req, raw, state.max_body, reservation)?;
    let records = match format_of(req, body.as_slice())? {
        Format::JsonArray => decode_json_array(body.as_slice())?,
        Format::Ndjson => decode_ndjson(body.as_slice())?,
    };
    reservation.grow(footprint(&records))?;
    let body_bytes = body.footprint();
    drop(body);
    reservation.release(body_bytes);
    Ok((records, received))
}

/// The upload's batch id ([`BATCH_ID_HEADER`]): none when absent (the batch is stored without a
/// repeat check); a malformed or repeated header is refused before the body is read.
fn batch_id(req: &HttpRequest) -> Result<Option<BatchId>, ApiError> {
    let mut values = req.headers().get_all(BATCH_ID_HEADER);
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::BadBody(format!("more than one {BATCH_ID_HEADER} header")));
    }
    Ok(Some(BatchId::parse(first.as_bytes())?))
}

/// The answer to a committed upload: `{"accepted": N}` (with `"merged": M` when M of the N
/// records completed a row of the same exchange rather than becoming rows), plus `"duplicate": true` for a batch
/// whose id was already committed (nothing was inserted; N is the first commit's count). A
/// repeat holding a different number of records than the first is a 409, since an agent that
/// reuses an id for another batch would otherwise lose that batch silently.
fn upload_answer(receipt: Receipt, sent: usize, id: Option<BatchId>) -> Result<HttpResponse, ApiError> {
    let Receipt { accepted, duplicate, merged } = receipt;
    if !duplicate {
        tracing::debug!(accepted, merged, "batch committed");
        if merged > 0 {
            return Ok(HttpResponse::Ok().json(json!({ "accepted": accepted, "merged": merged })));
        }
        return Ok(HttpResponse::Ok().json(json!({ "accepted": accepted })));
    }
    let id = id.map(|i| i.to_string()).unwrap_or_default();
    if accepted != sent {
        return Err(ApiError::BatchIdReused { id, committed: accepted, sent });
    }
    tracing::info!(batch_id = %id, accepted, "repeated batch acknowledged, not stored again");
    Ok(HttpResponse::Ok().json(json!({ "accepted": accepted, "duplicate": true })))
}

pub async fn upload(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let id = batch_id(&req)?;
    let mut reservation = state.budget.reservation();
    let (records, received) = match records_of(&req, &mut payload, &state, &mut reservation).await {
        Ok(got) => got,
        Err(e @ (ApiError::Busy(_) | ApiError::TooLarge(_))) => {
            // Memory first: the refused upload's buffers are given back before waiting.
            drop(reservation);
            let left = state.body_timeout.saturating_sub(started.elapsed());
            body::drain(&mut payload, state.max_body, left).await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let store = state.store.clone();
    let sent = records.len();
    let stored_id = id.clone();
    let receipt = web::block(move || store.insert_owned(records, stored_id))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    drop(reservation);
    if !receipt.duplicate {
        state.metrics.ingested(receipt.accepted, receipt.merged, received);
    }
    let mut answer = upload_answer(receipt, sent, id)?;
    let outcome = if receipt.duplicate { "duplicate" } else { "stored" };
    answer.extensions_mut().insert(crate::metrics::UploadOutcome(outcome));
    Ok(answer)
}
