//! The Binding service over real UDP and TCP sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;
use turnpike::stun::attributes::{
    decode_unknown_attributes, decode_xor_address, AttributeType, ErrorCode,
};
use turnpike::stun::framing::Framer;
use turnpike::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

use crate::start_server;

/// How long "no reply" is waited for; a reply on loopback takes microseconds.
const SILENCE: Duration = Duration::from_millis(300);
const REPLY: Duration = Duration::from_secs(5);

fn binding_request(txid: u8, build: impl FnOnce(&mut MessageBuilder)) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([txid; 12]),
    );
    build(&mut b);
    let n = b.finish().unwrap();
    buf.truncate(n);
    buf
}

fn mapped(resp: &Message) -> SocketAddr {
    decode_xor_address(
        resp.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap(),
        &resp.transaction_id(),
    )
    .unwrap()
}

fn error_code(resp: &Message) -> u16 {
    ErrorCode::decode(resp.get(AttributeType::ERROR_CODE).unwrap())
        .unwrap()
        .code
}

async fn udp_exchange(sock: &UdpSocket, req: &[u8]) -> Vec<u8> {
    sock.send(req).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = timeout(REPLY, sock.recv(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    buf.truncate(n);
    buf
}

async fn udp_client(server: SocketAddr) -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(server).await.unwrap();
    sock
}

async fn read_frame(stream: &mut TcpStream, framer: &mut Framer) -> Vec<u8> {
    loop {
        if let Some(f) = framer.next_frame().unwrap() {
            return f.bytes.to_vec();
        }
        let mut buf = [0u8; 4096];
        let n = timeout(REPLY, stream.read(&mut buf))
            .await
            .expect("a reply")
            .unwrap();
        assert!(n > 0, "server closed the connection");
        framer.push(&buf[..n]);
    }
}

#[tokio::test]
async fn udp_binding_gets_the_clients_address() {
    let (server, udp, _) = start_server().await;
    let sock = udp_client(udp).await;
    let resp = udp_exchange(&sock, &binding_request(1, |b| b.add_fingerprint())).await;
    let msg = Message::parse(&resp).unwrap();
    assert_eq!(
        msg.message_type(),
        MessageType::new(Method::BINDING, Class::SuccessResponse)
    );
    assert_eq!(msg.transaction_id(), TransactionId([1; 12]));
    assert_eq!(mapped(&msg), sock.local_addr().unwrap());
    assert!(msg.has_fingerprint());
    server.stop().await;
}

#[tokio::test]
async fn udp_binding_over_ipv6_loopback() {
    let server = crate::start_server_on("[::1]:0").await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];
    let sock = UdpSocket::bind("[::1]:0").await.unwrap();
    sock.connect(addr).await.unwrap();
    let resp = udp_exchange(&sock, &binding_request(6, |_| {})).await;
    assert_eq!(
        mapped(&Message::parse(&resp).unwrap()),
        sock.local_addr().unwrap()
    );
    server.stop().await;
}

#[tokio::test]
async fn tcp_binding_gets_the_clients_address_even_when_split_and_pipelined() {
    let (server, _, tcp) = start_server().await;
    let mut stream = TcpStream::connect(tcp).await.unwrap();
    let mut framer = Framer::new();

    let req = binding_request(2, |_| {});
    stream.write_all(&req).await.unwrap();
    let msg_bytes = read_frame(&mut stream, &mut framer).await;
    let msg = Message::parse(&msg_bytes).unwrap();
    assert_eq!(msg.class(), Class::SuccessResponse);
    assert_eq!(mapped(&msg), stream.local_addr().unwrap());

    // Two requests in one write, the second split across writes.
    let a = binding_request(3, |_| {});
    let b = binding_request(4, |b| b.add_fingerprint());
    let mut both = a.clone();
    both.extend_from_slice(&b[..7]);
    stream.write_all(&both).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    stream.write_all(&b[7..]).await.unwrap();
    for id in [3u8, 4] {
        let bytes = read_frame(&mut stream, &mut framer).await;
        let msg = Message::parse(&bytes).unwrap();
        assert_eq!(msg.transaction_id(), TransactionId([id; 12]));
        assert_eq!(mapped(&msg), stream.local_addr().unwrap());
    }
    server.stop().await;
}

fn with_unknown(b: &mut MessageBuilder) {
    b.add(AttributeType(0x7ABC), b"?");
    b.add(AttributeType(0x0033), b"");
    b.add(AttributeType(0xC0DE), b"optional");
}

fn assert_420(resp: &[u8], txid: u8) {
    let msg = Message::parse(resp).unwrap();
    assert_eq!(
        msg.message_type(),
        MessageType::new(Method::BINDING, Class::ErrorResponse)
    );
    assert_eq!(msg.transaction_id(), TransactionId([txid; 12]));
    assert_eq!(error_code(&msg), 420);
    let listed: Vec<u16> =
        decode_unknown_attributes(msg.get(AttributeType::UNKNOWN_ATTRIBUTES).unwrap())
            .unwrap()
            .collect();
    assert_eq!(listed, vec![0x7ABC, 0x0033]);
}

