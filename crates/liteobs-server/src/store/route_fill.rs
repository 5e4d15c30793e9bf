//! Routes for rows stored before there was a `route` column (schema version 4), and the routes a
//! store holds, for the bound to start from.
//!
//! The migration to version 4 adds the column (NULL in every old row) and then [`fill`]s it in
//! the same transaction: the rows are read in `(ts, seq)` order, [`FILL_CHUNK`] at a time (so
//! memory stays bounded on any table), each gets its route from the server's [`Router`]
//! exactly as an upload would (patterns, heuristic, bound: the old rows count against the bound
//! first, in the order they happened), and the chunk's routes are written through a temporary
//! table with one `UPDATE ... FROM` per chunk. The templating is Rust's, not SQL's, so an old
//! row and a new one of the same request get the same route. A failure rolls the whole
//! migration back: the file stays at its old version.
//!
//! [`learn`] runs on every open: it gives the router the distinct routes already stored per
//! server (first seen first), so a restarted server keeps the routes it kept and does not admit
//! a fresh set past the bound.
//!
//! Not for the route rules themselves ([`liteobs_model::route`]).

use std::net::IpAddr;

use liteobs_model::columns::Cell;

use super::driver::{Driver, DynError};
use super::sql::Param;
use crate::routes::Router;

/// Rows read and updated per step of the fill.
pub const FILL_CHUNK: usize = 20_000;

/// Rows per `INSERT` into the temporary table (two parameters each, under SQLite's limit).
const ROWS_PER_INSERT: usize = 500;

/// Fills `route` in every row that has none, inside the caller's (migration) transaction.
/// Answers the number of rows filled.
pub fn fill<D: Driver>(conn: &D::Conn, router: &Router) -> Result<u64, DynError> {
    D::execute_batch(
        conn,
        "CREATE TEMP TABLE IF NOT EXISTS liteobs_route_fill (seq BIGINT PRIMARY KEY, route TEXT NOT NULL)",
    )?;
    let mut filled = 0u64;
    // The last (ts, seq) read: the next chunk starts after it.
    let mut after: Option<(i64, i64)> = None;
    loop {
        let (condition, params) = match after {
            None => (String::new(), Vec::new()),
            Some((ts, seq)) => (
                " WHERE ts >= ? AND NOT (ts = ? AND seq <= ?)".to_owned(),
                vec![Param::Int(ts), Param::Int(ts), Param::Int(seq)],
            ),
        };
        let rows = D::select_cells(
            conn,
            &format!(
                "SELECT seq, ts, dst_ip, dst_port, path FROM traffic_logs{condition} ORDER BY ts, seq LIMIT {FILL_CHUNK}"
            ),
            &params,
            &[true, true, false, true, false],
        )?;
        if rows.is_empty() {
            break;
        }
        let mut routes: Vec<(i64, String)> = Vec::with_capacity(rows.len());
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for row in &rows {
            let (seq, ts, ip, port, path) = match row.as_slice() {
                [Cell::Int(seq), Cell::Int(ts), Cell::Text(ip), Cell::Int(port), Cell::Text(path)] => {
                    (*seq, *ts, ip, *port, path)
                }
                _ => return Err("a stored row has no seq, ts, dst_ip, dst_port or path".into()),
            };
            let ip: IpAddr = ip.parse().map_err(|_| format!("dst_ip = {ip:?} is not an address"))?;
            let port = u16::try_from(port).map_err(|_| format!("dst_port = {port} is out of range"))?;
            routes.push((seq, router.route_of(ip, port, path)));
            (lo, hi) = (lo.min(ts), hi.max(ts));
            after = Some((ts, seq));
        }
        for chunk in routes.chunks(ROWS_PER_INSERT) {
            let marks = vec!["(?, ?)"; chunk.len()].join(", ");
            let params: Vec<Param> = chunk
                .iter()
                .flat_map(|(seq, route)| [Param::Int(*seq), Param::Text(route.clone())])
                .collect();
            D::execute(
                conn,
                &format!("INSERT INTO liteobs_route_fill (seq, route) VALUES {marks}"),
                &params,
            )?;
        }
        // The ts range lets SQLite walk its (ts, seq) index and DuckDB skip row groups.
        filled += D::execute(
            conn,
            &format!(
                "UPDATE traffic_logs SET route = liteobs_route_fill.route FROM liteobs_route_fill \
                 WHERE traffic_logs.ts >= {lo} AND traffic_logs.ts <= {hi} AND traffic_logs.seq = liteobs_route_fill.seq"
            ),
            &[],
        )? as u64;
        D::execute_batch(conn, "DELETE FROM liteobs_route_fill")?;
        if rows.len() < FILL_CHUNK {
            break;
        }
    }
    D::execute_batch(conn, "DROP TABLE liteobs_route_fill")?;
    Ok(filled)
}

/// Gives `router` the routes stored per server, in the order each was first stored, up to the
/// router's total bound (more could not be remembered).
pub fn learn<D: Driver>(conn: &D::Conn, router: &Router) -> Result<(), DynError> {
    let most = router.bounds().total.saturating_mul(2).max(1);
    let rows = D::select_cells(
        conn,
        &format!(
            "SELECT dst_ip, dst_port, route FROM traffic_logs WHERE route IS NOT NULL \
             GROUP BY dst_ip, dst_port, route ORDER BY min(seq) LIMIT {most}"
        ),
        &[],
        &[false, true, false],
    )?;
    for row in rows {
        if let [Cell::Text(ip), Cell::Int(port), Cell::Text(route)] = row.as_slice()
            && let (Ok(ip), Ok(port)) = (ip.parse::<IpAddr>(), u16::try_from(*port))
        {
            router.learn(ip, port, route);
        }
    }
    Ok(())
}
