//! liteobs-server: keeps the exchange records agents upload and answers the client's queries.
//!
//! * [`store`]: the [`store::Store`] trait and its DuckDB and SQLite backends;
//! * [`api`]: the actix-web REST API over a store;
//! * [`config`] and [`run`]: flags, then bind and serve until SIGINT/SIGTERM (in-flight requests
//!   finish; actix's graceful shutdown);
//! * [`tls`]: the certificate and key for `-tls-cert`/`-tls-key` (HTTPS instead of HTTP).

pub mod api;
pub mod config;
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
/// was picked) and serves until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    // Before the store: a bad certificate or key is a mistake to report at once.
    let tls = tls::paths(config.tls_cert.as_deref(), config.tls_key.as_deref())?
        .map(|(cert, key)| tls::server_config(cert, key))
        .transpose()?;
    let path = config.db_path();
    let store = web::block({
        let path = path.clone();
        let backend = config.db_type;
        let options = store::StoreOptions {
            retention: config.batch_id_retention(),
            merge_window: config.merge_window(),
            rows: config.row_retention(),
            ..Default::default()
        };
        move || store::open(backend, &path, options)
    })
    .await
    .context("opening the store")??;
    tracing::info!(backend = ?config.db_type, path = %path.display(), "store open");
    let store: Arc<dyn store::Store> = Arc::from(store);
    if !config.row_retention().is_off() {
        store::retention::spawn(Arc::downgrade(&store), store::retention::PASS_EVERY)
            .context("starting the retention task")?;
    }
    let state = web::Data::new(api::ApiState {
        store,
        token: config.token.clone(),
        max_body: usize::try_from(config.max_body).context("-max-body does not fit this machine")?,
        body_timeout: config.body_timeout(),
        budget: api::MemoryBudget::new(
            usize::try_from(config.upload_memory).context("-upload-memory does not fit this machine")?,
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
    server.run().await.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
