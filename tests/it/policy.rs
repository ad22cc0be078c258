//! Peer policy and quotas on the wire, with real sockets.

use std::net::SocketAddr;

use crate::start_turn;
use crate::turn_client::TurnClient;

/// Every default-denied form named by the security checklist and issue 3.
const DENIED: &[&str] = &[
    "127.0.0.1",
    "::ffff:127.0.0.1",
    "::127.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "169.254.169.254",
    "::ffff:169.254.169.254",
    "10.0.0.1",
    "::ffff:10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "2001::1",
    "2001:db8::1",
    "64:ff9b::a00:1",
];

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_permission_to_every_denied_address_gets_403_from_ipv4_and_ipv6_allocations() {
    let server = start_turn(|_| {}).await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];
    for family in [1u8, 2] {
        let mut c = TurnClient::connect(addr).await;
        let relayed = c.allocate(Some(family)).await.expect("allocation");
        assert_eq!(relayed.is_ipv4(), family == 1);
        for ip in DENIED {
            assert_eq!(
                c.create_permission(peer(ip)).await,
                Err(403),
                "{ip} from family {family}"
            );
        }
        // The server's own listener is never a peer.
        assert_eq!(c.create_permission(addr).await, Err(403));
        // A public address of the allocation's family is fine: a permission
        // only, no datagram leaves the machine.
        let public = if family == 1 {
            "8.8.8.8"
        } else {
            "2606:4700:4700::1111"
        };
        assert_eq!(c.create_permission(peer(public)).await, Ok(()), "{public}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_loopback_peers_opens_loopback_only() {
    let server = start_turn(|c| c.allow_loopback_peers = true).await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];
    let mut c = TurnClient::connect(addr).await;
    c.allocate(None).await.unwrap();
    assert_eq!(c.create_permission(peer("127.0.0.1")).await, Ok(()));
    assert_eq!(c.create_permission(peer("10.0.0.1")).await, Err(403));
    assert_eq!(c.create_permission(peer("0.0.0.0")).await, Err(403));
    assert_eq!(
        c.create_permission(addr).await,
        Err(403),
        "the TURN loop stays closed"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_allocation_over_user_quota_gets_486_until_one_is_freed() {
    let server = start_turn(|c| c.user_quota = 2).await;
    let addr = server.addrs(turnpike::Transport::Udp)[0];
    let mut first = TurnClient::connect(addr).await;
    let mut second = TurnClient::connect(addr).await;
    let mut third = TurnClient::connect(addr).await;
    first.allocate(None).await.unwrap();
    second.allocate(None).await.unwrap();
    assert_eq!(third.allocate(None).await, Err(486));
    assert_eq!(server.allocations(), 2);
    first.refresh(0).await.unwrap();
    assert!(third.allocate(None).await.is_ok());
    assert_eq!(server.allocations(), 2);
    server.stop().await;
}
