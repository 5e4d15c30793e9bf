//! https for the reporter: telling a refused TLS handshake apart from a server that is merely
//! down.
//!
//! The trust itself (roots, PEM, the rustls configuration) is `liteobs-tls`'s, shared with the
//! client; the reporter hands it to awc's connector where it builds its client
//! ([`super::client::http_client`]), and this module sorts the failures. A TLS failure is
//! not retried: a certificate the agent does not trust, or a server that does not speak TLS,
//! stays so until someone changes the configuration, and retrying it forever would only hide
//! that behind "upload failed; retrying" lines.

use actix_http::error::ParseError;
use awc::error::{ConnectError, SendRequestError};

/// What to tell the operator when `e` (for a request to `url`) is a TLS failure, or an
/// `http://` server answering in TLS; None for everything worth retrying.
pub fn refusal(url: &str, e: &SendRequestError) -> Option<String> {
    match e {
        SendRequestError::Connect(ConnectError::Io(io)) | SendRequestError::Send(io) => {
            liteobs_tls::certificate_problem(io)
        }
        // A TLS server answers a plain request with a TLS alert, which is no HTTP status line.
        SendRequestError::Response(ParseError::Version) if url.starts_with("http://") => {
            Some(format!("the answer is not HTTP ({e}); if the server serves HTTPS, use -server https://"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_failures_are_refusals() {
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, untrusted);
        let url = "https://h/upload";
        let reason = refusal(url, &SendRequestError::Connect(ConnectError::Io(io))).unwrap();
        assert!(reason.contains("-ca-file"), "{reason}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(refusal(url, &SendRequestError::Connect(ConnectError::Io(refused))), None);
        assert_eq!(refusal(url, &SendRequestError::Timeout), None);
        let not_http = SendRequestError::Response(ParseError::Version);
        assert!(refusal("http://h/upload", &not_http).unwrap().contains("use -server https://"));
        assert_eq!(refusal(url, &not_http), None);
    }
}
