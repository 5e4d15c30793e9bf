//! Uploads into ClickHouse, grouped: concurrent uploads to one server share their statements,
//! as the embedded stores share a transaction. ClickHouse makes a part of every insert and
//! wants few, large ones (too many small parts and it refuses inserts), so a group is one
//! lookup of the ids it carries, one insert of every row, one of every claim, and one read of
//! which claims came first ([`super::statements::Tables::visible`]), however many uploads it
//! holds. Whoever takes the writer writes everything queued and answers each upload.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, mpsc};

use liteobs_model::TrafficLog;

use super::super::batch_id::BatchId;
use super::super::{Receipt, Result, StoreError};
use super::http::literal;
use super::{ChError, ClickhouseStore, batch_hash, rowbinary, schema};

/// The most rows and uploads one group writes.
const MAX_GROUP_ROWS: usize = 500_000;
const MAX_GROUP_UPLOADS: usize = 256;

pub struct Pending {
    batch: Vec<TrafficLog>,
    id: Option<BatchId>,
    reply: mpsc::SyncSender<Result<Receipt>>,
}

/// The queue and the writer's turn.
#[derive(Default)]
pub struct Writer {
    pending: Mutex<VecDeque<Pending>>,
    turn: Mutex<()>,
}

fn poisoned() -> StoreError {
    StoreError::Backend("the ClickHouse writer's lock is poisoned".into())
}