#[tokio::test]
async fn unknown_comprehension_required_attribute_gets_420_over_udp_and_tcp() {
    let (server, udp, tcp) = start_server().await;
    let sock = udp_client(udp).await;
    assert_420(
        &udp_exchange(&sock, &binding_request(5, with_unknown)).await,
        5,
    );

    let mut stream = TcpStream::connect(tcp).await.unwrap();
    stream
        .write_all(&binding_request(6, with_unknown))
        .await
        .unwrap();
    let mut framer = Framer::new();
    assert_420(&read_frame(&mut stream, &mut framer).await, 6);
    server.stop().await;
}

/// Datagrams that must get no answer.
fn garbage() -> Vec<Vec<u8>> {
    let valid = binding_request(9, |b| b.add_fingerprint());
    // Without the cookie a Binding is an RFC 3489 one (it/classic.rs); an
    // Allocate without it gets nothing.
    let mut bad_cookie = valid.clone();
    bad_cookie[1] = 0x03;
    bad_cookie[4] ^= 0xFF;
    let mut bad_fingerprint = valid.clone();
    *bad_fingerprint.last_mut().unwrap() ^= 1;
    let mut long_length = valid.clone();
    long_length[3] += 4;
    let mut unaligned = valid.clone();
    unaligned[3] += 1;
    let mut truncated_attr = binding_request(9, |b| b.add(AttributeType::SOFTWARE, b"abcd"));
    truncated_attr[22..24].copy_from_slice(&200u16.to_be_bytes());
    let mut indication = binding_request(9, |_| {});
    indication[..2].copy_from_slice(
        &MessageType::new(Method::BINDING, Class::Indication)
            .to_u16()
            .to_be_bytes(),
    );
    let mut response = binding_request(9, |_| {});
    response[..2].copy_from_slice(
        &MessageType::new(Method::BINDING, Class::SuccessResponse)
            .to_u16()
            .to_be_bytes(),
    );
    vec![
        vec![],
        vec![0; 19],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xFF; 64],
        bad_cookie,
        bad_fingerprint,
        long_length,
        valid[..valid.len() - 4].to_vec(),
        unaligned,
        truncated_attr,
        indication,
        response,
        vec![0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4],
    ]
}

#[tokio::test]
async fn garbage_over_udp_gets_no_reply_and_the_server_keeps_serving() {
    let (server, udp, _) = start_server().await;
    let sock = udp_client(udp).await;
    for g in garbage() {
        sock.send(&g).await.unwrap();
    }
    // Loopback keeps order: the first reply must be to the valid request.
    let resp = udp_exchange(&sock, &binding_request(10, |_| {})).await;
    let msg = Message::parse(&resp).unwrap();
    assert_eq!(msg.transaction_id(), TransactionId([10; 12]));
    let mut buf = [0u8; 2048];
    assert!(
        timeout(SILENCE, sock.recv(&mut buf)).await.is_err(),
        "an extra reply arrived"
    );
    server.stop().await;
}

#[tokio::test]
async fn non_stun_over_tcp_closes_the_connection_without_a_reply() {
    let (server, _, tcp) = start_server().await;
    for junk in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS ClientHello"[..],
        &[0xFF; 32],
        // STUN-shaped with the cookie but a length no STUN message has.
        &[0x00, 0x01, 0x00, 0x03, 0x21, 0x12, 0xA4, 0x42],
    ] {
        let mut stream = TcpStream::connect(tcp).await.unwrap();
        stream.write_all(junk).await.unwrap();
        let mut buf = [0u8; 64];
        let n = timeout(REPLY, stream.read(&mut buf))
            .await
            .expect("closed promptly")
            .unwrap_or(0);
        assert_eq!(n, 0, "no bytes before close");
    }
    // A well-framed but invalid message (bad FINGERPRINT) is dropped, and
    // the connection goes on.
    let mut stream = TcpStream::connect(tcp).await.unwrap();
    let mut bad = binding_request(11, |b| b.add_fingerprint());
    *bad.last_mut().unwrap() ^= 1;
    stream.write_all(&bad).await.unwrap();
    stream
        .write_all(&binding_request(12, |_| {}))
        .await
        .unwrap();
    let mut framer = Framer::new();
    let msg_bytes = read_frame(&mut stream, &mut framer).await;
    assert_eq!(
        Message::parse(&msg_bytes).unwrap().transaction_id(),
        TransactionId([12; 12])
    );
    server.stop().await;
}

#[tokio::test]
async fn stop_closes_the_listeners() {
    let (server, udp, tcp) = start_server().await;
    server.stop().await;
    assert!(TcpStream::connect(tcp).await.is_err());
    // The UDP port is free again.
    UdpSocket::bind(udp).await.expect("UDP port released");
}
