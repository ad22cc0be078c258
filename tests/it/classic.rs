//! Issue 13: classic (RFC 3489) STUN clients. Debian's `stun` client (the
//! Vovida one) against turnpike and coturn on loopback and inside the
//! network-namespace NAT lab, and the rules on the wire: MAPPED-ADDRESS
//! over UDP and TCP, no answer to TURN methods, RESPONSE-ADDRESS never
//! honoured, the off switch, the budget.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use turnpike::stun::attributes::{decode_address, decode_xor_address, AttributeType, ErrorCode};
use turnpike::stun::{
    Class, ClassicTransactionId, Message, MessageBuilder, MessageType, Method, TransactionId,
};
use turnpike::Transport;

use crate::nat::{
    alternate, coturn_5780, output, probe_json, rfc5780_turn, turnpike_in, Namespaces,
};
use crate::start_turn;

/// What Debian's `stun HOST -v` concluded: the four tests and the verdict.
#[derive(Debug)]
struct Vovida {
    tests: [bool; 4],
    verdict: String,
    text: String,
}

fn vovida(prefix: &[&str], server: &str) -> Vovida {
    let mut cmd = Command::new("timeout");
    cmd.arg("30").args(prefix).args(["stun", server, "-v"]);
    let (_, out, err) = output(&mut cmd);
    let text = out + &err;
    let test = |name: &str| text.contains(&format!("{name} = 1"));
    let verdict = text
        .lines()
        .find_map(|l| l.strip_prefix("Primary: "))
        .unwrap_or_else(|| panic!("the stun client gave no verdict:\n{text}"))
        .trim()
        .to_string();
    Vovida {
        tests: [
            test("test I"),
            test("test II"),
            test("test III"),
            test("test I(2)"),
        ],
        verdict,
        text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_stun_client_finds_turnpike_open_with_all_four_tests_as_it_finds_coturn() {
    let (server, primary) = rfc5780_turn(|_| {}).await;
    let ours = tokio::task::spawn_blocking(move || vovida(&[], &primary.to_string()))
        .await
        .unwrap();
    server.stop().await;
    let theirs = tokio::task::spawn_blocking(|| {
        let (_coturn, port) = coturn_5780();
        vovida(&[], &format!("127.0.0.1:{port}"))
    })
    .await
    .unwrap();
    for (who, v) in [("turnpike", &ours), ("coturn", &theirs)] {
        assert_eq!(v.tests, [true; 4], "{who}: I, II, III, I(2)\n{}", v.text);
        assert_eq!(v.verdict, "Open", "{who}\n{}", v.text);
    }
}

/// The verdict of Debian's client in RFC 4787's words: (mapping,
/// filtering), filtering `None` where the client does not test it.
fn vovida_says(verdict: &str) -> (&'static str, Option<&'static str>) {
    if verdict.starts_with("Dependent Mapping") {
        return ("dependent", None);
    }
    for (said, filtering) in [
        (
            "Independent Mapping, Independent Filter",
            "endpoint-independent",
        ),
        (
            "Independent Mapping, Address Dependent Filter",
            "address-dependent",
        ),
        (
            "Independent Mapping, Port Dependent Filter",
            "address-and-port-dependent",
        ),
    ] {
        if verdict.starts_with(said) {
            return ("endpoint-independent", Some(filtering));
        }
    }
    panic!("unexpected verdict {verdict:?}");
}

#[test]
fn debian_stun_client_in_the_nat_lab_sees_the_nat_configured_and_agrees_with_probe_nat() {
    for (mode, verdict) in [
        // masquerade: endpoint-independent mapping, conntrack filtering by
        // address and port: a port-restricted cone.
        ("masq", "Independent Mapping, Port Dependent Filter"),
        // fully random ports: a symmetric NAT.
        ("random", "Dependent Mapping"),
    ] {
        let ns = Namespaces::up("tpq", mode);
        let server = turnpike_in("tpqs");
        let client = ["ip", "netns", "exec", "tpqc"];
        let v = vovida(&client, "10.0.2.2");
        assert!(
            v.verdict.starts_with(verdict),
            "{mode}: {}\n{}",
            v.verdict,
            v.text
        );
        assert!(
            v.tests[0] && v.tests[3],
            "{mode}: I and I(2) answered\n{}",
            v.text
        );
        assert!(
            !v.tests[1] && !v.tests[2],
            "{mode}: II, III filtered\n{}",
            v.text
        );
        let (code, probe, err) = probe_json(&client, "stun:10.0.2.2", &["--timeout", "2"]);
        assert_eq!(code, 0, "{mode}: {probe}\n{err}");
        let (mapping, filtering) = vovida_says(&v.verdict);
        let probe_mapping = probe["mapping"].as_str().unwrap();
        if mapping == "dependent" {
            assert_ne!(probe_mapping, "endpoint-independent", "{mode}: {probe}");
        } else {
            assert_eq!(probe_mapping, mapping, "{mode}: {probe}");
        }
        if let Some(f) = filtering {
            assert_eq!(probe["filtering"], f, "{mode}: {probe}");
        }
        drop(server);
        drop(ns);
    }
    let left = output(Command::new("ip").args(["netns", "list"])).1;
    assert!(!left.contains("tpq"), "namespaces removed: {left}");
}

/// A classic Binding (or another method) request: `id` fills bytes 4-20.
fn classic(method: u16, id: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut b = MessageBuilder::new_classic(
        &mut buf,
        MessageType::new(Method(method), Class::Request),
        ClassicTransactionId([id; 16]),
    );
    for (t, value) in attrs {
        b.add(AttributeType(*t), value);
    }
    let n = b.finish().unwrap();
    buf[..n].to_vec()
}

fn modern_binding(id: u8) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([id; 12]),
    );
    let n = b.finish().unwrap();
    buf[..n].to_vec()
}