impl ClickhouseStore {
    /// Queues the upload and writes groups until its answer is there.
    pub(super) fn insert_grouped(&self, mut batch: Vec<TrafficLog>, id: Option<BatchId>) -> Result<Receipt> {
        self.routes.assign(&mut batch);
        let (reply, answer) = mpsc::sync_channel(1);
        self.writer.pending.lock().map_err(|_| poisoned())?.push_back(Pending { batch, id, reply });
        loop {
            let turn = self.writer.turn.lock().map_err(|_| poisoned())?;
            match answer.try_recv() {
                Ok(receipt) => return receipt,
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(StoreError::Backend("the writer stopped before answering".into()));
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let group = self.take_group()?;
            self.batches.fetch_add(group.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let answers = self.write_group(&group);
            drop(turn);
            match answers {
                Ok(receipts) => {
                    for (p, r) in group.into_iter().zip(receipts) {
                        let _ = p.reply.send(Ok(r));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    let disk_full = matches!(StoreError::from(e), StoreError::DiskFull(_));
                    for p in group {
                        let err: Box<dyn std::error::Error + Send + Sync> = message.clone().into();
                        let _ = p.reply.send(Err(if disk_full {
                            StoreError::DiskFull(err)
                        } else {
                            StoreError::Backend(err)
                        }));
                    }
                }
            }
        }
    }

    fn take_group(&self) -> Result<Vec<Pending>> {
        let mut queue = self.writer.pending.lock().map_err(|_| poisoned())?;
        let mut rows = 0;
        let mut group = Vec::new();
        while let Some(p) = queue.front() {
            if !group.is_empty()
                && (rows + p.batch.len() > MAX_GROUP_ROWS || group.len() == MAX_GROUP_UPLOADS)
            {
                break;
            }
            // One id twice in a group: the second waits for the next group, and finds the first.
            if p.id.is_some() && group.iter().any(|g: &Pending| g.id == p.id) {
                break;
            }
            rows += p.batch.len();
            group.extend(queue.pop_front());
        }
        Ok(group)
    }

    /// The first claim of each of `ids`: its `attempt` and what it accepted.
    fn first_claims(&self, ids: &[&str]) -> std::result::Result<HashMap<String, (u64, u64)>, ChError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let hashes: Vec<String> = ids.iter().map(|i| batch_hash(i).to_string()).collect();
        let texts: Vec<String> = ids.iter().map(|i| literal(i.as_bytes())).collect();
        let sql = format!(
            "SELECT id, min(attempt), argMin(accepted, attempt) FROM {} WHERE batch IN ({}) AND id IN ({}) \
             GROUP BY id FORMAT TabSeparated",
            self.shared.tables.claims,
            hashes.join(", "),
            texts.join(", ")
        );
        let text = String::from_utf8(self.shared.read(&sql)?).map_err(|e| ChError::Answer(e.to_string()))?;
        text.lines()
            .map(|line| {
                let mut f = line.split('\t');
                let id = f.next().unwrap_or_default().to_owned();
                match (f.next().map(str::parse::<u64>), f.next().map(str::parse::<u64>)) {
                    (Some(Ok(a)), Some(Ok(n))) => Ok((id, (a, n))),
                    _ => Err(ChError::Answer(format!("a claim reads {line:?}"))),
                }
            })
            .collect()
    }

    fn insert(&self, sql: &str, body: &[u8]) -> std::result::Result<(), ChError> {
        // Synchronous on a cluster: answered once every shard has its part.
        self.shared
            .http
            .run(self.shared.first_url(), sql, Some(body), &[("insert_distributed_sync", "1")])
            .map(drop)
    }

    /// Writes `group`; a receipt per upload, in order.
    fn write_group(&self, group: &[Pending]) -> std::result::Result<Vec<Receipt>, ChError> {
        let ids: Vec<&str> = group.iter().filter_map(|p| p.id.as_ref().map(BatchId::as_str)).collect();
        let known = self.first_claims(&ids)?;
        let mut receipts: Vec<Option<Receipt>> = vec![None; group.len()];
        let mut rows = Vec::new();
        let mut claims = Vec::new();
        let mut written: Vec<(usize, String, u64)> = Vec::new();
        let committed_at = (self.clock)().timestamp_micros();
        for (k, p) in group.iter().enumerate() {
            if let Some((_, n)) = p.id.as_ref().and_then(|i| known.get(i.as_str())) {
                receipts[k] = Some(Receipt { accepted: *n as usize, duplicate: true, merged: 0 });
                continue;
            }
            let span = self.seqs.reserve(p.batch.len());
            let attempt = span.attempt();
            let id = p.id.as_ref().map_or_else(|| format!("-{attempt}"), |i| i.as_str().to_owned());
            let key = batch_hash(&id);
            for (i, r) in p.batch.iter().enumerate() {
                rowbinary::row(&mut rows, span.seq(i), r, key, attempt);
            }
            let accepted = u64::try_from(p.batch.len()).unwrap_or(u64::MAX);
            rowbinary::claim(
                &mut claims,
                &id,
                key,
                attempt,
                span.last(p.batch.len()),
                accepted,
                committed_at,
            );
            written.push((k, id, attempt));
        }
        if !rows.is_empty() {
            let sql = format!(
                "INSERT INTO {} ({}) FORMAT RowBinary",
                self.shared.tables.rows,
                schema::insert_columns()
            );
            self.insert(&sql, &rows)?;
        }
        if !claims.is_empty() {
            let sql = format!(
                "INSERT INTO {} (id, batch, attempt, last_seq, accepted, committed_at) FORMAT RowBinary",
                self.shared.tables.claims
            );
            self.insert(&sql, &claims)?;
            self.transactions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // Another server may have claimed one of these ids meanwhile: the first claim counts.
        let with_ids: Vec<&str> =
            written.iter().filter(|(k, ..)| group[*k].id.is_some()).map(|(_, id, _)| id.as_str()).collect();
        let first = self.first_claims(&with_ids)?;
        for (k, id, attempt) in &written {
            receipts[*k] = Some(match first.get(id) {
                Some((a, n)) if a != attempt => Receipt { accepted: *n as usize, duplicate: true, merged: 0 },
                _ => Receipt { accepted: group[*k].batch.len(), duplicate: false, merged: 0 },
            });
        }
        Ok(receipts
            .into_iter()
            .map(|r| r.unwrap_or(Receipt { accepted: 0, duplicate: false, merged: 0 }))
            .collect())
    }
}
