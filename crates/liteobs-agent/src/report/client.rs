//! The one place the reporter's HTTP client is built: timeouts, redirects, and (once the agent
//! speaks https) its TLS settings. Everything that sends uses the client made here.

use super::config::ReporterConfig;

/// The awc client for uploads: one request timeout covering connect, send and answer;
/// redirects are not followed (an upload must reach the server it was meant for, token and all).
/// Without `tls` only http:// works (awc: "SSL is not supported"); run.rs sets it for https://.
pub fn http_client(cfg: &ReporterConfig) -> awc::Client {
    let connector = awc::Connector::new();
    let connector = match &cfg.tls {
        Some(tls) => connector.rustls_0_23(tls.clone()),
        None => connector,
    };
    awc::Client::builder().connector(connector).timeout(cfg.request_timeout).disable_redirects().finish()
}
