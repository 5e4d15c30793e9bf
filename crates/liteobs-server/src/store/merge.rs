//! Which rows a batch adds and which stored rows it completes: one row per exchange.
//!
//! Pure: given the batches of one group commit, in order, and the stored rows that could be
//! other halves of their exchanges (same `exchange_id`, `ts` within the window; the store looks
//! them up once per group), it plans the rows to rewrite and the rows to append. A record with an `exchange_id` joins the
//! nearest row (smallest `ts` distance, then the lowest `seq`) for which
//! [`liteobs_model::merge::same_exchange`] holds — a stored one, or one appended earlier in the
//! same group — through [`liteobs_model::merge::merge`]; a record without one, or without a
//! match, is appended. The store writes a completed row again with the batch's rows (a new
//! `seq`: `seq` orders writes, and the row was written now), so a group stays a few
//! statements and one append however many halves it completes. A later batch of the group
//! completing an earlier one's row gives the same rows as two commits would (the earlier row
//! is planned as new, so it is written once, merged).

use std::collections::HashMap;

use chrono::Duration;
use liteobs_model::TrafficLog;
use liteobs_model::merge::{merge, same_exchange};

/// What a batch does to the table.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Stored rows, by their `seq`, completed with the halves the batch brings.
    pub rewrite: Vec<(i64, TrafficLog)>,
    /// New rows, in batch order (some already merged with later records of the batch).
    pub append: Vec<TrafficLog>,
    /// Per batch, its records that completed another row instead of becoming one.
    pub merged: Vec<usize>,
}

enum Target {
    Stored(usize),
    New(usize),
}

/// Plans `batches`, in order, against `stored` (rows that may share an exchange with them:
/// `(seq, record)`).
pub fn plan(batches: &[&[TrafficLog]], stored: Vec<(i64, TrafficLog)>, window: Duration) -> Plan {
    let mut stored: Vec<(i64, TrafficLog, bool)> = stored.into_iter().map(|(s, r)| (s, r, false)).collect();
    stored.sort_by_key(|(seq, _, _)| *seq);
    let mut by_id: HashMap<i64, Vec<Target>> = HashMap::new();
    for (i, (_, r, _)) in stored.iter().enumerate() {
        if let Some(id) = r.exchange_id {
            by_id.entry(id).or_default().push(Target::Stored(i));
        }
    }
    let mut append: Vec<TrafficLog> = Vec::with_capacity(batches.iter().map(|b| b.len()).sum());
    let mut merged = vec![0; batches.len()];
    for (b, rec) in batches.iter().enumerate().flat_map(|(b, batch)| batch.iter().map(move |r| (b, r))) {
        let Some(id) = rec.exchange_id else {
            append.push(rec.clone());
            continue;
        };
        let targets = by_id.entry(id).or_default();
        // Stored rows come first (lower seq), then this batch's in order: the first of the
        // nearest is the lowest seq.
        let best = targets
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                let other = match t {
                    Target::Stored(i) => &stored[*i].1,
                    Target::New(j) => &append[*j],
                };
                same_exchange(other, rec, window)
            })
            .min_by_key(|(_, t)| {
                let other = match t {
                    Target::Stored(i) => &stored[*i].1,
                    Target::New(j) => &append[*j],
                };
                (other.ts - rec.ts).abs()
            })
            .map(|(k, _)| k);
        match best.map(|k| &targets[k]) {
            Some(Target::Stored(i)) => {
                let (_, row, changed) = &mut stored[*i];
                *row = merge(row.clone(), rec.clone());
                *changed = true;
                merged[b] += 1;
            }
            Some(Target::New(j)) => {
                append[*j] = merge(append[*j].clone(), rec.clone());
                merged[b] += 1;
            }
            None => {
                targets.push(Target::New(append.len()));
                append.push(rec.clone());
            }
        }
    }
    let rewrite = stored.into_iter().filter(|(_, _, changed)| *changed).map(|(s, r, _)| (s, r)).collect();
    Plan { rewrite, append, merged }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: Option<i64>, ts_us: i64, node: &str) -> TrafficLog {
        let mut r: TrafficLog = serde_json::from_str(
            r#"{"ts":"2026-11-25T14:02:44Z","src_ip":"10.0.0.1","src_port":40000,"dst_ip":"10.0.0.2",
            "dst_port":80,"method":"GET","path":"/","status":200,"latency_us":5,"req_bytes":0,
            "resp_bytes":1,"node":"x"}"#,
        )
        .unwrap();
        r.ts = chrono::DateTime::from_timestamp_micros(ts_us).unwrap();
        r.exchange_id = id;
        r.node = node.into();
        r
    }

    fn w() -> Duration {
        Duration::seconds(60)
    }

    #[test]
    fn a_second_half_completes_the_stored_row() {
        let mut first = rec(Some(7), 1_000, "a");
        first.src_pid = Some(1);
        let mut second = rec(Some(7), 1_500, "b");
        second.dst_pid = Some(2);
        let p = plan(&[std::slice::from_ref(&second)], vec![(41, first.clone())], w());
        assert_eq!(p.merged, vec![1]);
        assert!(p.append.is_empty());
        assert_eq!(p.rewrite, vec![(41, merge(first, second))]);
        assert_eq!((p.rewrite[0].1.src_pid, p.rewrite[0].1.dst_pid), (Some(1), Some(2)));
    }

    #[test]
    fn halves_in_one_batch_make_one_row_and_records_without_ids_are_kept() {
        let batch = [rec(Some(7), 0, "a"), rec(None, 0, "a"), rec(None, 0, "a"), rec(Some(7), 9, "b")];
        let p = plan(&[&batch], vec![], w());
        assert_eq!((p.append.len(), p.merged.clone(), p.rewrite.len()), (3, vec![1], 0));
    }

    #[test]
    fn a_later_batch_of_the_group_completes_an_earlier_ones_row() {
        let (first, second) = ([rec(Some(7), 0, "a"), rec(None, 0, "a")], [rec(Some(7), 9, "b")]);
        let p = plan(&[&first, &second], vec![], w());
        assert_eq!((p.append.len(), p.merged.clone(), p.rewrite.len()), (2, vec![0, 1], 0));
        assert_eq!(p.append[0], merge(first[0].clone(), second[0].clone()));
    }

    #[test]
    fn outside_the_window_or_another_id_is_another_row() {
        let batch = [rec(Some(7), 61_000_001, "b"), rec(Some(8), 0, "b")];
        let p = plan(&[&batch], vec![(1, rec(Some(7), 0, "a"))], w());
        assert_eq!((p.append.len(), p.merged.clone(), p.rewrite.len()), (2, vec![0], 0));
    }

    #[test]
    fn the_nearest_candidate_wins_then_the_lowest_seq() {
        let stored = vec![
            (5, rec(Some(7), 0, "a")),
            (3, rec(Some(7), 30_000_000, "a")),
            (4, rec(Some(7), 30_000_000, "a")),
        ];
        let p = plan(&[&[rec(Some(7), 29_000_000, "b")]], stored, w());
        assert_eq!(p.rewrite.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![3]);
    }
}
