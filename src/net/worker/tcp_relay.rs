//! The RFC 6062 splice: peers accepted on a TCP relay, peers connected for
//! a Connect, and the byte copy between a bound data connection and its
//! peer. The core decides (permissions, ids, both deadlines) and keeps the
//! one connection table; this only moves streams, and keeps them in that
//! table as a [`PeerSide`] the core never reads.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::Worker;
use crate::turn::tcp_relay::Held;
use crate::turn::{ConnId, ConnectError, RelayId};

/// What the shell holds for an RFC 6062 connection, in the core's table.
/// Dropping it closes the connection: the core hands it back for that
/// (`Request::ClosePeer`).
pub(super) enum PeerSide {
    /// The Connect's attempt, by this task.
    Connecting(AbortOnDrop),
    /// Connected, waiting for its data connection (the kernel buffers
    /// what the peer sends meanwhile). Held as a std stream so that any
    /// worker's runtime can take it.
    Waiting(std::net::TcpStream),
    /// Spliced with its data connection by this task.
    Relaying(AbortOnDrop),
}

/// A task that ends when this is dropped, unless disarmed.
pub(super) struct AbortOnDrop(Option<AbortHandle>);

impl AbortOnDrop {
    /// The task has finished on its own: nothing to abort.
    fn disarm(mut self) {
        self.0.take();
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Worker {
    /// Keeps `side` in the core's table for `conn`; if the core has ended
    /// the connection meanwhile, dropping `side` closes it.
    fn hold(&self, conn: ConnId, side: PeerSide) {
        if let Err(ended) = self.shared.tcp_conns.hold(conn, Held::new(side)) {
            drop(ended);
        }
    }

    /// What this shell held for `conn`, taken back from the core's table.
    fn take(&self, conn: ConnId) -> Option<PeerSide> {
        self.shared.tcp_conns.take(conn)?.downcast().ok()
    }

    /// `Request::ConnectPeer`: starts the attempt and keeps its handle
    /// where the core's deadline (447) can end it.
    pub(super) fn connect_peer(self: &Rc<Self>, conn: ConnId, from: SocketAddr, peer: SocketAddr) {
        let task = tokio::task::spawn_local(connect_peer(self.clone(), conn, from, peer));
        self.hold(
            conn,
            PeerSide::Connecting(AbortOnDrop(Some(task.abort_handle()))),
        );
    }
}

/// Accepts peers on a TCP relay's address (RFC 6062 §5.3); the core
/// decides (permission) and tells the client with a ConnectionAttempt.
pub(super) async fn tcp_relay_accept(w: Rc<Worker>, relay: RelayId, listener: TcpListener) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let now = Instant::now();
        w.step(now, |core| {
            let conn = core.peer_accepted(now, relay, from);
            if let (Some(conn), Ok(std)) = (conn, stream.into_std()) {
                w.hold(conn, PeerSide::Waiting(std));
            }
        });
    }
}

/// Opens a Connect's peer connection from the relayed address. The core
/// has already checked the peer against the policy, and times the attempt
/// (it aborts this task at its deadline).
async fn connect_peer(w: Rc<Worker>, conn: ConnId, from: SocketAddr, peer: SocketAddr) {
    let attempt = async {
        let sock = if peer.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        sock.set_reuseport(true)?;
        sock.bind(from)?;
        let stream = sock.connect(peer).await?;
        stream.set_nodelay(true)?;
        stream.into_std()
    };
    let result = attempt.await;
    // This task's own handle: it has finished.
    if let Some(PeerSide::Connecting(me)) = w.take(conn) {
        me.disarm();
    }
    let answer = match result {
        Ok(std) => {
            // Held before the answer: a ConnectionBind may follow at once.
            w.hold(conn, PeerSide::Waiting(std));
            Ok(())
        }
        Err(e) => {
            tracing::debug!("tcp relay {from} -> {peer}: {e}");
            Err(ConnectError::from(&e))
        }
    };
    let now = Instant::now();
    w.step(now, |core| core.peer_connected(now, conn, answer));
}

/// Relays bytes between a bound data connection and its peer until
/// either side ends or the core ends the connection (the task is aborted).
pub(super) async fn relay_tcp<S>(w: Rc<Worker>, conn: ConnId, mut client: S, first: Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let peer = match w.take(conn) {
        Some(PeerSide::Waiting(std)) => TcpStream::from_std(std).ok(),
        _ => None,
    };
    let Some(mut peer) = peer else {
        let now = Instant::now();
        w.step(now, |core| core.peer_closed(now, conn));
        return;
    };
    let task = tokio::task::spawn_local(async move {
        if !first.is_empty() && peer.write_all(&first).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut peer).await;
    });
    w.hold(
        conn,
        PeerSide::Relaying(AbortOnDrop(Some(task.abort_handle()))),
    );
    let _ = task.await;
    if let Some(PeerSide::Relaying(me)) = w.take(conn) {
        me.disarm();
    }
    let now = Instant::now();
    w.step(now, |core| core.peer_closed(now, conn));
}
