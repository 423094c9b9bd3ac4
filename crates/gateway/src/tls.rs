//! TLS on the listener (rustls with the ring provider): a PEM certificate chain and private
//! key, HTTP/2 and HTTP/1.1 offered over ALPN. [`TlsConfig::reload`] (on SIGHUP) reads the
//! files again and swaps the configuration for new connections only: open connections keep
//! theirs, so a certificate rotation drops nothing, and a bad new pair keeps the old one serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// A certificate and key file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {path:?}: {problem}")]
pub struct TlsError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

/// The listener's TLS settings, reloadable.
pub struct TlsConfig {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl TlsConfig {
    /// Reads and checks the certificate chain and key (PEM).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let acceptor = build(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(acceptor),
        })
    }

    /// Reads the files again; on success new connections use them, on failure nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = build(&self.cert, &self.key)?;
        *self.current.write().expect("tls lock") = acceptor;
        Ok(())
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.current.read().expect("tls lock").clone()
    }
}

fn build(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let fail = |path: &Path, problem: String| TlsError {
        path: path.to_path_buf(),
        problem,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|err| fail(cert, format!("cannot read the certificate: {err}")))?
        .collect::<Result<_, _>>()
        .map_err(|err| fail(cert, format!("not a PEM certificate chain: {err}")))?;
    if certs.is_empty() {
        return Err(fail(
            cert,
            "holds no certificate (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|err| {
        fail(
            key,
            format!("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {err}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| fail(cert, err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|err| fail(key, format!("does not go with the certificate: {err}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
