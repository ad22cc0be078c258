//! Pending ACME challenge answers: tls-alpn-01 certificates by server name
//! (RFC 8737) and http-01 key authorizations by token (RFC 8555 §8.3).
//!
//! Only the renewal task adds entries, one per configured domain, and it
//! clears them when the order ends, so both maps stay as small as
//! `acme_domains`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::net::certs::provider;

/// The ALPN protocol id of the tls-alpn-01 challenge (RFC 8737 §6.2).
pub const ALPN_ACME_TLS: &[u8] = b"acme-tls/1";

#[derive(Debug, Default)]
pub struct Challenges {
    alpn: Mutex<HashMap<String, Arc<ServerConfig>>>,
    http: Mutex<HashMap<String, String>>,
}

impl Challenges {
    /// The TLS config answering the tls-alpn-01 challenge for `sni`, while
    /// one is pending.
    pub fn alpn_config(&self, sni: &str) -> Option<Arc<ServerConfig>> {
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        lock(&self.alpn).get(&sni).cloned()
    }

    /// The key authorization for an http-01 `token`, while pending.
    pub fn http_answer(&self, token: &str) -> Option<String> {
        lock(&self.http).get(token).cloned()
    }

    /// Answers tls-alpn-01 for `domain` with a self-signed certificate
    /// carrying the SHA-256 of the key authorization in the critical
    /// acmeIdentifier extension.
    pub(super) fn set_alpn(&self, domain: &str, digest: &[u8]) -> Result<(), String> {
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| e.to_string())?;
        let pair = Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(cert.der().to_vec())],
            signing,
        ));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(pair)));
        config.alpn_protocols = vec![ALPN_ACME_TLS.to_vec()];
        lock(&self.alpn).insert(domain.to_string(), Arc::new(config));
        Ok(())
    }

    pub(super) fn set_http(&self, token: &str, key_authorization: &str) {
        lock(&self.http).insert(token.to_string(), key_authorization.to_string());
    }

    /// Forgets every pending answer (the order is over).
    pub(super) fn clear(&self) {
        lock(&self.alpn).clear();
        lock(&self.http).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One certificate whatever the ClientHello says.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}
