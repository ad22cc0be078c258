//! What an unauthenticated packet can make the server send (F5): the size
//! of every answer a spoofed source can draw, and the one per-source
//! budget that all workers share.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use turnpike::stun::attributes::AttributeType;
use turnpike::stun::{Class, MessageBuilder, MessageType, Method, TransactionId};

use crate::start_turn;

fn message(method: Method, txid: u8, attrs: impl FnOnce(&mut MessageBuilder<'_>)) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(method, Class::Request),
        TransactionId([txid; 12]),
    );
    attrs(&mut b);
    let n = b.finish().unwrap();
    buf.truncate(n);
    buf
}

async fn answer_len(sock: &UdpSocket, server: SocketAddr, req: &[u8]) -> usize {
    sock.send_to(req, server).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    n
}

/// The README's table of bytes out per byte in: each row is measured
/// here on the wire, with the test realm `turnpike.test` (13 bytes; the
/// default `turnpike` makes 401 and 438 answers 8 bytes shorter) and
/// SOFTWARE off, the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_answers_have_the_documented_sizes() {
    let server = start_turn(|c| c.auth_reply_rate = 0).await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];
    let v4 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let transport =
        |b: &mut MessageBuilder<'_>| b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let forged = |b: &mut MessageBuilder<'_>| {
        b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        b.add_username("x");
        b.add_realm("turnpike.test");
        b.add_nonce(b"obMatJos2AAABAAAAAAAAAAAAAAAAAAAA");
        b.add_message_integrity(&[0; 16]);
    };
    let rows: Vec<(&str, Vec<u8>, usize)> = vec![
        ("Binding", message(Method::BINDING, 1, |_| {}), 32),
        (
            "Binding with FINGERPRINT",
            message(Method::BINDING, 2, |b| b.add_fingerprint()),
            40,
        ),
        (
            "Binding, unknown required attribute (420)",
            message(Method::BINDING, 3, |b| b.add(AttributeType(0x0030), &[])),
            56,
        ),
        (
            "Allocate, header only (401)",
            message(Method::ALLOCATE, 4, |_| {}),
            108,
        ),
        (
            "Allocate (401)",
            message(Method::ALLOCATE, 5, transport),
            108,
        ),
        (
            "Refresh, header only (401)",
            message(Method::REFRESH, 6, |_| {}),
            108,
        ),
        (
            "Allocate, forged nonce (438)",
            message(Method::ALLOCATE, 7, forged),
            108,
        ),
        (
            "Unknown method (400)",
            message(Method(0x0fff), 8, |_| {}),
            40,
        ),
    ];
    println!("| request | bytes in | bytes out | out/in |");
    for (name, req, want) in &rows {
        let got = answer_len(&v4, addr, req).await;
        println!(
            "| {name} | {} | {got} | {:.1} |",
            req.len(),
            got as f64 / req.len() as f64
        );
        assert_eq!(got, *want, "{name}");
    }
    // Over IPv6 a Binding answer carries a 16-byte address.
    let server6 = start_turn(|c| c.listen = vec!["[::1]:0".parse().unwrap()]).await;
    let addr6 = server6.addrs(turnpike::Transport::Udp)[0];
    let v6 = UdpSocket::bind("[::1]:0").await.unwrap();
    let got = answer_len(&v6, addr6, &message(Method::BINDING, 9, |_| {})).await;
    println!(
        "| Binding over IPv6 | 20 | {got} | {:.1} |",
        got as f64 / 20.0
    );
    assert_eq!(got, 44);
    server6.stop().await;
    server.stop().await;
}

/// Header-only Allocates from 400 ports of one address: the answers
/// they draw in about a second.
async fn answers_to_a_spoofed_burst(workers: usize) -> (usize, Duration) {
    let server = start_turn(|c| {
        c.workers = workers;
        c.auth_reply_rate = 10;
    })
    .await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];
    let mut socks = Vec::new();
    for _ in 0..400 {
        socks.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    let start = Instant::now();
    for (i, s) in socks.iter().enumerate() {
        s.send_to(&message(Method::ALLOCATE, i as u8, |_| {}), addr)
            .await
            .unwrap();
    }
    let sent = start.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut answered = 0;
    let mut buf = [0u8; 1500];
    for s in &socks {
        if s.try_recv_from(&mut buf).is_ok() {
            answered += 1;
        }
    }
    server.stop().await;
    (answered, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_answer_a_spoofed_source_no_more_than_one_worker() {
    let (one, t1) = answers_to_a_spoofed_burst(1).await;
    let (four, t4) = answers_to_a_spoofed_burst(4).await;
    // A burst of 20, then 10 a second while the 400 requests go out.
    let bound = |t: Duration| 20 + (10.0 * t.as_secs_f64()).ceil() as usize + 1;
    assert!(one >= 20 && one <= bound(t1), "one worker: {one} in {t1:?}");
    assert!(
        four <= bound(t4),
        "four workers: {four} in {t4:?} (one: {one})"
    );
    assert!(four <= one + 5, "four workers: {four}, one: {one}");
}