/// The exact answer to a classic Binding from `me` with id `id`.
fn mapped_answer(id: u8, me: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(me) = me else {
        panic!("IPv4 only")
    };
    let mut v = vec![0x01, 0x01, 0x00, 0x0c];
    v.extend_from_slice(&[id; 16]);
    v.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01]);
    v.extend_from_slice(&me.port().to_be_bytes());
    v.extend_from_slice(&me.ip().octets());
    v
}

const REQUESTED_TRANSPORT_UDP: (u16, &[u8]) = (0x0019, &[17, 0, 0, 0]);

/// Reads one STUN frame (header plus its length) from a stream.
fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 20];
    s.read_exact(&mut head)?;
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let mut v = head.to_vec();
    v.extend_from_slice(&body);
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_binding_gets_mapped_address_over_udp_and_tcp_and_classic_allocate_nothing() {
    let server = start_turn(|_| {}).await;
    let udp = server.addrs(Transport::Udp)[0];
    let tcp = server.addrs(Transport::Tcp)[0];
    tokio::task::spawn_blocking(move || {
        // UDP: byte for byte.
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        sock.send_to(&classic(0x001, 0x31, &[]), udp).unwrap();
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).expect("a classic answer over UDP");
        assert_eq!(buf[..n], mapped_answer(0x31, me)[..]);
        // A classic Allocate gets nothing: the next datagram answers the
        // modern Binding sent after it.
        sock.send_to(&classic(0x003, 0x32, &[REQUESTED_TRANSPORT_UDP]), udp)
            .unwrap();
        sock.send_to(&modern_binding(0x33), udp).unwrap();
        let n = sock.recv(&mut buf).unwrap();
        let m = Message::parse(&buf[..n]).expect("the modern answer comes first");
        assert_eq!(m.transaction_id(), TransactionId([0x33; 12]));
        sock.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        assert!(sock.recv(&mut buf).is_err(), "nothing else arrives");

        // TCP: classic, classic Allocate and modern in one write; the
        // stream keeps its framing and answers the two Bindings in order.
        let mut s = TcpStream::connect(tcp).unwrap();
        let me = s.local_addr().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut burst = classic(0x001, 0x41, &[]);
        burst.extend(classic(0x003, 0x42, &[REQUESTED_TRANSPORT_UDP]));
        burst.extend(modern_binding(0x43));
        s.write_all(&burst).unwrap();
        assert_eq!(read_frame(&mut s).unwrap(), mapped_answer(0x41, me));
        let modern = read_frame(&mut s).unwrap();
        let m = Message::parse(&modern).expect("then the modern answer");
        assert_eq!(m.transaction_id(), TransactionId([0x43; 12]));
        let xma = m.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap();
        assert_eq!(decode_xor_address(xma, &m.transaction_id()), Ok(me));
        s.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        let mut more = [0u8; 64];
        assert!(
            matches!(s.read(&mut more), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut),
            "nothing for the classic Allocate, and the connection stays open"
        );
    })
    .await
    .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_binding_over_tls_gets_mapped_address_and_classic_allocate_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, dir) = crate::secure::tls_turn(|_| {}).await;
    let tls = server.addrs(Transport::Tls)[0];
    let mut s = crate::secure::tls_connect(tls, &[]).await;
    let me = s.get_ref().0.local_addr().unwrap();
    // As over TCP: classic, classic Allocate and modern in one write.
    let mut burst = classic(0x001, 0x51, &[]);
    burst.extend(classic(0x003, 0x52, &[REQUESTED_TRANSPORT_UDP]));
    burst.extend(modern_binding(0x53));
    s.write_all(&burst).await.unwrap();
    let mut frame = async || {
        let mut head = [0u8; 20];
        s.read_exact(&mut head).await.unwrap();
        let mut body = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
        s.read_exact(&mut body).await.unwrap();
        [head.to_vec(), body].concat()
    };
    let first = tokio::time::timeout(Duration::from_secs(3), frame())
        .await
        .expect("a classic answer over TLS");
    assert_eq!(first, mapped_answer(0x51, me));
    let modern = tokio::time::timeout(Duration::from_secs(3), frame())
        .await
        .expect("then the modern one");
    let m = Message::parse(&modern).unwrap();
    assert_eq!(
        m.transaction_id(),
        TransactionId([0x53; 12]),
        "nothing between"
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_address_never_sends_a_byte_anywhere_but_the_source() {
    let (nat, primary) = rfc5780_turn(|_| {}).await;
    let alt = alternate(&nat, primary);
    let plain = start_turn(|_| {}).await;
    let plain_udp = plain.addrs(Transport::Udp)[0];
    tokio::task::spawn_blocking(move || {
        let victims = [
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.3:0").unwrap(),
        ];
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 1500];
        let mut id = 0x50;
        for victim in &victims {
            let SocketAddr::V4(v) = victim.local_addr().unwrap() else {
                unreachable!()
            };
            let mut to = vec![0x00, 0x01];
            to.extend_from_slice(&v.port().to_be_bytes());
            to.extend_from_slice(&v.ip().octets());
            for (server, flags) in [
                (plain_udp, None),
                (primary, None),
                (primary, Some(6u8)),
                (primary, Some(2)),
                (alt, Some(4)),
            ] {
                id += 1;
                let change = [0, 0, 0, flags.unwrap_or(0)];
                let mut attrs: Vec<(u16, &[u8])> = vec![(0x0002, &to)];
                if flags.is_some() {
                    attrs.insert(0, (0x0003, &change));
                }
                sock.send_to(&classic(0x001, id, &attrs), server).unwrap();
                let (n, from) = sock.recv_from(&mut buf).expect("a 400 at the source");
                assert_eq!(from, server, "answered from where it arrived");
                let m = Message::parse_classic(&buf[..n]).unwrap();
                let e = ErrorCode::decode(m.get(AttributeType::ERROR_CODE).unwrap()).unwrap();
                assert_eq!((m.class(), e.code), (Class::ErrorResponse, 400));
                assert_eq!(buf[4..20], [id; 16]);
            }
            // A modern request naming it (reserved 0x0002) gets 420.
            let mut req = [0u8; 64];
            let mut b = MessageBuilder::new(
                &mut req,
                MessageType::new(Method::BINDING, Class::Request),
                TransactionId([0x60; 12]),
            );
            b.add(AttributeType::RESPONSE_ADDRESS, &to);
            let n = b.finish().unwrap();
            for server in [plain_udp, primary] {
                sock.send_to(&req[..n], server).unwrap();
                let n = sock.recv(&mut buf).unwrap();
                let m = Message::parse(&buf[..n]).unwrap();
                let e = ErrorCode::decode(m.get(AttributeType::ERROR_CODE).unwrap()).unwrap();
                assert_eq!(e.code, 420);
            }
        }
        for victim in &victims {
            victim
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            assert!(
                victim.recv_from(&mut buf).is_err(),
                "{} received a reflected answer",
                victim.local_addr().unwrap()
            );
        }
    })
    .await
    .unwrap();
    nat.stop().await;
    plain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_backward_compatibility_off_classic_requests_get_no_answer() {
    let off = |c: &mut turnpike::Config| c.stun_backward_compatibility = false;
    let (nat, primary) = rfc5780_turn(off).await;
    let plain = start_turn(off).await;
    let udp = plain.addrs(Transport::Udp)[0];
    let tcp = plain.addrs(Transport::Tcp)[0];
    tokio::task::spawn_blocking(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 1500];
        for server in [udp, primary] {
            sock.send_to(&classic(0x001, 0x71, &[]), server).unwrap();
            sock.send_to(&classic(0x001, 0x72, &[(0x0003, &[0, 0, 0, 6])]), server)
                .unwrap();
            sock.send_to(&modern_binding(0x73), server).unwrap();
            let n = sock.recv(&mut buf).expect("the modern Binding is answered");
            let m = Message::parse(&buf[..n]).expect("and only it");
            assert_eq!(m.transaction_id(), TransactionId([0x73; 12]));
            assert!(sock.recv(&mut buf).is_err(), "{server}: nothing else");
        }
        // TCP: no answer; the stream is not STUN to this server, so it ends.
        let mut s = TcpStream::connect(tcp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(&classic(0x001, 0x74, &[])).unwrap();
        let mut got = Vec::new();
        // Closed by the server, not merely silent until the timeout.
        let closed = s.read_to_end(&mut got);
        assert!(closed.is_ok(), "the stream was not closed: {closed:?}");
        assert!(got.is_empty(), "{} bytes answered", got.len());
    })
    .await
    .unwrap();
    nat.stop().await;
    plain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_answers_spend_the_per_source_budget_on_both_paths() {
    let rate = |c: &mut turnpike::Config| c.auth_reply_rate = 5;
    let (nat, primary) = rfc5780_turn(rate).await;
    let plain = start_turn(rate).await;
    let udp = plain.addrs(Transport::Udp)[0];
    let answered = tokio::task::spawn_blocking(move || {
        let mut counts = vec![];
        for server in [udp, primary] {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            for k in 0..60u8 {
                sock.send_to(&classic(0x001, k, &[]), server).unwrap();
            }
            sock.set_read_timeout(Some(Duration::from_millis(700)))
                .unwrap();
            let mut buf = [0u8; 512];
            let mut n = 0;
            while let Ok(len) = sock.recv(&mut buf) {
                let m = Message::parse_classic(&buf[..len]).unwrap();
                assert!(decode_address(m.get(AttributeType::MAPPED_ADDRESS).unwrap()).is_ok());
                n += 1;
            }
            counts.push(n);
        }
        counts
    })
    .await
    .unwrap();
    // A burst of twice the rate, plus what trickles in meanwhile.
    for n in answered {
        assert!((8..=14).contains(&n), "{n} of 60 answered");
    }
    nat.stop().await;
    plain.stop().await;
}
