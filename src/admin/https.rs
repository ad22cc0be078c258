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
    pub(crate) fn new(mut inner: Bounded, config: Arc<ServerConfig>) -> io::Result<Https> {
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
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(io)).await {
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
