//! Which servers the LiteObs agent and client trust over `https://`, and how to say so when
//! they do not.
//!
//! One job, shared by the two programs that talk to the server (both with awc): build the
//! rustls [`ClientConfig`] from the trust anchors ([`client_config`]), and recognise a refused
//! server certificate inside a connection error ([`certificate_problem`]) so that each program
//! prints one clear line instead of a retry loop or a generic "connection failed".
//!
//! Trust anchors: with `-ca-file`, only the certificates in that PEM file (the cluster's own CA,
//! as `curl --cacert` and kubectl's `certificate-authority` do: a server inside the cluster is
//! vouched for by its CA, not by every public one); without it, the operating system's store as
//! rustls-native-certs reads it (`/etc/ssl/certs` on Debian, `SSL_CERT_FILE`/`SSL_CERT_DIR`
//! honoured), so a CA the administrator installed is trusted and nothing is baked into the
//! binary. The crypto provider is rustls' `ring` one, passed explicitly (no process-wide
//! default is installed or read).
//!
//! Not for: the server side (the server's certificate and key are loaded in `liteobs-server`),
//! or HTTP itself.

use std::error::Error as StdError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use rustls::ClientConfig;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why no client configuration could be built. Each displays as one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the CA file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the CA file {path} is not PEM certificates: {reason}")]
    NotPem { path: PathBuf, reason: String },
    #[error("the CA file {path} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)")]
    Empty { path: PathBuf },
    #[error("the CA file {path}: certificate {index} cannot be a trust anchor: {source}")]
    BadCertificate { path: PathBuf, index: usize, source: rustls::Error },
    #[error("no TLS protocol version available: {0}")]
    Protocol(rustls::Error),
}

/// The configuration for `https://` connections: roots from `ca_file` when given, else from the
/// system store; HTTP/1.1 only (ALPN), which is all the LiteObs server speaks.
///
/// Reads files, so call it once at start, not per request.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TrustError> {
    let roots = match ca_file {
        Some(path) => roots_from_file(path)?,
        None => system_roots(),
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(TrustError::Protocol)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file, each added as a trust anchor; a file with none, or with one
/// that cannot be an anchor, is an error (a typo in the path must not mean "trust nothing").
pub fn roots_from_file(path: &Path) -> Result<RootCertStore, TrustError> {
    let pem = std::fs::read(path).map_err(|source| TrustError::Read { path: path.to_owned(), source })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TrustError::NotPem { path: path.to_owned(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TrustError::Empty { path: path.to_owned() });
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|source| TrustError::BadCertificate {
            path: path.to_owned(),
            index: i + 1,
            source,
        })?;
    }
    Ok(roots)
}

/// The operating system's trust store. Unreadable entries are logged and skipped; an empty
/// store is not an error here (plain `http://` never needs it) but is logged, because every
/// `https://` connection will then fail with an unknown issuer.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "skipping part of the system certificate store");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "system certificates that cannot be trust anchors");
    }
    if added == 0 {
        tracing::warn!(
            "the system certificate store is empty (install ca-certificates, or pass -ca-file): no https server will be trusted"
        );
    }
    roots
}

/// The TLS failure inside a connection error, as a sentence saying what to check, or None when
/// the error is not about TLS. Walks the `source()` chain and looks inside `io::Error`s (whose
/// `source()` skips the error they wrap, where tokio-rustls puts the `rustls::Error`).
pub fn certificate_problem(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = as_rustls(e) {
            return Some(describe(tls));
        }
        next = e.source();
    }
    None
}

fn as_rustls<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = e.downcast_ref::<io::Error>()?.get_ref()?;
    inner.downcast_ref::<rustls::Error>()
}

/// What a person should check for each failure a TLS client commonly meets.
fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError, Error, InvalidMessage};
    match e {
        Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            format!(
                "TLS: the server's certificate is not signed by a trusted CA ({e}); pass -ca-file with the CA that signed it"
            )
        }
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "TLS: the server's certificate is not for this host name ({e}); use a name it lists in -server"
        ),
        Error::InvalidCertificate(_) => format!("TLS: the server's certificate was refused ({e})"),
        Error::InvalidMessage(InvalidMessage::InvalidContentType) | Error::InvalidMessage(_) => {
            format!("TLS: the server did not answer in TLS ({e}); is it serving plain http://?")
        }
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        io::Write::write_all(&mut f, contents).unwrap();
        f
    }

    #[test]
    fn a_ca_file_gives_exactly_its_certificates() {
        let two = format!("{}{}", ca_pem(), ca_pem());
        let f = file(two.as_bytes());
        assert_eq!(roots_from_file(f.path()).unwrap().len(), 2);
        assert!(client_config(Some(f.path())).is_ok());
    }

    #[test]
    fn bad_ca_files_are_one_clear_line() {
        let msg = |r: Result<RootCertStore, TrustError>| r.unwrap_err().to_string();
        let missing = msg(roots_from_file(Path::new("/nonexistent/ca.pem")));
        assert!(missing.starts_with("cannot read the CA file /nonexistent/ca.pem: "), "{missing}");
        let empty = file(b"just text\n");
        assert!(msg(roots_from_file(empty.path())).contains("holds no certificate"));
        let garbage = file(b"-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n");
        let m = msg(roots_from_file(garbage.path()));
        assert!(m.contains("cannot be a trust anchor") || m.contains("is not PEM"), "{m}");
        for m in [missing, m] {
            assert!(!m.contains('\n'), "{m}");
        }
    }

    #[test]
    fn tls_failures_are_found_inside_io_errors() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = io::Error::new(io::ErrorKind::InvalidData, unknown);
        let found = certificate_problem(&io).unwrap();
        assert!(found.contains("not signed by a trusted CA") && found.contains("-ca-file"), "{found}");
        let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        assert!(certificate_problem(&name).unwrap().contains("host name"));
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(certificate_problem(&plain).unwrap().contains("plain http://"));
        assert_eq!(certificate_problem(&io::Error::from(io::ErrorKind::ConnectionRefused)), None);
    }
}
