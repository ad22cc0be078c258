//! The RFC 6062 splice: peers accepted on a TCP relay, peers connected for
//! a Connect, and the byte copy between a bound data connection and its
//! peer. The core decides (permissions, ids); this only moves streams.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{StreamSetup, Worker};
use crate::turn::RelayId;

/// RFC 6062 §5.2: a Connect gets 447 if the peer does not answer in 30 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The peer side of an RFC 6062 connection.
pub(crate) enum PeerSide {
    /// Connected, waiting for its data connection (the kernel buffers
    /// what the peer sends meanwhile). Held as a std stream so that any
    /// worker's runtime can take it.
    Waiting(std::net::TcpStream),
    /// Spliced with its data connection by this task.
    Relaying(tokio::task::AbortHandle),
}

impl StreamSetup {
    pub(super) fn peers(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u32, PeerSide>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
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
                w.streams.peers().insert(conn, PeerSide::Waiting(std));
            }
        });
    }
}

/// Opens a Connect's peer connection from the relayed address. The core
/// has already checked the peer against the policy.
pub(super) async fn connect_peer(w: Rc<Worker>, conn: u32, from: SocketAddr, peer: SocketAddr) {
    let attempt = async {
        let sock = if peer.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        sock.set_reuseport(true)?;
        sock.bind(from)?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, sock.connect(peer))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        stream.set_nodelay(true)?;
        stream.into_std()
    };
    let result = attempt.await;
    if let Err(e) = &result {
        tracing::debug!("tcp relay {from} -> {peer}: {e}");
    }
    let ok = result.is_ok();
    if let Ok(std) = result {
        w.streams.peers().insert(conn, PeerSide::Waiting(std));
    }
    let now = Instant::now();
    w.step(now, |core| core.peer_connected(now, conn, ok));
}

/// Relays bytes between a bound data connection and its peer until
/// either side ends or the allocation goes (the task is aborted).
pub(super) async fn relay_tcp<S>(w: Rc<Worker>, conn: u32, mut client: S, first: Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let side = w.streams.peers().remove(&conn);
    let Some(PeerSide::Waiting(std)) = side else {
        w.core.borrow_mut().peer_closed(conn);
        return;
    };
    let Ok(mut peer) = TcpStream::from_std(std) else {
        w.core.borrow_mut().peer_closed(conn);
        return;
    };
    let task = tokio::task::spawn_local(async move {
        if !first.is_empty() && peer.write_all(&first).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut peer).await;
    });
    w.streams
        .peers()
        .insert(conn, PeerSide::Relaying(task.abort_handle()));
    let _ = task.await;
    w.streams.peers().remove(&conn);
    w.core.borrow_mut().peer_closed(conn);
}
