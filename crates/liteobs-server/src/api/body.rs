//! Reading an upload's body: a size cap (as sent and after gzip), a deadline for the whole body,
//! and every buffer paid for from the shared [`MemoryBudget`](super::budget::MemoryBudget).
//!
//! Nothing is allocated from what the client declares: Content-Length only lets an oversized
//! body be refused before it is read. Buffers grow as bytes arrive, each growth reserved first.
//! Decoding the bytes into records is not this module's job (`liteobs_model::batch`).

use std::io::Read;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;

use super::ApiError;
use super::budget::Reservation;

/// Smallest step a body buffer grows by, so a body sent in tiny pieces is not reallocated per
/// piece.
const MIN_GROWTH: usize = 16 * 1024;

/// A byte buffer at most `limit` long whose capacity is reserved from a budget before it is
/// allocated.
pub struct Buffer {
    data: Vec<u8>,
    limit: usize,
}

impl Buffer {
    pub fn new(limit: usize) -> Buffer {
        Buffer { data: Vec::new(), limit }
    }

    /// Appends `bytes`: [`ApiError::TooLarge`] past the limit, [`ApiError::Busy`] when the budget
    /// cannot pay for the growth.
    pub fn push(&mut self, bytes: &[u8], reservation: &mut Reservation) -> Result<(), ApiError> {
        let needed = self.data.len() + bytes.len();
        if needed > self.limit {
            return Err(ApiError::TooLarge(self.limit));
        }
        let capacity = self.data.capacity();
        if needed > capacity {
            let target = needed.max(capacity.saturating_mul(2)).max(MIN_GROWTH).min(self.limit);
            reservation.grow(target - capacity)?;
            self.data.reserve_exact(target - self.data.len());
            // The allocator may round up; pay for what was really taken.
            reservation.grow(self.data.capacity().saturating_sub(target))?;
        }
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    /// Bytes of memory this buffer holds (what was reserved for it).
    pub fn footprint(&self) -> usize {
        self.data.capacity()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }
}

/// Reads the body within `deadline` (from the end of the request head to the last byte), so a
/// client trickling bytes cannot hold a connection and its buffer forever.
pub async fn read(
    req: &HttpRequest,
    payload: &mut web::Payload,
    limit: usize,
    deadline: Duration,
    reservation: &mut Reservation,
) -> Result<Buffer, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge(limit));
    }
    match tokio::time::timeout(deadline, read_all(payload, limit, reservation)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::BodyTimeout(deadline)),
    }
}

async fn read_all(
    payload: &mut web::Payload,
    limit: usize,
    reservation: &mut Reservation,
) -> Result<Buffer, ApiError> {
    let mut body = Buffer::new(limit);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadBody(format!("reading the body: {e}")))?;
        body.push(&chunk, reservation)?;
    }
    Ok(body)
}

/// Reads and throws away what is left of a refused body (at most `max` bytes, within
/// `deadline`), so the refusal reaches the client: a server that closes with unread bytes
/// resets the connection, and the client may never see the 413 or 503 it needs to act on.
pub async fn drain(payload: &mut web::Payload, max: usize, deadline: Duration) {
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = payload.next().await {
            seen += chunk.len();
            if seen > max {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(deadline, discard).await;
}

/// Undoes Content-Encoding. The inflated size is capped by `limit` too (a small gzip can
/// inflate hugely) and its buffer paid for from the reservation; the raw body's share is given
/// back once it is inflated.
pub fn decode(
    req: &HttpRequest,
    body: Buffer,
    limit: usize,
    reservation: &mut Reservation,
) -> Result<Buffer, ApiError> {
    let enc = req.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    match enc.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(body),
        "gzip" | "x-gzip" => {
            let out = inflate(body.as_slice(), limit, reservation)?;
            reservation.release(body.footprint());
            Ok(out)
        }
        other => Err(ApiError::UnsupportedEncoding(other.to_owned())),
    }
}

/// Inflates a gzip body (several members allowed) into a buffer paid for from `reservation`;
/// refuses it as soon as the output passes `limit` bytes.
pub fn inflate(gzip: &[u8], limit: usize, reservation: &mut Reservation) -> Result<Buffer, ApiError> {
    let mut out = Buffer::new(limit);
    let mut dec = flate2::read::MultiGzDecoder::new(gzip);
    let mut piece = [0u8; 32 * 1024];
    loop {
        let n =
            dec.read(&mut piece).map_err(|e| ApiError::BadBody(format!("body is not valid gzip: {e}")))?;
        if n == 0 {
            break;
        }
        out.push(&piece[..n], reservation)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::budget::MemoryBudget;
    use super::*;

    #[test]
    fn a_buffer_reserves_its_capacity_before_growing_and_stops_at_the_limit() {
        let budget = MemoryBudget::new(1 << 20);
        let mut r = budget.reservation();
        let mut b = Buffer::new(100_000);
        b.push(&[1; 10], &mut r).unwrap();
        assert_eq!((b.footprint(), r.bytes()), (MIN_GROWTH, MIN_GROWTH), "grows by a step, not per byte");
        b.push(&vec![2; 99_990], &mut r).unwrap();
        assert_eq!(b.as_slice().len(), 100_000, "exactly the limit fits");
        assert_eq!(r.bytes(), b.footprint());
        assert!(b.footprint() <= 100_000 + 64, "never more than the limit: {}", b.footprint());
        assert!(matches!(b.push(&[3], &mut r), Err(ApiError::TooLarge(100_000))));
    }

    #[test]
    fn a_buffer_the_budget_cannot_pay_for_is_busy_and_reserves_nothing_more() {
        let budget = MemoryBudget::new(40_000);
        let mut r = budget.reservation();
        let mut b = Buffer::new(1 << 20);
        b.push(&[0; 20_000], &mut r).unwrap();
        let held = r.bytes();
        assert!(matches!(b.push(&[0; 30_000], &mut r), Err(ApiError::Busy(_))));
        assert_eq!(r.bytes(), held);
    }
}
