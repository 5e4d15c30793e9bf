//! The route of every stored exchange, decided once, by the server, at ingest.
//!
//! [`Router`] holds the user's patterns (`-route`, `-routes-file`) and one
//! [`CardinalityLimit`] for the whole server, keyed by the server side's `ip:port`, so the
//! bound on distinct routes per server is global: it sees every node's records, whichever agent
//! uploads them. The store calls [`Router::assign`] on each batch before writing it (and on
//! the rows of an older file when it migrates it), and [`Router::learn`] with the routes it
//! already holds when it opens, so the bound survives a restart.
//!
//! A record's `route` as uploaded is replaced, always: a route chosen by an uploader would not
//! be bounded. Not for templating itself ([`liteobs_model::route`]) or for storing anything.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use liteobs_model::TrafficLog;
use liteobs_model::route::{Bounds, CardinalityLimit, Patterns, route};

/// The server's routing: patterns, then the heuristic, then the bound.
#[derive(Debug)]
pub struct Router {
    patterns: Patterns,
    limit: Mutex<CardinalityLimit<SocketAddr>>,
}

impl Default for Router {
    fn default() -> Self {
        Router::new(Patterns::default(), Bounds::DEFAULT)
    }
}

impl Router {
    pub fn new(patterns: Patterns, bounds: Bounds) -> Router {
        Router { patterns, limit: Mutex::new(CardinalityLimit::new(bounds)) }
    }

    pub fn bounds(&self) -> Bounds {
        self.lock().bounds()
    }

    /// Sets every record's `route`, in order (the first routes of a server are the ones kept
    /// when it passes its bound). The templates are made before the lock is taken, so
    /// concurrent uploads share it only for the bound's lookups.
    pub fn assign(&self, batch: &mut [TrafficLog]) {
        let templates: Vec<String> = batch.iter().map(|r| route(&r.path, &self.patterns)).collect();
        let mut limit = self.lock();
        let before = limit.folded();
        for (r, template) in batch.iter_mut().zip(templates) {
            r.route = Some(limit.admit(&server(r.dst_ip, r.dst_port), template));
        }
        let after = limit.folded();
        drop(limit);
        log_folds(before, after, self.bounds());
    }

    /// The route of one request to `(dst_ip, dst_port)`, counted against the bound like
    /// [`Router::assign`] (the migration's fill of older rows).
    pub fn route_of(&self, dst_ip: IpAddr, dst_port: u16, path: &str) -> String {
        let template = route(path, &self.patterns);
        let mut limit = self.lock();
        let before = limit.folded();
        let admitted = limit.admit(&server(dst_ip, dst_port), template);
        let after = limit.folded();
        drop(limit);
        log_folds(before, after, self.bounds());
        admitted
    }

    /// Remembers a route a store already holds for a server (within the bounds; not counted).
    pub fn learn(&self, dst_ip: IpAddr, dst_port: u16, route: &str) {
        self.lock().learn(&server(dst_ip, dst_port), route);
    }

    /// Exchanges given a folded route since start, because their server (or all servers
    /// together) had passed a bound: the counter `/stats` answers as `routes_folded`, for logs
    /// and metrics. Counted when the route is assigned, before the commit: a batch that fails or
    /// is retried counts again.
    pub fn folded(&self) -> u64 {
        self.lock().folded()
    }

