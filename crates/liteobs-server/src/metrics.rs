//! `-metrics-listen`: the server's Prometheus metrics, served on a listener of their own.
//!
//! What is counted where: uploads by outcome and every API request's duration by route in one
//! actix middleware ([`observe`], wrapped around the whole API, the token check included, so a
//! refused upload is counted too); records and bytes ingested in the upload handler, after the
//! commit; retention passes and deletions from the retention task's report; the store's rows,
//! size and commits by a [`Collector`] that asks [`Store::size`] and [`Store::write_stats`] on
//! each scrape (both read counters, no query: see [`crate::store::StoreSize`]).
//!
//! Names, types and help come from [`liteobs_model::metrics::server`]. The listener is apart
//! from the API's so that the API token does not guard it: Prometheus scrapes without the
//! agents' credentials, and the metrics hold counts only, no record. Bind it where only the
//! scraper reaches it.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use liteobs_model::metrics::{MetricDef, server as m};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::{ApiError, ApiState};
use crate::store::{PassReport, Store};

/// The routes `liteobs_server_request_duration_seconds` knows; anything else is `other`, so
/// that a client asking for random paths cannot grow the series.
pub const ROUTES: [&str; 6] = ["/upload", "/query", "/stats", "/map", "/sql", "/healthz"];

/// The `outcome` label values of `liteobs_server_uploads_total`.
pub const OUTCOMES: [&str; 10] = [
    "stored",
    "duplicate",
    "bad_request",
    "conflict",
    "too_large",
    "timeout",
    "busy",
    "unsupported",
    "unauthorized",
    "error",
];

type Labels = [(&'static str, &'static str); 1];

/// Every metric the server exposes, and the registry that encodes them.
pub struct ServerMetrics {
    registry: Registry,
    ingest_records: Counter,
    ingest_merged: Counter,
    ingest_bytes: Counter,
    uploads: Family<Labels, Counter>,
    requests: Family<Labels, Histogram, fn() -> Histogram>,
    retention_passes: Counter,
    retention_failures: Counter,
    retention_deleted: Family<Labels, Counter>,
}

impl fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

/// Request durations: 0.5 ms to about 65 s, doubling.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// prometheus-client's `Registry::register` ends the help with a full stop of its own.
fn help(def: &MetricDef) -> &'static str {
    def.help.strip_suffix('.').unwrap_or(def.help)
}

impl ServerMetrics {
    /// The metrics of a server over `store`; every labelled series exists from the start (at 0).
    pub fn new(store: Arc<dyn Store>) -> ServerMetrics {
        let mut registry = Registry::default();
        let s = ServerMetrics {
            registry: Registry::default(),
            ingest_records: Counter::default(),
            ingest_merged: Counter::default(),
            ingest_bytes: Counter::default(),
            uploads: Family::default(),
            requests: Family::new_with_constructor(request_histogram as fn() -> Histogram),
            retention_passes: Counter::default(),
            retention_failures: Counter::default(),
            retention_deleted: Family::default(),
        };
        for outcome in OUTCOMES {
            drop(s.uploads.get_or_create(&[("outcome", outcome)]));
        }
        for route in ROUTES.iter().copied().chain(["other"]) {
            drop(s.requests.get_or_create(&[("route", route)]));
        }
        for reason in ["expired", "evicted"] {
            drop(s.retention_deleted.get_or_create(&[("reason", reason)]));
        }
        let r = &mut registry;
        r.register(m::INGEST_RECORDS.family(), help(&m::INGEST_RECORDS), s.ingest_records.clone());
        r.register(
            m::INGEST_MERGED_RECORDS.family(),
            help(&m::INGEST_MERGED_RECORDS),
            s.ingest_merged.clone(),
        );
        r.register(m::INGEST_BYTES.family(), help(&m::INGEST_BYTES), s.ingest_bytes.clone());
        r.register(m::UPLOADS.family(), help(&m::UPLOADS), s.uploads.clone());
        r.register(m::REQUEST_DURATION.family(), help(&m::REQUEST_DURATION), s.requests.clone());
        r.register_collector(Box::new(StoreCollector { store }));
        r.register(m::RETENTION_PASSES.family(), help(&m::RETENTION_PASSES), s.retention_passes.clone());
        r.register(
            m::RETENTION_FAILURES.family(),
            help(&m::RETENTION_FAILURES),
            s.retention_failures.clone(),
        );
        r.register(
            m::RETENTION_DELETED_ROWS.family(),
            help(&m::RETENTION_DELETED_ROWS),
            s.retention_deleted.clone(),
        );
        ServerMetrics { registry, ..s }
    }

    /// A committed upload of `records` records (`merged` of them completed stored rows) whose
    /// body was `bytes` bytes as received.
    pub fn ingested(&self, records: usize, merged: usize, bytes: usize) {
        self.ingest_records.inc_by(records as u64);
        self.ingest_merged.inc_by(merged as u64);
        self.ingest_bytes.inc_by(bytes as u64);
    }

    /// A retention pass completed as `r` says.
    pub fn retention_passed(&self, r: &PassReport) {
        self.retention_passes.inc();
        self.retention_deleted.get_or_create(&[("reason", "expired")]).inc_by(r.expired);
        self.retention_deleted.get_or_create(&[("reason", "evicted")]).inc_by(r.evicted);
    }

    /// A retention pass failed.
    pub fn retention_failed(&self) {
        self.retention_failures.inc();
    }

    /// The OpenMetrics text of every metric now.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding the metrics");
        }
        out
    }
}

/// The store's figures, asked on each scrape.
struct StoreCollector {
    store: Arc<dyn Store>,
}

impl fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreCollector")
    }
}

