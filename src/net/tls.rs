//! TLS for TURN over TCP (rustls, TLS 1.2 and 1.3 only, ring provider).
//!
//! The certificate sits behind a resolver that rustls asks on every
//! ClientHello, so a reload swaps one `Arc` and only new handshakes see it;
//! established sessions keep the keys they negotiated. A new pair is fully
//! parsed and checked (the key must match the certificate) before it
//! replaces the old one, so a bad file never takes TLS down.
//!
//! ALPN: a client offering `stun.turn` gets it confirmed; one offering
//! only other protocols is still served without ALPN (as coturn does)
//! rather than refused, which is why the ClientHello is read first
//! ([`LazyConfigAcceptor`]) to choose between two configs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

/// The ALPN protocol id of TURN over (D)TLS (RFC 7443).
pub const ALPN_STUN_TURN: &[u8] = b"stun.turn";

/// A certificate or key that cannot be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS set-up: {0}")]
    Setup(String),
}

/// The certificate now served.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// TLS state shared by every worker.
pub struct Tls {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: Arc<Current>,
    with_alpn: Arc<ServerConfig>,
    without_alpn: Arc<ServerConfig>,
    /// DTLS from the same files, when served; reloaded together.
    dtls: Option<Arc<super::dtls::Dtls>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(super) fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A key that does not belong to the certificate, naming both files.
pub(super) fn mismatch_err(cert: &Path, key: &Path, e: impl std::fmt::Display) -> TlsError {
    file_err(
        key,
        format!(
            "does not belong to the certificate in {}: {e}",
            cert.display()
        ),
    )
}

/// Reads and checks a certificate chain and its key.
fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no CERTIFICATE in the file"));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| file_err(key, e))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| mismatch_err(cert, key, e))?;
    Ok(pair)
}

impl Tls {
    /// Loads the pair; a start-up error names the file at fault.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let current = Arc::new(Current(RwLock::new(Arc::new(load_pair(cert, key)?))));
        let config = |alpn: bool| -> Result<Arc<ServerConfig>, TlsError> {
            let mut c = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| TlsError::Setup(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(current.clone());
            if alpn {
                c.alpn_protocols = vec![ALPN_STUN_TURN.to_vec()];
            }
            Ok(Arc::new(c))
        };
        Ok(Tls {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            with_alpn: config(true)?,
            without_alpn: config(false)?,
            current,
            dtls: None,
        })
    }

    /// Also serves DTLS from the same pair, with at most `max_half_open`
    /// handshakes in progress.
    pub fn with_dtls(mut self, max_half_open: usize) -> Result<Tls, TlsError> {
        let d = super::dtls::Dtls::load(&self.cert_path, &self.key_path, max_half_open)?;
        self.dtls = Some(Arc::new(d));
        Ok(self)
    }

    /// The DTLS state, when DTLS is served.
    pub fn dtls(&self) -> Option<Arc<super::dtls::Dtls>> {
        self.dtls.clone()
    }

    /// Reads the files again. On any error the old pair stays and the
    /// error says why.
    /// TLS and DTLS change together or not at all.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.cert_path, &self.key_path)?;
        let dtls = match &self.dtls {
            Some(d) => Some((d, d.prepare_reload()?)),
            None => None,
        };
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
        if let Some((d, ctx)) = dtls {
            d.install(ctx);
        }
        Ok(())
    }

    /// The DER of the leaf certificate now served.
    pub fn leaf(&self) -> Vec<u8> {
        let cur = self.current.0.read().unwrap_or_else(|e| e.into_inner());
        cur.cert.first().map(|c| c.to_vec()).unwrap_or_default()
    }

    /// Runs a server handshake on `io`.
    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let offers_turn = start
            .client_hello()
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ALPN_STUN_TURN));
        let config = if offers_turn {
            self.with_alpn.clone()
        } else {
            self.without_alpn.clone()
        };
        start.into_stream(config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        std::fs::create_dir_all(dir).unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
        (cert, key, c.cert.der().to_vec())
    }

    #[test]
    fn missing_unparsable_or_mismatched_files_are_named_and_reload_keeps_the_old_pair() {
        let dir = std::env::temp_dir().join(format!("turnpike-tls-unit-{}", std::process::id()));
        let (cert, key, der) = pair(&dir, "a");
        let (_, other_key, _) = pair(&dir, "b");
        let missing = dir.join("missing.pem");
        let e = Tls::load(&missing, &key).err().unwrap().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let e = Tls::load(&cert, &other_key).err().unwrap().to_string();
        assert!(e.contains("b.key") && e.contains("does not belong"), "{e}");
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "hello").unwrap();
        let e = Tls::load(&garbage, &key).err().unwrap().to_string();
        assert!(e.contains("garbage.pem"), "{e}");

        let tls = Tls::load(&cert, &key).unwrap();
        assert_eq!(tls.leaf(), der);
        std::fs::write(&cert, "broken").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.leaf(), der, "a failed reload keeps the served pair");
        let _ = std::fs::remove_dir_all(dir);
    }
}
