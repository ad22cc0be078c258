//! Closed-loop relay load: clients → server → echo peer → server → clients.
//!
//! The generator must cost less than the server it drives, or the server
//! idles between small batches and its per-packet cost is what gets
//! measured. So the clients share one thread on an epoll set and the echo
//! peer (echo.rs) has its own; both read with `recvmmsg` and write with
//! `sendmmsg`.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::echo::EchoPeer;
use super::proto::Allocated;
use super::{cpu_json, measured_blocking, per_cpu, percentile, Common};
use crate::net::batch::{Epoll, RecvBatch, SendBatch};
use crate::stun::TransactionId;
use crate::turn_client::data::{channel_data, send_indication, PeerData};

pub(super) const CHANNEL: u16 = 0x4000;
/// A window with no echo for this long is presumed lost and sent again.
const STALL: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Stats {
    sent: u64,
    received: u64,
    in_window: u64,
    rtts_us: Vec<u32>,
}

pub(super) fn run(
    c: &Common,
    clients: usize,
    window: usize,
    size: usize,
    send_indications: bool,
) -> anyhow::Result<String> {
    let size = size.max(16);
    let echo_peer = EchoPeer::start()?;
    let echo = echo_peer.addr;
    let mut allocated = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut a = Allocated::new(c.server, &c.user, &c.password, 0xbe9c_0000 + i as u64)?;
        if send_indications {
            a.create_permission(echo)?;
        } else {
            a.channel_bind(CHANNEL, echo)?;
        }
        let _ = socket2::SockRef::from(&a.sock).set_recv_buffer_size(1 << 20);
        let _ = socket2::SockRef::from(&a.sock).set_send_buffer_size(1 << 20);
        allocated.push(a);
    }
    // Blocking clones keep the allocations for the final Refresh 0.
    let mut keep = Vec::with_capacity(clients);
    let mut socks: Vec<UdpSocket> = Vec::with_capacity(clients);
    for a in allocated.drain(..) {
        keep.push((a.sock.try_clone()?, a.client));
        a.sock.set_nonblocking(true)?;
        socks.push(a.sock);
    }
    let load = Load {
        peer: echo,
        send_ind: send_indications,
        window,
        size,
    };
    let (elapsed, cpu, mut s) =
        measured_blocking(c, |t0, deadline| load.drive(&socks, t0, deadline))?;
    // Free the allocations: a later run may get the same source ports.
    for (sock, client) in keep {
        sock.set_nonblocking(false)?;
        let _ = Allocated::from_parts(sock, client).refresh(0);
    }
    drop(echo_peer);
    s.rtts_us.sort_unstable();
    let relayed = 2 * s.in_window;
    let pps = relayed as f64 / elapsed.as_secs_f64();
    Ok(format!(
        concat!(
            "{{\"mode\":\"relay\",\"transport\":\"{}\",\"clients\":{},\"window\":{},\"size\":{},",
            "\"seconds\":{:.2},\"sent\":{},\"received\":{},\"lost\":{},\"relayed_pps\":{:.0},",
            "\"server_cpu_s\":{},\"relayed_per_cpu_s\":{},\"rtt_p50_us\":{},\"rtt_p90_us\":{},\"rtt_p99_us\":{}}}"
        ),
        if send_indications { "send" } else { "channel" },
        clients,
        window,
        size,
        elapsed.as_secs_f64(),
        s.sent,
        s.received,
        s.sent.saturating_sub(s.received),
        pps,
        cpu_json(cpu),
        per_cpu(relayed as f64, cpu),
        percentile(&s.rtts_us, 0.5),
        percentile(&s.rtts_us, 0.9),
        percentile(&s.rtts_us, 0.99),
    ))
}

