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

use actix_web::{App, HttpServer, web};
use anyhow::Context;

pub use config::Config;

/// Opens the store, binds, prints `listening on http://ADDR` (`https://` with `-tls-cert`) on
/// stdout (scripts and tests wait for that line; with `-listen 127.0.0.1:0` it says which port
/// was picked) and serves until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Before the store: a bad certificate or key is a mistake to report at once.
    let tls = tls::paths(config.tls_cert.as_deref(), config.tls_key.as_deref())?
        .map(|(cert, key)| tls::server_config(cert, key))
        .transpose()?;
    let path = config.db_path();
    let store = web::block({
        let path = path.clone();
        let backend = config.db_type;
        move || store::open(backend, &path)
    })
    .await
    .context("opening the store")??;
    tracing::info!(backend = ?config.db_type, path = %path.display(), "store open");
    let state = web::Data::new(api::ApiState {
        store: Arc::from(store),
        token: config.token.clone().filter(|t| !t.is_empty()),
        max_body: config.max_body,
    });
    let server =
        HttpServer::new(move || App::new().configure(api::configure(state.clone()))).shutdown_timeout(30);
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
