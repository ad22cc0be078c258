//! Client address lists (issue 19): `allowed_client_ip` and
//! `denied_client_ip` are judged before any answer on every transport, so
//! a refused client gets nothing at all, not even a Binding answer; a
//! reload changes them for the next datagram and connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use turnpike::stun::attributes::{decode_xor_address, AttributeType};
use turnpike::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
use turnpike::turn::policy::IpRange;
use turnpike::Transport;

/// How long "no answer" is waited for; an answer on loopback takes
/// microseconds.
const SILENCE: Duration = Duration::from_millis(400);

pub(crate) fn binding() -> Vec<u8> {
    let mut buf = vec![0u8; 64];
    let n = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([7; 12]),
    )
    .finish()
    .unwrap();
    buf.truncate(n);
    buf
}

/// XOR-MAPPED-ADDRESS of a Binding success.
pub(crate) fn mapped(answer: &[u8]) -> SocketAddr {
    let m = Message::parse(answer).unwrap();
    assert_eq!(m.class(), Class::SuccessResponse);
    decode_xor_address(
        m.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap(),
        &m.transaction_id(),
    )
    .unwrap()
}

/// A Binding over UDP from `local`: the answer's mapped address, or None
/// when nothing came back.
async fn udp_binding(server: SocketAddr, local: &str) -> Option<SocketAddr> {
    let sock = UdpSocket::bind(format!("{local}:0")).await.unwrap();
    sock.send_to(&binding(), server).await.unwrap();
    let mut buf = [0u8; 512];
    match tokio::time::timeout(SILENCE, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(mapped(&buf[..n])),
        _ => None,
    }
}

/// What a stream from `local` got for a Binding.
#[derive(Debug, PartialEq)]
pub(crate) enum Stream {
    Answered(SocketAddr),
    /// Closed by the server without a byte.
    Closed,
}

/// A Binding over TCP from `local` to `server`.
pub(crate) async fn tcp_binding(server: SocketAddr, local: &str) -> Stream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(server).await.unwrap();
    // The server may have closed already: the write may fail.
    let _ = s.write_all(&binding()).await;
    let mut buf = [0u8; 512];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Stream::Closed,
        Ok(Ok(n)) => Stream::Answered(mapped(&buf[..n])),
        Err(_) => panic!("neither answered nor closed within 5 s"),
    }
}

fn ranges(list: &[&str]) -> Vec<IpRange> {
    list.iter().map(|s| IpRange::parse(s).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_client_gets_no_answer_even_to_binding_over_udp_and_tcp() {
    let server = crate::start_turn(|c| c.denied_client_ips = ranges(&["127.0.0.5/32"])).await;
    let udp = server.addrs(Transport::Udp)[0];
    let tcp = server.addrs(Transport::Tcp)[0];
    assert_eq!(udp_binding(udp, "127.0.0.5").await, None, "denied: silence");
    let other = udp_binding(udp, "127.0.0.6").await.expect("answered");
    assert_eq!(other.ip().to_string(), "127.0.0.6");
    assert_eq!(tcp_binding(tcp, "127.0.0.5").await, Stream::Closed);
    match tcp_binding(tcp, "127.0.0.6").await {
        Stream::Answered(a) => assert_eq!(a.ip().to_string(), "127.0.0.6"),
        s => panic!("127.0.0.6 over TCP: {s:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_admits_only_its_ranges_and_deny_wins_over_it() {
    let server = crate::start_turn(|c| {
        c.allowed_client_ips = ranges(&["127.0.0.4-127.0.0.6"]);
        c.denied_client_ips = ranges(&["127.0.0.5"]);
    })
    .await;
    let udp = server.addrs(Transport::Udp)[0];
    let tcp = server.addrs(Transport::Tcp)[0];
    for outside in ["127.0.0.1", "127.0.0.7", "127.0.0.5"] {
        assert_eq!(udp_binding(udp, outside).await, None, "{outside} over UDP");
        assert_eq!(
            tcp_binding(tcp, outside).await,
            Stream::Closed,
            "{outside} over TCP"
        );
    }
    for inside in ["127.0.0.4", "127.0.0.6"] {
        assert!(
            udp_binding(udp, inside).await.is_some(),
            "{inside} over UDP"
        );
        assert!(
            matches!(tcp_binding(tcp, inside).await, Stream::Answered(_)),
            "{inside} over TCP"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_new_client_lists() {
    let (server, udp, admin) = crate::admin::server(|_| {}).await;
    let dir = std::env::temp_dir().join(format!("turnpike-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("turnserver.toml");
    std::fs::write(&file, "").unwrap();
    server.reloader().set_source(
        Some(file.clone()),
        turnpike::config::Options::default(),
        turnpike::config::Options::from_file(&file).unwrap(),
    );
    assert!(udp_binding(udp, "127.0.0.5").await.is_some());
    std::fs::write(&file, "denied_client_ip = [\"127.0.0.5\"]\n").unwrap();
    let token = crate::admin::token("admin");
    let (code, body) =
        crate::admin::http(admin, "POST", "/api/v1/reload", Some(&token), None).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("denied_client_ip"), "{body}");
    assert_eq!(
        udp_binding(udp, "127.0.0.5").await,
        None,
        "denied after reload"
    );
    assert!(udp_binding(udp, "127.0.0.6").await.is_some());
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The RFC 5780 sockets (the alternate address and port too) answer no
/// denied client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5780_sockets_answer_no_denied_client() {
    let (server, primary) =
        crate::nat::rfc5780_turn(|c| c.denied_client_ips = ranges(&["127.0.0.5"])).await;
    let alternate = crate::nat::alternate(&server, primary);
    for to in [primary, alternate] {
        assert_eq!(udp_binding(to, "127.0.0.5").await, None, "denied at {to}");
        assert!(
            udp_binding(to, "127.0.0.6").await.is_some(),
            "answered at {to}"
        );
    }
    server.stop().await;
}
