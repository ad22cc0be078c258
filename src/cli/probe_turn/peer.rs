//! The echo peer `probe turn` runs itself, and the relay check through it.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::*;
use super::{Failure, BINDING_WAIT, FIRST_RTO, MAGIC, PAYLOAD_LEN, PROBES, PROBE_SPACING};
use crate::stun::attributes::{decode_address, decode_xor_address};
use crate::stun::client::{Schedule, Transaction};
use crate::stun::{AttributeType, Class, Message, MessageBuilder, MessageType, Method};
use crate::turn_client::data::{send_indication, PeerData};
use crate::turn_client::Request;

/// The echo peer: its socket answers every probe payload to its sender.
pub(super) struct Peer {
    pub(super) addr: SocketAddr,
    pub(super) from_binding: bool,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    pub(super) fn start(server: SocketAddr, run_id: [u8; 8]) -> Result<Peer, Failure> {
        let fail = |e: io::Error| Failure::new(format!("echo peer: {}", describe(&e)));
        let sock = UdpSocket::bind(unspecified(server)).map_err(fail)?;
        let port = sock.local_addr().map_err(fail)?.port();
        let (addr, from_binding) = match binding(&sock, server) {
            Some(mapped) => (mapped, true),
            None => {
                let route = UdpSocket::bind(unspecified(server)).map_err(fail)?;
                route.connect(server).map_err(fail)?;
                (
                    SocketAddr::new(route.local_addr().map_err(fail)?.ip(), port),
                    false,
                )
            }
        };
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(fail)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("probe-echo".into())
            .spawn(move || {
                let mut buf = [0u8; 2048];
                while !stopped.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        // Only our own probes: this port answers nobody else.
                        if from != server
                            && n == PAYLOAD_LEN
                            && buf[..MAGIC.len()] == MAGIC[..]
                            && buf[MAGIC.len()..MAGIC.len() + 8] == run_id
                        {
                            let _ = sock.send_to(&buf[..n], from);
                        }
                    }
                }
            })
            .map_err(fail)?;
        Ok(Peer {
            addr,
            from_binding,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The address the server sees `sock` at, from a Binding request; `None`
/// without an answer within [`BINDING_WAIT`].
pub(super) fn binding(sock: &UdpSocket, server: SocketAddr) -> Option<SocketAddr> {
    let txid = random_txid();
    let mut req = [0u8; 64];
    let n = MessageBuilder::new(
        &mut req,
        MessageType::new(Method::BINDING, Class::Request),
        txid,
    )
    .finish()
    .ok()?;
    let schedule = Schedule {
        rto: FIRST_RTO,
        max_rto: None,
        rc: u32::MAX,
        rm: None,
        timeout: Some(BINDING_WAIT),
    };
    let mut tx = Transaction::new(txid, req[..n].to_vec(), schedule, false, Instant::now());
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if let Some(bytes) = tx.poll_transmit(now) {
            let _ = sock.send_to(bytes, server);
            continue;
        }
        let at = tx.poll_timeout()?;
        sock.set_read_timeout(Some(
            at.saturating_duration_since(now)
                .max(Duration::from_millis(1)),
        ))
        .ok()?;
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(m) = Message::parse(&buf[..len]) else {
            continue;
        };
        // Any source: a multihomed server may answer from another
        // address; the random transaction id is what counts.
        if !tx.handle_response(&m) {
            continue;
        }
        if m.class() != Class::SuccessResponse {
            return None;
        }
        return m
            .get(AttributeType::XOR_MAPPED_ADDRESS)
            .and_then(|v| decode_xor_address(v, &txid).ok())
            .or_else(|| {
                m.get(AttributeType::MAPPED_ADDRESS)
                    .and_then(|v| decode_address(v).ok())
            });
    }
}

/// Starts the echo peer, permits it, relays [`PROBES`] Send indications to
/// it and collects the round trips of those that come back.
pub(super) fn relay_check(
    client: &mut Client,
    server: SocketAddr,
) -> Result<(Peer, Vec<Duration>), Failure> {
    let mut run_id = [0u8; 8];
    run_id.copy_from_slice(&random_txid().0[..8]);
    let peer = Peer::start(server, run_id)?;
    let peer_addr = peer.addr;
    let timeout = client.timeout;
    client
        .call(Request::CreatePermission { peer: peer_addr }, timeout)
        .map_err(|e| {
            refusal("CreatePermission", e, |code| match code {
                403 => Some(format!(
                    "the server denies the peer address {peer_addr}{}",
                    loopback_note(peer_addr)
                )),
                443 => Some("the relay and the peer differ in address family".into()),
                _ => None,
            })
        })?;

    let mut sent_at: [Option<Instant>; PROBES] = [None; PROBES];
    let mut rtt: [Option<Duration>; PROBES] = [None; PROBES];
    let io = |e: io::Error| Failure::new(format!("relay: {}", describe(&e)));
    for seq in 0..PROBES {
        let mut payload = [0u8; PAYLOAD_LEN];
        payload[..MAGIC.len()].copy_from_slice(MAGIC);
        payload[MAGIC.len()..MAGIC.len() + 8].copy_from_slice(&run_id);
        payload[MAGIC.len() + 8..].copy_from_slice(&(seq as u32).to_be_bytes());
        let mut buf = [0u8; 256];
        let n = send_indication(&mut buf, random_txid(), peer_addr, PAYLOAD_LEN, |d| {
            d.copy_from_slice(&payload)
        });
        client.conn.send(&buf[..n]).map_err(io)?;
        sent_at[seq] = Some(Instant::now());
        let last = seq + 1 == PROBES;
        let until = if last {
            Instant::now() + timeout
        } else {
            Instant::now() + PROBE_SPACING
        };
        collect(client, run_id, &sent_at, &mut rtt, until, last).map_err(io)?;
    }
    let rtts: Vec<Duration> = rtt.iter().flatten().copied().collect();
    if rtts.is_empty() {
        return Err(Failure::new(format!(
            "relay: no data came back from the echo peer at {peer_addr} (the server may deny \
             this peer address: e.g. coturn needs --allow-loopback-peers for 127.0.0.1)"
        )));
    }
    Ok((peer, rtts))
}

pub(super) fn loopback_note(peer: SocketAddr) -> &'static str {
    if peer.ip().is_loopback() {
        "; e.g. coturn needs --allow-loopback-peers for 127.0.0.1"
    } else {
        ""
    }
}

