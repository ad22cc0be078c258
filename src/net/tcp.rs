//! TCP listener: frames the byte stream, answers STUN requests in order.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::binding;
use crate::stun::framing::{FrameKind, Framer};

pub async fn run(listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let for_connections = stop.clone();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, peer)) = r else { continue };
                tokio::spawn(connection(stream, peer, for_connections.clone()));
            }
            _ = super::stopped(&mut stop) => break,
        }
    }
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let mut framer = Framer::new();
    let mut out = vec![0u8; 2048];
    loop {
        let n = tokio::select! {
            r = stream.read(framer.unfilled()) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = super::stopped(&mut stop) => return,
        };
        framer.filled(n);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    if frame.kind == FrameKind::Stun {
                        if let Some(len) = binding::answer(frame.bytes, peer, &mut out) {
                            if stream.write_all(&out[..len]).await.is_err() {
                                return;
                            }
                        }
                    }
                    // ChannelData has no allocation to go to yet: dropped.
                }
                Ok(None) => break,
                // The stream lost STUN framing: nothing can be resynchronised.
                Err(_) => return,
            }
        }
    }
}
