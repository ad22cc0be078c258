//! RFC 6062 end to end: coturn's `turnutils_uclient -T` (two of its own
//! clients connect through TCP relays), and our client relaying to a local
//! TCP echo peer; a Connect to a denied address gets 403 and no SYN.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use turnpike::stun::attributes::AttributeType;
use turnpike::stun::{Message, Method};
use turnpike::Transport;

use crate::turn_client::TurnClient;
use crate::{start_turn, PASSWORD, USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_tcp_relay_between_its_clients_zero_loss() {
    let server = start_turn(|c| {
        c.allow_loopback_peers = true;
        c.tcp_relay = true;
    })
    .await;
    let port = server.addrs(Transport::Tcp)[0].port().to_string();
    // -T: TCP relays; -m 3 means 4 clients, each connecting to the others.
    let _one = crate::coturn::uclient_turn().await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["90", "turnutils_uclient", "-T", "-u", USER, "-w", PASSWORD])
            .args(["-p", &port, "-n", "20", "-m", "3", "-l", "500", "127.0.0.1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // uclient exits 0 even on loss: read its summary.
    assert!(text.contains("12 connections are completed"), "{text}");
    assert!(
        text.contains("tot_send_msgs=80, tot_recv_msgs=80"),
        "{text}"
    );
    assert!(text.contains("Total lost packets 0 (0.000000%)"), "{text}");
    assert!(!text.contains("cannot BIND"), "{text}");
    server.stop().await;
}

/// A TCP echo peer on 127.0.0.1; returns its address and a count of the
/// connections it accepted.
async fn echo_peer() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<SocketAddr>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, from)) = l.accept().await {
            let _ = tx.send(from);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, rx)
}

async fn tcp_client(server: SocketAddr) -> TurnClient {
    let s = TcpStream::connect(server).await.unwrap();
    let local = s.local_addr().unwrap();
    TurnClient::over_stream(s, local)
}

/// A server with TCP relays on, its TCP listener, and a control
/// connection holding a TCP allocation.
async fn tcp_allocation(allow_loopback: bool) -> (turnpike::Running, SocketAddr, TurnClient) {
    let server = start_turn(|c| {
        c.allow_loopback_peers = allow_loopback;
        c.tcp_relay = true;
    })
    .await;
    let addr = server.addrs(Transport::Tcp)[0];
    let mut control = tcp_client(addr).await;
    let relayed = control
        .request(Method::ALLOCATE, &|b| {
            b.add(AttributeType::REQUESTED_TRANSPORT, &[6, 0, 0, 0])
        })
        .await;
    assert!(relayed.is_ok(), "TCP allocation: {relayed:?}");
    (server, addr, control)
}

fn code(answer: &Result<Vec<u8>, u16>) -> Option<u16> {
    answer.as_ref().err().copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_tcp_echo_peer_carries_data_and_a_denied_peer_gets_403_without_a_syn() {
    let (peer, mut accepted) = echo_peer().await;
    for allow_loopback in [false, true] {
        let (server, addr, mut control) = tcp_allocation(allow_loopback).await;
        let connect = control
            .request(Method::CONNECT, &|b| {
                b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer)
            })
            .await;
        if !allow_loopback {
            assert_eq!(code(&connect), Some(403), "loopback is denied by default");
            let nothing = tokio::time::timeout(Duration::from_millis(500), accepted.recv()).await;
            assert!(nothing.is_err(), "no connection reached the peer");
            server.stop().await;
            continue;
        }
        let answer = connect.expect("Connect succeeds");
        let m = Message::parse(&answer).unwrap();
        let id = m.get(AttributeType::CONNECTION_ID).unwrap().to_vec();
        let from = accepted.recv().await.unwrap();
        assert_eq!(
            from.ip().to_string(),
            "127.0.0.1",
            "the peer sees the relayed address"
        );
        // The data connection: ConnectionBind, then raw bytes both ways.
        let data = TcpStream::connect(addr).await.unwrap();
        let local = data.local_addr().unwrap();
        let mut binder = TurnClient::over_stream(data, local);
        let bound = binder
            .request(Method::CONNECTION_BIND, &|b| {
                b.add(AttributeType::CONNECTION_ID, &id)
            })
            .await;
        assert!(bound.is_ok(), "{bound:?}");
        let mut raw = binder.into_stream();
        let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        raw.write_all(&payload).await.unwrap();
        let mut back = vec![0u8; payload.len()];
        tokio::time::timeout(Duration::from_secs(5), raw.read_exact(&mut back))
            .await
            .expect("echo within 5 s")
            .unwrap();
        assert_eq!(back, payload);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_pipelined_after_connection_bind_reach_the_peer_as_sent() {
    // A client may send its first bytes in the same segment as the
    // ConnectionBind, before the answer: they are the application's, not
    // STUN or ChannelData, whatever they look like (review F23: they were
    // framed, and bytes that did not frame closed the data connection
    // while the peer socket stayed held).
    let (server, addr, mut control) = tcp_allocation(true).await;
    let firsts: [&[u8]; 3] = [
        b"\xff\xfe not STUN, not ChannelData",
        // A ChannelData header for channel 0x4000, 4 bytes long.
        b"\x40\x00\x00\x04abcd",
        // A Binding request header, 0 bytes of attributes.
        b"\x00\x01\x00\x00\x21\x12\xa4\x42twelve bytes",
    ];
    for first in firsts {
        let (peer, mut accepted) = echo_peer().await;
        let connect = control
            .request(Method::CONNECT, &|b| {
                b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer)
            })
            .await
            .expect("Connect succeeds");
        let id = Message::parse(&connect)
            .unwrap()
            .get(AttributeType::CONNECTION_ID)
            .unwrap()
            .to_vec();
        accepted.recv().await.unwrap();
        // ConnectionBind (signed with the control connection's nonce, which
        // is good for this IP) and the data, in one write.
        let bind = control.signed(Method::CONNECTION_BIND, &|b| {
            b.add(AttributeType::CONNECTION_ID, &id)
        });
        let payload: Vec<u8> = first
            .iter()
            .copied()
            .chain((0..10_000u32).map(|i| (i % 251) as u8))
            .collect();
        let mut data = TcpStream::connect(addr).await.unwrap();
        data.write_all(&[bind, payload.clone()].concat())
            .await
            .unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            crate::turn_client::read_stun(&mut data),
        )
        .await
        .expect("an answer within 5 s")
        .expect("the data connection stays open");
        let m = Message::parse(&answer).unwrap();
        assert!(
            m.get(AttributeType::ERROR_CODE).is_none(),
            "ConnectionBind succeeds: {answer:?}"
        );
        let mut back = vec![0u8; payload.len()];
        tokio::time::timeout(Duration::from_secs(5), data.read_exact(&mut back))
            .await
            .expect("the echo within 5 s")
            .unwrap();
        assert_eq!(back, payload, "first bytes {first:?}");
    }
    server.stop().await;
}
