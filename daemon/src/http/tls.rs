//! Server TLS from PEM files, with the certificate swappable at run time: a
//! SIGHUP re-reads both files and new handshakes use the new pair, while a
//! broken pair is refused and the old one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("TLS key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
}

/// The certificate and key files and the pair currently served from them.
#[derive(Debug)]
pub struct Certs {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certs {
    /// Re-reads both files; on any error the pair in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = read_pair(&self.cert, &self.key, &self.provider)?;
        if let Ok(mut g) = self.current.write() {
            *g = Arc::new(fresh);
        }
        Ok(())
    }

    /// DER of the leaf certificate in use (tests compare it across a reload).
    pub fn leaf(&self) -> Option<Vec<u8>> {
        let g = self.current.read().ok()?;
        g.cert.first().map(|c| c.as_ref().to_vec())
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|g| Arc::clone(&g))
    }
}

fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.into(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.into(),
            reason: "no certificate in file".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.into(),
        reason: e.to_string(),
    })?;
    // Checks that the key belongs to the leaf certificate.
    CertifiedKey::from_der(chain, private, provider).map_err(|e| TlsError::Key {
        path: key.into(),
        reason: e.to_string(),
    })
}

/// A rustls server config (TLS 1.2 + 1.3, ring provider, ALPN h2 then
/// http/1.1) and the handle that reloads its certificate.
pub fn load_tls(cert: &Path, key: &Path) -> Result<(Arc<ServerConfig>, Arc<Certs>), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pair = read_pair(cert, key, &provider)?;
    let certs = Arc::new(Certs {
        cert: cert.into(),
        key: key.into(),
        provider: Arc::clone(&provider),
        current: RwLock::new(Arc::new(pair)),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Cert {
            path: cert.into(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&certs) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), certs))
}
