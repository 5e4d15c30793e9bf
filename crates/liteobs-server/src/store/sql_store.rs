//! The one [`Store`] implementation, over any [`Driver`]: opening (schema creation, migration,
//! version check), the writer with its counters, group commit (concurrent uploads share one
//! transaction), each batch's id check and pruning inside it, queries on a reader connection,
//! and opening the file again when the engine gives up on its instance (DuckDB after a failed
//! write on a full disk).
//!
//! Not for engine specifics: those are the driver's primitives (`sqlite.rs`, `duckdb.rs`).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};

use chrono::{DateTime, Utc};
use liteobs_model::map::{self, MapResponse};
use liteobs_model::stats::{SortKey, StatsQuery, StatsResponse};
use liteobs_model::{Filter, TrafficLog};

use super::batch_id::{BatchId, Retention};
use super::driver::{Driver, DynError, Failure};
use super::merge;
use super::query_plan::{QueryPlan, TsHints, Windows};
use super::retention::{self, PassReport, RowRetention};
use super::sql::{self, Param, RawRow};
use super::stats_sql;
use super::{Clock, Receipt, Result, Store, StoreError, StoreOptions, WriteStats};

pub struct SqlStore<D: Driver> {
    path: PathBuf,
    writer: Mutex<Writer<D::Conn>>,
    reader: Mutex<D::Conn>,
    retention: Retention,
    clock: Clock,
    merge_window: Option<chrono::Duration>,
    /// Uploads waiting for the writer ([`Store::insert_owned`]).
    pending: Mutex<VecDeque<Pending>>,
    stats: Counters,
    plan: QueryPlan,
    window_rows: u64,
    /// Sizes [`QueryPlan::TimeWindows`]' windows (read only for that plan).
    hints: Mutex<TsHints>,
    rows: RowRetention,
    driver: PhantomData<D>,
}

/// [`WriteStats`] as the writer advances them.
#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    batches: AtomicU64,
}

