//! `GET /query?follow=1`: the rows a filter selects, as they are committed, in one chunked
//! NDJSON answer that lasts until the client goes or the server stops
//! ([`liteobs_model::follow`] has the lines and the parameters).
//!
//! A stream starts at a cursor: the one the client gives (`cursor=N`, resuming), else the
//! store's last committed `seq` ("now"), after a backlog of the newest matching rows when
//! `limit` or `since` asks for one. It then reads pages of at most [`PAGE_ROWS`] rows after
//! its cursor ([`Store::rows_after`]), each ending with a cursor line, and when it has caught up
//! waits on the store's commit announcements ([`Store::committed`]): a stream whose filter
//! matches nothing new costs nothing until a commit, and one query per commit after that.
//!
//! Bounds: at most `-max-followers` streams at once ([`Followers`]; one more gets 503 with
//! `Retry-After`); a page is read only when actix asks for the next chunk, which it does only
//! once the last one is written out (its write buffer is below 32 KiB), so a reader that stops
//! reading holds one page, never more; an idle stream sends a heartbeat line every
//! `-follow-heartbeat` (which also finds a client that is gone: the write fails, the stream is
//! dropped, its slot freed). On SIGINT/SIGTERM every stream ends with a last cursor line, so
//! the graceful shutdown does not wait on them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use chrono::Utc;
use liteobs_model::Filter;
use liteobs_model::follow::{CONTENT_TYPE, FollowLine, FollowStart};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{ApiError, ApiState};
use crate::store::{SeqPage, SeqRecord, Store};

/// Rows per page (per chunk): large enough that a busy stream is a few queries a second, small
/// enough that one chunk stays a few hundred KiB.
pub const PAGE_ROWS: usize = 500;

/// What every stream shares: its bounds and the server's stop signal.
#[derive(Clone)]
pub struct FollowSettings {
    pub followers: Arc<Followers>,
    /// Longest a stream stays silent: then it sends a heartbeat line.
    pub heartbeat: Duration,
    /// Becomes true when the server is told to stop (SIGINT/SIGTERM): every stream ends.
    pub stopping: watch::Receiver<bool>,
}

impl FollowSettings {
    /// `max` streams at once, a heartbeat every `heartbeat`, ended when `stopping` turns true.
    pub fn new(max: usize, heartbeat: Duration, stopping: watch::Receiver<bool>) -> FollowSettings {
        FollowSettings { followers: Followers::new(max), heartbeat, stopping }
    }
}

/// The count of open streams against `-max-followers`.
#[derive(Debug)]
pub struct Followers {
    max: usize,
    open: AtomicUsize,
}

impl Followers {
    pub fn new(max: usize) -> Arc<Followers> {
        Arc::new(Followers { max, open: AtomicUsize::new(0) })
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// A slot for one more stream, if there is room; given back when dropped.
    fn take(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

/// One stream's place among the followers.
struct Slot(Arc<Followers>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers `GET /query?follow=1` with `params` (the request's, `follow` included).
pub async fn follow(
    state: web::Data<ApiState>,
    params: &[(String, String)],
) -> Result<HttpResponse, ApiError> {
    let start = FollowStart::from_params(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), Utc::now())?;
    let settings = state.follow.clone();
    let slot = settings.followers.take().ok_or(ApiError::TooManyFollowers(settings.followers.max))?;
    let store = state.store.clone();
    let mut committed = store.committed();
    let last = *committed.borrow_and_update();
    let cursor = match start.cursor {
        Some(c) if c > last => {
            // Not a cursor of this store (another file, or one from before it was emptied):
            // what is there now is all new to this client, from now on.
            tracing::warn!(
                cursor = c,
                last,
                "a follower's cursor is past the store's last row; starting from now"
            );
            last
        }
        Some(c) => c,
        None => last,
    };
    let filter = Arc::new(start.filter);
    let mut first = Vec::new();
    if let Some(n) = start.backlog {
        let page = SeqPage { after: 0, upto: cursor, limit: n, newest: true };
        for row in read(&store, &filter, page).await? {
            first.extend(record_line(row));
        }
    }
    first.extend(FollowLine::Cursor { cursor, heartbeat: false }.to_line());
    tracing::debug!(cursor, open = settings.followers.open(), "a follower started");
    let stream = Stream {
        store,
        filter,
        cursor,
        committed,
        stopping: settings.stopping.clone(),
        heartbeat: settings.heartbeat,
        quiet_since: Instant::now(),
        first: Some(Bytes::from(first)),
        ended: false,
        watch_stop: true,
        _slot: slot,
    };
    let chunks = futures_util::stream::unfold(stream, |mut s| async move {
        s.next_chunk().await.map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), s))
    });
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx and others buffer a response unless told not to; a stream must pass at once.
        .insert_header(("X-Accel-Buffering", "no"))
        // A stream is the connection's last answer: nothing waits behind it.
        .force_close()
        .streaming(chunks))
}

