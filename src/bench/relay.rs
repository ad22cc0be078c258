//! Closed-loop relay load: clients → server → echo peer → server → clients.

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::proto::Allocated;
use super::{cpu_json, measured, per_cpu, percentile, Common};
use crate::stun::attributes::AttributeType;
use crate::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

const CHANNEL: u16 = 0x4000;
/// A window with no echo for this long is presumed lost and sent again.
const STALL: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Stats {
    sent: u64,
    received: u64,
    in_window: u64,
    rtts_us: Vec<u32>,
}

/// Echoes every datagram back to its sender until `stop` is set.
fn echo_peer() -> std::io::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    // Room for every packet in flight: the bench must not be where they drop.
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
    let addr = sock.local_addr()?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let handle = std::thread::Builder::new()
        .name("bench-echo".into())
        .spawn(move || {
            let mut buf = [0u8; 65536];
            let mut idle = 0;
            // Ends after 3 s of silence: the bench is over.
            while idle < 15 {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        idle = 0;
                        let _ = sock.send_to(&buf[..n], from);
                    }
                    Err(_) => idle += 1,
                }
            }
        })?;
    Ok((addr, handle))
}

pub fn run(
    c: &Common,
    clients: usize,
    window: usize,
    size: usize,
    send_indications: bool,
) -> anyhow::Result<String> {
    let size = size.max(16);
    let (echo, echo_thread) = echo_peer()?;
    let mut allocated = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut a = Allocated::new(c.server, &c.user, &c.password, 0xbe9c_0000 + i as u64)?;
        if send_indications {
            a.create_permission(echo)?;
        } else {
            a.channel_bind(CHANNEL, echo)?;
        }
        let _ = socket2::SockRef::from(&a.sock).set_recv_buffer_size(1 << 20);
        allocated.push(a);
    }
    // Blocking clones keep the allocations for the final Refresh 0.
    let mut keep = Vec::with_capacity(clients);
    for a in &mut allocated {
        keep.push((a.sock.try_clone()?, a.creds.clone()));
        a.sock.set_nonblocking(true)?;
    }
    let stats = Rc::new(RefCell::new(Stats::default()));
    let (elapsed, cpu) = measured(c, |t0, deadline| {
        allocated
            .drain(..)
            .map(|a| {
                let sock = tokio::net::UdpSocket::from_std(a.sock)?;
                Ok(client(
                    sock,
                    echo,
                    send_indications,
                    window,
                    size,
                    t0,
                    deadline,
                    stats.clone(),
                ))
            })
            .collect()
    })?;
    // Free the allocations: a later run may get the same source ports.
    for (i, (sock, creds)) in keep.into_iter().enumerate() {
        sock.set_nonblocking(false)?;
        let _ = super::proto::Allocated::from_parts(sock, creds, 0xf4ee_0000 + i as u64).refresh(0);
    }
    let _ = echo_thread.join();
    let mut s = stats.borrow_mut();
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

/// Writes one packet carrying `seq` and its send time.
fn packet(
    out: &mut [u8],
    peer: SocketAddr,
    send_ind: bool,
    size: usize,
    seq: u64,
    t0: Instant,
) -> usize {
    let mut payload = [0u8; 16];
    payload[..8].copy_from_slice(&seq.to_be_bytes());
    payload[8..].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_be_bytes());
    if send_ind {
        let mut b = MessageBuilder::new(
            out,
            MessageType::new(Method::SEND, Class::Indication),
            TransactionId(super::proto::txid(seq, seq)),
        );
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
        b.add_with(AttributeType::DATA, size, |d| {
            d[..16].copy_from_slice(&payload);
            d[16..].fill(0x61);
        });
        b.finish().unwrap_or(0)
    } else {
        out[..2].copy_from_slice(&CHANNEL.to_be_bytes());
        out[2..4].copy_from_slice(&(size as u16).to_be_bytes());
        out[4..20].copy_from_slice(&payload);
        out[20..4 + size].fill(0x61);
        4 + size
    }
}

/// The payload's send time, from ChannelData or a Data indication.
fn sent_at(bytes: &[u8]) -> Option<u64> {
    let data = if bytes.first().is_some_and(|b| b & 0xC0 == 0x40) {
        let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        bytes.get(4..4 + len)?
    } else {
        let m = Message::parse(bytes).ok()?;
        m.get(AttributeType::DATA)?
    };
    Some(u64::from_be_bytes(data.get(8..16)?.try_into().ok()?))
}

#[allow(clippy::too_many_arguments)]
async fn client(
    sock: tokio::net::UdpSocket,
    peer: SocketAddr,
    send_ind: bool,
    window: usize,
    size: usize,
    t0: Instant,
    deadline: Instant,
    stats: Rc<RefCell<Stats>>,
) {
    let mut out = vec![0u8; size + 64];
    let mut inb = vec![0u8; 65536];
    let mut seq = 0u64;
    let mut send = |sock: &tokio::net::UdpSocket, stats: &RefCell<Stats>| {
        seq += 1;
        let n = packet(&mut out, peer, send_ind, size, seq, t0);
        if sock.try_send(&out[..n]).is_ok() {
            stats.borrow_mut().sent += 1;
        }
    };
    for _ in 0..window {
        send(&sock, &stats);
    }
    loop {
        let now = Instant::now();
        let wait = if now >= deadline {
            // Collect stragglers for the loss count, then stop.
            Duration::from_millis(300)
        } else {
            STALL
        };
        match tokio::time::timeout(wait, sock.recv(&mut inb)).await {
            Ok(Ok(n)) => {
                let now_ns = t0.elapsed().as_nanos() as u64;
                let Some(at) = sent_at(&inb[..n]) else {
                    continue;
                };
                let mut s = stats.borrow_mut();
                s.received += 1;
                if Instant::now() < deadline {
                    s.in_window += 1;
                    if s.rtts_us.len() < 2_000_000 {
                        s.rtts_us.push((now_ns.saturating_sub(at) / 1000) as u32);
                    }
                    drop(s);
                    send(&sock, &stats);
                }
            }
            Ok(Err(_)) => {}
            Err(_) => {
                if Instant::now() >= deadline {
                    return;
                }
                for _ in 0..window {
                    send(&sock, &stats);
                }
            }
        }
    }
}
