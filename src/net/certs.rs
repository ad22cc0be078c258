//! The certificate and key files TLS and DTLS serve: loading, the error
//! that names the file at fault, and reloading.
//!
//! A reload is two-phase: every server of the pair (TLS's resolver, the
//! DTLS context) first reads and checks the files into something not yet
//! served, and only when all of them succeeded does each install its own.
//! So TLS and DTLS change together or not at all, and a bad file never
//! takes either down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// A certificate or key that cannot be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS set-up: {0}")]
    Setup(String),
}

pub(super) fn file_err(path: &Path, reason: impl ToString) -> CertError {
    CertError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A key that does not belong to the certificate, naming both files.
pub(super) fn mismatch_err(cert: &Path, key: &Path, e: impl std::fmt::Display) -> CertError {
    file_err(
        key,
        format!(
            "does not belong to the certificate in {}: {e}",
            cert.display()
        ),
    )
}

pub(super) fn setup_err(e: impl ToString) -> CertError {
    CertError::Setup(e.to_string())
}

/// The crypto provider of every rustls config and key.
pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where the PEM certificate chain and its key are read from.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn new(cert: &Path, key: &Path) -> CertFiles {
        CertFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }
    }

    /// Reads and checks the chain and its key for rustls.
    pub(super) fn load_pair(&self) -> Result<CertifiedKey, CertError> {
        let (cert, key) = (&self.cert, &self.key);
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
}

/// Installs what [`Serves::prepare`] read.
pub(super) type Install<'a> = Box<dyn FnOnce() + 'a>;

/// One server of the pair, reloaded in two phases (see the module).
pub(super) trait Serves: Send + Sync {
    /// Reads and checks the files; serves nothing new yet.
    fn prepare(&self, files: &CertFiles) -> Result<Install<'_>, CertError>;
}

/// The rustls certificate now served, asked on every ClientHello: a reload
/// swaps one `Arc`, so only new handshakes see it.
#[derive(Debug)]
pub(super) struct Current(RwLock<Arc<CertifiedKey>>);

impl Current {
    pub(super) fn load(files: &CertFiles) -> Result<Current, CertError> {
        Ok(Current(RwLock::new(Arc::new(files.load_pair()?))))
    }

    /// The DER of the leaf certificate now served.
    pub(super) fn leaf(&self) -> Vec<u8> {
        let cur = self.0.read().unwrap_or_else(|e| e.into_inner());
        cur.cert.first().map(|c| c.to_vec()).unwrap_or_default()
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl Serves for Current {
    fn prepare(&self, files: &CertFiles) -> Result<Install<'_>, CertError> {
        let pair = Arc::new(files.load_pair()?);
        Ok(Box::new(move || {
            *self.0.write().unwrap_or_else(|e| e.into_inner()) = pair;
        }))
    }
}

/// The files and everything serving them.
pub(super) struct Certs {
    files: CertFiles,
    served: Vec<Arc<dyn Serves>>,
}

impl Certs {
    pub(super) fn new(files: CertFiles) -> Certs {
        Certs {
            files,
            served: Vec::new(),
        }
    }

    pub(super) fn files(&self) -> &CertFiles {
        &self.files
    }

    /// Reloads `s` too from now on.
    pub(super) fn add(&mut self, s: Arc<dyn Serves>) {
        self.served.push(s);
    }

    /// Reads the files again. On any error every server keeps its old pair
    /// and the error says why.
    pub(super) fn reload(&self) -> Result<(), CertError> {
        let installs = self
            .served
            .iter()
            .map(|s| s.prepare(&self.files))
            .collect::<Result<Vec<_>, _>>()?;
        for install in installs {
            install();
        }
        Ok(())
    }
}
