//! liteobs-server: keeps the exchange records agents upload and answers the client's queries.
//!
//! * [`store`]: the [`store::Store`] trait and its DuckDB and SQLite backends;
//! * [`api`]: the actix-web REST API over a store;
//! * [`config`] and [`run`]: flags, then bind and serve until SIGINT/SIGTERM (in-flight requests
//!   finish; actix's graceful shutdown).

pub mod api;
pub mod config;
pub mod store;

use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use anyhow::Context;

pub use config::Config;

/// Opens the store, binds, prints `listening on http://ADDR` on stdout (scripts and tests wait
/// for that line; with `-listen 127.0.0.1:0` it says which port was picked) and serves until a
/// shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let path = config.db_path();
    let store = web::block({
        let path = path.clone();
        let backend = config.db_type;
        let options = store::StoreOptions { retention: config.retention(), ..Default::default() };
        move || store::open(backend, &path, options)
    })
    .await
    .context("opening the store")??;
    tracing::info!(backend = ?config.db_type, path = %path.display(), "store open");
    let state = web::Data::new(api::ApiState {
        store: Arc::from(store),
        token: config.token.clone().filter(|t| !t.is_empty()),
        max_body: config.max_body,
    });
    let server = HttpServer::new(move || App::new().configure(api::configure(state.clone())))
        .shutdown_timeout(30)
        .bind(&config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    for addr in server.addrs() {
        println!("listening on http://{addr}");
    }
    server.run().await.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
