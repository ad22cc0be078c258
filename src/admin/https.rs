//! The admin listener over TLS (`admin_tls`): the TURN certificate's
//! resolver, so a reload or an ACME renewal reaches it too.
//!
//! Handshakes run in their own tasks and only finished ones are handed to
//! axum: one slow client must not hold up every other accept. Each
//! handshake holds its [`Bounded`] slot and has [`HANDSHAKE`] to finish.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::listener::{Bounded, ClientAddr, Limited};

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// A [`Bounded`] listener whose connections come out decrypted.
pub(crate) struct Https {
    done: mpsc::Receiver<(TlsStream<Limited>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Https {
    pub(crate) fn new(inner: Bounded, config: Arc<ServerConfig>) -> io::Result<Https> {
        Https::with_handshake(inner, config, HANDSHAKE)
    }

    /// [`Https::new`] with another handshake deadline (tests).
    fn with_handshake(
        mut inner: Bounded,
        config: Arc<ServerConfig>,
        handshake: Duration,
    ) -> io::Result<Https> {
        use axum::serve::Listener as _;
        let local = inner.local_addr()?;
        // Finished handshakes wait here for axum; the slots bound them.
        let (tx, done) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let accepting = tokio::spawn(async move {
            loop {
                let (io, from) = inner.accept().await;
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, from)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("admin TLS handshake from {from}: {e}"),
                        Err(_) => tracing::debug!("admin TLS handshake from {from}: timed out"),
                    }
                });
            }
        });
        Ok(Https {
            done,
            local,
            accepting,
        })
    }
}

impl Drop for Https {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for Https {
    type Io = TlsStream<Limited>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self.done.recv().await {
            Some(accepted) => accepted,
            // The accepting task never ends while we hold its handle.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Https>> for ClientAddr {
    fn connect_info(s: axum::serve::IncomingStream<'_, Https>) -> Self {
        ClientAddr(*s.remote_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::listener::Bounds;
    use axum::serve::Listener as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    fn config() -> Arc<ServerConfig> {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = CertificateDer::from(c.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.signing_key.serialize_der()));
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap(),
        )
    }

    /// True when the server closed `s` (EOF or reset) within `within`.
    async fn closed(s: &mut TcpStream, within: Duration) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(within, s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn pending_handshakes_hold_their_places_and_end_at_the_deadline() {
        let bounds = Bounds {
            per_source: 2,
            total: 8,
            idle: Duration::from_secs(60),
        };
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let deadline = Duration::from_millis(400);
        let mut https = Https::with_handshake(Bounded::new(l, bounds), config(), deadline).unwrap();
        // Nothing finished a handshake, so nothing reaches axum.
        let accepted = tokio::spawn(async move { https.accept().await.1 });
        // Two silent clients from one address hold its two places while
        // their handshakes wait: the third is closed at once.
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed(&mut c, Duration::from_millis(200)).await,
            "over the cap"
        );
        // At the deadline the silent ones are dropped and their places
        // come back.
        assert!(
            closed(&mut a, Duration::from_secs(2)).await,
            "handshake deadline"
        );
        assert!(
            closed(&mut b, Duration::from_secs(2)).await,
            "handshake deadline"
        );
        let mut d = TcpStream::connect(addr).await.unwrap();
        assert!(
            !closed(&mut d, Duration::from_millis(200)).await,
            "a place came back"
        );
        assert!(!accepted.is_finished());
        accepted.abort();
    }
}