/// A page of rows, read on the blocking pool.
async fn read(
    store: &Arc<dyn Store>,
    filter: &Arc<Filter>,
    page: SeqPage,
) -> Result<Vec<SeqRecord>, ApiError> {
    let (store, filter) = (store.clone(), filter.clone());
    web::block(move || store.rows_after(&filter, page))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}

fn record_line(row: SeqRecord) -> Vec<u8> {
    FollowLine::Record { seq: row.seq, update: row.update, record: row.record }.to_line()
}

/// One open stream.
struct Stream {
    store: Arc<dyn Store>,
    filter: Arc<Filter>,
    /// Every matching row up to here has been sent.
    cursor: u64,
    committed: watch::Receiver<u64>,
    stopping: watch::Receiver<bool>,
    heartbeat: Duration,
    /// When the last chunk was made: the heartbeat is due `heartbeat` after it.
    quiet_since: Instant,
    /// The backlog and the first cursor line, sent before anything else.
    first: Option<Bytes>,
    ended: bool,
    /// Whether `stopping` can still change.
    watch_stop: bool,
    _slot: Slot,
}

impl Stream {
    /// The next chunk to send, or `None` at the end of the stream. Reads nothing until it is
    /// asked for (that is the backpressure).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.ended {
            return None;
        }
        loop {
            if *self.stopping.borrow() {
                self.ended = true;
                return Some(self.cursor_line(false));
            }
            let upto = *self.committed.borrow_and_update();
            if upto > self.cursor {
                let page = SeqPage { after: self.cursor, upto, limit: PAGE_ROWS, newest: false };
                let rows = match read(&self.store, &self.filter, page).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        // The client reconnects with its cursor; nothing is lost.
                        tracing::warn!(error = %e, cursor = self.cursor, "a follower's page failed; ending its stream");
                        return None;
                    }
                };
                // A short page covered the whole range; a full one ends at its last row.
                self.cursor = match rows.last() {
                    Some(last) if rows.len() >= PAGE_ROWS => last.seq,
                    _ => upto,
                };
                if rows.is_empty() {
                    continue;
                }
                let mut chunk = Vec::new();
                for row in rows {
                    chunk.extend(record_line(row));
                }
                chunk.extend(FollowLine::Cursor { cursor: self.cursor, heartbeat: false }.to_line());
                self.quiet_since = Instant::now();
                return Some(Bytes::from(chunk));
            }
            tokio::select! {
                changed = self.committed.changed() => {
                    if changed.is_err() {
                        // The store is gone (the server is stopping).
                        self.ended = true;
                        return Some(self.cursor_line(false));
                    }
                }
                _ = tokio::time::sleep_until(self.quiet_since + self.heartbeat) => {
                    return Some(self.cursor_line(true));
                }
                stop = self.stopping.changed(), if self.watch_stop => {
                    // A stop signal that can no longer come (its sender gone) is not waited on.
                    self.watch_stop = stop.is_ok();
                }
            }
        }
    }

    fn cursor_line(&mut self, heartbeat: bool) -> Bytes {
        self.quiet_since = Instant::now();
        Bytes::from(FollowLine::Cursor { cursor: self.cursor, heartbeat }.to_line())
    }
}