fn gauge(enc: &mut DescriptorEncoder, def: &MetricDef, value: u64) -> fmt::Result {
    let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(def.family(), def.help, None, MetricType::Gauge)?)
}

fn counter(enc: &mut DescriptorEncoder, def: &MetricDef, value: u64) -> fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(enc.encode_descriptor(def.family(), def.help, None, MetricType::Counter)?)
}

impl Collector for StoreCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let size = self.store.size();
        let writes = self.store.write_stats();
        gauge(&mut enc, &m::STORE_ROWS, size.rows)?;
        gauge(&mut enc, &m::STORE_SIZE_BYTES, size.bytes)?;
        counter(&mut enc, &m::WRITE_TRANSACTIONS, writes.transactions)?;
        counter(&mut enc, &m::WRITE_BATCHES, writes.batches)
    }
}

/// What became of an upload that was answered 200, set by the handler on its response.
#[derive(Debug, Clone, Copy)]
pub struct UploadOutcome(pub &'static str);

/// The `outcome` of an answered upload: the handler's word for a 200, the error's kind
/// otherwise (a 401 from the token check carries no error value: its status says it).
fn outcome_of<B>(res: &ServiceResponse<B>) -> &'static str {
    if let Some(o) = res.response().extensions().get::<UploadOutcome>() {
        return o.0;
    }
    match res.response().error().and_then(|e| e.as_error::<ApiError>()) {
        Some(e) => e.outcome(),
        None if res.status() == actix_web::http::StatusCode::UNAUTHORIZED => "unauthorized",
        None => "error",
    }
}

/// The middleware: times every request, labelled by its route, and counts uploads by outcome.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req.match_pattern().and_then(|p| ROUTES.iter().copied().find(|r| *r == p)).unwrap_or("other");
    let state = req.app_data::<web::Data<ApiState>>().cloned();
    let res = next.call(req).await?;
    if let Some(state) = state {
        let metrics = &state.metrics;
        metrics.requests.get_or_create(&[("route", route)]).observe(started.elapsed().as_secs_f64());
        if route == "/upload" {
            metrics.uploads.get_or_create(&[("outcome", outcome_of(&res))]).inc();
        }
    }
    Ok(res)
}

/// The metrics listener's one route.
pub async fn scrape(metrics: web::Data<Arc<ServerMetrics>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics.encode())
}

/// Mounts `GET /metrics` on the metrics listener's `App`.
pub fn configure(metrics: Arc<ServerMetrics>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(metrics)).route("/metrics", web::get().to(scrape));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[derive(Default)]
    struct Sized;

    impl Store for Sized {
        fn insert(
            &self,
            _: &[liteobs_model::TrafficLog],
            _: Option<&crate::store::BatchId>,
        ) -> crate::store::Result<crate::store::Receipt> {
            unimplemented!("not asked")
        }
        fn query(&self, _: &liteobs_model::Filter) -> crate::store::Result<Vec<liteobs_model::TrafficLog>> {
            unimplemented!("not asked")
        }
        fn stats(
            &self,
            _: &liteobs_model::stats::StatsQuery,
            _: chrono::DateTime<chrono::Utc>,
        ) -> crate::store::Result<liteobs_model::stats::StatsResponse> {
            unimplemented!("not asked")
        }
        fn map(
            &self,
            _: &liteobs_model::stats::StatsQuery,
            _: chrono::DateTime<chrono::Utc>,
        ) -> crate::store::Result<liteobs_model::map::MapResponse> {
            unimplemented!("not asked")
        }
        fn rows_after(
            &self,
            _: &liteobs_model::Filter,
            _: crate::store::SeqPage,
        ) -> crate::store::Result<Vec<crate::store::SeqRecord>> {
            unimplemented!("not asked")
        }
        fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
            tokio::sync::watch::channel(0).1
        }
        fn size(&self) -> crate::store::StoreSize {
            crate::store::StoreSize { rows: 42, bytes: 4096 }
        }
    }

    /// A scrape holds exactly the catalog's metrics with their types and help, every labelled
    /// series from the start, and what was counted.
    #[test]
    fn a_scrape_is_the_catalog() {
        let metrics = ServerMetrics::new(Arc::new(Sized));
        metrics.ingested(10, 2, 999);
        metrics.retention_passed(&PassReport { expired: 5, ..PassReport::default() });
        metrics.retention_failed();
        let text = metrics.encode();
        let types: BTreeSet<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
            .map(|(n, t)| (n.to_owned(), t.to_owned()))
            .collect();
        let want: BTreeSet<(String, String)> =
            m::ALL.iter().map(|d| (d.family().to_owned(), d.kind.as_str().to_owned())).collect();
        assert_eq!(types, want, "{text}");
        for d in m::ALL {
            let line = format!("# HELP {} {}\n", d.family(), d.help);
            assert!(text.contains(&line), "no {line:?} in\n{text}");
        }
        for line in [
            "liteobs_server_ingest_records_total 10\n",
            "liteobs_server_ingest_merged_records_total 2\n",
            "liteobs_server_ingest_bytes_total 999\n",
            "liteobs_server_store_rows 42\n",
            "liteobs_server_store_size_bytes 4096\n",
            "liteobs_server_retention_passes_total 1\n",
            "liteobs_server_retention_failures_total 1\n",
            "liteobs_server_retention_deleted_rows_total{reason=\"expired\"} 5\n",
            "liteobs_server_retention_deleted_rows_total{reason=\"evicted\"} 0\n",
            "liteobs_server_uploads_total{outcome=\"unauthorized\"} 0\n",
            "liteobs_server_request_duration_seconds_count{route=\"other\"} 0\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
