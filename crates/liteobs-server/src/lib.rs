//! liteobs-server: keeps the exchange records agents upload and answers the client's queries.
//!
//! * [`store`]: the [`store::Store`] trait and its DuckDB and SQLite backends;
//! * [`routes`]: the route each stored exchange gets (`-route` patterns, the heuristic, the
//!   bound on distinct routes per server);
//! * [`api`]: the actix-web REST API over a store;
//! * [`metrics`]: what the API, the store and the retention task count, served on
//!   `-metrics-listen` (a listener of its own, without the token);
//! * [`config`] and [`run`]: flags, then bind and serve until SIGINT/SIGTERM (in-flight requests
//!   finish; actix's graceful shutdown; live streams end at once, see [`stop_signal`]);
//! * [`tls`]: the certificate and key for `-tls-cert`/`-tls-key` (HTTPS instead of HTTP).

pub mod api;
pub mod config;
pub mod metrics;
pub mod page;
pub mod routes;
pub mod store;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::KeepAlive;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

pub use config::{Config, ConfigError};

/// Longest a client may take to send a request's head (line and headers); then 408 and close.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an idle keep-alive connection is kept open between requests.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Opens the store, binds, prints `listening on http://ADDR` (`https://` with `-tls-cert`) on
/// stdout (scripts and tests wait for that line; with `-listen 127.0.0.1:0` it says which port
/// was picked) and serves until a shutdown signal. With `-metrics-listen`, `metrics on
/// http://ADDR/metrics` comes first.
pub async fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    // Before the store: a bad certificate or key is a mistake to report at once.
    let tls = tls::paths(config.tls_cert.as_deref(), config.tls_key.as_deref())?
        .map(|(cert, key)| tls::server_config(cert, key))
        .transpose()?;
    let path = config.db_path();
    let router = Arc::new(routes::Router::new(config.route_patterns()?, config.route_bounds()));
    let store = web::block({
        let path = path.clone();
        let backend = config.db_type;
        let options = store::StoreOptions {
            retention: config.batch_id_retention(),
            merge_window: config.merge_window(),
            rows: config.row_retention(),
            routes: router.clone(),
            sql: config.sql_limits(),
            clickhouse: config.clickhouse(),
            ..Default::default()
        };
        move || store::open(backend, &path, options)
    })
    .await
    .context("opening the store")??;
    tracing::info!(
        backend = ?config.db_type,
        path = %path.display(),
        routes_known = router.remembered(),
        "store open"
    );
    let store: Arc<dyn store::Store> = Arc::from(store);
    let metrics = Arc::new(metrics::ServerMetrics::new(store.clone()));
    if !config.row_retention().is_off() {
        let counted = metrics.clone();
        let on_pass = move |r: &store::Result<store::PassReport>| match r {
            Ok(report) => counted.retention_passed(report),
            Err(_) => counted.retention_failed(),
        };
        store::retention::spawn(Arc::downgrade(&store), store::retention::PASS_EVERY, on_pass)
            .context("starting the retention task")?;
    }
    // Before the API's line: whoever waits for "listening on" finds this one already said.
    let metrics_server = match &config.metrics_listen {
        None => None,
        Some(addr) => {
            let served = metrics.clone();
            let server = HttpServer::new(move || App::new().configure(metrics::configure(served.clone())))
                .workers(1)
                .disable_signals()
                .client_request_timeout(HEAD_TIMEOUT)
                .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
                .max_connections(64)
                .bind(addr)
                .with_context(|| format!("-metrics-listen: cannot listen on {addr}"))?;
            for a in server.addrs() {
                println!("metrics on http://{a}/metrics");
            }
            Some(server.run())
        }
    };
    let writes = store.clone();
    let stopping = stop_signal();
    let state = web::Data::new(api::ApiState {
        store,
        routes: router,
        token: config.token.clone(),
        max_body: usize::try_from(config.max_body).context("-max-body does not fit this machine")?,
        body_timeout: config.body_timeout(),
        budget: api::MemoryBudget::new(
            usize::try_from(config.upload_memory).context("-upload-memory does not fit this machine")?,
        ),
        metrics,
        follow: api::FollowSettings::new(
            usize::try_from(config.max_followers).context("-max-followers does not fit this machine")?,
            config.follow_heartbeat,
            stopping,
        ),
    });
    // actix counts connections per worker: share the cap out so the total is what was asked.
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let per_worker = usize::try_from(config.max_connections.div_ceil(workers as u64)).unwrap_or(usize::MAX);
    let server = HttpServer::new(move || App::new().configure(api::configure(state.clone())))
        .workers(workers)
        .max_connections(per_worker)
        .client_request_timeout(HEAD_TIMEOUT)
        .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
        .shutdown_timeout(30);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = match tls {
        Some(tls) => server.bind_rustls_0_23(&config.listen, tls),
        None => server.bind(&config.listen),
    }
    .with_context(|| format!("cannot listen on {}", config.listen))?;
    for addr in server.addrs() {
        println!("listening on {scheme}://{addr}");
    }
    // The metrics server has no signal handling of its own: it stops after the API's.
    let metrics_handle = metrics_server.map(|s| {
        let handle = s.handle();
        actix_web::rt::spawn(s);
        handle
    });
    let served = server.run().await.context("serving");
    if let Some(h) = metrics_handle {
        h.stop(true).await;
    }
    served?;
    let w = writes.write_stats();
    // `batches / transactions`: how many uploads shared each commit (group commit).
    tracing::info!(transactions = w.transactions, batches = w.batches, "stopped");
    Ok(())
}

/// Turns true on the first SIGINT or SIGTERM. actix stops the server on the same signals (it
/// listens too: every listener of a signal is told), and waits for the answers in flight; the
/// live streams, which would otherwise last until `shutdown_timeout`, watch this and end.
fn stop_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    actix_web::rt::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; live streams end on SIGINT only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping: ending the live streams");
        let _ = tx.send(true);
        // Keep the sender: a stream started during the shutdown still sees `true`.
        std::future::pending::<()>().await;
    });
    rx
}
