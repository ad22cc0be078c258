//! UDP listener: one datagram in, at most one out.

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::binding;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

pub async fn run(socket: UdpSocket, mut stop: watch::Receiver<bool>) {
    // Buffers live for the listener's life: no allocation per packet.
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    let mut outbuf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            r = socket.recv_from(&mut inbuf) => {
                let Ok((n, from)) = r else { continue };
                if let Some(len) = binding::answer(&inbuf[..n], from, &mut outbuf) {
                    // A lost reply is the client's retransmission to handle.
                    let _ = socket.send_to(&outbuf[..len], from).await;
                }
            }
            _ = super::stopped(&mut stop) => break,
        }
    }
}
