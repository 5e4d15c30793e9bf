//! The server's TLS identity: its certificate chain and private key (PEM files from
//! `-tls-cert` and `-tls-key`) turned into a rustls [`ServerConfig`].
//!
//! Everything that can be wrong with the files is found here, at start, and said in one line
//! naming the file: missing or unreadable, not PEM, no certificate or no key in it, or a key
//! that does not belong to the certificate (checked by rustls against the leaf's public key,
//! so a mismatch never surfaces later as handshakes failing for every client). The crypto
//! provider is rustls' `ring` one, passed explicitly.
//!
//! Not for: client certificates (the server authenticates clients by bearer token), or
//! reloading the files while running (a rotated Secret takes a restart).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the server cannot serve TLS with the files it was given.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: io::Error },
    #[error("-tls-cert {path} is not PEM certificates: {reason}")]
    CertNotPem { path: PathBuf, reason: String },
    #[error("-tls-cert {path} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)")]
    NoCertificate { path: PathBuf },
    #[error(
        "-tls-key {path} holds no usable private key ({reason}; expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)"
    )]
    NoKey { path: PathBuf, reason: String },
    #[error("-tls-key {key} does not fit -tls-cert {cert}: {source}")]
    Mismatch { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("-tls-cert and -tls-key go together: {0} is missing")]
    Half(&'static str),
}

/// The rustls configuration for `-tls-cert` (leaf first, then intermediates) and `-tls-key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain = load_chain(cert)?;
    let key_der = load_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
        .map_err(|source| TlsError::Mismatch { cert: cert.to_owned(), key: key.to_owned(), source })
}

/// Both flags or neither: one alone is a mistake, not a request for plain HTTP.
pub fn paths<'a>(
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
) -> Result<Option<(&'a Path, &'a Path)>, TlsError> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsError::Half("-tls-key")),
        (None, Some(_)) => Err(TlsError::Half("-tls-cert")),
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read("-tls-cert", path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::CertNotPem { path: path.to_owned(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("-tls-key", path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| TlsError::NoKey { path: path.to_owned(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, contents).unwrap();
            p
        }
    }

    fn identity() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_certificate_and_key_load() {
        let f = Files { dir: tempfile::tempdir().unwrap() };
        let (cert, key) = identity();
        let config = server_config(&f.write("c.pem", &cert), &f.write("k.pem", &key)).unwrap();
        assert!(config.alpn_protocols.is_empty());
    }

    #[test]
    fn every_bad_file_is_one_line_naming_it() {
        let f = Files { dir: tempfile::tempdir().unwrap() };
        let (cert, key) = identity();
        let (_, other_key) = identity();
        let c = f.write("c.pem", &cert);
        let k = f.write("k.pem", &key);
        let garbage = f.write("garbage.pem", "hello\n");
        let cases = [
            (
                server_config(Path::new("/nonexistent/c.pem"), &k),
                "cannot read -tls-cert /nonexistent/c.pem: ",
            ),
            (server_config(&c, Path::new("/nonexistent/k.pem")), "cannot read -tls-key /nonexistent/k.pem: "),
            (server_config(&garbage, &k), "holds no certificate"),
            (server_config(&c, &garbage), "holds no usable private key"),
            (server_config(&c, &c), "holds no usable private key"),
            (server_config(&c, &f.write("other.pem", &other_key)), "does not fit -tls-cert"),
        ];
        for (result, want) in cases {
            let msg = result.unwrap_err().to_string();
            assert!(msg.contains(want), "{msg:?} lacks {want:?}");
            assert!(!msg.contains('\n'), "{msg:?}");
        }
    }

    #[test]
    fn cert_and_key_go_together() {
        let p = Path::new("x");
        assert!(paths(None, None).unwrap().is_none());
        assert!(paths(Some(p), Some(p)).unwrap().is_some());
        assert_eq!(
            paths(Some(p), None).unwrap_err().to_string(),
            "-tls-cert and -tls-key go together: -tls-key is missing"
        );
        assert!(paths(None, Some(p)).is_err());
    }
}
