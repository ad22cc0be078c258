//! Issue 15 (fleet), what is built so far: nodes sharing one store share
//! the nonce key, so a nonce from one node is good at another.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use turnpike::stun::attributes::{AttributeType, ErrorCode};
use turnpike::stun::integrity::long_term_key_md5;
use turnpike::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
use turnpike::Transport;

use crate::{start_turn, temp_db, PASSWORD, REALM, USER};

/// An Allocate for a UDP relay, signed when `nonce` is given.
pub(crate) fn allocate(txid: u8, nonce: Option<&[u8]>) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId([txid; 12]),
    );
    b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    if let Some(nonce) = nonce {
        b.add_username(USER);
        b.add_realm(REALM);
        b.add_nonce(nonce);
        b.add_message_integrity(&long_term_key_md5(USER, REALM, PASSWORD));
    }
    let n = b.finish().unwrap();
    buf[..n].to_vec()
}

/// Sends `req` to `to` and returns the answer's class and error code.
pub(crate) fn exchange(
    sock: &UdpSocket,
    to: SocketAddr,
    req: &[u8],
) -> (Class, Option<u16>, Vec<u8>) {
    sock.send_to(req, to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    let m = Message::parse(&buf[..n]).unwrap();
    let code = m
        .get(AttributeType::ERROR_CODE)
        .map(|v| ErrorCode::decode(v).unwrap().code);
    (m.class(), code, buf[..n].to_vec())
}

pub(crate) fn nonce_of(answer: &[u8]) -> Vec<u8> {
    let m = Message::parse(answer).unwrap();
    m.get(AttributeType::NONCE).expect("a NONCE").to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_from_one_node_is_accepted_by_another_of_the_same_store() {
    let db = temp_db();
    let shared_db = db.clone();
    let a = start_turn(|c| c.db = shared_db).await;
    let shared_db = db.clone();
    let b = start_turn(|c| c.db = shared_db).await;
    let elsewhere = start_turn(|_| {}).await;
    let (a_udp, b_udp, c_udp) = (
        a.addrs(Transport::Udp)[0],
        b.addrs(Transport::Udp)[0],
        elsewhere.addrs(Transport::Udp)[0],
    );
    tokio::task::spawn_blocking(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let (class, code, answer) = exchange(&sock, a_udp, &allocate(1, None));
        assert_eq!((class, code), (Class::ErrorResponse, Some(401)));
        let nonce = nonce_of(&answer);
        // Node B takes node A's nonce: the allocation is made there.
        let (class, code, _) = exchange(&sock, b_udp, &allocate(2, Some(&nonce)));
        assert_eq!(
            (class, code),
            (Class::SuccessResponse, None),
            "B accepts A's nonce"
        );
        // A server on another store has another key: 438 with its own nonce.
        let (class, code, _) = exchange(&sock, c_udp, &allocate(3, Some(&nonce)));
        assert_eq!((class, code), (Class::ErrorResponse, Some(438)));
    })
    .await
    .unwrap();
    a.stop().await;
    b.stop().await;
    elsewhere.stop().await;
}