    /// Distinct routes remembered over all servers (at most [`Bounds::total`]).
    pub fn remembered(&self) -> usize {
        self.lock().remembered()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CardinalityLimit<SocketAddr>> {
        // The limit holds no invariant a panic in another thread could break half-way that
        // matters more than serving: a poisoned lock is taken over.
        self.limit.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn server(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// One line when the count of folds reaches 1, 10, 100, ...: enough to notice, never a flood.
fn log_folds(before: u64, after: u64, bounds: Bounds) {
    let mut mark = 1u64;
    while let Some(next) = mark.checked_mul(10).filter(|n| *n <= after) {
        mark = next;
    }
    if after >= mark && before < mark {
        tracing::warn!(
            routes_folded = after,
            max_routes = bounds.routes,
            max_route_segment_values = bounds.segment_values,
            "new routes past a server's bound are folded into a wildcard (/prefix/*); give -route \
             patterns for its endpoints or raise -max-routes / -max-route-segment-values"
        );
    }
}

/// Reads `-routes-file`: one pattern a line; blank lines and lines starting with `#` skipped.
pub fn patterns_in(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dst: &str, path: &str) -> TrafficLog {
        let mut r: TrafficLog = serde_json::from_value(serde_json::json!({
            "ts": "2026-12-01T12:00:00Z", "src_ip": "10.0.0.1", "src_port": 40000, "dst_ip": dst,
            "dst_port": 80, "method": "GET", "path": path, "status": 200, "latency_us": 1,
            "req_bytes": 0, "resp_bytes": 0, "node": "n", "route": "/chosen/by/the/uploader"
        }))
        .unwrap();
        r.path = path.to_owned();
        r
    }

    #[test]
    fn patterns_win_then_the_heuristic_then_the_bound_per_server() {
        let patterns = Patterns::parse(["/users/{name}/repos"]).unwrap();
        let router = Router::new(patterns, Bounds { routes: 2, segment_values: 100, total: 100 });
        let mut batch = vec![
            record("10.0.0.2", "/users/ann/repos?page=2"),
            record("10.0.0.2", "/item/7"),
            record("10.0.0.2", "/item/8"),
            record("10.0.0.2", "/cart/x"),
            record("10.0.0.3", "/cart/x"),
        ];
        router.assign(&mut batch);
        let routes: Vec<&str> = batch.iter().map(|r| r.route.as_deref().unwrap()).collect();
        assert_eq!(routes, ["/users/{name}/repos", "/item/{id}", "/item/{id}", "/*", "/cart/x"]);
        assert_eq!(router.folded(), 1);
        assert_eq!(router.remembered(), 3);
    }

    #[test]
    fn learnt_routes_take_their_place_in_the_bound() {
        let router = Router::new(Patterns::default(), Bounds { routes: 1, segment_values: 100, total: 100 });
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        router.learn(ip, 80, "/a");
        assert_eq!(router.route_of(ip, 80, "/a?x"), "/a");
        assert_eq!(router.route_of(ip, 80, "/b"), "/*");
        assert_eq!(router.route_of(ip, 81, "/b"), "/b", "another port is another server");
    }

    /// Not a benchmark (run on an idle machine for a figure): the cost per record of
    /// [`Router::assign`], templating and bound included, on paths like the shop's.
    #[test]
    #[ignore = "timing: the per-record cost of routes at ingest (BENCHMARKS.md, Routes)"]
    fn cost_per_record() {
        let paths = [
            "/api/v1/items/12345?expand=tags",
            "/users/ann/repos",
            "/o/8d3c9f4e-1b2a-4c5d-9e8f-0a1b2c3d4e5f/lines",
            "/static/app.js",
            "/reports/2026-12-01/pdf",
            "/",
        ];
        let router = Router::new(Patterns::parse(["/users/{name}/repos"]).unwrap(), Bounds::DEFAULT);
        let mut batch: Vec<TrafficLog> =
            (0..1000).map(|i| record("10.0.0.2", paths[i % paths.len()])).collect();
        let rounds = 200;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            router.assign(&mut batch);
        }
        let ns = started.elapsed().as_nanos() / (rounds * batch.len()) as u128;
        println!("routes: {ns} ns per record");
    }

    #[test]
    fn a_routes_file_skips_comments_and_blank_lines() {
        let text = "# the shop\n/users/{name}/repos\n\n  /static/{path*}  \n#/off\n";
        assert_eq!(patterns_in(text).collect::<Vec<_>>(), ["/users/{name}/repos", "/static/{path*}"]);
    }
}