impl Counters {
    fn transaction(&self, batches: usize) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(u64::try_from(batches).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn read(&self) -> WriteStats {
        WriteStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }
}

/// The writer connection and the counters only it advances (restored from the file on open).
struct Writer<C> {
    conn: C,
    /// The next `traffic_logs.seq`.
    next_seq: i64,
    /// The next `liteobs_batches.batch_seq`.
    next_batch_seq: i64,
}

fn backend(e: DynError) -> StoreError {
    StoreError::Backend(e)
}

/// Runs `body` inside a write transaction: commits when it returns `Ok`, rolls back otherwise
/// (also when the commit itself fails, which in SQLite would leave the transaction open).
fn in_transaction<D: Driver, T>(
    conn: &D::Conn,
    body: impl FnOnce(&D::Conn) -> std::result::Result<T, StoreError>,
) -> std::result::Result<T, StoreError> {
    D::execute_batch(conn, D::BEGIN).map_err(backend)?;
    let done = body(conn).and_then(|v| D::execute_batch(conn, "COMMIT").map(|()| v).map_err(backend));
    if done.is_err() {
        // The error that matters is the one above; a failed rollback leaves nothing committed.
        let _ = D::execute_batch(conn, "ROLLBACK");
    }
    done
}

impl<D: Driver> SqlStore<D> {
    pub fn open(path: &Path, options: StoreOptions) -> Result<Self> {
        let open_err = |e: DynError| StoreError::Open { path: path.to_owned(), source: e };
        let (writer, reader) = D::open(path).map_err(open_err)?;
        init_schema::<D>(&writer, path)?;
        D::execute_batch(&writer, D::AFTER_SCHEMA).map_err(open_err)?;
        let writer = Writer::restore::<D>(writer).map_err(open_err)?;
        let plan = options.query.plan.unwrap_or(D::QUERY_PLAN);
        let hints = if plan == QueryPlan::TimeWindows {
            let int = |sql: &str| D::query_int(&writer.conn, sql, &[]).map_err(open_err);
            TsHints {
                rows: u64::try_from(int("SELECT count(*) FROM traffic_logs")?.unwrap_or(0)).unwrap_or(0),
                oldest: int("SELECT min(ts) FROM traffic_logs HAVING count(*) > 0")?,
                newest: int("SELECT max(ts) FROM traffic_logs HAVING count(*) > 0")?,
            }
        } else {
            TsHints::default()
        };
        Ok(SqlStore {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            retention: options.retention,
            clock: options.clock,
            merge_window: options.merge_window,
            pending: Mutex::new(VecDeque::new()),
            stats: Counters::default(),
            plan,
            window_rows: options.query.window_rows,
            hints: Mutex::new(hints),
            rows: options.rows,
            driver: PhantomData,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the writer connection between two batches: the hook of the background
    /// retention pass ([`retention`]), which keeps each call to one short transaction.
    pub(super) fn with_writer<T>(
        &self,
        f: impl FnOnce(&D::Conn) -> std::result::Result<T, DynError>,
    ) -> Result<T> {
        let mut w = self.writer.lock().map_err(|_| StoreError::Backend("writer lock poisoned".into()))?;
        f(&w.conn).map_err(|e| self.after_failure(&mut w, StoreError::Backend(e)))
    }

    /// Names a full disk as such, and opens the file again when the engine gave up on its
    /// instance: the call failed and nothing of it was committed, but the next one succeeds.
    fn after_failure(&self, w: &mut Writer<D::Conn>, e: StoreError) -> StoreError {
        let StoreError::Backend(source) = e else { return e };
        match D::failure(&source) {
            Failure::Other => StoreError::Backend(source),
            Failure::DiskFull => {
                // DuckDB invalidates its instance on the failed write itself; the error said
                // "disk full", the next call would say "invalidated".
                if let Err(probe) = D::query_int(&w.conn, "SELECT 1", &[])
                    && D::failure(&probe) == Failure::Invalidated
                    && let Err(again) = self.reopen(w)
                {
                    tracing::warn!(error = %again, "reopening the database failed; trying again on the next call");
                }
                StoreError::DiskFull(source)
            }
            Failure::Invalidated => match self.reopen(w) {
                Ok(()) => StoreError::Reopening(source),
                Err(again) => StoreError::Reopening(Box::new(again)),
            },
        }
    }

    /// Replaces both connections with new ones on the same file and reads the counters from
    /// it again (what was committed is there; what failed left nothing).
    fn reopen(&self, w: &mut Writer<D::Conn>) -> Result<()> {
        let mut reader =
            self.reader.lock().map_err(|_| StoreError::Backend("reader lock poisoned".into()))?;
        let open_err = |e: DynError| StoreError::Open { path: self.path.clone(), source: e };
        let (writer, new_reader) = D::open(&self.path).map_err(open_err)?;
        *w = Writer::restore::<D>(writer).map_err(open_err)?;
        *reader = new_reader;
        tracing::warn!(path = %self.path.display(), "the database was opened again after the engine gave up on it");
        Ok(())
    }
}

impl<C> Writer<C> {
    /// The writer over `conn` with its counters read from the file.
    fn restore<D: Driver<Conn = C>>(conn: C) -> std::result::Result<Self, DynError> {
        let next = |sql: &str| D::query_int(&conn, sql, &[]).map(|n| n.unwrap_or(1));
        let next_seq = next("SELECT COALESCE(MAX(seq), 0) + 1 FROM traffic_logs")?;
        let next_batch_seq = next("SELECT COALESCE(MAX(batch_seq), 0) + 1 FROM liteobs_batches")?;
        Ok(Writer { conn, next_seq, next_batch_seq })
    }
}

/// Creates the schema in a new file, migrates a file of an older known version, or refuses one
/// of an unknown version or with a `traffic_logs` table that LiteObs did not create.
fn init_schema<D: Driver>(conn: &D::Conn, path: &Path) -> Result<()> {
    let open_err = |e: DynError| StoreError::Open { path: path.to_owned(), source: e };
    let set_version =
        format!("UPDATE liteobs_meta SET value = '{}' WHERE key = 'schema_version'", sql::SCHEMA_VERSION);
    if D::table_exists(conn, "liteobs_meta").map_err(open_err)? {
        let found = D::query_text(conn, "SELECT value FROM liteobs_meta WHERE key = 'schema_version'", &[])
            .map_err(open_err)?;
        let refuse = |found: Option<String>| StoreError::SchemaVersion {
            path: path.to_owned(),
            found: found.unwrap_or_else(|| "(none)".into()),
            expected: sql::SCHEMA_VERSION,
        };
        let Some(version) = found.as_deref().and_then(|v| v.parse::<u32>().ok()) else {
            return Err(refuse(found));
        };
        if version == sql::SCHEMA_VERSION {
            return Ok(());
        }
        if version > sql::SCHEMA_VERSION || version == 0 {
            return Err(refuse(found));
        }
        tracing::info!(path = %path.display(), from = version, to = sql::SCHEMA_VERSION, "migrating the schema");
        return in_transaction::<D, ()>(conn, |c| {
            for to in version + 1..=sql::SCHEMA_VERSION {
                D::execute_batch(c, &sql::migration_to(to)).map_err(backend)?;
            }
            D::execute_batch(c, &set_version).map_err(backend)
        })
        .map_err(|e| StoreError::Open { path: path.to_owned(), source: Box::new(e) });
    }
    if D::table_exists(conn, "traffic_logs").map_err(open_err)? {
        return Err(StoreError::ForeignSchema { path: path.to_owned() });
    }
    in_transaction::<D, ()>(conn, |c| {
        D::execute_batch(
            c,
            &format!(
                "{} INSERT INTO liteobs_meta VALUES ('schema_version', '{}');",
                sql::create_schema(),
                sql::SCHEMA_VERSION
            ),
        )
        .map_err(backend)
    })
    .map_err(|e| StoreError::Open { path: path.to_owned(), source: Box::new(e) })
}

impl<D: Driver> SqlStore<D> {
    /// Inside the batch's transaction: forgets ids past the [`Retention`] bounds (older than
    /// `max_age`; all but the newest `max_count`), then looks `id` up.
    ///
    /// The row of `id` itself is never deleted here: when it is stale, the insert path updates it
    /// in place, because deleting a key and inserting it again in one transaction trips DuckDB's
    /// eager primary-key check. A stale row is not a repeat.
    fn prune_and_find(
        &self,
        conn: &D::Conn,
        id: &BatchId,
        now: i64,
        next_batch_seq: i64,
    ) -> Result<Option<usize>> {
        let oldest_kept = now.saturating_sub(self.retention.max_age.num_microseconds().unwrap_or(i64::MAX));
        let count = i64::try_from(self.retention.max_count).unwrap_or(i64::MAX);
        // Keeps the newest `max_count` up to the last committed one.
        let last_dropped = (next_batch_seq - 1).saturating_sub(count);
        let key = Param::Text(id.as_str().to_owned());
        D::execute(
            conn,
            "DELETE FROM liteobs_batches WHERE (committed_at < ? OR batch_seq <= ?) AND id <> ?",
            &[Param::Int(oldest_kept), Param::Int(last_dropped), key.clone()],
        )
        .map_err(backend)?;
        let accepted = D::query_int(
            conn,
            "SELECT accepted FROM liteobs_batches WHERE id = ? AND committed_at >= ? AND batch_seq > ?",
            &[key, Param::Int(oldest_kept), Param::Int(last_dropped)],
        )
        .map_err(backend)?;
        accepted.map(|n| sql::conv(n, "liteobs_batches.accepted")).transpose()
    }

    /// Records `id` as committed now with `accepted` records and `batch_seq`, replacing a stale
    /// row of it, and drops the oldest id beyond `max_count` to make room.
    fn remember(
        &self,
        conn: &D::Conn,
        id: &BatchId,
        accepted: usize,
        now: i64,
        batch_seq: i64,
    ) -> Result<()> {
        let key = Param::Text(id.as_str().to_owned());
        let values =
            [Param::Int(i64::try_from(accepted).unwrap_or(i64::MAX)), Param::Int(now), Param::Int(batch_seq)];
        let mut params = values.to_vec();
        params.push(key.clone());
        let updated = D::execute(
            conn,
            "UPDATE liteobs_batches SET accepted = ?, committed_at = ?, batch_seq = ? WHERE id = ?",
            &params,
        )
        .map_err(backend)?;
        if updated == 0 {
            let mut params = vec![key.clone()];
            params.extend(values);
            D::execute(
                conn,
                "INSERT INTO liteobs_batches (id, accepted, committed_at, batch_seq) VALUES (?, ?, ?, ?)",
                &params,
            )
            .map_err(backend)?;
        }
        let count = i64::try_from(self.retention.max_count).unwrap_or(i64::MAX);
        D::execute(
            conn,
            "DELETE FROM liteobs_batches WHERE batch_seq <= ? AND id <> ?",
            &[Param::Int(batch_seq.saturating_sub(count)), key],
        )
        .map_err(backend)
        .map(drop)
    }
}

/// At most this many ids per candidate query (SQLite allows 32 766 parameters).
const IDS_PER_QUERY: usize = 500;

impl<D: Driver> SqlStore<D> {
    /// Writes a batch's rows inside the batch transaction: as they are when merging is off or
    /// no record carries an `exchange_id`; otherwise after one candidate query per
    /// [`IDS_PER_QUERY`] ids, the stored rows the batch completes are deleted and appended again,
    /// merged, with the new rows from `next_seq`. Answers (rows appended, records merged).
    fn write_rows(&self, conn: &D::Conn, batch: &[TrafficLog], next_seq: i64) -> Result<(usize, usize)> {
        let window = match self.merge_window {
            Some(w) if batch.iter().any(|r| r.exchange_id.is_some()) => w,
            _ => {
                D::append(conn, next_seq, batch).map_err(backend)?;
                return Ok((batch.len(), 0));
            }
        };
        let mut ids: Vec<i64> = batch.iter().filter_map(|r| r.exchange_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let with_id = batch.iter().filter(|r| r.exchange_id.is_some());
        let lo = with_id.clone().map(TrafficLog::ts_micros).min().unwrap_or(0);
        let hi = with_id.map(TrafficLog::ts_micros).max().unwrap_or(0);
        let w = window.num_microseconds().unwrap_or(i64::MAX);
        let mut stored = Vec::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let (text, params) = sql::exchange_candidates(chunk, lo.saturating_sub(w), hi.saturating_add(w));
            for row in D::select(conn, &text, &params).map_err(backend)? {
                let seq = row.seq;
                stored.push((seq, row.into_record()?));
            }
        }
        let plan = merge::plan(batch, stored, window);
        // The completed rows are deleted (the `ts` range lets DuckDB's zone maps skip the rest
        // of the table) and written again with the new ones, in one append: a merged row takes
        // the next `seq`s, as a row written now.
        let seqs: Vec<i64> = plan.rewrite.iter().map(|(seq, _)| *seq).collect();
        for chunk in seqs.chunks(IDS_PER_QUERY) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let mut params = vec![Param::Int(lo.saturating_sub(w)), Param::Int(hi.saturating_add(w))];
            params.extend(chunk.iter().map(|&s| Param::Int(s)));
            D::execute(
                conn,
                &format!("DELETE FROM traffic_logs WHERE ts >= ? AND ts <= ? AND seq IN ({marks})"),
                &params,
            )
            .map_err(backend)?;
        }
        let mut rows = plan.append;
        rows.extend(plan.rewrite.into_iter().map(|(_, rec)| rec));
        D::append(conn, next_seq, &rows).map_err(backend)?;
        Ok((rows.len(), plan.merged))
    }
}

/// Most records one group transaction takes: past it, the uploads still waiting go in the next
/// one. Large enough that a transaction's fixed cost (the commit's fsync, DuckDB's append setup)
/// is spread over many batches; small enough that the first upload of a group is not kept
/// waiting long for the last (about 0.1 s of writing on either engine).
pub const MAX_GROUP_ROWS: usize = 64 * 1024;

/// One upload waiting for the writer: its records, its id, and where its answer goes.
struct Pending {
    batch: Vec<TrafficLog>,
    id: Option<BatchId>,
    reply: mpsc::SyncSender<Result<Receipt>>,
}

/// What one batch did inside a transaction: its receipt, the `seq`s it used, whether it used a
/// `batch_seq`.
struct Written {
    receipt: Receipt,
    appended: usize,
    remembered: bool,
}

impl<D: Driver> SqlStore<D> {
    /// One batch inside an open transaction: the id check, the rows (merged), the id
    /// remembered, with `seq`s from `next_seq` and the id's `batch_seq` `next_batch_seq`.
    fn write_batch(
        &self,
        conn: &D::Conn,
        batch: &[TrafficLog],
        id: Option<&BatchId>,
        now: i64,
        (next_seq, next_batch_seq): (i64, i64),
    ) -> Result<Written> {
        if let Some(id) = id
            && let Some(accepted) = self.prune_and_find(conn, id, now, next_batch_seq)?
        {
            let receipt = Receipt { accepted, duplicate: true, merged: 0 };
            return Ok(Written { receipt, appended: 0, remembered: false });
        }
        let (appended, merged) = self.write_rows(conn, batch, next_seq)?;
        if let Some(id) = id {
            self.remember(conn, id, batch.len(), now, next_batch_seq)?;
        }
        let receipt = Receipt { accepted: batch.len(), duplicate: false, merged };
        Ok(Written { receipt, appended, remembered: id.is_some() })
    }

    /// Writes `group` in one transaction, batch after batch as if each had its own (a later
    /// batch sees the earlier ones' rows and ids: a repeated id in one group is a duplicate, a
    /// half completes the other half written just before it), and answers every upload after
    /// the commit. When the group fails, it is rolled back and written again one batch per
    /// transaction, so that only the batch that causes a failure is refused.
    fn commit_group(&self, w: &mut Writer<D::Conn>, group: Vec<Pending>) {
        let now = (self.clock)().timestamp_micros();
        let start = (w.next_seq, w.next_batch_seq);
        let together = in_transaction::<D, _>(&w.conn, |conn| {
            let mut next = start;
            let mut receipts = Vec::with_capacity(group.len());
            for p in &group {
                let written = self.write_batch(conn, &p.batch, p.id.as_ref(), now, next)?;
                next = advanced(next, &written);
                receipts.push(written.receipt);
            }
            Ok((receipts, next))
        });
        match together {
            Ok((receipts, next)) => {
                (w.next_seq, w.next_batch_seq) = next;
                self.stats.transaction(group.len());
                for (p, receipt) in group.into_iter().zip(receipts) {
                    self.saw(&p.batch, &receipt);
                    // An upload whose handler is gone (client hung up) has no one to tell.
                    let _ = p.reply.send(Ok(receipt));
                }
            }
            Err(e) if group.len() == 1 => {
                let e = self.after_failure(w, e);
                let _ = group.into_iter().next().map(|p| p.reply.send(Err(e)));
            }
            Err(e) => {
                tracing::debug!(batches = group.len(), error = %e, "group failed, writing its batches one by one");
                for p in group {
                    let start = (w.next_seq, w.next_batch_seq);
                    let alone = in_transaction::<D, _>(&w.conn, |conn| {
                        self.write_batch(conn, &p.batch, p.id.as_ref(), now, start)
                    });
                    let answer = alone.map(|written| {
                        (w.next_seq, w.next_batch_seq) = advanced(start, &written);
                        self.stats.transaction(1);
                        written.receipt
                    });
                    if let Ok(receipt) = &answer {
                        self.saw(&p.batch, receipt);
                    }
                    let answer = answer.map_err(|e| self.after_failure(w, e));
                    let _ = p.reply.send(answer);
                }
            }
        }
    }

    /// Tells the query plan's hints what a committed batch added (rows and their `ts` range).
    fn saw(&self, batch: &[TrafficLog], receipt: &Receipt) {
        if receipt.duplicate {
            return;
        }
        let ts = batch.iter().map(TrafficLog::ts_micros);
        if let (Some(lo), Some(hi), Ok(mut hints)) = (ts.clone().min(), ts.max(), self.hints.lock()) {
            hints.saw(receipt.accepted.saturating_sub(receipt.merged) as u64, lo, hi);
        }
    }

    /// The uploads waiting, oldest first, up to [`MAX_GROUP_ROWS`] records (at least one upload).
    fn take_group(&self) -> Result<Vec<Pending>> {
        let mut queue = self.pending.lock().map_err(|_| poisoned("pending"))?;
        let mut rows = 0;
        let mut group = Vec::new();
        while let Some(p) = queue.front() {
            if !group.is_empty() && rows + p.batch.len() > MAX_GROUP_ROWS {
                break;
            }
            rows += p.batch.len();
            group.extend(queue.pop_front());
        }
        Ok(group)
    }
}

/// The counters after `written`: `seq`s past its rows, the next `batch_seq` if it used one.
fn advanced((next_seq, next_batch_seq): (i64, i64), written: &Written) -> (i64, i64) {
    let appended = i64::try_from(written.appended).unwrap_or(i64::MAX);
    (next_seq.saturating_add(appended), next_batch_seq + i64::from(written.remembered))
}

fn poisoned(what: &str) -> StoreError {
    StoreError::Backend(format!("{what} lock poisoned").into())
}

impl<D: Driver> Store for SqlStore<D> {
    fn insert(&self, batch: &[TrafficLog], id: Option<&BatchId>) -> Result<Receipt> {
        self.insert_owned(batch.to_vec(), id.cloned())
    }

    /// Group commit: the upload joins the queue; whoever holds the writer next (this thread or
    /// another one) writes everything queued in one transaction and answers each. A thread
    /// that gets the writer and finds its answer already there returns it; otherwise its
    /// upload is still queued, and it writes the next group itself.
    fn insert_owned(&self, batch: Vec<TrafficLog>, id: Option<BatchId>) -> Result<Receipt> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.pending.lock().map_err(|_| poisoned("pending"))?.push_back(Pending { batch, id, reply });
        loop {
            let mut writer = self.writer.lock().map_err(|_| poisoned("writer"))?;
            match answer.try_recv() {
                Ok(receipt) => return receipt,
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(StoreError::Backend("the writer stopped before answering".into()));
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let group = self.take_group()?;
            self.commit_group(&mut writer, group);
        }
    }

    fn write_stats(&self) -> WriteStats {
        self.stats.read()
    }

    fn query(&self, filter: &Filter) -> Result<Vec<TrafficLog>> {
        let rows = match self.query_rows(filter) {
            Err(StoreError::Backend(e)) if D::failure(&e) == Failure::Invalidated => {
                // Writer before reader, as everywhere; then the query once more on the new one.
                let mut w = self.writer.lock().map_err(|_| poisoned("writer"))?;
                self.reopen(&mut w).map_err(|again| StoreError::Reopening(Box::new(again)))?;
                drop(w);
                self.query_rows(filter)?
            }
            other => other?,
        };
        rows.into_iter().map(RawRow::into_record).collect()
    }

    fn stats(&self, query: &StatsQuery, now: DateTime<Utc>) -> Result<StatsResponse> {
        let (since, until) = query.window(now);
        let filter = query.bounded_filter(now);
        let keys = stats_sql::stats_keys(&query.group_by);
        let mut groups = self.grouped(&keys, query.sort, &filter, since, until)?;
        let truncated = groups.len() > filter.limit;
        groups.truncate(filter.limit);
        Ok(StatsResponse { groups, since, until, truncated })
    }

    fn map(&self, query: &StatsQuery, now: DateTime<Utc>) -> Result<MapResponse> {
        let (since, until) = query.window(now);
        let filter = query.bounded_filter(now);
        let mut groups = self.grouped(&stats_sql::map_keys(), SortKey::Count, &filter, since, until)?;
        let truncated = groups.len() > filter.limit;
        groups.truncate(filter.limit);
        Ok(map::answer(groups.into_iter().map(map::edge_of).collect(), since, until, truncated))
    }

    fn enforce_retention(&self) -> Result<PassReport> {
        if self.rows.is_off() {
            return Ok(PassReport::default());
        }
        retention::pass(self, self.rows, (self.clock)())
    }
}

impl<D: Driver> SqlStore<D> {
    /// The groups of one grouped statement ([`stats_sql::statement`]) on the reader.
    fn grouped(
        &self,
        keys: &[stats_sql::Key],
        sort: SortKey,
        filter: &Filter,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<liteobs_model::stats::Group>> {
        let (text, params) = stats_sql::statement::<D>(keys, sort, filter);
        let ints = stats_sql::int_columns(keys);
        let conn = self.reader.lock().map_err(|_| StoreError::Backend("reader lock poisoned".into()))?;
        let rows = D::select_cells(&conn, &text, &params, &ints).map_err(backend)?;
        drop(conn);
        stats_sql::groups(keys, rows, since, until)
    }
}

impl<D: Driver> SqlStore<D> {
    /// The rows `filter` selects, by the store's query plan, on the reader.
    fn query_rows(&self, filter: &Filter) -> Result<Vec<RawRow>> {
        let conn = self.reader.lock().map_err(|_| StoreError::Backend("reader lock poisoned".into()))?;
        match self.plan {
            QueryPlan::SideIndexes => {
                let (text, params) =
                    sql::select_by_side::<D>(filter).unwrap_or_else(|| sql::select::<D>(filter));
                D::select(&conn, &text, &params).map_err(backend)
            }
            QueryPlan::TimeWindows => self.query_windows(&conn, filter),
        }
    }

    /// [`QueryPlan::TimeWindows`]: the windows newest first, each asked for the matches still
    /// missing, in one read transaction.
    fn query_windows(&self, conn: &D::Conn, filter: &Filter) -> Result<Vec<RawRow>> {
        let hints = *self.hints.lock().map_err(|_| StoreError::Backend("hints lock poisoned".into()))?;
        let (since, until) = sql::time_bounds(filter);
        let mut windows = Windows::new(since, until, hints, self.window_rows);
        let mut rows = Vec::new();
        D::execute_batch(conn, D::BEGIN_READ).map_err(backend)?;
        let mut ask = || -> Result<()> {
            while let Some(window) = windows.next(rows.len(), filter.limit) {
                let (text, params) = sql::select_window::<D>(filter, window, filter.limit - rows.len());
                rows.extend(D::select(conn, &text, &params).map_err(backend)?);
            }
            Ok(())
        };
        let asked = ask();
        // A read transaction commits nothing; ending it is what matters.
        let ended =
            D::execute_batch(conn, if asked.is_ok() { "COMMIT" } else { "ROLLBACK" }).map_err(backend);
        asked.and(ended)?;
        Ok(rows)
    }
}

impl<D: Driver> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("driver", &std::any::type_name::<D>())
            .field("path", &self.path)
            .finish()
    }
}
