//! TLS for TURN over TCP (rustls, TLS 1.2 and 1.3 only, ring provider).
//!
//! The certificate sits behind a resolver that rustls asks on every
//! ClientHello ([`super::certs`] loads and reloads it, with DTLS), so
//! established sessions keep the keys they negotiated.
//!
//! ALPN: a client offering `stun.turn` gets it confirmed; one offering
//! only other protocols is still served without ALPN (as coturn does)
//! rather than refused, which is why the ClientHello is read first
//! ([`LazyConfigAcceptor`]) to choose between two configs. A ClientHello
//! offering `acme-tls/1` for a name with a pending ACME challenge gets
//! the challenge certificate instead (RFC 8737), and the connection ends
//! after the handshake.

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::acme::challenge::{Challenges, ALPN_ACME_TLS};
use super::certs::{provider, setup_err, CertError, CertFiles, Certs, Current};
use super::dtls::Dtls;

/// The ALPN protocol id of TURN over (D)TLS (RFC 7443).
pub const ALPN_STUN_TURN: &[u8] = b"stun.turn";

/// TLS state shared by every worker.
pub struct Tls {
    /// The files, and what reloads from them: TLS's resolver and DTLS.
    certs: Certs,
    current: Arc<Current>,
    with_alpn: Arc<ServerConfig>,
    without_alpn: Arc<ServerConfig>,
    /// DTLS from the same files, when served; reloaded together.
    dtls: Option<Arc<Dtls>>,
    /// Pending tls-alpn-01 answers (empty without ACME).
    challenges: Arc<Challenges>,
}

impl Tls {
    /// Loads the pair; a start-up error names the file at fault.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, CertError> {
        let files = CertFiles::new(cert, key);
        let current = Arc::new(Current::load(&files)?);
        let config = |alpn: bool| -> Result<Arc<ServerConfig>, CertError> {
            let mut c = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(setup_err)?
                .with_no_client_auth()
                .with_cert_resolver(current.clone());
            if alpn {
                c.alpn_protocols = vec![ALPN_STUN_TURN.to_vec()];
            }
            Ok(Arc::new(c))
        };
        let mut certs = Certs::new(files);
        certs.add(current.clone());
        Ok(Tls {
            certs,
            with_alpn: config(true)?,
            without_alpn: config(false)?,
            current,
            dtls: None,
            challenges: Arc::default(),
        })
    }

    /// Also serves DTLS from the same pair, with at most `max_half_open`
    /// handshakes in progress.
    pub fn with_dtls(mut self, max_half_open: usize) -> Result<Tls, CertError> {
        let files = self.certs.files();
        let d = Arc::new(Dtls::load(&files.cert, &files.key, max_half_open)?);
        self.certs.add(d.clone());
        self.dtls = Some(d);
        Ok(self)
    }

    /// A config for the admin API's HTTPS (`admin_tls`): the same
    /// certificate, so reloads and renewals reach it, and HTTP/1.1.
    pub(crate) fn https_config(&self) -> Result<Arc<ServerConfig>, CertError> {
        let mut c = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(setup_err)?
            .with_no_client_auth()
            .with_cert_resolver(self.current.clone());
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(c))
    }

    /// The DTLS state, when DTLS is served.
    pub fn dtls(&self) -> Option<Arc<Dtls>> {
        self.dtls.clone()
    }

    /// Reads the files again. On any error the old pair stays and the
    /// error says why. TLS and DTLS change together or not at all.
    pub fn reload(&self) -> Result<(), CertError> {
        self.certs.reload()
    }

    /// The DER of the leaf certificate now served.
    pub fn leaf(&self) -> Vec<u8> {
        self.current.leaf()
    }

    /// The pending ACME challenge answers.
    pub fn challenges(&self) -> Arc<Challenges> {
        self.challenges.clone()
    }

    /// Runs a server handshake on `io`.
    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let hello = start.client_hello();
        let offers_acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ALPN_ACME_TLS));
        let challenge = hello
            .server_name()
            .filter(|_| offers_acme)
            .and_then(|name| self.challenges.alpn_config(name));
        if let Some(config) = challenge {
            // The CA only checks the certificate (RFC 8737 §3); there is
            // nothing to serve on this connection afterwards.
            let mut s = start.into_stream(config).await?;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut s).await;
            return Err(std::io::Error::other("acme-tls/1 challenge answered"));
        }
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

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        std::fs::create_dir_all(dir).unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
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
