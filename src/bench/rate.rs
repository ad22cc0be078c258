//! Request-rate loads: allocation set-up and Binding.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::async_client::{Client, Retry};
use super::proto::txid;
use super::{cpu_json, measured, per_cpu, Common};
use crate::stun::{Class, MessageBuilder, MessageType, Method, TransactionId};

const RETRY: Retry = Retry {
    timeout: Duration::from_millis(500),
    tries: 3,
};

fn local_any(server: SocketAddr) -> SocketAddr {
    if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap()
}

/// One allocation life: 401, authenticated Allocate, Refresh 0 — on a fresh
/// socket, so a fresh source port, each time.
async fn one_allocation(c: &Common, seed: u64) -> Option<()> {
    let local = local_any(c.server);
    let mut client = Client::connect(local, c.server, &c.user, &c.password, RETRY, seed)
        .await
        .ok()?;
    client.allocate(&mut |_| {}).await.ok()?;
    client.refresh(0, &mut |_| {}).await.ok()
}

pub(super) fn allocate(c: &Common, concurrency: usize) -> anyhow::Result<String> {
    let done = Rc::new(Cell::new(0u64));
    let failed = Rc::new(Cell::new(0u64));
    let (elapsed, cpu) = measured(c, |_, deadline| {
        Ok((0..concurrency)
            .map(|w| {
                let (c, done, failed) = (c.clone(), done.clone(), failed.clone());
                async move {
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        i += 1;
                        match one_allocation(&c, ((w as u64) << 32) | i).await {
                            Some(()) => done.set(done.get() + 1),
                            None => failed.set(failed.get() + 1),
                        }
                    }
                }
            })
            .collect())
    })?;
    let n = done.get() as f64;
    Ok(format!(
        "{{\"mode\":\"allocate\",\"concurrency\":{concurrency},\"seconds\":{:.2},\"allocations\":{},\"failed\":{},\"allocations_per_s\":{:.0},\"server_cpu_s\":{},\"allocations_per_cpu_s\":{}}}",
        elapsed.as_secs_f64(),
        done.get(),
        failed.get(),
        n / elapsed.as_secs_f64(),
        cpu_json(cpu),
        per_cpu(n, cpu),
    ))
}

pub(super) fn binding(c: &Common, concurrency: usize, window: usize) -> anyhow::Result<String> {
    let answered = Rc::new(Cell::new(0u64));
    let sent = Rc::new(Cell::new(0u64));
    let (elapsed, cpu) = measured(c, |_, deadline| {
        Ok((0..concurrency)
            .map(|w| {
                let (server, answered, sent) = (c.server, answered.clone(), sent.clone());
                async move {
                    let Ok(sock) = tokio::net::UdpSocket::bind(local_any(server)).await else {
                        return;
                    };
                    if sock.connect(server).await.is_err() {
                        return;
                    }
                    let (mut req, mut buf) = ([0u8; 64], [0u8; 512]);
                    let mut i = 0u64;
                    let mut fire = |sock: &tokio::net::UdpSocket| {
                        i += 1;
                        let t = MessageType::new(Method::BINDING, Class::Request);
                        let id = TransactionId(txid(w as u64, i));
                        let n = MessageBuilder::new(&mut req, t, id).finish().unwrap_or(0);
                        if sock.try_send(&req[..n]).is_ok() {
                            sent.set(sent.get() + 1);
                        }
                    };
                    for _ in 0..window {
                        fire(&sock);
                    }
                    while Instant::now() < deadline {
                        match tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf))
                            .await
                        {
                            Ok(Ok(n)) if n >= 20 => {
                                answered.set(answered.get() + 1);
                                fire(&sock);
                            }
                            Ok(_) => {}
                            // Lost: refill the window.
                            Err(_) => (0..window).for_each(|_| fire(&sock)),
                        }
                    }
                }
            })
            .collect())
    })?;
    let n = answered.get() as f64;
    Ok(format!(
        "{{\"mode\":\"binding\",\"concurrency\":{concurrency},\"window\":{window},\"seconds\":{:.2},\"sent\":{},\"answered\":{},\"answers_per_s\":{:.0},\"server_cpu_s\":{},\"answers_per_cpu_s\":{}}}",
        elapsed.as_secs_f64(),
        sent.get(),
        answered.get(),
        n / elapsed.as_secs_f64(),
        cpu_json(cpu),
        per_cpu(n, cpu),
    ))
}
