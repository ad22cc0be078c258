//! Request-rate loads: allocation set-up and Binding.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::async_client::{exchange, Retry};
use super::proto::{error_code, request, txid, Creds};
use super::{cpu_json, measured, per_cpu, Common};
use crate::stun::attributes::AttributeType;
use crate::stun::{Message, Method};

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

/// Sends `req` and waits for the answer with its transaction id.
async fn call(sock: &tokio::net::UdpSocket, req: &[u8], buf: &mut [u8]) -> Option<usize> {
    exchange(sock, req, buf, RETRY, &mut |_| {})
        .await
        .map(|(n, _)| n)
}

/// One allocation life: 401, authenticated Allocate, Refresh 0 — on a fresh
/// socket, so a fresh source port, each time.
async fn one_allocation(c: &Common, seed: u64) -> Option<()> {
    let sock = tokio::net::UdpSocket::bind(local_any(c.server))
        .await
        .ok()?;
    sock.connect(c.server).await.ok()?;
    let mut creds = Creds::new(&c.user, &c.password);
    let (mut req, mut buf) = ([0u8; 512], [0u8; 1500]);
    let transport = |b: &mut crate::stun::MessageBuilder<'_>| {
        b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
    };
    let n = request(&mut req, Method::ALLOCATE, txid(seed, 1), None, transport);
    let len = call(&sock, &req[..n], &mut buf).await?;
    let m = Message::parse(&buf[..len]).ok()?;
    if error_code(&m) != Some(401) || !creds.learn(&m) {
        return None;
    }
    let n = request(
        &mut req,
        Method::ALLOCATE,
        txid(seed, 2),
        Some(&creds),
        transport,
    );
    let len = call(&sock, &req[..n], &mut buf).await?;
    if error_code(&Message::parse(&buf[..len]).ok()?).is_some() {
        return None;
    }
    let n = request(
        &mut req,
        Method::REFRESH,
        txid(seed, 3),
        Some(&creds),
        |b| b.add_u32(AttributeType::LIFETIME, 0),
    );
    let len = call(&sock, &req[..n], &mut buf).await?;
    error_code(&Message::parse(&buf[..len]).ok()?)
        .is_none()
        .then_some(())
}

pub fn allocate(c: &Common, concurrency: usize) -> anyhow::Result<String> {
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

pub fn binding(c: &Common, concurrency: usize, window: usize) -> anyhow::Result<String> {
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
                        let n = request(&mut req, Method::BINDING, txid(w as u64, i), None, |_| {});
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