/// Writes one packet carrying `seq` and its send time; returns its length
/// and that time.
pub(super) fn packet(
    out: &mut [u8],
    peer: SocketAddr,
    send_ind: bool,
    size: usize,
    seq: u64,
    t0: Instant,
) -> (usize, u64) {
    let stamp = t0.elapsed().as_nanos() as u64;
    let mut payload = [0u8; 16];
    payload[..8].copy_from_slice(&seq.to_be_bytes());
    payload[8..].copy_from_slice(&stamp.to_be_bytes());
    let fill = |d: &mut [u8]| {
        d[..16].copy_from_slice(&payload);
        d[16..].fill(0x61);
    };
    if send_ind {
        let id = TransactionId(super::proto::txid(seq, seq));
        (send_indication(out, id, peer, size, fill), stamp)
    } else {
        (channel_data(out, CHANNEL, size, fill), stamp)
    }
}

/// The payload's send time, from relayed data (ChannelData or a Data
/// indication).
pub(super) fn sent_at(bytes: &[u8]) -> Option<u64> {
    let data = PeerData::parse(bytes)?.data();
    Some(u64::from_be_bytes(data.get(8..16)?.try_into().ok()?))
}

/// What every client sends.
struct Load {
    peer: SocketAddr,
    send_ind: bool,
    window: usize,
    size: usize,
}

impl Load {
    /// Keeps `window` packets in flight per client socket until the
    /// deadline, then collects stragglers for 300 ms.
    fn drive(&self, socks: &[UdpSocket], t0: Instant, deadline: Instant) -> std::io::Result<Stats> {
        let epoll = Epoll::new()?;
        let server: Vec<SocketAddr> = socks
            .iter()
            .map(|s| s.peer_addr())
            .collect::<Result<_, _>>()?;
        for (i, s) in socks.iter().enumerate() {
            epoll.add(s.as_raw_fd(), i as u64)?;
        }
        let mut stats = Stats::default();
        let mut seq = 0u64;
        let mut out = vec![0u8; self.size + 64];
        let mut sb = SendBatch::default();
        let mut rb = RecvBatch::new(0, 65536, 0);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; socks.len().max(1)];
        let mut last_heard = vec![t0; socks.len()];
        // Sends `count` packets from client `i`.
        let mut send = |i: usize, count: usize, sb: &mut SendBatch, stats: &mut Stats| {
            for _ in 0..count {
                seq += 1;
                let (n, _) = packet(&mut out, self.peer, self.send_ind, self.size, seq, t0);
                sb.push(server[i], &out[..n]);
            }
            // Counted as sent even if the client's own buffer drops one:
            // loss figures err against the server.
            stats.sent += count as u64;
            sb.flush(socks[i].as_raw_fd());
        };
        for i in 0..socks.len() {
            send(i, self.window, &mut sb, &mut stats);
        }
        let end = deadline + Duration::from_millis(300);
        loop {
            let n = epoll.wait(&mut events, 20);
            let now = Instant::now();
            if now >= end {
                break;
            }
            let in_window = now < deadline;
            for ev in &events[..n] {
                let i = ev.u64 as usize;
                let Ok(got) = rb.recv(socks[i].as_raw_fd()) else {
                    continue;
                };
                let now_ns = t0.elapsed().as_nanos() as u64;
                let mut echoes = 0;
                for k in 0..got {
                    let (_, slot, at, len) = rb.get_mut(k);
                    let Some(sent) = sent_at(&slot[at..at + len]) else {
                        continue;
                    };
                    stats.received += 1;
                    if in_window {
                        echoes += 1;
                        stats.in_window += 1;
                        if stats.rtts_us.len() < 2_000_000 {
                            stats
                                .rtts_us
                                .push((now_ns.saturating_sub(sent) / 1000) as u32);
                        }
                    }
                }
                if echoes > 0 {
                    last_heard[i] = now;
                    send(i, echoes, &mut sb, &mut stats);
                }
            }
            // A window with no echo for STALL is presumed lost: send again.
            if in_window {
                for (i, heard) in last_heard.iter_mut().enumerate() {
                    if now.duration_since(*heard) >= STALL {
                        *heard = now;
                        send(i, self.window, &mut sb, &mut stats);
                    }
                }
            }
        }
        Ok(stats)
    }
}
