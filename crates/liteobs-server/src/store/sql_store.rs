//! The one [`Store`] implementation, over any [`Driver`]: opening (schema creation, migration,
//! version check), the writer with its counters, group commit (concurrent uploads share one
//! transaction), each batch's id check and pruning inside it, queries on a reader connection,
//! and opening the file again when the engine gives up on its instance (DuckDB after a failed
//! write on a full disk).
//!
//! Not for engine specifics: those are the driver's primitives (`sqlite.rs`, `duckdb.rs`).

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Instant;

use tokio::sync::watch;

use chrono::{DateTime, Utc};
use liteobs_model::columns::Cell;
use liteobs_model::map::MapResponse;
use liteobs_model::stats::{SortKey, StatsQuery, StatsResponse};
use liteobs_model::{Filter, TrafficLog};

use super::batch_id::{BatchId, Retention};
use super::driver::{Driver, DynError, Failure};
use super::merge;
use super::query_plan::{QueryPlan, TsHints, Windows};
use super::retention::{self, PassReport, RowRetention};
use super::sandbox::{self, Answer, SqlAnswer, SqlError, SqlLimits, SqlQuery};
use super::sql::{self, Param, RawRow};
use super::{
    Clock, REWRITES_KEPT, Receipt, Result, SeqPage, SeqRecord, Store, StoreError, StoreOptions, StoreSize,
    WriteStats,
};
use super::{route_fill, stats_sql};
use crate::routes::Router;

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
    /// Sets each record's route before it is queued ([`Router::assign`]).
    routes: std::sync::Arc<Router>,
    /// The bounds of `POST /sql`, and how many of its queries run now ([`sandbox::Slot`]).
    sql: SqlLimits,
    sql_in_use: AtomicUsize,
    /// Rows in `traffic_logs`: counted once at open (and after a reopen), then kept by every
    /// commit ([`Self::saw`]) and retention delete, so that [`Store::size`] is free to ask.
    row_count: AtomicU64,
    /// The last committed `seq`, announced after each commit that wrote rows
    /// ([`Store::committed`]).
    committed: watch::Sender<u64>,
    /// The `seq` ranges (inclusive) of rows that merges wrote again, oldest first, at most
    /// [`REWRITES_KEPT`]: what marks a follower's row as an update.
    rewrites: Mutex<VecDeque<(i64, i64)>>,
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
        init_schema::<D>(&writer, path, &options.routes)?;
        D::execute_batch(&writer, D::AFTER_SCHEMA).map_err(open_err)?;
        D::execute_batch(&writer, &sql::create_view::<D>()).map_err(open_err)?;
        D::execute(&writer, sql::ADD_SEQ_HIGH, &[]).map_err(open_err)?;
        route_fill::learn::<D>(&writer, &options.routes).map_err(open_err)?;
        let writer = Writer::restore::<D>(writer).map_err(open_err)?;
        let (committed, _) = watch::channel(u64::try_from(writer.next_seq - 1).unwrap_or(0));
        let plan = options.query.plan.unwrap_or(D::QUERY_PLAN);
        let rows = count_rows::<D>(&writer.conn).map_err(open_err)?;
        let hints = if plan == QueryPlan::TimeWindows {
            let int = |sql: &str| D::query_int(&writer.conn, sql, &[]).map_err(open_err);
            TsHints {
                rows,
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
            routes: options.routes,
            sql: options.sql,
            sql_in_use: AtomicUsize::new(0),
            row_count: AtomicU64::new(rows),
            committed,
            rewrites: Mutex::new(VecDeque::new()),
            driver: PhantomData,
        })
    }

    /// Retention deleted `n` rows.
    pub(super) fn deleted(&self, n: u64) {
        let _ =
            self.row_count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| Some(r.saturating_sub(n)));
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

    /// [`Self::with_writer`], with the `seq` of the last row written (retention remembers it
    /// before it deletes: [`sql::SET_SEQ_HIGH`]).
    pub(super) fn with_writer_at<T>(
        &self,
        f: impl FnOnce(&D::Conn, i64) -> std::result::Result<T, DynError>,
    ) -> Result<T> {
        let mut w = self.writer.lock().map_err(|_| StoreError::Backend("writer lock poisoned".into()))?;
        let last = w.next_seq - 1;
        f(&w.conn, last).map_err(|e| self.after_failure(&mut w, StoreError::Backend(e)))
    }

    /// Runs `f` on the reader connection (retention finds its chunk edges there, so that the
    /// writer is held only for the deletes).
    pub(super) fn with_reader<T>(
        &self,
        f: impl FnOnce(&D::Conn) -> std::result::Result<T, DynError>,
    ) -> Result<T> {
        let r = self.reader.lock().map_err(|_| poisoned("reader"))?;
        f(&r).map_err(backend)
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
        self.row_count.store(count_rows::<D>(&w.conn).map_err(open_err)?, Ordering::Relaxed);
        tracing::warn!(path = %self.path.display(), "the database was opened again after the engine gave up on it");
        Ok(())
    }
}

