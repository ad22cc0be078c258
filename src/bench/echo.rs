//! The echo peer of the relay loads: every datagram goes back to its sender.
//! It has its own thread and batches (`recvmmsg`/`sendmmsg`) so it costs
//! less than the server it helps measure.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::net::batch::{Epoll, RecvBatch, SendBatch};

/// A running echo peer on 127.0.0.1; stops when dropped.
pub(super) struct EchoPeer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoPeer {
    pub(super) fn start() -> std::io::Result<Self> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        // Room for every packet in flight: the bench must not be where they drop.
        let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
        let _ = socket2::SockRef::from(&sock).set_send_buffer_size(8 << 20);
        let addr = sock.local_addr()?;
        let epoll = Epoll::new()?;
        epoll.add(sock.as_raw_fd(), 0)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-echo".into())
            .spawn(move || {
                let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
                let mut rb = RecvBatch::new(0, 65536, 0);
                let mut sb = SendBatch::default();
                // The 200 ms wait bounds how long a stop takes to be seen.
                while !stopped.load(Ordering::Relaxed) {
                    if epoll.wait(&mut events, 200) == 0 {
                        continue;
                    }
                    let Ok(n) = rb.recv(sock.as_raw_fd()) else {
                        continue;
                    };
                    for k in 0..n {
                        let (from, slot, at, len) = rb.get_mut(k);
                        if let Some(from) = from {
                            sb.push(from, &slot[at..at + len]);
                        }
                    }
                    sb.flush(sock.as_raw_fd());
                }
            })?;
        Ok(EchoPeer {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