/// Reads Data indications until `until` (or, with `all`, until every probe
/// sent is back) and records their round trips.
pub(super) fn collect(
    client: &mut Client,
    run_id: [u8; 8],
    sent_at: &[Option<Instant>; PROBES],
    rtt: &mut [Option<Duration>; PROBES],
    until: Instant,
    all: bool,
) -> io::Result<()> {
    loop {
        if all && rtt.iter().all(Option::is_some) {
            return Ok(());
        }
        let Some(msg) = client.conn.recv(until)? else {
            return Ok(());
        };
        let now = Instant::now();
        let Some(PeerData::Indication { data, .. }) = PeerData::parse(&msg) else {
            continue;
        };
        if data.len() != PAYLOAD_LEN
            || data[..MAGIC.len()] != MAGIC[..]
            || data[MAGIC.len()..MAGIC.len() + 8] != run_id
        {
            continue;
        }
        let mut seq = [0u8; 4];
        seq.copy_from_slice(&data[MAGIC.len() + 8..]);
        let seq = u32::from_be_bytes(seq) as usize;
        if let (Some(Some(at)), Some(slot)) = (sent_at.get(seq), rtt.get_mut(seq)) {
            if slot.is_none() {
                *slot = Some(now.duration_since(*at));
            }
        }
    }
}