/// `count(*)` of `traffic_logs`: DuckDB answers it from row-group metadata; SQLite walks its
/// smallest index (about a second per 10 M rows), which is why it is asked only at open.
fn count_rows<D: Driver>(conn: &D::Conn) -> std::result::Result<u64, DynError> {
    D::query_int(conn, "SELECT count(*) FROM traffic_logs", &[])
        .map(|n| n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

impl<C> Writer<C> {
    /// The writer over `conn` with its counters read from the file.
    fn restore<D: Driver<Conn = C>>(conn: C) -> std::result::Result<Self, DynError> {
        let next = |sql: &str| D::query_int(&conn, sql, &[]).map(|n| n.unwrap_or(1));
        let high = D::query_text(&conn, "SELECT value FROM liteobs_meta WHERE key = 'seq_high'", &[])?;
        let high = high.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let next_seq =
            next("SELECT COALESCE(MAX(seq), 0) + 1 FROM traffic_logs")?.max(high.saturating_add(1));
        let next_batch_seq = next("SELECT COALESCE(MAX(batch_seq), 0) + 1 FROM liteobs_batches")?;
        Ok(Writer { conn, next_seq, next_batch_seq })
    }
}

/// Creates the schema in a new file, migrates a file of an older known version, or refuses one
/// of an unknown version or with a `traffic_logs` table that LiteObs did not create.
fn init_schema<D: Driver>(conn: &D::Conn, path: &Path, routes: &Router) -> Result<()> {
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
            // The view names the columns; it is made again once the table has them all.
            D::execute_batch(c, &format!("DROP VIEW IF EXISTS {}", sandbox::VIEW)).map_err(backend)?;
            for to in version + 1..=sql::SCHEMA_VERSION {
                D::execute_batch(c, &sql::migration_to(to)).map_err(backend)?;
                if to == sql::ROUTE_VERSION {
                    let filled = route_fill::fill::<D>(c, routes).map_err(backend)?;
                    tracing::info!(rows = filled, "routes filled in for the rows stored before version 4");
                }
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

/// At most this many ids per statement (SQLite allows 32 766 parameters), and so at most this
/// many uploads in one group: the group's ids are looked up, kept from pruning and remembered
/// in one statement each.
const IDS_PER_QUERY: usize = 500;

/// A committed batch id's row in `liteobs_batches`.
#[derive(Clone, Copy)]
struct KnownId {
    accepted: usize,
    committed_at: i64,
    batch_seq: i64,
}

fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn text_params<'a>(ids: impl IntoIterator<Item = &'a BatchId>) -> impl Iterator<Item = Param> {
    ids.into_iter().map(|id| Param::Text(id.as_str().to_owned()))
}

impl<D: Driver> SqlStore<D> {
    /// The stored rows of `ids` (at most [`IDS_PER_QUERY`]), stale ones included: whether a
    /// row still counts depends on where in the group its batch comes ([`Self::write_group`]).
    fn stored_ids(&self, conn: &D::Conn, ids: &[&BatchId]) -> Result<HashMap<String, KnownId>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let text = format!(
            "SELECT id, accepted, committed_at, batch_seq FROM liteobs_batches WHERE id IN ({})",
            marks(ids.len())
        );
        let params: Vec<Param> = text_params(ids.iter().copied()).collect();
        let rows = D::select_cells(conn, &text, &params, &[false, true, true, true]).map_err(backend)?;
        rows.into_iter()
            .map(|row| match row.as_slice() {
                [Cell::Text(id), Cell::Int(accepted), Cell::Int(committed_at), Cell::Int(batch_seq)] => {
                    let accepted = sql::conv(*accepted, "liteobs_batches.accepted")?;
                    Ok((id.clone(), KnownId { accepted, committed_at: *committed_at, batch_seq: *batch_seq }))
                }
                _ => Err(StoreError::CorruptRow("a liteobs_batches row with a NULL or mistyped cell".into())),
            })
            .collect()
    }

    /// Forgets ids past the [`Retention`] bounds (committed before `oldest_kept`; `batch_seq`
    /// at most `last_dropped`), except `keep`, the group's own: a stale row of one of them is
    /// updated in place ([`Self::remember_ids`]), because deleting a key and inserting it again
    /// in one transaction trips DuckDB's eager primary-key check.
    fn prune_ids(
        &self,
        conn: &D::Conn,
        oldest_kept: i64,
        last_dropped: i64,
        keep: &[&BatchId],
    ) -> Result<()> {
        let mut text = "DELETE FROM liteobs_batches WHERE (committed_at < ? OR batch_seq <= ?)".to_owned();
        let mut params = vec![Param::Int(oldest_kept), Param::Int(last_dropped)];
        if !keep.is_empty() {
            text.push_str(&format!(" AND id NOT IN ({})", marks(keep.len())));
            params.extend(text_params(keep.iter().copied()));
        }
        D::execute(conn, &text, &params).map_err(backend).map(drop)
    }

    /// Records the group's new ids (`remembered`, in `batch_seq` order, each id once): rows
    /// that were `stored` (stale) updated in place, the others inserted in one statement; then
    /// drops the ids beyond `max_count` counted back from the last, as that batch alone would.
    fn remember_ids(
        &self,
        conn: &D::Conn,
        remembered: &[(&BatchId, KnownId)],
        stored: &HashMap<String, KnownId>,
    ) -> Result<()> {
        let Some((last_id, last)) = remembered.last() else { return Ok(()) };
        let values = |k: &KnownId| {
            [
                Param::Int(i64::try_from(k.accepted).unwrap_or(i64::MAX)),
                Param::Int(k.committed_at),
                Param::Int(k.batch_seq),
            ]
        };
        let mut inserted = Vec::new();
        for (id, k) in remembered {
            if stored.contains_key(id.as_str()) {
                let mut params = values(k).to_vec();
                params.extend(text_params([*id]));
                D::execute(
                    conn,
                    "UPDATE liteobs_batches SET accepted = ?, committed_at = ?, batch_seq = ? WHERE id = ?",
                    &params,
                )
                .map_err(backend)?;
            } else {
                inserted.extend(text_params([*id]));
                inserted.extend(values(k));
            }
        }
        if !inserted.is_empty() {
            let rows = vec!["(?, ?, ?, ?)"; inserted.len() / 4].join(", ");
            D::execute(
                conn,
                &format!("INSERT INTO liteobs_batches (id, accepted, committed_at, batch_seq) VALUES {rows}"),
                &inserted,
            )
            .map_err(backend)?;
        }
        let count = i64::try_from(self.retention.max_count).unwrap_or(i64::MAX);
        D::execute(
            conn,
            "DELETE FROM liteobs_batches WHERE batch_seq <= ? AND id <> ?",
            &[Param::Int(last.batch_seq.saturating_sub(count)), Param::Text(last_id.as_str().to_owned())],
        )
        .map_err(backend)
        .map(drop)
    }
}

impl<D: Driver> SqlStore<D> {
    /// Writes the rows of `batches` (a group's batches that are not repeats, in order) inside
    /// the group's transaction: in one append when merging is off or no record carries an
    /// `exchange_id`; otherwise after one candidate query per [`IDS_PER_QUERY`] ids for the
    /// whole group, the stored rows the group completes are deleted and appended again, merged,
    /// with the new rows from `next_seq`. Answers the rows appended, per batch its records
    /// merged, and how many of the appended rows (the last ones) are stored rows written again.
    fn write_rows(
        &self,
        conn: &D::Conn,
        batches: &[&[TrafficLog]],
        next_seq: i64,
    ) -> Result<(usize, Vec<usize>, usize)> {
        let records = || batches.iter().flat_map(|b| b.iter());
        let window = match self.merge_window {
            Some(w) if records().any(|r| r.exchange_id.is_some()) => w,
            _ => {
                D::append(conn, next_seq, batches).map_err(backend)?;
                return Ok((records().count(), vec![0; batches.len()], 0));
            }
        };
        let mut ids: Vec<i64> = records().filter_map(|r| r.exchange_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let with_id = records().filter(|r| r.exchange_id.is_some());
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
        let plan = merge::plan(batches, stored, window);
        // The completed rows are deleted (the `ts` range lets DuckDB's zone maps skip the rest
        // of the table) and written again with the new ones, in one append: a merged row takes
        // the next `seq`s, as a row written now.
        let seqs: Vec<i64> = plan.rewrite.iter().map(|(seq, _)| *seq).collect();
        for chunk in seqs.chunks(IDS_PER_QUERY) {
            let mut params = vec![Param::Int(lo.saturating_sub(w)), Param::Int(hi.saturating_add(w))];
            params.extend(chunk.iter().map(|&s| Param::Int(s)));
            D::execute(
                conn,
                &format!(
                    "DELETE FROM traffic_logs WHERE ts >= ? AND ts <= ? AND seq IN ({})",
                    marks(chunk.len())
                ),
                &params,
            )
            .map_err(backend)?;
        }
        let rewritten = plan.rewrite.len();
        let mut rows = plan.append;
        rows.extend(plan.rewrite.into_iter().map(|(_, rec)| rec));
        D::append(conn, next_seq, &[&rows]).map_err(backend)?;
        Ok((rows.len(), plan.merged, rewritten))
    }
}

/// Most records one group transaction takes: past it, the uploads still waiting go in the next
/// one. Large enough that a transaction's fixed cost (the commit's fsync, DuckDB's append setup)
/// is spread over many batches; small enough that the first upload of a group is not kept
/// waiting long for the last (about 0.1 s of writing on either engine).
pub const MAX_GROUP_ROWS: usize = 64 * 1024;

/// What a group's transaction wrote: the counters after it (`seq`, `batch_seq`), and how many
/// of its last rows are stored rows written again by merges.
struct Written {
    next: (i64, i64),
    rewritten: i64,
}

/// One upload waiting for the writer: its records, its id, and where its answer goes.
struct Pending {
    batch: Vec<TrafficLog>,
    id: Option<BatchId>,
    reply: mpsc::SyncSender<Result<Receipt>>,
}

impl<D: Driver> SqlStore<D> {
    /// Writes `group` inside an open transaction, as if each batch had its own transaction, in
    /// order (a later batch sees the earlier ones' rows and ids: a repeated id in one group is
    /// a duplicate, a half completes the other half written just before it), but in a fixed
    /// number of statements for the whole group: one id lookup, one prune, the rows in one
    /// append (after one candidate lookup when merging), the new ids in one insert. `seq`s
    /// start at `next_seq`, new ids' `batch_seq`s at `next_batch_seq`. Answers a receipt per
    /// upload and what the group wrote ([`Written`]).
    fn write_group(
        &self,
        conn: &D::Conn,
        group: &[Pending],
        now: i64,
        (next_seq, next_batch_seq): (i64, i64),
    ) -> Result<(Vec<Receipt>, Written)> {
        let oldest_kept = now.saturating_sub(self.retention.max_age.num_microseconds().unwrap_or(i64::MAX));
        let count = i64::try_from(self.retention.max_count).unwrap_or(i64::MAX);
        let ids: Vec<&BatchId> = group.iter().filter_map(|p| p.id.as_ref()).collect();
        let stored = self.stored_ids(conn, &ids)?;
        self.prune_ids(conn, oldest_kept, (next_batch_seq - 1).saturating_sub(count), &ids)?;
        // The ids as each batch in turn would find them: a row counts while it is within both
        // bounds as of that batch (the newest `max_count` up to the last committed one).
        let mut known = stored.clone();
        let mut remembered: Vec<(&BatchId, KnownId)> = Vec::new();
        let mut batch_seq = next_batch_seq;
        let mut repeats: Vec<Option<Receipt>> = Vec::with_capacity(group.len());
        let mut written: Vec<&[TrafficLog]> = Vec::with_capacity(group.len());
        for p in group {
            if let Some(id) = &p.id {
                let last_dropped = (batch_seq - 1).saturating_sub(count);
                let fresh = known
                    .get(id.as_str())
                    .filter(|k| k.committed_at >= oldest_kept && k.batch_seq > last_dropped);
                if let Some(k) = fresh {
                    repeats.push(Some(Receipt { accepted: k.accepted, duplicate: true, merged: 0 }));
                    continue;
                }
                let k = KnownId { accepted: p.batch.len(), committed_at: now, batch_seq };
                known.insert(id.as_str().to_owned(), k);
                remembered.retain(|(other, _)| *other != id);
                remembered.push((id, k));
                batch_seq += 1;
            }
            repeats.push(None);
            written.push(&p.batch);
        }
        let (appended, merged, rewritten) = self.write_rows(conn, &written, next_seq)?;
        self.remember_ids(conn, &remembered, &stored)?;
        let mut merged = merged.into_iter();
        let receipts = repeats
            .into_iter()
            .zip(group)
            .map(|(repeat, p)| {
                repeat.unwrap_or_else(|| Receipt {
                    accepted: p.batch.len(),
                    duplicate: false,
                    merged: merged.next().unwrap_or(0),
                })
            })
            .collect();
        let appended = i64::try_from(appended).unwrap_or(i64::MAX);
        let rewritten = i64::try_from(rewritten).unwrap_or(i64::MAX);
        let next = (next_seq.saturating_add(appended), batch_seq);
        Ok((receipts, Written { next, rewritten }))
    }

    /// Tells followers what a commit wrote: the rows merges wrote again are remembered as
    /// updates, then the new last `seq` is announced (only when it moved: a group of repeats
    /// wakes nobody).
    fn announce(&self, written: &Written) {
        let last = written.next.0 - 1;
        if written.rewritten > 0
            && let Ok(mut rewrites) = self.rewrites.lock()
        {
            rewrites.push_back((last - written.rewritten + 1, last));
            while rewrites.len() > REWRITES_KEPT {
                rewrites.pop_front();
            }
        }
        let last = u64::try_from(last).unwrap_or(0);
        self.committed.send_if_modified(|seen| {
            let moved = last > *seen;
            *seen = (*seen).max(last);
            moved
        });
    }

    /// Whether the row at `seq` is a stored row a merge wrote again (within what is kept).
    fn rewritten(rewrites: &VecDeque<(i64, i64)>, seq: i64) -> bool {
        let i = rewrites.partition_point(|(_, hi)| *hi < seq);
        rewrites.get(i).is_some_and(|(lo, _)| *lo <= seq)
    }

    /// Writes `group` in one transaction ([`Self::write_group`]) and answers every upload after
    /// the commit. When the group fails, it is rolled back and written again one batch per
    /// transaction, so that only the batch that causes a failure is refused.
    fn commit_group(&self, w: &mut Writer<D::Conn>, group: Vec<Pending>) {
        let now = (self.clock)().timestamp_micros();
        let start = (w.next_seq, w.next_batch_seq);
        match in_transaction::<D, _>(&w.conn, |conn| self.write_group(conn, &group, now, start)) {
            Ok((receipts, written)) => {
                (w.next_seq, w.next_batch_seq) = written.next;
                self.announce(&written);
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
                for i in 0..group.len() {
                    let start = (w.next_seq, w.next_batch_seq);
                    let one = &group[i..=i];
                    let alone =
                        in_transaction::<D, _>(&w.conn, |conn| self.write_group(conn, one, now, start));
                    let answer = alone.and_then(|(receipts, written)| {
                        (w.next_seq, w.next_batch_seq) = written.next;
                        self.announce(&written);
                        self.stats.transaction(1);
                        receipts
                            .into_iter()
                            .next()
                            .ok_or_else(|| StoreError::Backend("a batch written alone got no receipt".into()))
                    });
                    if let Ok(receipt) = &answer {
                        self.saw(&group[i].batch, receipt);
                    }
                    let answer = answer.map_err(|e| self.after_failure(w, e));
                    let _ = group[i].reply.send(answer);
                }
            }
        }
    }

    /// Tells the row count and the query plan's hints what a committed batch added (rows and
    /// their `ts` range): a record that completed a stored row (`merged`) adds none.
    fn saw(&self, batch: &[TrafficLog], receipt: &Receipt) {
        if receipt.duplicate {
            return;
        }
        let added = receipt.accepted.saturating_sub(receipt.merged) as u64;
        self.row_count.fetch_add(added, Ordering::Relaxed);
        let ts = batch.iter().map(TrafficLog::ts_micros);
        if let (Some(lo), Some(hi), Ok(mut hints)) = (ts.clone().min(), ts.max(), self.hints.lock()) {
            hints.saw(added, lo, hi);
        }
    }

    /// The uploads waiting, oldest first, up to [`MAX_GROUP_ROWS`] records and
    /// [`IDS_PER_QUERY`] uploads (at least one upload).
    fn take_group(&self) -> Result<Vec<Pending>> {
        let mut queue = self.pending.lock().map_err(|_| poisoned("pending"))?;
        let mut rows = 0;
        let mut group = Vec::new();
        while let Some(p) = queue.front() {
            if !group.is_empty() && (rows + p.batch.len() > MAX_GROUP_ROWS || group.len() == IDS_PER_QUERY) {
                break;
            }
            rows += p.batch.len();
            group.extend(queue.pop_front());
        }
        Ok(group)
    }
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
    fn insert_owned(&self, mut batch: Vec<TrafficLog>, id: Option<BatchId>) -> Result<Receipt> {
        self.routes.assign(&mut batch);
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

    fn size(&self) -> StoreSize {
        let file = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        StoreSize {
            rows: self.row_count.load(Ordering::Relaxed),
            bytes: file + super::driver::sidecar_len(&self.path, D::WAL_SUFFIX),
        }
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

    fn rows_after(&self, filter: &Filter, page: SeqPage) -> Result<Vec<SeqRecord>> {
        if page.limit == 0 || page.upto <= page.after {
            return Ok(Vec::new());
        }
        let (text, params) = sql::select_seq::<D>(filter, page);
        let conn = self.reader.lock().map_err(|_| poisoned("reader"))?;
        let rows = D::select(&conn, &text, &params).map_err(backend)?;
        drop(conn);
        let rewrites = self.rewrites.lock().map_err(|_| poisoned("rewrites"))?;
        let mut out = rows
            .into_iter()
            .map(|row| {
                let seq = row.seq;
                Ok(SeqRecord {
                    seq: u64::try_from(seq).map_err(|_| StoreError::CorruptRow(format!("seq = {seq}")))?,
                    update: Self::rewritten(&rewrites, seq),
                    record: row.into_record()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if page.newest {
            out.reverse();
        }
        Ok(out)
    }

    fn committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    fn stats(&self, query: &StatsQuery, now: DateTime<Utc>) -> Result<StatsResponse> {
        stats_sql::stats_answer(query, now, &|k, s, f, a, b| self.grouped(k, s, f, a, b))
    }

    fn map(&self, query: &StatsQuery, now: DateTime<Utc>) -> Result<MapResponse> {
        stats_sql::map_answer::<D>(query, now, &|k, s, f, a, b| self.grouped(k, s, f, a, b))
    }

    fn sql(&self, query: &SqlQuery) -> std::result::Result<SqlAnswer, SqlError> {
        let statement = sandbox::precheck(&query.sql)?;
        self.run_sql(statement, query.limit, true)
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
    /// [`Store::sql`] after the precheck: a slot, a sandbox, the statement. `checked` is false
    /// only in tests (no precheck was made, and the engine gets the statement as it is).
    pub(super) fn run_sql(
        &self,
        statement: &str,
        limit: usize,
        checked: bool,
    ) -> std::result::Result<SqlAnswer, SqlError> {
        let _slot = sandbox::Slot::take(&self.sql_in_use, self.sql.slots)?;
        let started = Instant::now();
        let sandboxed = {
            let reader = self.reader.lock().map_err(|_| SqlError::internal("reader lock poisoned"))?;
            D::sandbox(&self.path, &reader, self.sql.timeout)
                .map_err(|e| SqlError::internal(format!("cannot open the SQL sandbox: {e}")))?
        };
        let mut answer = Answer::new(limit.clamp(1, self.sql.max_rows.max(1)), started);
        D::run_sql(sandboxed, statement, self.sql.timeout, &mut answer, checked)?;
        Ok(answer.finish())
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

#[cfg(test)]
impl<D: Driver> SqlStore<D> {
    /// Holds one of the SQL slots, as a running query does.
    pub(super) fn take_sql_slot(&self) -> std::result::Result<sandbox::Slot<'_>, SqlError> {
        sandbox::Slot::take(&self.sql_in_use, self.sql.slots)
    }

    /// `uploads` queued in this order, then written in groups: what concurrent uploads that
    /// arrive in this order get, without a race deciding the order.
    fn insert_queued(&self, uploads: Vec<(Vec<TrafficLog>, Option<BatchId>)>) -> Vec<Result<Receipt>> {
        let answers: Vec<_> = uploads
            .into_iter()
            .map(|(batch, id)| {
                let (reply, answer) = mpsc::sync_channel(1);
                self.pending.lock().expect("pending").push_back(Pending { batch, id, reply });
                answer
            })
            .collect();
        let mut w = self.writer.lock().expect("writer");
        while !self.pending.lock().expect("pending").is_empty() {
            let group = self.take_group().expect("group");
            self.commit_group(&mut w, group);
        }
        answers.into_iter().map(|a| a.recv().expect("answer")).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use liteobs_model::TrafficLog;

    use super::*;
    use crate::store::conformance::{corpus, halves, id};

    /// The rows and ids of a store, in an order that does not depend on `seq`.
    fn contents<D: Driver>(s: &SqlStore<D>) -> (Vec<String>, Vec<Vec<Cell>>) {
        let filter = Filter { limit: liteobs_model::filter::MAX_LIMIT, ..Filter::default() };
        let mut rows: Vec<String> = s
            .query(&filter)
            .expect("query")
            .iter()
            .map(|r| serde_json::to_string(r).expect("json"))
            .collect();
        rows.sort();
        let w = s.writer.lock().expect("writer");
        let ids = D::select_cells(
            &w.conn,
            "SELECT id, accepted, batch_seq FROM liteobs_batches ORDER BY id",
            &[],
            &[false, true, true],
        )
        .expect("ids");
        (rows, ids)
    }

    /// One group holding repeats, ids forgotten by the count bound within the group, a stale
    /// stored id, halves completing each other across batches and within one: the same
    /// receipts, rows and remembered ids as one transaction per batch.
    fn a_group_writes_what_one_transaction_per_batch_writes<D: Driver>(dir: &Path) {
        let now = Utc::now();
        let options = || StoreOptions {
            retention: Retention { max_age: chrono::Duration::days(7), max_count: 3 },
            clock: Arc::new(move || now),
            merge_window: Some(crate::store::DEFAULT_MERGE_WINDOW),
            ..StoreOptions::default()
        };
        let c = corpus(40);
        let [h1a, _, h1b] = halves(1);
        let [h2a, _, h2b] = halves(2);
        let up = |rows: Vec<TrafficLog>, name: Option<&str>| (rows, name.map(id));
        let before = vec![up(c[30..35].to_vec(), Some("g")), up(c[35..40].to_vec(), Some("h"))];
        let group = vec![
            up(c[0..10].to_vec(), Some("a")),
            up(vec![h1a], Some("b")),
            up(c[0..10].to_vec(), Some("a")),
            up([vec![h1b], c[10..15].to_vec()].concat(), Some("c")),
            up(c[15..20].to_vec(), Some("d")),
            up(c[30..35].to_vec(), Some("g")),
            up(c[20..25].to_vec(), Some("e")),
            up(c[0..10].to_vec(), Some("a")),
            up(c[25..30].to_vec(), None),
            up(vec![h2a, h2b], Some("f")),
            up(c[15..20].to_vec(), Some("d")),
            up(vec![halves(2)[0].clone(), halves(2)[2].clone()], Some("f")),
        ];
        let grouped = SqlStore::<D>::open(&dir.join("grouped"), options()).expect("open");
        let alone = SqlStore::<D>::open(&dir.join("alone"), options()).expect("open");
        for (batch, id) in before {
            grouped.insert(&batch, id.as_ref()).expect("before");
            alone.insert(&batch, id.as_ref()).expect("before");
        }
        let transactions = grouped.write_stats().transactions;
        let together: Vec<Receipt> =
            grouped.insert_queued(group.clone()).into_iter().map(|r| r.expect("grouped")).collect();
        assert_eq!(grouped.write_stats().transactions, transactions + 1, "one group, one transaction");
        let one_by_one: Vec<Receipt> =
            group.iter().map(|(batch, id)| alone.insert(batch, id.as_ref()).expect("alone")).collect();
        assert_eq!(together, one_by_one);
        let duplicates: Vec<bool> = together.iter().map(|r| r.duplicate).collect();
        assert_eq!(
            duplicates,
            [false, false, true, false, false, false, false, false, false, false, false, true],
            "a's second and f's second are repeats; g (stale before the group), a's third and d's \
             second (pushed out by the count bound within it) are not"
        );
        assert_eq!((together[3].merged, together[9].merged), (1, 1));
        assert_eq!(contents(&grouped), contents(&alone));
    }

    #[test]
    fn sqlite_group_writes_what_one_transaction_per_batch_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        a_group_writes_what_one_transaction_per_batch_writes::<crate::store::sqlite::Sqlite>(dir.path());
    }

    #[cfg(feature = "duckdb")]
    #[test]
    fn duckdb_group_writes_what_one_transaction_per_batch_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        a_group_writes_what_one_transaction_per_batch_writes::<crate::store::duckdb::Duckdb>(dir.path());
    }
}
